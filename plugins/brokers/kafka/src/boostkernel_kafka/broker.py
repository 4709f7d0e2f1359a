"""The Kafka broker on kafka-python: at-least-once, the highest contiguous finished offset is committed.

See :mod:`boostkernel_kafka.base` for the design (poll thread, offset tracker, back-pressure, DLQ topic).
This module holds only the kafka-python calls.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

from boostkernel.errors import BrokerUnavailable, PluginNotInstalled

from .base import LogBroker, Record

try:
    with warnings.catch_warnings():  # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text
        warnings.simplefilter("ignore", DeprecationWarning)
        import kafka
        import kafka.errors
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.consumer.subscription_state import ConsumerRebalanceListener
        from kafka.protocol.admin import DescribeGroupsRequest
        from kafka.structs import OffsetAndMetadata
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise PluginNotInstalled("client library", "kafka-python",
                             hint='The kafka broker needs kafka-python: pip install "boostkernel[kafka]" '
                                  '(or pip install kafka-python)') from exc


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.broker._on_revoked([tp.partition for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.broker._on_assigned([tp.partition for tp in assigned])


class KafkaBroker(LogBroker):
    """Kafka via kafka-python. URL ``kafka://host:port[,host:port…]`` (``kafka://user:pass@…`` for SASL PLAIN)."""

    name = "kafka"

    def _common(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"bootstrap_servers": self.bootstrap.split(","), "request_timeout_ms": 30000}
        if self.credentials is not None:
            conf.update(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                        sasl_plain_username=self.credentials[0], sasl_plain_password=self.credentials[1])
        return conf

    # --- producer and admin --------------------------------------------------------------------
    def _new_producer(self) -> Any:
        conf = {**self._common(), "acks": "all", "linger_ms": 1, "retries": 5,
                "max_in_flight_requests_per_connection": 5}
        conf.update(self.client_options.get("producer", {}))
        try:
            return KafkaProducer(**conf)
        except kafka.errors.NoBrokersAvailable as exc:
            raise BrokerUnavailable(f"kafka: no broker reachable at {self.bootstrap}: {exc}") from exc

    def _p_send(self, topic: str, items: Sequence[tuple[bytes, list[tuple[str, bytes]]]],
                partitions: Sequence[int] | None = None) -> None:
        producer = self._producer_get()
        if partitions is None:
            futures = [producer.send(topic, value=v, headers=h) for v, h in items]
        else:
            futures = [producer.send(topic, value=v, headers=h, partition=p)
                       for (v, h), p in zip(items, partitions, strict=True)]
        if len(futures) > 1:
            producer.flush(self.publish_timeout)
        for f in futures:
            f.get(self.publish_timeout)

    def _p_close(self) -> None:
        producer = self._producer.take()
        if producer is not None:
            producer.close(timeout=5)

    def _create_topics(self, topics: dict[str, int]) -> None:
        try:
            admin = KafkaAdminClient(**self._common())
        except kafka.errors.NoBrokersAvailable as exc:
            raise BrokerUnavailable(f"kafka: no broker reachable at {self.bootstrap}: {exc}") from exc
        try:
            for t, n in topics.items():
                try:
                    admin.create_topics([NewTopic(t, n, self.replication_factor)])
                except kafka.errors.TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()

    # --- the group consumer (poll thread) ---------------------------------------------------------
    def _c_open(self) -> None:
        conf = {**self._common(), "group_id": self.group_id, "enable_auto_commit": False,
                "auto_offset_reset": "earliest", "session_timeout_ms": self.session_timeout_ms,
                "heartbeat_interval_ms": self.heartbeat_interval_ms, "max_poll_records": 500,
                "fetch_max_wait_ms": 100, "max_poll_interval_ms": self.max_poll_interval_ms}
        conf.update(self.client_options.get("consumer", {}))
        self._consumer = KafkaConsumer(**conf)
        self._consumer.subscribe([self.topic], listener=_Listener(self))

    def _c_poll(self, timeout: float, max_records: int) -> list[Record]:
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        out: list[Record] = []
        for tp, records in batches.items():
            p = tp.partition
            out.extend((p, r.offset, r.value, list(r.headers or ())) for r in records)
        return out

    def _tps(self, partitions: list[int]) -> list[Any]:
        return [TopicPartition(self.topic, p) for p in partitions]

    def _c_pause(self, partitions: list[int]) -> None:
        if partitions:
            self._consumer.pause(*self._tps(partitions))

    def _c_resume(self, partitions: list[int]) -> None:
        if partitions:
            self._consumer.resume(*self._tps(partitions))

    def _c_assigned(self) -> list[int]:
        return [tp.partition for tp in self._consumer.assignment()]

    def _c_start_from_committed(self, partitions: list[int]) -> None:
        # kafka-python >= 3 keeps the fetch position (and paused flag) of a partition that is revoked and
        # assigned again to the same member; the records after the last commit must be read again.
        c = self._consumer
        for tp in self._tps(partitions):
            c.resume(tp)
            committed = c.committed(tp)
            if committed is not None:
                c.seek(tp, committed)
            else:
                c.seek_to_beginning(tp)

    def _c_commit(self, offsets: dict[int, int]) -> None:
        self._consumer.commit({TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                               for p, o in offsets.items()})

    def _c_seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(self.topic, partition), offset)

    def _c_group_settled(self, timeout: float) -> bool:
        # the consumer's own connection to the coordinator; v0: no authorized operations to parse (kafka-python's
        # admin client fails on tansu's value for them)
        c = self._consumer
        node = c._coordinator.coordinator() if c is not None else None
        if node is None:
            raise BrokerUnavailable(f"kafka: no coordinator known for group {self.group_id!r}")
        future = c._client.send(node, DescribeGroupsRequest[0](groups=(self.group_id,)))
        c._client.poll(future=future, timeout_ms=int(timeout * 1000))
        if not future.is_done:
            raise BrokerUnavailable(f"kafka: DescribeGroups of {self.group_id!r} not answered in {timeout}s")
        if future.failed():
            raise future.exception
        state = str(future.value.groups[0][2])
        return state.lower() in ("stable", "empty")

    def _c_close(self, leave: bool = True) -> None:
        if self._consumer is not None:
            if not leave:  # close() sends no LeaveGroup for a member without a generation (maybe_leave_group)
                self._consumer._coordinator.reset_generation()
            self._consumer.close(autocommit=False)
            self._consumer = None

    # --- short-lived inspection consumers ----------------------------------------------------------
    def _inspector(self, group: str | None) -> Any:
        conf = {**self._common(), "group_id": group, "enable_auto_commit": False,
                "auto_offset_reset": "earliest", "fetch_max_wait_ms": 50}
        try:
            return KafkaConsumer(**conf)
        except kafka.errors.NoBrokersAvailable as exc:
            raise BrokerUnavailable(f"kafka: no broker reachable at {self.bootstrap}: {exc}") from exc

    # --- the control topic reader (no group) -------------------------------------------------------
    def _ctl_open(self, topic: str) -> Any:
        c = self._inspector(None)
        try:
            tps = self._partitions_of(c, topic)[:1]
            c.assign(tps)
            c.seek_to_end(*tps)
            for tp in tps:
                c.position(tp)  # resolves the lazy seek now: a record produced after this call is read
        except BaseException:
            c.close(autocommit=False)
            raise
        return c

    def _ctl_poll(self, c: Any, timeout: float) -> list[bytes]:
        return [r.value for records in c.poll(timeout_ms=int(timeout * 1000)).values() for r in records]

    def _ctl_close(self, c: Any) -> None:
        c.close(autocommit=False)

    def _ctl_offsets(self, c: Any) -> tuple[int, int]:
        tps = list(c.assignment())[:1]
        if not tps:
            return 0, 0
        begin, end = c.beginning_offsets(tps), c.end_offsets(tps)
        return begin[tps[0]], end[tps[0]]

    def _i_partitions(self, c: Any, topic: str) -> list[Any]:
        return [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]

    def _i_positions(self, topic: str, group: str) -> dict[int, tuple[int, int, int]]:
        c = self._inspector(group)
        try:
            tps = self._partitions_of(c, topic)
            begin = c.beginning_offsets(tps)
            end = c.end_offsets(tps)
            committed = {tp: c.committed(tp) for tp in tps}
            # The high watermark of a Fetch response is authoritative; ListOffsets(latest) may lag
            # (tansu 0.6.0 answers "base offset of the last batch + 1"). One fetch per partition fixes it.
            c.assign(tps)
            for tp in tps:
                c.seek(tp, max(begin[tp], end[tp] - 1, 0))
            deadline = time.monotonic() + 5
            hw: dict[Any, int] = {}
            while len(hw) < len(tps) and time.monotonic() < deadline:
                c.poll(timeout_ms=50, max_records=1, update_offsets=False)
                for tp in tps:
                    h = c.highwater(tp)
                    if h is not None:
                        hw[tp] = h
            out = {}
            for tp in tps:
                high = max(end[tp], hw.get(tp, 0))
                start = committed[tp] if committed[tp] is not None else begin[tp]
                out[tp.partition] = (begin[tp], max(start, begin[tp]), high)
            return out
        finally:
            c.close(autocommit=False)

    def _i_read(self, topic: str, start: dict[int, int], end: dict[int, int], limit: int) -> list[Record]:
        c = self._inspector(None)
        try:
            tps = [TopicPartition(topic, p) for p in start if start[p] < end[p]]
            c.assign(tps)
            for tp in tps:
                c.seek(tp, start[tp.partition])
            out: list[Record] = []
            left = {tp.partition for tp in tps}
            deadline = time.monotonic() + 10
            while left and len(out) < limit and time.monotonic() < deadline:
                for tp, records in c.poll(timeout_ms=100).items():
                    for r in records:
                        if r.offset < end[tp.partition] and len(out) < limit:
                            out.append((tp.partition, r.offset, r.value, list(r.headers or ())))
                        if r.offset >= end[tp.partition] - 1:
                            left.discard(tp.partition)
            return out
        finally:
            c.close(autocommit=False)

    def _i_commit(self, topic: str, group: str, offsets: dict[int, int]) -> None:
        if not offsets:
            return
        c = self._inspector(group)
        try:
            tps = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
            c.assign(list(tps))
            c.commit(tps)
        finally:
            c.close(autocommit=False)
