"""The ``http`` broker: no server; the consumer serves HTTP on the URL's ``host:port``, producers POST to it.

**At-most-once** (see :mod:`boostkernel.edge`): a ``202`` answer means the message is in the consumer's
memory; it is lost if that process stops or dies before running it. A producer does learn whether a
message was taken: ``publish`` returns after the ``202`` and raises otherwise.

Endpoints of the listener (stdlib :class:`http.server.ThreadingHTTPServer`, HTTP/1.1 keep-alive):

* ``POST /`` — body: one frame (:meth:`boostkernel.edge.ListenerBroker.frame`), or, with
  ``Content-Type: application/x-boostkernel-frames``, several frames each prefixed by its length (4 bytes,
  big-endian; ``publish_many``). A listener without a secret also takes a bare JSON object (the function's
  kwargs): ``curl -d '{"x": 1}' http://127.0.0.1:7313/``. Answers ``202`` (taken), ``403`` (refused:
  unsigned, tampered), ``503`` (buffer full or stopping: the producer retries for ``send_timeout``).
* ``POST /call?timeout=SECONDS`` — one frame; the answer waits until the task finished and carries its
  status record as JSON (``status``, ``result`` or ``error``): the synchronous call, :func:`call`. The
  consumer's booster must keep results (``results=True``); its store (by default the in-process memory
  store) is where the answer is read.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from boostkernel.broker import Outgoing
from boostkernel.edge import ListenerBroker, Listening
from boostkernel.errors import BrokerUnavailable, MessageRejected

if TYPE_CHECKING:
    import http.client

#: ``Content-Type`` of a body holding several length-prefixed frames (``publish_many``).
FRAMES_TYPE = "application/x-boostkernel-frames"


class HttpBroker(ListenerBroker):
    name = "http"
    default_url = "http://127.0.0.1:7313"
    #: the synchronous call waits on the consumer's own store: in-process by default
    default_store = "memory"

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.send_timeout = float(self.options.get("send_timeout", 60.0))
        self._local = threading.local()

    # --- consumer -------------------------------------------------------------------------------
    def serve(self, listening: Listening, host: str, port: int) -> tuple[int, Callable[[], None]]:
        from .listener import Server, handler  # http.server: only where a consumer listens

        cls = type("_Server", (Server,), {  # per listener: the family and reuse_port are class attributes
            "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET,
            "reuse_port": bool(self.options.get("reuse_port", hasattr(socket, "SO_REUSEPORT")))})
        server = cls((host, port), handler(listening, self.queue))
        t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                             name=f"boostkernel-http-{self.queue}", daemon=True)
        t.start()

        def stop() -> None:
            listening.closed = True
            server.shutdown()
            server.server_close()

        return server.server_address[1], stop

    # --- producer -------------------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        c: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if c is None:
            import http.client  # once per thread: producers only, and not at plugin load

            host, port = self.addresses[0]
            c = http.client.HTTPConnection(host, port, timeout=self.send_timeout)
            self._local.conn = c
            conns = self.__dict__.setdefault("_conns", [])
            conns.append(c)
        return c

    def _post(self, path: str, body: bytes, ctype: str, timeout: float | None = None) -> tuple[int, bytes]:
        from http.client import HTTPException  # not at plugin load; after the first call, a dictionary lookup

        deadline = time.monotonic() + self.send_timeout
        delay = 0.02
        refused_since: float | None = None
        while True:
            c = self._conn()
            try:
                if timeout is not None and c.sock is not None:
                    c.sock.settimeout(timeout + 30)
                c.request("POST", path, body, {"Content-Type": ctype})
                r = c.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
            except (ConnectionError, OSError, HTTPException) as exc:
                c.close()
                now = time.monotonic()
                refused_since = refused_since or now
                if now - refused_since > self.connect_timeout or now > deadline:
                    raise BrokerUnavailable(f"http consumer at {self.url!r} unreachable ({exc}); is a consumer "
                                            "listening there?") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            refused_since = None
            if r.status == 503 and time.monotonic() < deadline:  # buffer full / stopping: back-pressure
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            return r.status, data

    def _check(self, status: int, data: bytes) -> None:
        if status == 403:
            raise MessageRejected(f"the http consumer at {self.url!r} refused the message ({data.decode()}): "
                                  "check that producer and consumer share the same secret")
        if status >= 300:
            raise BrokerUnavailable(f"the http consumer at {self.url!r} answered {status}: {data[:200]!r}")

    def send(self, frames: list[bytes]) -> None:
        if len(frames) == 1:
            self._check(*self._post("/", frames[0], "application/octet-stream"))
            return
        body = b"".join(len(f).to_bytes(4, "big") + f for f in frames)
        self._check(*self._post("/", body, FRAMES_TYPE))

    def call(self, message: Outgoing, timeout: float = 30.0) -> dict[str, Any]:
        """Send ``message`` and wait (up to ``timeout`` s) for the task's status record in the answer."""
        status, data = self._post(f"/call?timeout={timeout}", self.frame(message), "application/octet-stream",
                                  timeout)
        self._check(status, data)
        rec: dict[str, Any] = json.loads(data)
        return rec

    def close_producer(self) -> None:
        for c in self.__dict__.get("_conns", []):
            c.close()
