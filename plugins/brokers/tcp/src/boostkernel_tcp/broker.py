"""The ``tcp`` broker: no server; the consumer listens on the URL's ``host:port``, producers connect to it.

**At-most-once** (see :mod:`boostkernel.edge`): a message the listener received is in the consumer's
memory only; it is lost if that process stops or dies before running it. A publish returns once the
frame is written to the producer's socket: a message in flight when the consumer dies can be lost.

Wire: one persistent connection per producer, each message a frame ``length (4 bytes, big-endian) +
frame`` (:meth:`boostkernel.edge.ListenerBroker.frame`: optionally HMAC-signed). The listener is an
asyncio server on the process's edge loop thread; it stops reading while its buffer is full, so TCP
flow control holds producers back. Several consumer processes may listen on one address
(``SO_REUSEPORT``, option ``reuse_port``, default on where the OS has it): the OS spreads producer
connections over them (competing consumers, per connection).
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from boostkernel.edge import ListenerBroker, Listening, LoopThread
from boostkernel.errors import MessageRejected

if TYPE_CHECKING:
    import asyncio

#: Largest frame a listener accepts (a bigger length prefix closes the connection as malformed).
MAX_FRAME = 64 * 1024 * 1024
_LEN = 4


class TcpBroker(ListenerBroker):
    name = "tcp"
    default_url = "tcp://127.0.0.1:7311"
    connection: socket.socket | None

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.send_timeout = float(self.options.get("send_timeout", 60.0))

    # --- consumer -------------------------------------------------------------------------------
    def serve(self, listening: Listening, host: str, port: int) -> tuple[int, Callable[[], None]]:
        import asyncio

        loop = LoopThread.get()
        writers: set[asyncio.StreamWriter] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            buf = bytearray()
            try:
                while True:
                    chunk = await reader.read(256 * 1024)
                    if not chunk:
                        return
                    buf += chunk
                    frames: list[bytes] = []
                    pos = 0
                    while len(buf) - pos >= _LEN:
                        n = int.from_bytes(buf[pos:pos + _LEN], "big")
                        if n > MAX_FRAME:
                            listening.refuse(f"a frame of {n} bytes exceeds {MAX_FRAME}")
                            return
                        if len(buf) - pos - _LEN < n:
                            break
                        frames.append(bytes(buf[pos + _LEN:pos + _LEN + n]))
                        pos += _LEN + n
                    del buf[:pos]
                    if frames:
                        listening.put_frames(frames)
                    if listening.full():
                        await listening.until_room()
            except (ConnectionError, OSError):
                return
            finally:
                writers.discard(writer)
                writer.close()

        reuse = bool(self.options.get("reuse_port", hasattr(socket, "SO_REUSEPORT")))

        async def start() -> asyncio.Server:
            return await asyncio.start_server(handle, host, port, reuse_port=reuse or None)

        server = loop.run(start())
        bound = server.sockets[0].getsockname()[1]

        async def stop() -> None:
            server.close()
            for w in list(writers):
                w.close()
            await server.wait_closed()

        return bound, lambda: loop.run(stop(), 10)

    # --- producer -------------------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        host, port = self.addresses[0]

        def attempt() -> socket.socket:
            s = socket.create_connection((host, port), timeout=self.connect_timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(self.send_timeout)  # a full listener holds writes back (back-pressure) this long
            return s

        return self.retrying(attempt, (ConnectionRefusedError, ConnectionResetError, TimeoutError, socket.gaierror))

    def _stale(self, s: socket.socket) -> bool:
        """The listener closed this connection (it stopped): a write would vanish, so reconnect first."""
        readable, _, _ = select.select([s], [], [], 0)
        if not readable:
            return False
        try:
            return s.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def send(self, frames: list[bytes]) -> None:
        data = bytearray()
        for f in frames:
            if len(f) > MAX_FRAME:
                raise MessageRejected(f"a message of {len(f)} bytes exceeds the tcp broker's {MAX_FRAME}-byte frame")
            data += len(f).to_bytes(_LEN, "big")
            data += f
        with self.producer_lock:
            for tries in (1, 2):
                if self.connection is None or self._stale(self.connection):
                    self.drop_connection()
                    self.connection = self._connect()
                try:
                    self.connection.sendall(data)
                    return
                except OSError:
                    self.drop_connection()
                    if tries == 2:
                        raise
