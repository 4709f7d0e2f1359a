"""What both Kafka plugins share: the poll thread, the buffer, offset commits, back-pressure, the DLQ topic.

A queue is a topic (created on demand) read by one consumer group (``boostkernel.<queue>`` unless
``group_id`` is given). The client-specific subclasses (kafka-python, confluent-kafka) implement a dozen
small primitives; everything that decides *when* an offset may be committed lives here, once.

* **One poll thread owns the consumer** (neither client's consumer may be shared across threads). It
  polls, puts records into a bounded buffer that :meth:`fetch` drains, and commits the contiguous finished
  watermark every ``commit_interval`` seconds. While ``max_in_flight`` records are unfinished it takes no
  more; if that lasts ``pause_after`` seconds it pauses every assigned partition and keeps polling (so the
  member stays alive and serves rebalances).
* **ack** marks an offset finished (any thread); the next commit moves the watermark.
* **nack(requeue=True)** re-publishes a copy (delivery count + 1) to the topic and then marks the offset
  finished; with ``delay`` the copy is published after ``delay`` seconds by the poll thread (the offset
  stays unfinished meanwhile, so a crash re-runs the original: nothing is lost).
* **dead_letter** publishes to ``<topic>.dlq`` with the reason in a header, then marks the offset finished.
  The DLQ is read with a separate cursor (the committed offset of group ``<group>.dlq``): ``dead_letters``
  lists from that cursor, ``replay_dead_letters``/``purge_dead_letters`` move it forward.
* **On revoke** (rebalance) buffered records of the revoked partitions are dropped, the records handed out
  get up to ``revoke_timeout`` seconds to finish, and those *running* (:meth:`LogBroker.started`, not acked or
  nacked: a set of tags, one add per message) up to ``revoke_running_timeout`` more, so that a live
  worker's long task keeps its partition; then the watermark is committed synchronously. The bound stays
  below ``max_poll_interval_ms`` (the clients' rebalance timeout); both clients heartbeat during the wait
  (kafka-python's heartbeat thread, librdkafka's own threads). The wait ends at once on :meth:`close`.
* **count** is the group's lag minus the records this broker's own consumer handed out and has not committed
  yet (fetched and unacked, or acked since the last commit); records that *other* consumers of the group
  hold are still counted (nothing on the server says which they are), the ranges a purge skipped are not.
* **purge** is carried out by the members that own the partitions: a request with the end offsets at purge
  time goes to the one-partition control topic ``<topic>.bk-control``, which each member's poll thread reads
  without a group (a non-blocking poll every ``control_interval``); a member skips its records below those
  ends except the ones it handed out, and replies with the counts and the skipped ranges, which a later
  owner of the partition skips too (see :meth:`LogBroker.purge`). A group without live members is purged by
  a commit from outside.

Delivery counts and crash loops (a log keeps neither):

* **Read marks.** Before the poll thread hands out a batch, it appends to ``<topic>.attempts`` (one
  partition per partition of the topic, partition ``p % n``) a tiny record ``"p:next"``: the offset after
  the last record of partition ``p`` that this group has handed out (on revoke: after the last one handed
  to the application). A member that is assigned ``p`` reads the last mark once; records below it were
  delivered before and get ``delivery_count`` + 1. One produce per polled batch, not per message; off with
  ``delivery_counts=False`` (then a redelivery after a crash has ``delivery_count`` 1 and no crash is
  charged).
* **Crash loops.** :meth:`LogBroker.started` appends the message id to this consumer's running journal
  (:mod:`boostkernel.journal`, one ``write(2)``, locked while the process lives). When a redelivered record
  comes in, the journals of *dead* consumers of this host (lock released) are read: if one was running
  it, one crash is charged to it (a small per-message file beside the journals) and the journal entry is
  discharged, so each death counts once. At ``max_deliveries`` crashes the record goes to the DLQ with
  reason ``crash-loop``; below that it is delivered in place with ``crashes`` set. Prefetched bystanders
  are in no journal and are not charged; a record revoked from a *live* consumer (a rebalance) is not
  charged either (its journal is still locked). A consumer killed on another host leaves no journal here:
  its messages come back with ``delivery_count`` > 1 but no crash is counted.
"""

from __future__ import annotations

import heapq
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Lazy, Outgoing
from boostkernel.errors import BrokerUnavailable, ConfigError
from boostkernel.journal import CrashCharges, RunningJournal, consumer_id, host_journal_dir
from boostkernel.logs import mask_url
from boostkernel.retrying import Backoff

from .offsets import OffsetTracker

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,245}$")
H_ID, H_DELIVERIES, H_REASON, H_FAILED_AT, H_SOURCE = "bk-id", "bk-deliveries", "bk-reason", "bk-failed-at", "bk-source"

Record = tuple[int, int, bytes, list[tuple[str, bytes]]]
"""What a client's poll yields: (partition, offset, value, headers)."""


def bootstrap_from_url(url: str | None) -> str:
    """``kafka://h1:9092,h2:9092`` (or a bare ``h1:9092``) -> ``"h1:9092,h2:9092"``."""
    if not url:
        return "127.0.0.1:9092"
    rest = url.split("://", 1)[1] if "://" in url else url
    hosts = rest.split("@", 1)[-1].split("/", 1)[0]
    return hosts or "127.0.0.1:9092"


def credentials_from_url(url: str | None) -> tuple[str, str] | None:
    """``kafka://user:password@host`` -> (user, password) for SASL PLAIN, else None."""
    if not url or "://" not in url:
        return None
    head = url.split("://", 1)[1].split("/", 1)[0]
    if "@" not in head:
        return None
    userinfo = head.rsplit("@", 1)[0]
    user, _, password = userinfo.partition(":")
    return unquote(user), unquote(password)


def topic_for(queue: str, options: dict[str, Any]) -> str:
    topic = str(options.get("topic") or queue)
    if not _TOPIC_RE.match(topic) or topic in (".", ".."):
        raise ConfigError(
            f"queue {queue!r} cannot be a Kafka topic name (use letters, digits, '.', '_' or '-', at most 245): "
            f"rename the queue or pass broker_options={{'topic': 'a_valid_name'}}")
    return topic


def _header(headers: list[tuple[str, bytes]] | None, name: str) -> bytes | None:
    if headers:
        for k, v in headers:
            if k == name:
                return v
    return None


def _control_message(value: bytes, kind: str, group: str) -> dict[str, Any] | None:
    """A control-topic record of ``kind`` for ``group`` (None for anything else, or what does not parse)."""
    try:
        msg = json.loads(value)
    except ValueError:
        return None
    if isinstance(msg, dict) and msg.get("kind") == kind and msg.get("group") == group:
        return msg
    return None


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching ``[lo, hi)`` ranges merged, sorted."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


