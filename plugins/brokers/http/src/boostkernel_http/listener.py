"""The ``http`` listener: a stdlib :class:`http.server.ThreadingHTTPServer` and its request handler.

Imported when a consumer starts listening (:meth:`HttpBroker.serve`), not with the plugin: ``http.server``
is not needed by producers or by ``boostkernel plugins list``.
"""

from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from boostkernel.edge import Listening, wait_result

from .broker import FRAMES_TYPE

#: Largest request body a listener reads.
MAX_BODY = 64 * 1024 * 1024


def _split(body: bytes) -> list[bytes] | None:
    out, pos = [], 0
    while pos < len(body):
        if len(body) - pos < 4:
            return None
        n = int.from_bytes(body[pos:pos + 4], "big")
        if len(body) - pos - 4 < n:
            return None
        out.append(body[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


class Server(ThreadingHTTPServer):
    daemon_threads = True
    reuse_port = False

    def server_bind(self) -> None:
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def handler(listening: Listening, queue: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # no line per request
            pass

        def setup(self) -> None:
            super().setup()
            # headers and body leave in two writes: without this, Nagle + delayed ACK add 40 ms per request
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _answer(self, code: int, body: bytes = b"", ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if listening.closed:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            n = int(self.headers.get("Content-Length") or 0)
            if n > MAX_BODY:
                self.close_connection = True
                return self._answer(413, b"body too large")
            body = self.rfile.read(n)
            if listening.closed:
                return self._answer(503, b"stopping")
            if listening.full():
                return self._answer(503, b"buffer full")
            path = urlsplit(self.path)
            if path.path.rstrip("/").endswith("/call"):
                return self._call(body, parse_qs(path.query))
            if self.headers.get("Content-Type") == FRAMES_TYPE:
                frames = _split(body)
                if frames is None:
                    listening.refuse("a malformed frame list")
                    return self._answer(400, b"malformed frame list")
            else:
                frames = [body]
            taken = listening.put_frames(frames)
            if taken < len(frames):
                return self._answer(403, b"%d of %d message(s) refused" % (len(frames) - taken, len(frames)))
            self._answer(202, b"%d" % taken)

        def _call(self, body: bytes, query: dict[str, list[str]]) -> None:
            d = listening.decode(body)
            if d is None:
                return self._answer(403, b"message refused")
            timeout = min(float(query.get("timeout", ["30"])[0]), 3600.0)
            listening.put(d)
            rec = wait_result(queue, d.id, timeout)
            self._answer(200, json.dumps(rec, default=str).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802
            self._answer(200, b"boostkernel http listener\n")

    return Handler
