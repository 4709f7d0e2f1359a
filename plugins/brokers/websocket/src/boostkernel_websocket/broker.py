"""The ``websocket`` broker: no server; the consumer serves a WebSocket endpoint, producers stream to it.

**At-most-once** (see :mod:`boostkernel.edge`): a message the listener received is in the consumer's
memory only; it is lost if that process stops or dies before running it. Each producer keeps one
connection open and sends each message as one binary WebSocket message (a frame of
:meth:`boostkernel.edge.ListenerBroker.frame`); there is no per-message answer, so a message in flight
when the consumer dies can be lost. A text message holding a bare JSON object is the function's kwargs
(a listener without a secret only), so a browser or ``websocat`` can feed the queue.

The listener runs on the process's asyncio edge loop (``websockets`` asyncio server); it stops reading
while its buffer is full, so flow control holds producers back. URL: ``ws://host:port`` (any path).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from boostkernel.edge import ListenerBroker, Listening, LoopThread

MAX_MESSAGE = 64 * 1024 * 1024


class WebSocketBroker(ListenerBroker):
    name = "websocket"
    default_url = "ws://127.0.0.1:7315"

    # --- consumer -------------------------------------------------------------------------------
    def serve(self, listening: Listening, host: str, port: int) -> tuple[int, Callable[[], None]]:
        from websockets.asyncio.server import ServerConnection, serve
        from websockets.exceptions import ConnectionClosed

        loop = LoopThread.get()

        async def handler(ws: ServerConnection) -> None:
            try:
                async for msg in ws:
                    listening.put_frames([msg.encode() if isinstance(msg, str) else msg])
                    if listening.full():
                        await listening.until_room()
            except ConnectionClosed:
                pass

        reuse = bool(self.options.get("reuse_port", hasattr(socket, "SO_REUSEPORT")))

        async def start() -> Any:
            return await serve(handler, host, port, max_size=MAX_MESSAGE, compression=None,
                               reuse_port=reuse or None)

        server = loop.run(start())
        bound = next(iter(server.sockets)).getsockname()[1]

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        return bound, lambda: loop.run(stop(), 15)

    # --- producer -------------------------------------------------------------------------------
    def _connect(self) -> Any:
        from websockets.sync.client import connect

        host, port = self.addresses[0]
        h = f"[{host}]" if ":" in host else host
        # entered as a context manager (websockets >= 17.1 warns otherwise); closed by _drop
        return self.retrying(lambda: connect(f"ws://{h}:{port}/", max_size=MAX_MESSAGE, compression=None,
                                             open_timeout=self.connect_timeout).__enter__(),
                             (ConnectionRefusedError, ConnectionResetError, TimeoutError, OSError))

    def send(self, frames: list[bytes]) -> None:
        from websockets.exceptions import ConnectionClosed

        sent = 0
        with self.producer_lock:
            for tries in (1, 2):
                if self.connection is None:
                    self.connection = self._connect()
                try:
                    for f in frames[sent:]:  # no answer per message: a consumer that vanished mid-way loses some
                        self.connection.send(f)
                        sent += 1
                    return
                except (ConnectionClosed, OSError):
                    self.drop_connection()
                    if tries == 2:
                        raise
