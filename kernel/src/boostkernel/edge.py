"""Shared base of the *listening* (brokerless) brokers: zeromq, tcp, udp, http, grpc, websocket.

There is no message server: the consumer **listens** on the ``host:port`` its broker URL names
(``tcp://127.0.0.1:7311``) and producers send straight to it. A :class:`ListenerBroker` instance is a
producer until it is asked to :meth:`~ListenerBroker.listen` (``fetch`` does so on first use); the
messages a listener receives wait in a buffer in the consumer's memory, which ``fetch`` drains.

**Delivery: at-most-once.** A message is gone from the producer once the consumer's listener took it;
if the consumer process stops or dies before running it (buffered, prefetched, running, or held for its
countdown/eta, which the listener keeps until due), it is lost.
``ack`` does nothing; ``nack(requeue=True)`` puts the message back into this consumer's buffer (after
``delay`` seconds); there is no dead-letter queue (a dead-lettered message is logged with its reason
and dropped). ``count``/``purge`` act on the buffer of the listener in *this* process (0 elsewhere).
Rarely a message arrives twice: a producer whose connection broke while sending resends on a new one.

**Security, one rule for every listening broker.** The address must be a loopback address unless a
shared secret is configured (:func:`boostkernel.signing.keys_from`: option ``secret``, or
``BOOSTKERNEL_<NAME>_SECRET`` / ``BOOSTKERNEL_SECRET``); otherwise the booster is refused at decoration
and the broker at construction. With a secret every message carries an HMAC-SHA256 tag over its queue,
id, eta and body; a listener with a secret refuses unsigned and tampered messages, and a listener without one
refuses signed messages it cannot check. A refused message is never run; the first refusal of a
listener is logged (later ones are only counted in :attr:`Listening.refused`).

Frame of one message (the payload of a TCP frame, UDP datagram, HTTP body, gRPC bytes, WebSocket
message, ZeroMQ message)::

    b"\\x01" + data                 unsigned
    b"\\x02" + tag(32) + data       signed: tag = HMAC-SHA256(key, data)
    data = queue + b"\\n" + id + b"\\n" + eta + b"\\n" + body   (eta: Unix time as text, empty if due)

A listener refuses a frame for another queue (two queues given one address by mistake would otherwise
run each other's messages).

A listener without a secret also accepts a bare JSON object (first byte ``{``) from a foreign producer:
the kernel reads it as the function's kwargs, under a fresh id.
"""

from __future__ import annotations

import collections
import heapq
import ipaddress
import itertools
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from .broker import Broker, BrokerCapabilities, Delivery, Outgoing
from .errors import ConfigError
from .logs import mask_url, queue_logger
from .message import uuid7
from .params import BoostParams
from .results import rpc_result, sync_call
from .signing import TAG_BYTES, Signer, keys_from, secret_env_names

if TYPE_CHECKING:
    from .booster import Booster

__all__ = ["ListenerBroker", "Listening", "LoopThread", "is_loopback", "parse_address", "rpc_result", "sync_call",
           "wait_result",
           "AT_MOST_ONCE"]

T = TypeVar("T")

#: The capabilities every listening broker shares (a subclass may narrow them).
AT_MOST_ONCE = BrokerCapabilities(ack=False, requeue=True, priority=False, delay=True, durable=False, count=True,
                                  purge=True, fanout=False, batch_publish=False, dead_letter=False,
                                  cross_process=True)

