"""The ``grpc`` broker: no server; the consumer serves gRPC on the URL's ``host:port``, producers call it.

**At-most-once** (see :mod:`boostkernel.edge`): an OK answer means the message is in the consumer's
memory; it is lost if that process stops or dies before running it.

The service is defined with generic handlers (no ``.proto`` file, no protoc step); every message is the
raw frame bytes (:meth:`boostkernel.edge.ListenerBroker.frame`), so any gRPC client can call it:

* ``/boostkernel.Edge/Push`` (unary): one frame → empty answer. ``publish``.
* ``/boostkernel.Edge/Publish`` (client streaming): frames → the count taken (ASCII). ``publish_many``.
* ``/boostkernel.Edge/Call`` (unary): one frame → the task's status record as JSON, once it finished
  (within the call's deadline): the synchronous call, :func:`boostkernel_grpc.call`. The consumer's
  booster must keep results (``results=True``).

Status codes: ``PERMISSION_DENIED`` (refused: unsigned, tampered), ``RESOURCE_EXHAUSTED`` (buffer full:
the producer retries for ``send_timeout``), ``UNAVAILABLE`` (no consumer: the producer waits for one for
``connect_timeout``). The channel is plaintext (``insecure_channel``): on an untrusted network the
shared secret authenticates messages, but nothing encrypts them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from boostkernel.broker import Outgoing
from boostkernel.edge import ListenerBroker, Listening, wait_result
from boostkernel.errors import BrokerUnavailable, MessageRejected

SERVICE = "boostkernel.Edge"
MAX_MESSAGE = 64 * 1024 * 1024
_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]


def _service(listening: Listening, queue: str) -> grpc.GenericRpcHandler:
    def wait_room(context: grpc.ServicerContext) -> None:
        if listening.full():
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "buffer full")

    def push(request: bytes, context: grpc.ServicerContext) -> bytes:
        wait_room(context)
        if listening.put_frames([request]) != 1:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "message refused")
        return b""

    def publish(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        taken = refused = 0
        chunk: list[bytes] = []
        for frame in requests:
            chunk.append(frame)
            if len(chunk) >= 256:
                while listening.full() and context.is_active():  # back-pressure: HTTP/2 flow control
                    time.sleep(0.005)
                n = listening.put_frames(chunk)
                taken, refused, chunk = taken + n, refused + len(chunk) - n, []
        if chunk:
            n = listening.put_frames(chunk)
            taken, refused = taken + n, refused + len(chunk) - n
        if refused:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{refused} message(s) refused, {taken} taken")
        return str(taken).encode()

    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        wait_room(context)
        d = listening.decode(request)
        if d is None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "message refused")
        assert d is not None
        listening.put(d)
        left = context.time_remaining()
        rec = wait_result(queue, d.id, min(left - 1.0 if left is not None else 3600.0, 3600.0))  # answer in time
        return json.dumps(rec, default=str).encode()

    return grpc.method_handlers_generic_handler(SERVICE, {
        "Push": grpc.unary_unary_rpc_method_handler(push),
        "Publish": grpc.stream_unary_rpc_method_handler(publish),
        "Call": grpc.unary_unary_rpc_method_handler(call),
    })


class GrpcBroker(ListenerBroker):
    name = "grpc"
    default_url = "grpc://127.0.0.1:7314"
    connection: grpc.Channel | None
    #: the synchronous call waits on the consumer's own store: in-process by default
    default_store = "memory"

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        self.send_timeout = float(self.options.get("send_timeout", 60.0))

    # --- consumer -------------------------------------------------------------------------------
    def serve(self, listening: Listening, host: str, port: int) -> tuple[int, Callable[[], None]]:
        reuse = 1 if self.options.get("reuse_port", True) else 0
        server = grpc.server(ThreadPoolExecutor(max_workers=int(self.options.get("server_threads", 16)),
                                                thread_name_prefix=f"boostkernel-grpc-{self.queue}"),
                             options=[*_OPTIONS, ("grpc.so_reuseport", reuse)])
        server.add_generic_rpc_handlers((_service(listening, self.queue),))
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        bound = server.add_insecure_port(target)
        if not bound:
            raise BrokerUnavailable(f"grpc listener could not bind {target}")
        server.start()

        def stop() -> None:
            server.stop(grace=1.0).wait(10)

        return bound, stop

    # --- producer -------------------------------------------------------------------------------
    def _stub(self, kind: str, method: str) -> Any:
        with self.producer_lock:
            if self.connection is None:
                host, port = self.addresses[0]
                target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                self.connection = grpc.insecure_channel(target, options=_OPTIONS)
            return getattr(self.connection, kind)(f"/{SERVICE}/{method}")

    def _invoke(self, kind: str, method: str, request: Any, timeout: float) -> bytes:
        deadline = time.monotonic() + self.send_timeout
        delay = 0.02
        while True:
            try:
                # wait_for_ready: a consumer that is starting (or restarting) is waited for
                out: bytes = self._stub(kind, method)(request, timeout=timeout, wait_for_ready=True)
                return out
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                if code == grpc.StatusCode.PERMISSION_DENIED:
                    raise MessageRejected(f"the grpc consumer at {self.url!r} refused the message ({exc.details()}): "
                                          "check that producer and consumer share the same secret") from None
                raise BrokerUnavailable(f"grpc consumer at {self.url!r}: {code.name} ({exc.details()}); is a "
                                        "consumer listening there?") from None

    def send(self, frames: list[bytes]) -> None:
        if len(frames) == 1:
            self._invoke("unary_unary", "Push", frames[0], self.connect_timeout)
        else:
            self._invoke("stream_unary", "Publish", iter(frames), self.send_timeout)

    def call(self, message: Outgoing, timeout: float = 30.0) -> dict[str, Any]:
        """Send ``message`` and wait (up to ``timeout`` s) for the task's status record in the answer."""
        rec: dict[str, Any] = json.loads(self._invoke("unary_unary", "Call", self.frame(message), timeout + 2.0))
        return rec
