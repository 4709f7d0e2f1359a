"""The Kafka broker on confluent-kafka (librdkafka): same design and guarantee as ``kafka``, faster client.

The poll thread, the contiguous-offset tracker, back-pressure, revoke handling and the DLQ topic are
shared with boostkernel-kafka (:class:`boostkernel_kafka.base.LogBroker`); this module holds only the
confluent-kafka calls.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from boostkernel_kafka.base import LogBroker, Record

from boostkernel.errors import BrokerUnavailable, PluginNotInstalled

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # documented; not re-exported
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise PluginNotInstalled("client library", "confluent-kafka",
                             hint='The confluent-kafka broker needs confluent-kafka: '
                                  'pip install "boostkernel[confluent-kafka]" (or pip install confluent-kafka)') from exc

_OFFSET_INVALID = -1001


class ConfluentKafkaBroker(LogBroker):
    """Kafka via confluent-kafka. URL ``kafka://host:port[,host:port…]`` (``kafka://user:pass@…`` for SASL PLAIN)."""

    name = "confluent-kafka"

    def _common(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 30000,
                                "broker.address.family": "v4" if self.bootstrap.startswith("127.") else "any"}
        if self.credentials is not None:
            conf.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                         "sasl.username": self.credentials[0], "sasl.password": self.credentials[1]})
        return conf

    # --- producer and admin --------------------------------------------------------------------
    def _new_producer(self) -> Any:
        conf = {**self._common(), "acks": "all", "linger.ms": 1, "enable.idempotence": False,
                "message.timeout.ms": int(self.publish_timeout * 1000)}
        conf.update(self.client_options.get("producer", {}))
        return Producer(conf)

    def _p_send(self, topic: str, items: Sequence[tuple[bytes, list[tuple[str, bytes]]]],
                partitions: Sequence[int] | None = None) -> None:
        producer = self._producer_get()
        errors: list[Any] = []
        pending = [len(items)]
        done = threading.Event()
        lock = threading.Lock()

        def on_delivery(err: Any, _msg: Any) -> None:
            with lock:
                if err is not None:
                    errors.append(err)
                pending[0] -= 1
                if pending[0] == 0:
                    done.set()

        for i, (value, headers) in enumerate(items):
            where = {} if partitions is None else {"partition": partitions[i]}
            while True:
                try:
                    producer.produce(topic, value=value, headers=headers, on_delivery=on_delivery, **where)
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    producer.poll(0.05)
        deadline = time.monotonic() + self.publish_timeout
        while not done.is_set():
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"confluent-kafka: {pending[0]} message(s) to {topic!r} not acknowledged "
                                        f"within {self.publish_timeout}s")
            producer.flush(0.1) if len(items) > 1 else producer.poll(0.05)
        if errors:
            raise BrokerUnavailable(f"confluent-kafka: publishing to {topic!r} failed: {errors[0]}")

    def _p_close(self) -> None:
        producer = self._producer.take()
        if producer is not None:
            producer.flush(5)

    def _create_topics(self, topics: dict[str, int]) -> None:
        admin = AdminClient(self._common())
        futures = admin.create_topics([NewTopic(t, n, self.replication_factor) for t, n in topics.items()],
                                      operation_timeout=10, request_timeout=15)
        for t, f in futures.items():
            try:
                f.result(15)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BrokerUnavailable(f"confluent-kafka: cannot create topic {t!r}: {exc}") from exc

    # --- the group consumer (poll thread) ---------------------------------------------------------
    def _c_open(self) -> None:
        conf = {**self._common(), "group.id": self.group_id, "enable.auto.commit": False,
                "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": self.session_timeout_ms, "heartbeat.interval.ms": self.heartbeat_interval_ms,
                "fetch.wait.max.ms": 100, "max.poll.interval.ms": self.max_poll_interval_ms, "enable.partition.eof": False}
        conf.update(self.client_options.get("consumer", {}))
        self._consumer = Consumer(conf)
        self._consumer.subscribe(
            [self.topic],
            on_assign=lambda _c, parts: self._on_assigned([tp.partition for tp in parts]),
            on_revoke=lambda _c, parts: self._on_revoked([tp.partition for tp in parts]),
            on_lost=lambda _c, parts: self._on_lost([tp.partition for tp in parts]),
        )

    def _c_poll(self, timeout: float, max_records: int) -> list[Record]:
        c = self._consumer
        msgs = c.consume(max_records, 0)  # what is already fetched, without waiting for a full batch
        if not msgs:
            msgs = c.consume(1, timeout)
            if msgs and max_records > 1:
                msgs += c.consume(max_records - 1, 0)
        out: list[Record] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self.log.warning("confluent-kafka consumer error on %r: %s", self.topic, err)
                continue
            out.append((m.partition(), m.offset(), m.value() or b"", list(m.headers() or ())))
        return out

    def _tps(self, partitions: list[int]) -> list[Any]:
        return [TopicPartition(self.topic, p) for p in partitions]

    def _c_pause(self, partitions: list[int]) -> None:
        if partitions:
            self._consumer.pause(self._tps(partitions))

    def _c_resume(self, partitions: list[int]) -> None:
        if partitions:
            self._consumer.resume(self._tps(partitions))

    def _c_assigned(self) -> list[int]:
        return [tp.partition for tp in self._consumer.assignment()]

    def _c_start_from_committed(self, partitions: list[int]) -> None:
        # Assign explicitly with OFFSET_INVALID: librdkafka fetches the committed offset (or applies
        # auto.offset.reset) instead of a position kept from an earlier assignment; then unpause.
        tps = [TopicPartition(self.topic, p, _OFFSET_INVALID) for p in partitions]
        self._consumer.assign(tps)
        self._consumer.resume(tps)

    def _c_commit(self, offsets: dict[int, int]) -> None:
        self._consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
                              asynchronous=False)

    def _c_seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(self.topic, partition, offset))

    def _c_group_settled(self, timeout: float) -> bool:
        admin = AdminClient(self._common())
        desc = admin.describe_consumer_groups([self.group_id], request_timeout=timeout)[self.group_id].result(timeout)
        return desc.state.name in ("STABLE", "EMPTY")

    def _c_close(self, leave: bool = True) -> None:
        if self._consumer is not None:
            if leave:
                self._consumer.close()
            # else: dropping the last reference destroys the handle with RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE
            # (confluent-kafka's Consumer dealloc): no LeaveGroup, no rebalance callbacks
            self._consumer = None

    # --- short-lived inspection consumers ----------------------------------------------------------
    def _inspector(self, group: str | None) -> Any:
        return Consumer({**self._common(), "group.id": group or f"boostkernel-inspect-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50,
                         "enable.partition.eof": True})

    # --- the control topic reader (no group) -------------------------------------------------------
    def _ctl_open(self, topic: str) -> Any:
        c = self._inspector(None)
        try:
            self._partitions_of(c, topic)
            _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
            c.assign([TopicPartition(topic, 0, max(0, high))])
        except BaseException:
            c.close()
            raise
        return c

    def _ctl_poll(self, c: Any, timeout: float) -> list[bytes]:
        return [m.value() or b"" for m in c.consume(100, timeout) if m.error() is None]

    def _ctl_close(self, c: Any) -> None:
        c.close()

    def _ctl_offsets(self, c: Any) -> tuple[int, int]:
        tps = c.assignment()[:1]
        if not tps:
            return 0, 0
        lo, hi = c.get_watermark_offsets(tps[0], timeout=10, cached=False)
        return int(lo), int(hi)

    def _i_partitions(self, c: Any, topic: str) -> list[Any]:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        return sorted(md.partitions) if md is not None and md.error is None and md.partitions else []

    def _i_positions(self, topic: str, group: str) -> dict[int, tuple[int, int, int]]:
        c = self._inspector(group)
        try:
            parts = self._partitions_of(c, topic)
            marks = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False) for p in parts}
            committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts],
                                                                        timeout=10)}
            # The high watermark of a Fetch response is authoritative; ListOffsets(latest) may lag
            # (tansu 0.6.0 answers "base offset of the last batch + 1"). Fetch once per partition.
            c.assign([TopicPartition(topic, p, max(lo, hi - 1, 0)) for p, (lo, hi) in marks.items()])
            hw: dict[int, int] = {}
            deadline = time.monotonic() + 5
            while len(hw) < len(parts) and time.monotonic() < deadline:
                for m in c.consume(50, 0.05):
                    err = m.error()
                    if err is None or err.code() == KafkaError._PARTITION_EOF:
                        lo_hi = c.get_watermark_offsets(TopicPartition(topic, m.partition()), cached=True)
                        if lo_hi is not None and lo_hi[1] >= 0:
                            hw[m.partition()] = lo_hi[1]
            out = {}
            for p in parts:
                lo, hi = marks[p]
                high = max(hi, hw.get(p, 0))
                start = committed[p] if committed[p] >= 0 else lo
                out[p] = (lo, max(start, lo), high)
            return out
        finally:
            c.close()

    def _i_read(self, topic: str, start: dict[int, int], end: dict[int, int], limit: int) -> list[Record]:
        c = self._inspector(None)
        try:
            parts = [p for p in start if start[p] < end[p]]
            c.assign([TopicPartition(topic, p, start[p]) for p in parts])
            out: list[Record] = []
            left = set(parts)
            deadline = time.monotonic() + 10
            while left and len(out) < limit and time.monotonic() < deadline:
                for m in c.consume(500, 0.1):
                    err = m.error()
                    p = m.partition()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            left.discard(p)
                        continue
                    off = m.offset()
                    if off < end[p] and len(out) < limit:
                        out.append((p, off, m.value() or b"", list(m.headers() or ())))
                    if off >= end[p] - 1:
                        left.discard(p)
            return out
        finally:
            c.close()

    def _i_commit(self, topic: str, group: str, offsets: dict[int, int]) -> None:
        if not offsets:
            return
        c = self._inspector(group)
        try:
            c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
        finally:
            c.close()