class LogBroker(Broker):
    """Shared logic of the Kafka brokers. Subclasses implement the ``_c_*`` (consumer, poll thread only),
    ``_p_*`` (producer, any thread) and ``_i_*`` (short-lived inspection consumers) primitives."""

    capabilities = BrokerCapabilities(
        ack=True, requeue=True, priority=False, delay=False, durable=True, count=True, purge=True,
        fanout=False, batch_publish=True, dead_letter=True, cross_process=True,
    )
    default_url = "kafka://127.0.0.1:9092"
    #: pip install command printed when the client library is missing.
    install_hint = ""

    def __init__(self, queue: str, url: str | None = None, params: Any = None, **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        self.topic = topic_for(queue, o)
        self.dlq_topic = str(o.get("dlq_topic") or f"{self.topic}.dlq")
        self.group_id = str(o.get("group_id") or f"boostkernel.{self.topic}")
        self.dlq_group_id = f"{self.group_id}.dlq"
        self.bootstrap = bootstrap_from_url(self.url)
        self.credentials = credentials_from_url(self.url)
        self.partitions = int(o.get("partitions", 4))
        self.replication_factor = int(o.get("replication_factor", 1))
        # A killed consumer's partitions move after its session expires: 6 s (+ the rebalance) keeps the
        # kill-to-redelivery time under the 15 s target; heartbeats come from a background thread.
        self.session_timeout_ms = int(o.get("session_timeout_ms", 6000))
        self.heartbeat_interval_ms = int(o.get("heartbeat_interval_ms", max(500, self.session_timeout_ms // 6)))
        prefetch = params.effective_prefetch if params is not None else 16
        self.max_in_flight = int(o.get("max_in_flight", max(2000, 8 * prefetch)))
        """Unfinished records (buffered + running) above which every assigned partition is paused."""
        self.pause_after = float(o.get("pause_after", 2.0))
        self.commit_interval = float(o.get("commit_interval", 0.5))
        self.revoke_timeout = float(o.get("revoke_timeout", 5.0))
        consumer_conf = dict(dict(o.get("client_options") or {}).get("consumer") or {})
        self.max_poll_interval_ms = int(o.get("max_poll_interval_ms") or consumer_conf.get("max_poll_interval_ms")
                                        or consumer_conf.get("max.poll.interval.ms") or 300000)
        """The client's max poll interval, which is also its rebalance timeout (JoinGroup): a member that stays
        longer in a revoke callback leaves the group (kafka-python) or is dropped by the coordinator."""
        poll_bound = self.max_poll_interval_ms / 1000
        self.revoke_running_timeout = float(o.get("revoke_running_timeout",
                                                  max(self.revoke_timeout, poll_bound - max(10.0, poll_bound / 10))))
        """How long a revoke waits for records that are *running* (:meth:`started`, not acked or nacked yet); the
        default stays a margin below ``max_poll_interval_ms``. Records only handed out get ``revoke_timeout``."""
        if self.revoke_running_timeout >= poll_bound:
            raise ConfigError(f"{self.name}: revoke_running_timeout ({self.revoke_running_timeout}s) must be below "
                              f"max_poll_interval_ms ({self.max_poll_interval_ms} ms), or the member is dropped "
                              f"from the group while it waits")
        self.poll_timeout = float(o.get("poll_timeout", 0.1))
        self.publish_timeout = float(o.get("publish_timeout", 30.0))
        self.client_options: dict[str, Any] = dict(o.get("client_options") or {})
        self.delivery_counts = bool(o.get("delivery_counts", True))
        default_attempts = f"{self.topic}.attempts" if self.group_id == f"boostkernel.{self.topic}" else \
            f"{self.topic}.attempts.{re.sub(r'[^A-Za-z0-9._-]', '_', self.group_id)}"
        self.attempts_topic = str(o.get("attempts_topic") or default_attempts)[:249]
        self.control_topic = str(o.get("control_topic") or f"{self.topic}.bk-control")[:249]
        """One-partition topic of purge requests and replies, read by every consuming member (see :meth:`purge`)."""
        self.control_interval = float(o.get("control_interval", 0.1))
        self.purge_timeout = float(o.get("purge_timeout", self.session_timeout_ms / 1000 * 3))
        self.owner = consumer_id()
        self.journal_dir = host_journal_dir("kafka-" + self.group_id)
        self._crashes = CrashCharges(self.journal_dir, self.owner)
        self.journal = RunningJournal(self.journal_dir, self.owner)
        self._marks: dict[int, int] = {}
        """Partition -> offset below which this group handed records out before (read at assignment)."""
        self._handed: dict[int, int] = {}
        """Partition -> offset after the last record :meth:`fetch` handed out in this assignment (under _cond)."""

        self.tracker = OffsetTracker()
        self._running: set[tuple[int, int, int]] = set()
        """Tags of the deliveries :meth:`started` and not acked/nacked yet (any thread: set add/discard only)."""
        self._buffer: deque[Delivery] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._closed = threading.Event()
        self._delayed: list[tuple[float, int, Delivery]] = []  # (due, seq, delivery) for nack(delay)
        self._delayed_lock = threading.Lock()
        self._seq = 0
        self._commands: deque[tuple[Any, threading.Event, list[Any]]] = deque()
        self._paused = False
        self._full_since: float | None = None
        self._last_commit = 0.0
        self._consumer_error: BaseException | None = None
        self._topics_ready: set[str] = set()
        self._producer: Lazy[Any] = Lazy(self._new_producer)
        self._consumer: Any = None
        self._rebalancing = True
        """True from the consumer's start, and from a revoke, until the next assignment (poll thread). A member
        closed meanwhile sends no LeaveGroup: tansu 0.6.0 keeps a member that leaves a forming group as the
        group's leader, and the others then wait for its assignment forever (see ``_shutdown_consumer``)."""
        self._control: Any = None
        """The poll thread's reader of the control topic (no group, from its end at start), or None."""
        self._control_next = 0.0
        self._count_lock = threading.Lock()
        self._count_reader: Any = None
        """:meth:`count`'s own reader of the control topic (any thread, under ``_count_lock``), or None."""
        self._count_ranges: tuple[tuple[int, int], dict[int, list[tuple[int, int]]]] | None = None
        """(control topic (start, end) when read, the purged ranges of every partition then): what :meth:`count`
        subtracts, read again only when the control topic's offsets moved."""
        self._served: dict[str, set[int]] = {}
        """Purge request id -> partitions this member already purged for it (poll thread only)."""
        self._skips: dict[int, list[tuple[int, int]]] = {}
        """Partition -> offset ranges ``[lo, hi)`` a purge skipped, read at assignment (poll thread only):
        records in them are marked finished instead of handed out (empty: no work per batch)."""

    def _producer_get(self) -> Any:
        """The broker's one producer, made on first use (``_new_producer``)."""
        return self._producer.get()

    # --- primitives the client subclasses implement ------------------------------------------------
    def _new_producer(self) -> Any:
        """A producer of the client library, with acks from all replicas."""
        raise NotImplementedError

    def _p_send(self, topic: str, items: Sequence[tuple[bytes, list[tuple[str, bytes]]]],
                partitions: Sequence[int] | None = None) -> None:
        """Produce ``(value, headers)`` items to ``topic`` (item ``i`` to ``partitions[i]`` if given) and
        wait until the broker acknowledged all of them."""
        raise NotImplementedError

    def _p_close(self) -> None:
        raise NotImplementedError

    def _create_topics(self, topics: dict[str, int]) -> None:
        """Create ``{topic: partitions}`` where missing (an existing topic is not an error)."""
        raise NotImplementedError

    def _c_open(self) -> None:
        """Create the consumer (poll thread), subscribe to ``self.topic`` with rebalance callbacks that call
        :meth:`_on_assigned` / :meth:`_on_revoked`."""
        raise NotImplementedError

    def _c_poll(self, timeout: float, max_records: int) -> list[Record]:
        """Up to ``max_records`` records; return as soon as some are there, else after ``timeout``."""
        raise NotImplementedError

    def _c_pause(self, partitions: list[int]) -> None:
        raise NotImplementedError

    def _c_resume(self, partitions: list[int]) -> None:
        raise NotImplementedError

    def _c_assigned(self) -> list[int]:
        raise NotImplementedError

    def _c_start_from_committed(self, partitions: list[int]) -> None:
        """Called on assignment: fetching must start at the group's committed offset (not at a position kept
        from an earlier assignment of the same partition), and the partitions must not stay paused."""
        raise NotImplementedError

    def _c_commit(self, offsets: dict[int, int]) -> None:
        """Synchronous commit as a group member."""
        raise NotImplementedError

    def _c_seek(self, partition: int, offset: int) -> None:
        raise NotImplementedError

    def _c_group_settled(self, timeout: float) -> bool:
        """False if the group coordinator describes the group as rebalancing (DescribeGroups: a state other than
        ``Stable`` or ``Empty``); raises if it does not answer within ``timeout`` seconds."""
        raise NotImplementedError

    def _c_close(self, leave: bool = True) -> None:
        """Close the consumer; with ``leave`` False without a LeaveGroup (the group drops the member when its
        session times out), see :attr:`_rebalancing`."""
        raise NotImplementedError

    def _ctl_open(self, topic: str) -> Any:
        """A consumer without a group, assigned to partition 0 of ``topic`` at its current end (resolved before
        returning, so that a record produced after this call is read)."""
        raise NotImplementedError

    def _ctl_poll(self, c: Any, timeout: float) -> list[bytes]:
        """The values of the records that reached ``c`` (``timeout`` 0: do not wait)."""
        raise NotImplementedError

    def _ctl_close(self, c: Any) -> None:
        raise NotImplementedError

    def _ctl_offsets(self, c: Any) -> tuple[int, int]:
        """(log start, end offset) of the control reader's partition: one offsets lookup, no fetch."""
        raise NotImplementedError

    def _ctl_empty(self, c: Any) -> bool:
        """True if the control reader's partition holds no record (one offsets lookup, no fetch)."""
        lo, hi = self._ctl_offsets(c)
        return hi <= lo

    def _i_partitions(self, c: Any, topic: str) -> list[Any]:
        """The partitions of ``topic`` in the metadata the inspection consumer ``c`` sees now, sorted (in the
        form the client's calls take); ``[]`` while there are none."""
        raise NotImplementedError

    def _partitions_of(self, c: Any, topic: str) -> list[Any]:
        """:meth:`_i_partitions`, waiting up to 10 s for the metadata to list them."""
        deadline = time.monotonic() + 10
        while True:
            parts = self._i_partitions(c, topic)
            if parts:
                return parts
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"{self.name}: topic {topic!r} has no partitions in the metadata")
            time.sleep(0.05)

    def _i_positions(self, topic: str, group: str) -> dict[int, tuple[int, int, int]]:
        """``{partition: (log start, committed or log start, high watermark)}`` of ``topic`` for ``group``."""
        raise NotImplementedError

    def _i_read(self, topic: str, start: dict[int, int], end: dict[int, int], limit: int) -> list[Record]:
        """Read records with ``start[p] <= offset < end[p]`` (at most ``limit``), in offset order per partition."""
        raise NotImplementedError

    def _i_commit(self, topic: str, group: str, offsets: dict[int, int]) -> None:
        """Commit offsets for ``group`` without joining it (the group must have no live member)."""
        raise NotImplementedError

    # --- publishing ---------------------------------------------------------------------------------
    def ensure_topics(self, *topics: str) -> None:
        missing = {t: (1 if t in (self.dlq_topic, self.control_topic) else self.partitions)
                   for t in topics if t not in self._topics_ready}
        if missing:
            self._create_topics(missing)
            self._topics_ready.update(missing)

    def publish(self, message: Outgoing) -> None:
        self.publish_many([message])

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        if not messages:
            return
        self.ensure_topics(self.topic)
        self._p_send(self.topic, [(m.body, [(H_ID, m.id.encode())]) for m in messages])

    # --- consuming ----------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._thread_lock:
            if (self._thread is not None and self._thread.is_alive()) or self._closed.is_set():
                return
            self._consumer_error = None
            self.ensure_topics(self.topic, self.control_topic,
                               *((self.attempts_topic,) if self.delivery_counts else ()))
            self._crashes.sweep()  # journals of consumers gone long ago
            self.journal.open()
            ready = threading.Event()
            self._thread = threading.Thread(target=self._poll_loop, args=(ready,), daemon=True,
                                            name=f"boostkernel-{self.name}-poll-{self.queue}")
            self._thread.start()
            ready.wait(30)
            if self._consumer_error is not None:
                self._thread = None
                raise BrokerUnavailable(f"{self.name}: cannot consume {self.topic!r} at {mask_url(self.url)}: "
                                        f"{self._consumer_error}")

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        t = self._thread
        if t is None or (not t.is_alive() and not self._closed.is_set()):  # not started, or the consumer failed to open
            self._start()
        deadline = time.monotonic() + timeout
        buf = self._buffer
        with self._cond:
            while not buf:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed.is_set():
                    return []
                self._cond.wait(left)
            n = min(max_messages, len(buf))
            out = [buf.popleft() for _ in range(n)]
            handed = self._handed
            for d in out:
                p, off, _ = d.tag
                if off >= handed.get(p, 0):
                    handed[p] = off + 1
            return out

    def started(self, delivery: Delivery) -> None:
        """Record that this delivery runs now: one write(2) to this consumer's journal (see the module doc)."""
        self.journal.started(delivery.id)
        self._running.add(delivery.tag)

    def ack(self, delivery: Delivery) -> None:
        p, off, epoch = delivery.tag
        self._running.discard(delivery.tag)  # before done(): its notify wakes a revoke waiting on the set
        self.tracker.done(p, off, epoch)
        self.journal.finished(delivery.id)
        if delivery.crashes:
            self._crashes.forget(delivery.id)

    def ack_many(self, deliveries: Any) -> None:
        done, finished, running = self.tracker.done, self.journal.finished, self._running
        for d in deliveries:
            p, off, epoch = d.tag
            running.discard(d.tag)
            done(p, off, epoch)
            finished(d.id)
            if d.crashes:
                self._crashes.forget(d.id)

    def _copy_headers(self, delivery: Delivery) -> list[tuple[str, bytes]]:
        headers: list[tuple[str, bytes]] = [(k, v) for k, v in delivery.extra.get("headers", ())
                                            if k not in (H_ID, H_DELIVERIES)]
        headers.append((H_ID, delivery.id.encode()))
        return headers

    def _requeue_now(self, delivery: Delivery) -> None:
        headers = self._copy_headers(delivery)
        headers.append((H_DELIVERIES, str(delivery.delivery_count + 1).encode()))
        self._p_send(self.topic, [(delivery.body, headers)])
        self.ack(delivery)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        self.journal.finished(delivery.id)  # handed back: a death from now on is not its doing
        if not requeue:
            self.ack(delivery)
            return
        if delay > 0 and not self._closed.is_set():
            with self._delayed_lock:
                self._seq += 1
                heapq.heappush(self._delayed, (time.monotonic() + delay, self._seq, delivery))
            if self._running:
                self._running.discard(delivery.tag)  # not running any more: a revoke need not wait for it
                self.tracker.notify()
            return
        self._requeue_now(delivery)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.ensure_topics(self.dlq_topic)
        headers = self._copy_headers(delivery)
        p, off, _ = delivery.tag
        headers += [(H_REASON, reason.encode("utf-8", "replace")), (H_FAILED_AT, repr(time.time()).encode()),
                    (H_SOURCE, f"{self.topic}/{p}/{off}".encode())]
        self._p_send(self.dlq_topic, [(delivery.body, headers)])
        self.ack(delivery)

    # --- the poll thread ----------------------------------------------------------------------------
    def _poll_loop(self, ready: threading.Event) -> None:
        try:
            self._c_open()
        except Exception as exc:  # noqa: BLE001 - reported to the caller of fetch
            self._consumer_error = exc
            ready.set()
            return
        try:
            self._control = self._ctl_open(self.control_topic)
        except Exception as exc:  # noqa: BLE001 - consuming works without it; purges from outside do not reach us
            self.log.warning("cannot read the control topic %r (a purge from another process will not skip the "
                             "records this consumer owns): %s", self.control_topic, exc)
        ready.set()
        backoff = Backoff(0.1, 5.0, jitter=(1.0, 1.0))  # 0.1, 0.2, 0.4 … 5 s
        try:
            while not self._closed.is_set():
                try:
                    self._run_commands()
                    self._requeue_due()
                    now = time.monotonic()
                    if self._control is not None and now >= self._control_next:
                        self._control_next = now + self.control_interval
                        self._serve_control()
                    if now - self._last_commit >= self.commit_interval:
                        self._commit()
                    room = self._backpressure()
                    if room <= 0 and not self._paused:
                        with self.tracker.changed:  # woken by acks
                            self.tracker.changed.wait(self.poll_timeout)
                        continue
                    records = self._c_poll(self.poll_timeout, max(1, min(room, 500)))
                    if records:
                        self._buffer_records(records)
                    backoff.reset()
                except Exception as exc:  # noqa: BLE001 - the poll thread must survive broker trouble
                    if self._closed.is_set():
                        break
                    delay = backoff()
                    self.log.warning("%s poll loop error on %r (%s: %s); retrying in %.1fs", self.name,
                                     self.topic, type(exc).__name__, exc, delay)
                    self._closed.wait(delay)
        finally:
            self._shutdown_consumer()

    def _shutdown_consumer(self) -> None:
        # Delayed requeues not yet due: publish them now (their offsets are then finished).
        with self._delayed_lock:
            pending, self._delayed = self._delayed, []
        for _, _, d in pending:
            try:
                self._requeue_now(d)
            except Exception as exc:  # noqa: BLE001 - the offset stays uncommitted: the record comes back
                self.log.warning("could not requeue delayed message %s on close: %s", d.id, exc)
        with self._cond:  # never started: not committed, so the group reads them again
            first_dropped = {p: min(offs) for p, offs in self._drop_buffered(lambda p, off: True).items()}
            self._handed.clear()
        if self.delivery_counts and first_dropped:
            try:  # they never reached the application: the next owner must not count them as redelivered
                self._write_marks(first_dropped)
            except Exception as exc:  # noqa: BLE001
                self.log.debug("could not write the read marks on close: %s", exc)
        try:
            self._commit()
        except Exception as exc:  # noqa: BLE001
            self.log.warning("final commit on %r failed (records after the last commit run again): %s",
                             self.topic, exc)
        self.tracker.close()
        # tansu 0.6.0 (coordinator/group/administrator.rs, LeaveGroup on a forming group) removes a member that
        # leaves during a rebalance but keeps it as the group's leader: every later JoinGroup names the gone
        # member leader, and the other members wait for its SyncGroup forever (issue #15). Without the
        # LeaveGroup the member stays in the group until its session times out, and the expiry clears the
        # leader: the others get its partitions after ``session_timeout_ms``.
        # The rebalance may have begun on the server before this consumer heard of it (its next heartbeat):
        # one DescribeGroups tells. Left: a rebalance beginning after that answer (milliseconds).
        leave = not self._rebalancing
        if leave:
            try:
                leave = self._c_group_settled(min(5.0, self.session_timeout_ms / 1000))
            except Exception as exc:  # noqa: BLE001 - then leave, as any client does
                self.log.debug("could not describe group %r before leaving it: %s", self.group_id, exc)
        if not leave:
            self.log.info("closing the consumer of %r during a rebalance: no LeaveGroup, the group drops it after "
                          "its session timeout (%d ms)", self.topic, self.session_timeout_ms)
        try:
            self._c_close(leave)
        except Exception as exc:  # noqa: BLE001
            self.log.debug("closing the consumer failed: %s", exc)
        if self._control is not None:
            try:
                self._ctl_close(self._control)
            except Exception as exc:  # noqa: BLE001
                self.log.debug("closing the control reader failed: %s", exc)
            self._control = None

    def _buffer_records(self, records: list[Record]) -> None:
        if self._skips:  # ranges a purge skipped (read at assignment): once per batch, while there are some
            records = self._drop_skipped(records)
            if not records:
                return
        add, topic, marks = self.tracker.add, self.topic, self._marks
        if self.delivery_counts:
            ends: dict[int, int] = {}
            for p, off, _, _ in records:
                if off + 1 > ends.get(p, -1):
                    ends[p] = off + 1
            try:
                self._write_marks(ends)  # before anyone can run them: a crash from now on is seen by the next owner
            except Exception as exc:  # noqa: BLE001 - the records must be handed out anyway (never dropped)
                self.log.warning("could not write the read marks of %r (a redelivery of this batch will show "
                                 "delivery_count 1 and no crash is charged): %s", self.topic, exc)
        out = []
        refreshed = False
        for p, off, value, headers in records:
            epoch = add(p, off)
            if epoch < 0:
                continue
            hid = _header(headers, H_ID)
            dc = _header(headers, H_DELIVERIES)
            mid = hid.decode() if hid else f"{topic}:{p}:{off}"
            d = Delivery(mid, value, (p, off, epoch), int(dc) if dc else 1, {"headers": headers} if headers else {})
            if off < marks.get(p, 0):  # handed out before by a member of this group that lost it
                d.delivery_count += 1
                if not refreshed:  # the journals are read once per batch
                    self._crashes.refresh()
                    refreshed = True
                if self._charge_if_crashed(d):
                    continue
            out.append(d)
        with self._cond:
            self._buffer.extend(out)
            self._cond.notify_all()

    def _drop_buffered(self, drop: Callable[[int, int], bool]) -> dict[int, list[int]]:
        """Remove the buffered records for which ``drop(partition, offset)`` is true; return ``{partition: their
        offsets}`` (in buffer order). The deque is changed in place (never replaced), so a :meth:`fetch` that took
        it before the lock never sees records dropped here."""
        dropped: dict[int, list[int]] = {}
        with self._cond:
            buf = self._buffer
            keep: list[Delivery] = []
            for d in buf:
                p, off, _ = d.tag
                if drop(p, off):
                    dropped.setdefault(p, []).append(off)
                else:
                    keep.append(d)
            if dropped:
                buf.clear()
                buf.extend(keep)
        return dropped

    def _write_marks(self, ends: dict[int, int]) -> None:
        """Append ``"p:end"`` read marks to the attempts topic (waits for the broker's ack)."""
        if not ends:
            return
        n = max(1, self.partitions)
        self._p_send(self.attempts_topic, [(f"{p}:{e}".encode(), []) for p, e in ends.items()],
                     partitions=[p % n for p in ends])

    def _load_marks(self, partitions: list[int]) -> dict[int, int]:
        """The last read mark of each partition (0 when there is none)."""
        n = max(1, self.partitions)
        wanted = {p % n for p in partitions}
        positions = self._i_positions(self.attempts_topic, f"{self.group_id}.attempts")
        start = {ap: max(lo, hw - 64) for ap, (lo, _, hw) in positions.items() if ap in wanted and hw > lo}
        end = {ap: positions[ap][2] for ap in start}
        marks = dict.fromkeys(partitions, 0)
        if start:
            for _, _, value, _ in self._i_read(self.attempts_topic, start, end, 64 * len(start)):
                try:
                    p_text, _, e_text = value.decode().partition(":")
                    p, e = int(p_text), int(e_text)
                except ValueError:
                    continue
                if p in marks:
                    marks[p] = e  # offset order per partition: the last one wins
        return marks

    def _charge_if_crashed(self, d: Delivery) -> bool:
        """A redelivered record: charge a crash if a dead consumer of this host was running it; at
        ``max_deliveries`` crashes dead-letter it (True: it must not be handed out)."""
        mid = d.id
        d.crashes, reason = self._crashes.redelivered(mid, self.max_crashes)
        if not d.crashes:
            return False
        d.delivery_count = max(d.delivery_count, d.crashes + 1)
        if reason is not None:
            try:
                self.dead_letter(d, reason)
            except Exception as exc:  # noqa: BLE001 - hand it out rather than leave its offset stuck
                self.log.warning("could not dead-letter crash-looping message %s (%s): delivered again", mid, exc)
                return False
            self.log.error("message %s dead-lettered: %s", mid, reason)
            self._crashes.forget(mid)
            return True
        return False

    def _backpressure(self) -> int:
        """Return how many more records may be taken (0: the window is full).

        While ``max_in_flight`` records are unfinished, the poll thread first just stops taking records
        (the client keeps its own bounded prefetch, so resuming costs nothing). If the window stays full for
        ``pause_after`` seconds, every assigned partition is paused and polling goes on, so the member keeps
        serving rebalances; they are resumed when half the window is free."""
        unfinished = self.tracker.unfinished
        room = self.max_in_flight - unfinished
        if room > 0:
            self._full_since = None
            if self._paused and unfinished <= self.max_in_flight // 2:
                self._c_resume(self._c_assigned())
                self._paused = False
            elif self._paused:
                self._c_pause(self._c_assigned())  # partitions assigned since the pause
            return room
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        if self._paused:
            self._c_pause(self._c_assigned())
        elif now - self._full_since >= self.pause_after:
            self._c_pause(self._c_assigned())
            self._paused = True
        return 0

    def _commit(self, partitions: list[int] | None = None) -> None:
        self._last_commit = time.monotonic()
        offsets = self.tracker.to_commit(partitions)
        if offsets:
            self._c_commit(offsets)
            self.tracker.committed(offsets)
            self.log.debug("committed %s of %r", offsets, self.topic)

    def _requeue_due(self) -> None:
        if not self._delayed:
            return
        now = time.monotonic()
        while True:
            with self._delayed_lock:
                if not self._delayed or self._delayed[0][0] > now:
                    return
                _, _, d = heapq.heappop(self._delayed)
            self._requeue_now(d)

    # rebalance callbacks (run inside poll, on the poll thread)
    def _on_assigned(self, partitions: list[int]) -> None:
        self.log.debug("assigned partitions %s of %r", partitions, self.topic)
        with self._cond:
            for p in partitions:
                self._handed.pop(p, None)
        if partitions:
            self._c_start_from_committed(partitions)
            if self.delivery_counts:
                try:
                    self._marks.update(self._load_marks(partitions))
                except Exception as exc:  # noqa: BLE001 - counts only: the records still come
                    self.log.warning("could not read the read marks of %r (redeliveries will show "
                                     "delivery_count 1 and no crash is charged): %s", self.topic, exc)
                    for p in partitions:
                        self._marks.pop(p, None)
        self.tracker.assign(partitions)
        for p in partitions:
            self._skips.pop(p, None)
        if partitions:
            try:
                self._skips.update(self._load_skips(partitions))
            except Exception as exc:  # noqa: BLE001 - the records then run: at-least-once, never lost
                self.log.warning("could not read the purged ranges of %r from %r (records a purge skipped behind "
                                 "a record still in flight may run): %s", self.topic, self.control_topic, exc)
        self._paused = False  # newly assigned partitions start unpaused; _backpressure pauses again
        self._rebalancing = False

    def _on_lost(self, partitions: list[int]) -> None:
        """The partitions were taken away without a revoke (the session expired): a rejoin follows."""
        self._rebalancing = True
        self.tracker.revoke(partitions)

    def _on_revoked(self, partitions: list[int]) -> None:
        self.log.debug("revoked partitions %s of %r", partitions, self.topic)
        self._rebalancing = True
        if not partitions:
            return
        revoked = set(partitions)
        with self._cond:
            first_dropped = {p: min(offs) for p, offs in self._drop_buffered(lambda p, off: p in revoked).items()}
            for p in revoked:
                self._handed.pop(p, None)
                self._skips.pop(p, None)
        targets = {}
        for p in revoked:
            target = first_dropped.get(p)
            if target is None:
                target = self.tracker.next_offset(p)
            if target is not None:
                targets[p] = target
        if self.delivery_counts and first_dropped:
            try:  # buffered records never reached the application: the next owner must not count them
                self._write_marks(first_dropped)
            except Exception as exc:  # noqa: BLE001
                self.log.debug("could not write the read marks on revoke: %s", exc)
        if targets and not self.tracker.wait_until(targets, self.revoke_timeout, self._closed.is_set):
            running = self._wait_running(revoked)
            if running:
                self.log.warning("partitions %s of %r revoked while %d task(s) still run: they will run again "
                                 "elsewhere", sorted(revoked), self.topic, running)
            elif not self.tracker.wait_until(targets, 0):
                self.log.info("partitions %s of %r revoked with records handed out but not started: they will run "
                              "again elsewhere", sorted(revoked), self.topic)
        try:
            self._commit(list(revoked))
        except Exception as exc:  # noqa: BLE001
            self.log.warning("commit on revoke of %r failed (records run again elsewhere): %s", self.topic, exc)
        self.tracker.revoke(revoked)
        for tag in self._running.copy():  # acks of these are stale now (they discard their tag all the same)
            if tag[0] in revoked:
                self._running.discard(tag)

    def _wait_running(self, revoked: set[int]) -> int:
        """Revoke, after ``revoke_timeout``: wait up to ``revoke_running_timeout`` more while records of ``revoked`` are *running* (:meth:`started`, not finished), so
        that they keep their partition and are not delivered to another member while they run. Records only
        handed out are not waited for. The clients keep heartbeating meanwhile (kafka-python's heartbeat thread
        runs during the revoke callback; librdkafka heartbeats from its own threads), and the bound stays below
        ``max_poll_interval_ms``. Ends at once when the broker is closing. Returns how many still run."""
        tracker, running = self.tracker, self._running

        def still_running() -> int:
            n = 0
            for p, off, epoch in running.copy():  # copy(): atomic while other threads add and discard
                if p in revoked and tracker.is_pending(p, off, epoch):
                    n += 1
            return n

        n = still_running()
        if not n or self._closed.is_set():
            return n
        self.log.info("partitions %s of %r revoked while %d task(s) run: waiting up to %.0fs for them to finish",
                      sorted(revoked), self.topic, n, self.revoke_running_timeout)
        deadline = time.monotonic() + self.revoke_running_timeout
        while n and not self._closed.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            tracker.wait_changed(min(left, 1.0))
            n = still_running()
        return n

    # commands run by the poll thread on behalf of other threads
    def _call_in_poll_thread(self, fn: Any, timeout: float = 30.0) -> Any:
        done = threading.Event()
        box: list[Any] = []
        self._commands.append((fn, done, box))
        if not done.wait(timeout):
            raise BrokerUnavailable(f"{self.name}: the poll thread of {self.topic!r} did not answer in {timeout}s")
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _run_commands(self) -> None:
        while self._commands:
            fn, done, box = self._commands.popleft()
            try:
                box.append(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box.append(exc)
            done.set()

    def _consuming(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive() and not self._closed.is_set()

    # --- count and purge ----------------------------------------------------------------------------
    def count(self) -> int:
        """Records waiting: the group's lag (records after the committed offset of every partition) minus
        those this broker's consumer handed out by :meth:`fetch` and has not committed yet (in flight, or
        acked since the last commit), minus the records a :meth:`purge` skipped behind a record still in flight
        (the ranges the members announced on the control topic). Records buffered but not handed out are
        waiting. Records that *other* consumers of the group fetched and have not committed are counted: a log
        does not say which records a consumer holds."""
        self.ensure_topics(self.topic, self.control_topic)
        positions = self._i_positions(self.topic, self.group_id)
        with self._cond:  # read after the committed offsets: a commit in between only lowers the count
            handed = dict(self._handed) if self._consuming() else {}
        floors = {p: max(committed, handed.get(p, 0)) for p, (_, committed, _) in positions.items()}
        lagging = {p for p, (_, _, hw) in positions.items() if hw > floors[p]}
        skips = self._count_skips(lagging) if lagging else {}
        total = 0
        for p in lagging:
            lo, hw = floors[p], positions[p][2]
            total += hw - lo - sum(max(0, min(b, hw) - max(a, lo)) for a, b in skips.get(p, ()))
        return total

    def purge(self) -> int:
        """Skip every record now waiting; return how many were skipped. Records published after the purge
        began are not skipped, and records a consumer holds (handed out by :meth:`fetch`, not acked) stay in
        flight.

        * Partitions of this broker's own consumer are purged by its poll thread.
        * If the group has no live member, the group's committed offsets move to the end of the log (a commit
          from outside the group, which Kafka accepts only then).
        * Otherwise the members purge the partitions they own: a request (the end offset of each partition now)
          goes to the one-partition control topic ``<topic>.bk-control``, which every consuming member reads
          without a group; each drops its polled records below those ends, moves its fetch position past
          them and replies with the count per partition and the skipped offset range. Records it handed out
          stay in flight: the group's commit passes them once they are acked; if they come back (a crash, a
          close, a rebalance) the next owner reads the skipped ranges from the control topic and skips them
          again.

        Waits up to ``purge_timeout`` (3 session timeouts) for replies covering every partition that had
        waiting records. A partition no member answered for is then committed from outside if the group has
        become empty; if not, a warning names it and its records are not counted: the return value is what
        was skipped, which can be less than what was waiting."""
        self.ensure_topics(self.topic, self.control_topic)
        positions = self._i_positions(self.topic, self.group_id)
        ends = {p: hw for p, (_, _, hw) in positions.items()}
        starts = {p: c for p, (_, c, _) in positions.items()}
        lag = {p: hw - c for p, (_, c, hw) in positions.items() if hw > c}
        if not lag:
            return 0
        skipped: dict[int, int] = {}
        if self._consuming():
            deadline = time.monotonic() + self.session_timeout_ms / 1000 * 3
            while not self._call_in_poll_thread(self._c_assigned) and time.monotonic() < deadline:
                time.sleep(0.05)  # the group join is under way: wait for our partitions
            rid = uuid.uuid4().hex
            skipped.update(self._call_in_poll_thread(
                lambda: self._purge_owned(rid, {p: ends[p] for p in lag}, starts)))
        else:
            try:
                self._i_commit(self.topic, self.group_id, {p: ends[p] for p in lag})
                return sum(lag.values())
            except Exception as exc:  # noqa: BLE001 - the group has live members: they purge
                self.log.debug("purge of %r: the group takes no commit from outside (%s): asking its members",
                               self.topic, exc)
        rest = {p: ends[p] for p in lag if p not in skipped}
        if rest:
            skipped.update(self._purge_by_members(rest, starts))
        missing = sorted(p for p in lag if p not in skipped)
        if missing:
            try:
                self._i_commit(self.topic, self.group_id, {p: ends[p] for p in missing})
                skipped.update((p, lag[p]) for p in missing)
            except Exception as exc:  # noqa: BLE001
                self.log.warning("purge of %r did not skip partitions %s: no consumer of group %r answered within "
                                 "%.1fs and the group takes no commit from outside (%s)", self.topic, missing,
                                 self.group_id, self.purge_timeout, exc)
        return sum(skipped.values())

    def _purge_by_members(self, ends: dict[int, int], starts: dict[int, int]) -> dict[int, int]:
        """Ask the members (control topic) to skip the records below ``ends``; ``{partition: skipped}`` of the
        partitions some member answered for within ``purge_timeout``. The request is sent again every session
        timeout for the partitions not answered yet (a rebalance may have moved them to a member that started
        reading the control topic after the request)."""
        reader = self._ctl_open(self.control_topic)  # before the request: its reply comes after it
        try:
            rid = uuid.uuid4().hex
            answered: dict[int, int] = {}
            deadline = time.monotonic() + self.purge_timeout
            resend = 0.0
            while True:
                left = {p: e for p, e in ends.items() if p not in answered}
                now = time.monotonic()
                if not left or now >= deadline:
                    return answered
                if now >= resend:
                    request = {"kind": "purge", "id": rid, "group": self.group_id,
                               "ends": {str(p): e for p, e in left.items()},
                               "starts": {str(p): starts.get(p, 0) for p in left},
                               "until": time.time() + (deadline - now)}
                    self._p_send(self.control_topic, [(json.dumps(request).encode(), [])])
                    resend = now + self.session_timeout_ms / 1000
                for value in self._ctl_poll(reader, min(0.1, max(0.0, deadline - now))):
                    msg = _control_message(value, "purged", self.group_id)
                    if msg is not None and msg.get("id") == rid:
                        for p_text, n in dict(msg.get("skipped") or {}).items():
                            if int(p_text) in ends:
                                answered.setdefault(int(p_text), int(n))
        finally:
            try:
                self._ctl_close(reader)
            except Exception as exc:  # noqa: BLE001
                self.log.debug("closing a control reader failed: %s", exc)

    def _serve_control(self) -> None:
        """Poll thread, every ``control_interval``: carry out the purge requests for the partitions we own.
        A non-blocking poll of the control reader; nothing else while no request comes."""
        try:
            values = self._ctl_poll(self._control, 0)
        except Exception as exc:  # noqa: BLE001 - retried next round
            self.log.debug("reading the control topic %r failed: %s", self.control_topic, exc)
            return
        for value in values:
            msg = _control_message(value, "purge", self.group_id)
            if msg is None:
                continue
            try:
                if float(msg.get("until", 0)) < time.time():
                    continue  # the purger stopped waiting (or an old request read at start): not ours to act on
                rid = str(msg["id"])
                ends = {int(p): int(o) for p, o in dict(msg["ends"]).items()}
                starts = {int(p): int(o) for p, o in dict(msg.get("starts") or {}).items()}
            except (KeyError, TypeError, ValueError):
                continue
            served = self._served.setdefault(rid, set())
            mine = {p: e for p, e in ends.items() if p not in served and p in self._c_assigned()}
            if not mine:
                continue
            served.update(mine)
            while len(self._served) > 64:
                del self._served[next(iter(self._served))]
            try:
                self._purge_owned(rid, mine, starts)
            except Exception as exc:  # noqa: BLE001 - the purger warns about the partitions nobody answered for
                self.log.warning("purge request %s on %r failed: %s", rid, self.topic, exc)

    def _purge_owned(self, rid: str, ends: dict[int, int], starts: dict[int, int]) -> dict[int, int]:
        """Poll thread: skip the records below ``ends`` of the partitions this consumer owns, except those handed
        out (they stay in flight: the commit passes them only once they are acked). Announces the skipped ranges
        on the control topic (the reply to request ``rid``: a later owner of a partition skips them too) and
        returns ``{partition: records skipped}``."""
        assigned = set(self._c_assigned())
        mine = [p for p in ends if p in assigned]
        if not mine:
            return {}
        with self._cond:
            dropped = self._drop_buffered(lambda p, off: p in ends and p in assigned and off < ends[p])
            for p in mine:  # what count() treats as not waiting: handed out, or skipped now
                self._handed[p] = max(self._handed.get(p, 0), ends[p])
        skipped: dict[int, int] = {}
        ranges: dict[str, list[int]] = {}
        polled = {p: self.tracker.next_offset(p) for p in mine}
        for p in mine:
            seen = polled[p]
            start = seen if seen is not None else starts.get(p, ends[p])
            below = dropped.get(p, [])
            skipped[p] = len(below) + max(0, ends[p] - start)
            lo = min(below) if below else start
            if lo < ends[p]:
                ranges[str(p)] = [lo, ends[p]]
        reply = {"kind": "purged", "id": rid, "group": self.group_id, "member": self.owner,
                 "skipped": {str(p): n for p, n in skipped.items()}, "ranges": ranges}
        try:  # before the skip: a crash after it leaves the ranges known to the next owner
            self._p_send(self.control_topic, [(json.dumps(reply).encode(), [])])
        except Exception as exc:  # noqa: BLE001 - skipped here all the same (the records are out of the buffer)
            self.log.warning("could not announce the purge of %r on %r (the purger will not count it, and records "
                             "skipped behind one in flight run if it comes back): %s", self.topic,
                             self.control_topic, exc)
        for p in mine:
            self.tracker.skip_to(p, dropped.get(p, ()), ends[p])
            position = polled[p]
            if position is None or position < ends[p]:
                # What the client fetched below the end and has not returned yet is dropped on arrival (a
                # fetch under way, or a seek the client refuses): never polled, so never added to the tracker.
                unpolled = position if position is not None else starts.get(p, ends[p])
                if unpolled < ends[p]:
                    self._skips[p] = _merged([*self._skips.get(p, ()), (unpolled, ends[p])])
                try:
                    self._c_seek(p, ends[p])
                except Exception as exc:  # noqa: BLE001 - the records below the end are dropped as they come
                    self.log.debug("seek of %r/%d to %d after a purge failed: %s", self.topic, p, ends[p], exc)
        return skipped

    def _count_skips(self, partitions: set[int]) -> dict[int, list[tuple[int, int]]]:
        """:meth:`_skip_ranges` for :meth:`count`: one offsets lookup of the control topic, and its tail read
        only when its offsets moved since the last read (a purge reply, or any other control record)."""
        with self._count_lock:
            if self._closed.is_set():  # no reader kept open after close()
                return self._skip_ranges(partitions)
            if self._count_reader is None:
                self._count_reader = self._ctl_open(self.control_topic)
            offsets = self._ctl_offsets(self._count_reader)
            if offsets[1] <= offsets[0]:
                return {}  # no purge ever went through the control topic
            cached = self._count_ranges
            if cached is None or cached[0] != offsets:
                cached = self._count_ranges = (offsets, self._skip_ranges(None))
        return {p: r for p, r in cached[1].items() if p in partitions}

    def _skip_ranges(self, partitions: set[int] | None) -> dict[int, list[tuple[int, int]]]:
        """The offset ranges purges skipped in ``partitions`` (None: all) (the replies of the last 512 control
        records)."""
        positions = self._i_positions(self.control_topic, f"{self.group_id}.control")
        lo, _, hw = positions.get(0, (0, 0, 0))
        if hw <= lo:
            return {}
        out: dict[int, list[tuple[int, int]]] = {}
        for _, _, value, _ in self._i_read(self.control_topic, {0: max(lo, hw - 512)}, {0: hw}, 512):
            msg = _control_message(value, "purged", self.group_id)
            if msg is None:
                continue
            try:
                for p_text, (a, b) in dict(msg.get("ranges") or {}).items():
                    if (partitions is None or int(p_text) in partitions) and int(a) < int(b):
                        out.setdefault(int(p_text), []).append((int(a), int(b)))
            except (TypeError, ValueError):
                continue
        return {p: _merged(r) for p, r in out.items()}

    def _load_skips(self, partitions: list[int]) -> dict[int, list[tuple[int, int]]]:
        """On assignment: the purged ranges above the group's committed offset of ``partitions``."""
        if self._control is not None and self._ctl_empty(self._control):
            return {}  # no purge ever went through the control topic: one offsets lookup
        ranges = self._skip_ranges(set(partitions))
        if not ranges:
            return {}
        positions = self._i_positions(self.topic, self.group_id)
        out = {}
        for p, r in ranges.items():
            committed = positions[p][1] if p in positions else 0
            live = [(a, b) for a, b in r if b > committed]
            if live:
                out[p] = live
        return out

    def _drop_skipped(self, records: list[Record]) -> list[Record]:
        """The records not in a purged range; those in one are marked finished (the commit passes them)."""
        skips, add, done = self._skips, self.tracker.add, self.tracker.done
        out: list[Record] = []
        last: dict[int, int] = {}  # partition with ranges -> the highest offset of the batch
        for rec in records:
            p, off = rec[0], rec[1]
            ranges = skips.get(p)
            if ranges is not None:
                if off > last.get(p, -1):
                    last[p] = off
                if any(a <= off < b for a, b in ranges):
                    epoch = add(p, off)
                    if epoch >= 0:
                        done(p, off, epoch)
                    continue
            out.append(rec)
        for p, high in last.items():  # ranges the consumer has read past are done with
            left = [(a, b) for a, b in skips[p] if b > high + 1]
            if left:
                skips[p] = left
            else:
                del skips[p]
        return out

    # --- dead letters -------------------------------------------------------------------------------
    def _dlq_records(self, limit: int) -> tuple[list[Record], dict[int, int]]:
        self.ensure_topics(self.dlq_topic)
        positions = self._i_positions(self.dlq_topic, self.dlq_group_id)
        start = {p: c for p, (_, c, _) in positions.items()}
        end = {p: hw for p, (_, _, hw) in positions.items()}
        if all(start[p] >= end[p] for p in start):
            return [], end
        return self._i_read(self.dlq_topic, start, end, limit), end

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        records, _ = self._dlq_records(limit)
        out = []
        for p, off, value, headers in records:
            hid, reason, at = _header(headers, H_ID), _header(headers, H_REASON), _header(headers, H_FAILED_AT)
            out.append(DeadLetterRecord(hid.decode() if hid else f"{self.dlq_topic}:{p}:{off}", value,
                                        reason.decode("utf-8", "replace") if reason else "",
                                        float(at) if at else 0.0, (p, off)))
        return out

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Publish dead letters back to the topic. With ``ids``, the others are re-appended to the DLQ
        (a log cannot delete single records) and stay listed."""
        records, end = self._dlq_records(1 << 30)
        wanted = set(ids) if ids is not None else None
        back, keep = [], []
        for _, _, value, headers in records:
            hid = _header(headers, H_ID)
            mid = hid.decode() if hid else None
            if wanted is None or mid in wanted:
                back.append((value, [(k, v) for k, v in headers if k in (H_ID,)]))
            else:
                keep.append((value, headers))
        if back:
            self.ensure_topics(self.topic)
            self._p_send(self.topic, back)
        if keep:
            self._p_send(self.dlq_topic, keep)
        if records:
            self._i_commit(self.dlq_topic, self.dlq_group_id, end)
        return len(back)

    def purge_dead_letters(self) -> int:
        self.ensure_topics(self.dlq_topic)
        positions = self._i_positions(self.dlq_topic, self.dlq_group_id)
        n = sum(max(0, hw - c) for _, c, hw in positions.values())
        self._i_commit(self.dlq_topic, self.dlq_group_id, {p: hw for p, (_, _, hw) in positions.items()})
        return n

    # --- lifecycle ----------------------------------------------------------------------------------
    def close(self) -> None:
        if not self.stop_background(self._closed, wake=self._cond):
            return
        self.tracker.notify()  # a revoke waiting for running records gives up
        with self._count_lock:
            reader, self._count_reader = self._count_reader, None
        if reader is not None:
            try:
                self._ctl_close(reader)
            except Exception as exc:  # noqa: BLE001
                self.log.debug("closing the count reader of the control topic failed: %s", exc)
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(self.revoke_timeout + 30)
        try:
            self._p_close()
        except Exception as exc:  # noqa: BLE001
            self.log.debug("closing the producer failed: %s", exc)
        self.journal.close()

    def describe(self) -> dict[str, Any]:
        return {"broker": self.name, "queue": self.queue, "url": mask_url(self.url), "topic": self.topic,
                "group": self.group_id, "partitions": self.partitions}

    @classmethod
    def setup_booster(cls, booster: Any) -> None:
        """Checked at decoration time: the queue must be a valid topic name."""
        topic_for(booster.queue, dict(booster.params.broker_options))