_UNSIGNED, _SIGNED = b"\x01", b"\x02"
_log = logging.getLogger("boostkernel.edge")


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` and ``::1``. ``0.0.0.0``/``::``/``""`` (every interface) are not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_address(url: str, default_port: int) -> list[tuple[str, int]]:
    """``scheme://host:port[,host:port…][/path]`` → ``[(host, port), …]`` (IPv6 as ``[::1]:7001``)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc:
        raise ConfigError(f"broker URL {mask_url(url)!r} names no host:port, e.g. '{parts.scheme or 'tcp'}://127.0.0.1:"
                          f"{default_port}'")
    out = []
    for item in netloc.rsplit("@", 1)[-1].split(","):
        host, port = item, default_port
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif item.count(":") == 1:
            host, _, p = item.partition(":")
            try:
                port = int(p)
            except ValueError:
                raise ConfigError(f"broker URL {mask_url(url)!r}: port {p!r} is not a number") from None
        out.append((host or "127.0.0.1", port))
    return out


class LoopThread:
    """One asyncio event loop in a daemon thread, shared by the listeners of a process.

    ``asyncio`` is imported when the loop is made, not with this module: reading a listening broker's
    capabilities (``boostkernel plugins list``) does not pay for it.
    """

    _instance: ClassVar[LoopThread | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="boostkernel-edge-loop", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> LoopThread:
        with cls._lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = LoopThread()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class Listening:
    """The listener of one address in this process: its buffer of received messages and its server."""

    def __init__(self, name: str, queue: str, signer: Signer | None, max_buffer: int) -> None:
        self.name, self.queue, self.signer, self.max_buffer = name, queue, signer, max_buffer
        self._queue_bytes = queue.encode()
        self.cond = threading.Condition(threading.Lock())
        self.ready: collections.deque[Delivery] = collections.deque()
        self.delayed: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self.refused = 0
        """Messages refused (unsigned, tampered, malformed frame) since the listener started."""
        self.users = 0
        self.stop: Callable[[], None] = lambda: None
        self.closed = False

    # --- receiving (server threads / the loop) ------------------------------------------------
    def decode(self, frame: bytes) -> Delivery | None:
        """The delivery in ``frame``, or ``None`` (refused: counted, and logged the first time)."""
        head = frame[:1]
        if head == _SIGNED:
            if self.signer is None:
                return self.refuse("a signed message, but this listener has no secret to check it with")
            data = frame[1 + TAG_BYTES:]
            if len(frame) < 1 + TAG_BYTES or not self.signer.verify(data, frame[1:1 + TAG_BYTES]):
                return self.refuse("its HMAC tag does not verify (tampered, or signed with another key)")
        elif self.signer is not None:
            return self.refuse("it is not signed, and this listener requires a shared secret")
        elif head == _UNSIGNED:
            data = frame[1:]
        elif head == b"{":
            return Delivery(uuid7(), frame, None, 1)
        else:
            return self.refuse("it is not a boostkernel frame")
        queue, sep0, rest = data.partition(b"\n")
        id_, sep, rest = rest.partition(b"\n")
        eta, sep2, body = rest.partition(b"\n")
        if not sep0 or not sep or not sep2 or not id_:
            return self.refuse("the frame has no queue or message id")
        if queue != self._queue_bytes:
            return self.refuse(f"it is for queue {queue[:100].decode('utf-8', 'replace')!r}: two queues share this "
                               "address (give each its own port)")
        d = Delivery(id_.decode("utf-8", "replace"), body, None, 1)
        if eta:
            try:
                d.extra["eta"] = float(eta)
            except ValueError:
                return self.refuse("the frame's eta is not a number")
        return d

    def refuse(self, why: str) -> Delivery | None:
        """Count (and the first time, log) a refused message; returns ``None`` for ``decode``."""
        with self.cond:
            self.refused += 1
            first = self.refused == 1
        if first:
            queue_logger(self.queue).warning(
                "%s listener of queue %r refused a message: %s. It was not run; further refused messages are "
                "counted, not logged", self.name, self.queue, why)
        return None

    def full(self) -> bool:
        return len(self.ready) >= self.max_buffer

    async def until_room(self) -> None:
        """Back-pressure for a listener on the :class:`LoopThread`: return once the buffer is no longer
        :meth:`full` (or the listener closed); the caller reads nothing more meanwhile, so the protocol's
        flow control holds producers back."""
        import asyncio

        while self.full() and not self.closed:
            await asyncio.sleep(0.005)

    def put(self, d: Delivery) -> None:
        eta = d.extra.get("eta")
        if eta is not None and eta > time.time():
            return self.later(d, eta)
        with self.cond:
            self.ready.append(d)
            self.cond.notify()

    def put_frames(self, frames: Sequence[bytes]) -> int:
        """Decode and buffer ``frames``; return how many were accepted."""
        ds = [d for d in map(self.decode, frames) if d is not None]
        taken = len(ds)
        if ds:
            if any(d.extra for d in ds):  # a countdown/eta: held here until due
                now = time.time()
                for d in [d for d in ds if d.extra.get("eta", 0.0) > now]:
                    self.later(d, d.extra["eta"])
                ds = [d for d in ds if d.extra.get("eta", 0.0) <= now]
            with self.cond:
                self.ready.extend(ds)
                self.cond.notify(len(ds))
        return taken

    def later(self, d: Delivery, eta: float) -> None:
        with self.cond:
            heapq.heappush(self.delayed, (eta, next(self._seq), d))
            self.cond.notify()

    # --- consuming ----------------------------------------------------------------------------
    def take(self, max_messages: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.delayed:
                    now = time.time()
                    while self.delayed and self.delayed[0][0] <= now:
                        self.ready.append(heapq.heappop(self.delayed)[2])
                if self.ready:
                    n = min(max_messages, len(self.ready))
                    return [self.ready.popleft() for _ in range(n)]
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return []
                if self.delayed:
                    left = min(left, max(0.001, self.delayed[0][0] - time.time()))
                self.cond.wait(left)

    def count(self) -> int:
        with self.cond:
            return len(self.ready) + len(self.delayed)

    def purge(self) -> int:
        with self.cond:
            n = len(self.ready) + len(self.delayed)
            self.ready.clear()
            self.delayed.clear()
            return n


#: The listeners of this process: (broker name, host, port) → Listening.
_LISTENING: dict[tuple[str, str, int], Listening] = {}
_LISTENING_LOCK = threading.Lock()


class ListenerBroker(Broker):
    """Base class: subclasses implement :meth:`serve` (start a server) and :meth:`send` (producer side).

    Options every listening broker takes (``broker_options``):

    * ``secret`` — shared secret(s), comma-separated for rotation (or ``BOOSTKERNEL_<NAME>_SECRET``);
      required when the address is not loopback.
    * ``max_buffer`` (10000) — messages the listener holds before it stops reading (back-pressure
      where the protocol has it: TCP, WebSocket, HTTP/gRPC answer 503 / RESOURCE_EXHAUSTED, UDP drops).
    * ``connect_timeout`` (5.0) — how long a producer keeps retrying a refused connection (a consumer
      that is starting) before :class:`~boostkernel.errors.BrokerUnavailable`.
    """

    capabilities: ClassVar[BrokerCapabilities] = AT_MOST_ONCE
    default_port: ClassVar[int] = 7311
    """The port of an address without one: by default the port of ``default_url``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "default_port" not in cls.__dict__ and cls.default_url:
            cls.default_port = urlsplit(cls.default_url).port or cls.default_port

    def __init__(self, queue: str, url: str | None = None, params: BoostParams | None = None,
                 **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        if self.url is None:
            raise ConfigError(f"broker {self.name!r} needs a URL naming the consumer's address, e.g. "
                              f"broker_url='{self.name}://127.0.0.1:{self.default_port}'")
        self.addresses = parse_address(self.url, self.default_port)
        self.signer = self.check_security(self.url, self.options)
        self.max_buffer = int(self.options.get("max_buffer", 10000))
        self.connect_timeout = float(self.options.get("connect_timeout", 5.0))
        self._queue_bytes = queue.encode()
        if b"\n" in self._queue_bytes:
            raise ConfigError(f"queue name {queue!r} contains a newline, which the {self.name} frame cannot carry")
        self.listening: Listening | None = None
        self._closed = False
        self.producer_lock = threading.Lock()
        """Held by the producer side while it uses or replaces :attr:`connection`."""
        self.connection: Any = None
        """The producer's connection (socket, client, channel), opened by the subclass on its first
        :meth:`send`; :meth:`drop_connection` and :meth:`close_producer` close it."""

    # --- the security rule --------------------------------------------------------------------
    @classmethod
    def check_security(cls, url: str | None, options: dict[str, Any]) -> Signer | None:
        """The signer for ``options``; raise :class:`ConfigError` for a non-loopback address without one."""
        keys = keys_from(cls.name, options)
        if not keys and url:
            wide = [h for h, _ in parse_address(url, cls.default_port) if not is_loopback(h)]
            if wide:
                own, shared = secret_env_names(cls.name)
                raise ConfigError(
                    f"broker {cls.name!r} at {mask_url(url)!r}: {wide[0]!r} is not a loopback address, and anyone "
                    f"who can reach it could run tasks. Set a shared secret on both sides: "
                    f"broker_options={{'secret': '…'}} or the environment variable {own} (or {shared}); "
                    f"or bind to 127.0.0.1")
        return Signer(keys) if keys else None

    @classmethod
    def setup_booster(cls, booster: Booster[Any, Any]) -> None:
        """At decoration: refuse a non-loopback address without a secret (the kernel calls this)."""
        p = booster.params
        cls.check_security(p.broker_url or cls.default_url, dict(p.broker_options))

    # --- framing ------------------------------------------------------------------------------
    def frame(self, m: Outgoing) -> bytes:
        eta = b"%r" % m.eta if m.eta is not None and m.eta > time.time() else b""
        data = b"%b\n%b\n%b\n%b" % (self._queue_bytes, m.id.encode(), eta, m.body)
        return _SIGNED + self.signer.seal(data) if self.signer is not None else _UNSIGNED + data

    # --- consumer side ------------------------------------------------------------------------
    def serve(self, listening: Listening, host: str, port: int) -> tuple[int, Callable[[], None]]:
        """Start a server on ``host:port`` that feeds ``listening.put_frames``; return (bound port, stop)."""
        raise NotImplementedError

    def listen(self) -> Listening:
        """Start listening on the URL's (first) address, or join this process's listener there.

        Port 0 binds a free port, and this instance's URL is rewritten to name it."""
        if self.listening is not None:
            return self.listening
        host, port = self.addresses[0]
        with _LISTENING_LOCK:
            lst = _LISTENING.get((self.name, host, port)) if port else None
            if lst is None:
                lst = Listening(self.name, self.queue, self.signer, self.max_buffer)
                bound, lst.stop = self.serve(lst, host, port)
                if bound != port:
                    self.addresses[0] = (host, bound)
                    self.url = _with_port(self.url or "", bound)
                _LISTENING[(self.name, host, bound)] = lst
            lst.users += 1
        self.listening = lst
        return lst

    def local(self) -> Listening | None:
        """The listener of this address in this process, if any."""
        host, port = self.addresses[0]
        return self.listening or _LISTENING.get((self.name, host, port))

    def wait_listening(self, timeout: float = 10.0) -> bool:
        """Wait until a listener of this address runs in this process (a booster's ``consume()`` starts
        it on its first fetch). Useful where producer and consumer share a process and a message sent
        before would be lost (``udp``); the others' producers wait ``connect_timeout`` by themselves."""
        deadline = time.monotonic() + timeout
        while self.local() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        return self.listen().take(max_messages, timeout)

    def ack(self, delivery: Delivery) -> None:
        """Nothing to do: at-most-once."""

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        lst = self.local()
        if not requeue or lst is None:
            return
        again = Delivery(delivery.id, delivery.body, None, delivery.delivery_count + 1)
        if delay > 0:
            lst.later(again, time.time() + delay)
        else:
            lst.put(again)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.log.error("message %s on %s queue %r dead-lettered (%s); this broker keeps no dead-letter queue, "
                       "dropped", delivery.id, self.name, self.queue, reason)

    def count(self) -> int:
        lst = self.local()
        return lst.count() if lst is not None else 0

    def purge(self) -> int:
        lst = self.local()
        return lst.purge() if lst is not None else 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        lst, self.listening = self.listening, None
        if lst is not None:
            with _LISTENING_LOCK:
                lst.users -= 1
                last = lst.users == 0
                if last:
                    for key, v in list(_LISTENING.items()):
                        if v is lst:
                            del _LISTENING[key]
            if last:
                lst.stop()
                with lst.cond:
                    lst.closed = True
                    lst.cond.notify_all()
                lost = lst.purge()
                if lost:
                    self.log.warning("%s queue %r: %d buffered message(s) dropped on close (at-most-once)",
                                     self.name, self.queue, lost)
        self.close_producer()

    def close_producer(self) -> None:
        """Close the producer's :attr:`connection` (a subclass with more to release extends this)."""
        with self.producer_lock:
            c, self.connection = self.connection, None
        _close_quietly(c)  # outside the lock: a ZeroMQ socket may linger to send what it holds

    def drop_connection(self) -> None:
        """Close and forget :attr:`connection` (a broken one: the next send opens another). Call it with
        :attr:`producer_lock` held."""
        c, self.connection = self.connection, None
        _close_quietly(c)

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url), "guarantee": "at-most-once",
                "signed": self.signer is not None}

    # --- producer side ------------------------------------------------------------------------
    def publish(self, message: Outgoing) -> None:
        self.send([self.frame(message)])

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        if messages:
            self.send([self.frame(m) for m in messages])

    def send(self, frames: list[bytes]) -> None:
        """Deliver ``frames`` to the consumer's listener (subclasses)."""
        raise NotImplementedError

    def retrying(self, attempt: Callable[[], T], errors: tuple[type[BaseException], ...]) -> T:
        """Call ``attempt`` until it does not raise ``errors`` or ``connect_timeout`` passed (then re-raise
        as :class:`~boostkernel.errors.BrokerUnavailable`)."""
        from .errors import BrokerUnavailable

        deadline = time.monotonic() + self.connect_timeout
        delay = 0.02
        while True:
            try:
                return attempt()
            except errors as exc:
                if time.monotonic() + delay > deadline:
                    raise BrokerUnavailable(f"{self.name} consumer at {mask_url(self.url)!r} unreachable for "
                                            f"{self.connect_timeout}s ({exc}); is a consumer listening there?") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)


def _close_quietly(connection: Any) -> None:
    if connection is not None:
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - already broken
            pass


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return parts._replace(netloc=f"{host}:{port}").geturl()


def wait_result(queue: str, task_id: str, timeout: float) -> dict[str, Any]:
    """The consumer side of a synchronous call: wait for the task's record in its booster's store.

    Returns ``{"status": "error", "error": {...}}`` records for what the caller must be told instead."""
    from .registry import get_booster

    b = get_booster(queue)
    if b is None or not b.params.results:
        return {"status": "no-results", "error": {"type": "ResultsNotEnabled", "message":
                f"queue {queue!r} keeps no results: a synchronous call needs @boost({queue!r}, results=True) "
                "in the consumer"}}
    rec = b.store.get_result(task_id, timeout)
    return rec if rec is not None else {"status": "pending"}
