"""The ``udp`` broker: no server; the consumer listens for datagrams on the URL's ``host:port``.

**At-most-once, and lossy.** One message is one datagram: UDP itself does not retransmit, so a datagram
can be lost on the way (rarely on loopback, easily on a busy network), and a publish succeeds even when
no consumer listens (nothing answers). A datagram that arrives while the listener's buffer holds
``max_buffer`` messages is dropped and counted. A message larger than one datagram (65,507 bytes with
its id and tag) is refused at publish with :class:`~boostkernel.errors.MessageRejected`. Use it for
telemetry-like work where a lost task does not matter; use ``tcp`` otherwise.

Several consumer processes may listen on one address (``SO_REUSEPORT``, option ``reuse_port``): the OS
spreads producers over them by their source address.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from boostkernel.edge import ListenerBroker, Listening, LoopThread
from boostkernel.errors import MessageRejected
from boostkernel.logs import queue_logger

#: The largest UDP payload over IPv4.
MAX_DATAGRAM = 65507


class UdpBroker(ListenerBroker):
    name = "udp"
    default_url = "udp://127.0.0.1:7312"
    connection: socket.socket | None

    def serve(self, listening: Listening, host: str, port: int) -> tuple[int, Callable[[], None]]:
        import asyncio  # here, not at import: reading this broker's capabilities does not load it

        class Protocol(asyncio.DatagramProtocol):
            dropped = 0

            def datagram_received(self, data: bytes, addr: Any) -> None:
                if listening.full():
                    self.dropped += 1
                    if self.dropped == 1:
                        queue_logger(listening.queue).warning(
                            "udp listener of queue %r: the buffer holds max_buffer=%d messages, so datagrams are "
                            "dropped (logged once; UDP has no back-pressure)", listening.queue, listening.max_buffer)
                    return
                listening.put_frames([data])

        loop = LoopThread.get()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if self.options.get("reuse_port", hasattr(socket, "SO_REUSEPORT")):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(self.options.get("receive_buffer", 4 << 20)))
        sock.bind((host, port))
        sock.setblocking(False)

        async def start() -> asyncio.DatagramTransport:
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                Protocol, sock=sock)
            return transport

        transport = loop.run(start())
        bound: int = sock.getsockname()[1]

        def stop() -> None:
            loop.loop.call_soon_threadsafe(transport.close)

        return bound, stop

    def send(self, frames: list[bytes]) -> None:
        for f in frames:
            if len(f) > MAX_DATAGRAM:
                raise MessageRejected(f"a message of {len(f)} bytes does not fit one UDP datagram ({MAX_DATAGRAM} "
                                      "bytes with id and tag): pass a reference to the data, or use the tcp broker")
        host, port = self.addresses[0]
        with self.producer_lock:
            if self.connection is None:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                self.connection = socket.socket(family, socket.SOCK_DGRAM)
                self.connection.connect((host, port))
            for f in frames:
                try:
                    self.connection.send(f)
                except ConnectionRefusedError:  # an ICMP "port unreachable" for an earlier datagram
                    self.connection.send(f)
