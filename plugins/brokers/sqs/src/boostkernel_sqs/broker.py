"""Amazon SQS broker (boto3): long polling, a visibility heartbeat, redrive DLQ, batched round trips.

* **Fetch** is one ``ReceiveMessage`` (up to 10 per call, long polling with ``WaitTimeSeconds``): SQS
  hides the received messages for ``visibility_timeout`` seconds, atomically with the receive. That
  hidden interval is the lease: a heartbeat thread of this consumer extends it every
  ``heartbeat_interval`` (``ChangeMessageVisibilityBatch``) for every message it holds, so a live
  worker's long task is never redelivered, and a killed worker's messages come back within
  ``visibility_timeout`` + one poll.
* **Ack** is ``DeleteMessageBatch`` (acks of many threads coalesced by a flusher, at most ``ack_delay``
  late); ``nack(requeue, delay)`` is ``ChangeMessageVisibility`` to ``delay`` (0: at once).
* **Delay**: ``DelaySeconds`` (at most 900 s, rounded up to whole seconds: never early). A longer eta is
  carried in the ``bk-eta`` attribute; a consumer that receives it early hides it again (up to 12 h per
  hop) without running it.
* **Dead letters**: the queue ``<queue>-dlq``, with the reason in the ``bk-reason`` attribute. The main
  queue has a redrive policy into it (``maxReceiveCount`` = ``max_receives``, 50 by default): SQS itself
  moves a message received that many times. A crash loop is charged by the kernel's rule, with the
  running journal (``boostkernel.journal``): a message received again whose previous receive is listed
  as *running* in a consumer journal of this host was running when its consumer died; it is sent again
  with ``bk-crashes`` + 1 (the original deleted after the send), or dead-lettered with a ``crash-loop``
  reason at ``max_deliveries``. Prefetched messages of a dead consumer come back uncharged.
* ``delivery_count`` is ``ApproximateReceiveCount`` plus the receives of earlier copies (``bk-deliveries``).
"""

from __future__ import annotations

import base64
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from boostkernel.broker import Broker, BrokerCapabilities, DeadLetterRecord, Delivery, Lazy, Outgoing, consumer_window
from boostkernel.errors import BrokerUnavailable, ConfigError
from boostkernel.journal import RunningJournal, consumer_id, host_journal_dir, read_journal, sweep_journals
from boostkernel.logs import mask_url
from boostkernel.params import BoostParams

log = logging.getLogger("boostkernel.sqs")

MAX_DELAY = 900  # SQS DelaySeconds limit
MAX_VISIBILITY = 43200  # 12 h, SQS's limit for a visibility timeout
MAX_BATCH_BYTES = 262_144  # SendMessageBatch: 256 KiB for the whole batch


MIN_WINDOW = 10
"""Smallest default window (see :func:`default_window`): one ``ReceiveMessage`` brings up to 10."""


def default_window(params: BoostParams | None) -> int:
    """Messages a consumer holds at most (received and not settled) when ``broker_options`` does not set
    ``window``: the booster's explicit ``prefetch`` if given, else running + prefetched tasks and at least
    :data:`MIN_WINDOW`, so each ``ReceiveMessage`` asks for 10 (SQS's maximum) even when the kernel fetches
    4 at a time (``solo``): the rest wait in a local buffer, held and heartbeated like prefetched messages
    (:func:`boostkernel.broker.consumer_window`; none without booster parameters)."""
    return consumer_window(params, MIN_WINDOW)


def _attr(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


class SqsBroker(Broker):
    """Amazon SQS (or an SQS-compatible endpoint). ``url``: ``sqs://`` / ``sqs://REGION`` for AWS, or
    ``sqs+http://HOST:PORT`` / ``sqs+https://HOST`` for another endpoint (``sqs+http://127.0.0.1:9324``). Credentials come from boto3's usual chain (environment,
    profile, role) or the ``aws_access_key_id`` / ``aws_secret_access_key`` options."""

    name = "sqs"
    capabilities = BrokerCapabilities(ack=True, requeue=True, priority=False, delay=True, durable=True,
                                      count=True, purge=True, batch_publish=True, dead_letter=True,
                                      recovery_seconds=13.0)
    default_url = "sqs://"

    def __init__(self, queue: str, url: str | None = None, params: BoostParams | None = None,
                 **options: Any) -> None:
        super().__init__(queue, url, params, **options)
        o = self.options
        self.visibility_timeout = float(o.get("visibility_timeout", 10.0))
        self.heartbeat_interval = float(o.get("heartbeat_interval", 2.0))
        if self.visibility_timeout < 1 or self.heartbeat_interval >= self.visibility_timeout:
            raise ConfigError(f"sqs: visibility_timeout={self.visibility_timeout} must be >= 1 s and larger "
                              f"than heartbeat_interval={self.heartbeat_interval} (e.g. 10 and 2)")
        self.max_receives = int(o.get("max_receives", max(50, self.max_crashes + 20)))
        if self.max_receives <= self.max_crashes:
            raise ConfigError(f"sqs: max_receives={self.max_receives} (the redrive policy) must be larger than "
                              f"max_deliveries={self.max_crashes}, or prefetched messages of crashed workers "
                              "would be dead-lettered by SQS")
        self.ack_delay = float(o.get("ack_delay", 0.01))
        self.window = int(o.get("window", default_window(params)))
        if self.window < 1:
            raise ConfigError(f"sqs: window={self.window!r} must be >= 1")
        self.queue_prefix = str(o.get("queue_prefix", ""))
        self.qname = _queue_name(self.queue_prefix + queue)
        self.dlq_name = _queue_name(self.queue_prefix + queue, "-dlq")
        self._client: Lazy[Any] = Lazy(self._make_client)
        self._lock = threading.RLock()
        self._queue_url: str | None = None
        self._dlq_url: str | None = None
        self._dlq_arn: str | None = None
        # receipt handle -> delivery, for every message this consumer holds (prefetched or running)
        self._held: dict[str, Delivery] = {}
        self._held_lock = threading.Lock()
        self._leased: dict[str, float] = {}
        """Receipt handle -> when its visibility was last set (received or extended), under ``_held_lock``."""
        self._buffer: list[Delivery] = []
        """Received (held, heartbeated) and not yet handed to the kernel; under ``_held_lock``."""
        self._acks: list[Delivery] = []
        self._ack_cond = threading.Condition()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self.owner = consumer_id()
        self.journal_dir = Path(host_journal_dir(f"sqs-{self.qname}"))
        self.journal = RunningJournal(self.journal_dir, self.owner)
        self._consuming = False

    # --- connection ----------------------------------------------------------------------------------
    def _boto(self) -> Any:
        return self._client.get()

    def _make_client(self) -> Any:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        url = urlparse(self.url or "sqs://")
        o = self.options
        kw: dict[str, Any] = {}
        region = o.get("region")
        if url.scheme in ("sqs+http", "sqs+https", "http", "https"):
            kw["endpoint_url"] = f"{url.scheme.removeprefix('sqs+')}://{url.hostname}" + (f":{url.port}" if url.port else "") + url.path
            region = region or "us-east-1"
            if url.username:
                kw["aws_access_key_id"] = url.username
                kw["aws_secret_access_key"] = url.password or ""
        elif url.scheme == "sqs":
            region = region or url.hostname or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        else:
            raise ConfigError(f"sqs: url {mask_url(self.url)!r} must be sqs://[REGION] (AWS), or "
                              "sqs+http://HOST:PORT / sqs+https://HOST for an SQS-compatible endpoint")
        for key in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
            if key in o:
                kw[key] = o[key]
        if kw.get("endpoint_url") and "aws_access_key_id" not in kw and not os.environ.get("AWS_ACCESS_KEY_ID"):
            kw["aws_access_key_id"], kw["aws_secret_access_key"] = "local", "local"  # a local server ignores them
        cfg = Config(connect_timeout=float(o.get("connect_timeout", 10)), read_timeout=30,
                     retries={"max_attempts": int(o.get("retries", 8)), "mode": "standard"},
                     max_pool_connections=int(o.get("max_pool_connections", 32)))
        return boto3.session.Session().client("sqs", region_name=region, config=cfg, **kw)

    def _call(self, op: str, **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        try:
            return getattr(self._boto(), op)(**kw)
        except ClientError:
            raise
        except BotoCoreError as exc:
            raise BrokerUnavailable(f"sqs {op} at {mask_url(self.url)}: {exc}") from exc

    def _urls(self) -> str:
        if self._queue_url is None:
            with self._lock:
                if self._queue_url is None:
                    self._declare()
        assert self._queue_url is not None
        return self._queue_url

    def _create(self, name: str, attrs: dict[str, str]) -> str:
        from botocore.exceptions import ClientError

        try:
            return str(self._call("create_queue", QueueName=name, Attributes=attrs)["QueueUrl"])
        except ClientError as exc:  # exists with other attributes: use it as it is
            if "QueueAlreadyExists" not in str(exc):
                raise
            return str(self._call("get_queue_url", QueueName=name)["QueueUrl"])

    def _declare(self) -> None:
        import json

        self._dlq_url = self._create(self.dlq_name, {"MessageRetentionPeriod": "1209600"})
        arn = self._call("get_queue_attributes", QueueUrl=self._dlq_url,
                         AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self._dlq_arn = str(arn)
        redrive = json.dumps({"deadLetterTargetArn": self._dlq_arn, "maxReceiveCount": self.max_receives})
        self._queue_url = self._create(self.qname, {
            "VisibilityTimeout": str(math.ceil(self.visibility_timeout)), "RedrivePolicy": redrive})

    # --- publishing ----------------------------------------------------------------------------------
    def _entry(self, m: Outgoing, i: int, extra: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
        try:
            body = m.body.decode()
            attrs = {"bk-id": _attr(m.id)}
            if any(ord(c) < 0x20 and c not in "\t\n\r" for c in body):
                raise ValueError
        except ValueError:  # not UTF-8 text SQS accepts: base64
            body = base64.b64encode(m.body).decode()
            attrs = {"bk-id": _attr(m.id), "bk-enc": _attr("b64")}
        entry: dict[str, Any] = {"Id": str(i), "MessageBody": body}
        if m.eta is not None:
            wait = m.eta - time.time()
            if wait > 0:
                entry["DelaySeconds"] = min(MAX_DELAY, math.ceil(wait))
                if wait > MAX_DELAY:
                    attrs["bk-eta"] = _attr(repr(m.eta))
        if extra:
            attrs.update(extra)
        entry["MessageAttributes"] = attrs
        return entry

    def publish(self, message: Outgoing) -> None:
        self.publish_many([message])

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        self._send([self._entry(m, i) for i, m in enumerate(messages)], self._urls())

    def _send(self, entries: list[dict[str, Any]], queue_url: str) -> None:
        batch: list[dict[str, Any]] = []
        size = 0
        for e in entries:
            n = len(e["MessageBody"].encode()) + sum(len(k) + len(v["StringValue"]) + 6
                                                     for k, v in e["MessageAttributes"].items())
            if batch and (len(batch) == 10 or size + n > MAX_BATCH_BYTES):
                self._send_batch(batch, queue_url)
                batch, size = [], 0
            batch.append(e)
            size += n
        if batch:
            self._send_batch(batch, queue_url)

    def _send_batch(self, batch: list[dict[str, Any]], queue_url: str) -> None:
        for i, e in enumerate(batch):
            e["Id"] = str(i)
        pending = batch
        for attempt in range(6):
            r = self._call("send_message_batch", QueueUrl=queue_url, Entries=pending)
            failed = {f["Id"] for f in r.get("Failed", [])}
            if not failed:
                return
            errors = [f for f in r["Failed"] if f.get("SenderFault")]
            if errors:
                raise BrokerUnavailable(f"sqs refused {len(errors)} message(s): {errors[0].get('Message')}")
            pending = [e for e in pending if e["Id"] in failed]
            time.sleep(min(2.0, 0.05 * 2 ** attempt))
        raise BrokerUnavailable(f"sqs: {len(pending)} message(s) not accepted after 6 attempts")

    # --- consuming -----------------------------------------------------------------------------------
    def _start_consuming(self) -> None:
        with self._lock:
            if self._consuming or self._closed.is_set():
                return
            self._consuming = True
            self.journal.open()
            for target, name in ((self._heartbeat_loop, "heartbeat"), (self._ack_loop, "acks")):
                t = threading.Thread(target=target, name=f"bk-sqs-{name}-{self.queue}", daemon=True)
                t.start()
                self._threads.append(t)

    def buffered(self) -> int:
        """Messages received (invisible, their visibility extended while this consumer lives) beyond what
        :meth:`fetch` was asked for, kept for the next fetch: not in ``ApproximateNumberOfMessages``, not purged
        by ``purge()``; ``close()`` makes them visible again."""
        return len(self._buffer)

    def fetch(self, max_messages: int, timeout: float) -> list[Delivery]:
        """From the local buffer if it holds messages, else ``ReceiveMessage`` calls for up to ``max_messages``
        and whatever else the window has room for (10 per call); what the kernel did not ask for is buffered."""
        if self._closed.is_set():
            return []
        n = max(1, max_messages)
        with self._held_lock:
            if self._buffer:
                out, self._buffer = self._buffer[:n], self._buffer[n:]
                return out
        url = self._urls()
        self._start_consuming()
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n and not self._closed.is_set():
            left = deadline - time.monotonic()
            wait = 0 if out else max(0, min(20, int(left)))
            ask = min(10, max(n - len(out), self.window - len(self._held)))
            r = self._call("receive_message", QueueUrl=url, MaxNumberOfMessages=ask,
                           WaitTimeSeconds=wait, AttributeNames=["ApproximateReceiveCount"],
                           MessageAttributeNames=["All"],
                           VisibilityTimeout=math.ceil(self.visibility_timeout))
            msgs = r.get("Messages", [])
            for m in msgs:
                d = self._delivery(m)
                if d is not None:
                    out.append(d)
            if not msgs:
                if out or time.monotonic() >= deadline:
                    break
                if wait == 0:  # short poll: SQS gives no wait under one second
                    time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if len(out) > n:
            with self._held_lock:
                self._buffer.extend(out[n:])
            out = out[:n]
        return out

    def _delivery(self, m: dict[str, Any]) -> Delivery | None:
        attrs = {k: v.get("StringValue", "") for k, v in m.get("MessageAttributes", {}).items()}
        handle = m["ReceiptHandle"]
        mid = attrs.get("bk-id") or m["MessageId"]
        receives = int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        eta = attrs.get("bk-eta")
        if eta is not None and float(eta) > time.time() + 0.5:  # a delay longer than SQS's 900 s: hide again
            self._visibility(handle, min(MAX_VISIBILITY, math.ceil(float(eta) - time.time())))
            return None
        raw = m["Body"]
        try:
            body = base64.b64decode(raw) if attrs.get("bk-enc") == "b64" else raw.encode()
        except ValueError:
            body = raw.encode()
        crashes = int(attrs.get("bk-crashes", "0") or 0)
        before = int(attrs.get("bk-deliveries", "0") or 0)
        d = Delivery(mid, body, handle, before + receives, crashes=crashes)
        d.extra["sqs_message_id"] = m["MessageId"]
        d.extra["receives"] = receives
        if receives > 1 and self._was_running(m["MessageId"], receives - 1):
            return self._charge_crash(d, attrs)
        with self._held_lock:
            self._held[handle] = d
            self._leased[handle] = time.monotonic()
        return d

    def _was_running(self, sqs_id: str, receive: int) -> bool:
        """Was this message's previous receive running (journal) when its consumer stopped?"""
        key = f"{sqs_id}:{receive}"
        try:
            names = [e.name[:-len(".running")] for e in os.scandir(self.journal_dir) if e.name.endswith(".running")]
        except OSError:
            return False
        for owner in names:
            if owner == _safe(self.owner):
                continue
            running = read_journal(self.journal_dir, owner)
            if running and key in running:
                return True
        return False

    def _charge_crash(self, d: Delivery, attrs: dict[str, str]) -> Delivery | None:
        crashes = d.crashes + 1
        extra = {"bk-crashes": _attr(str(crashes)), "bk-deliveries": _attr(str(d.delivery_count))}
        keep = {k: _attr(v) for k, v in attrs.items() if k == "bk-eta"}
        if crashes >= self.max_crashes:
            reason = (f"crash-loop: the worker died {crashes} time(s) while running it "
                      f"(max_deliveries={self.max_crashes})")
            self._to_dlq(d, reason)
        else:
            entry = self._entry(Outgoing(d.id, d.body), 0, {**extra, **keep})
            self._send([entry], self._urls())
            self._call("delete_message", QueueUrl=self._urls(), ReceiptHandle=d.tag)
        return None

    def started(self, delivery: Delivery) -> None:
        self.journal.started(f"{delivery.extra.get('sqs_message_id')}:{delivery.extra.get('receives')}")

    def _forget(self, d: Delivery) -> bool:
        with self._held_lock:
            known = self._held.get(d.tag) is not None
        self.journal.finished(f"{d.extra.get('sqs_message_id')}:{d.extra.get('receives')}")
        return known

    def ack(self, delivery: Delivery) -> None:
        if not self._forget(delivery) and self._closed.is_set():
            return
        with self._ack_cond:
            self._acks.append(delivery)
            self._ack_cond.notify()

    def ack_many(self, deliveries: Iterable[Delivery]) -> None:
        ds = [d for d in deliveries if self._forget(d) or not self._closed.is_set()]
        if ds:
            with self._ack_cond:
                self._acks.extend(ds)
                self._ack_cond.notify()

    def _ack_loop(self) -> None:
        while True:
            with self._ack_cond:
                while not self._acks and not self._closed.is_set():
                    self._ack_cond.wait(0.5)
                if not self._acks and self._closed.is_set():
                    return
            if self.ack_delay and not self._closed.is_set():
                time.sleep(self.ack_delay)
            self._flush_acks()

    def _flush_acks(self) -> None:
        with self._ack_cond:
            batch, self._acks = self._acks, []
        for i in range(0, len(batch), 10):
            self._delete([d.tag for d in batch[i:i + 10]])
        with self._held_lock:  # deleted: no longer extended by the heartbeat
            for d in batch:
                self._held.pop(d.tag, None)
                self._leased.pop(d.tag, None)

    def _delete(self, handles: list[str], queue_url: str | None = None) -> None:
        url = queue_url or self._urls()
        for attempt in range(8):
            try:
                r = self._call("delete_message_batch", QueueUrl=url,
                               Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)])
            except Exception as exc:  # noqa: BLE001 - the message comes back after its visibility timeout
                log.warning("sqs: deleting %d message(s) failed (%s); retrying", len(handles), exc)
                time.sleep(min(2.0, 0.1 * 2 ** attempt))
                continue
            failed = {int(f["Id"]) for f in r.get("Failed", []) if not f.get("SenderFault")}
            if not failed:
                return
            handles = [h for i, h in enumerate(handles) if i in failed]
            time.sleep(min(2.0, 0.05 * 2 ** attempt))
        log.error("sqs: %d ack(s) lost: those messages will be delivered again", len(handles))

    def _visibility(self, handle: str, seconds: int) -> None:
        from botocore.exceptions import ClientError

        try:
            self._call("change_message_visibility", QueueUrl=self._urls(), ReceiptHandle=handle,
                       VisibilityTimeout=max(0, min(MAX_VISIBILITY, seconds)))
        except ClientError as exc:  # the receipt is stale (it became visible again): it is redelivered anyway
            log.debug("sqs: change_message_visibility: %s", exc)

    def nack(self, delivery: Delivery, requeue: bool = True, delay: float = 0.0) -> None:
        if not self._forget(delivery) and self._closed.is_set():
            return
        with self._held_lock:
            self._held.pop(delivery.tag, None)
            self._leased.pop(delivery.tag, None)
        if requeue:
            self._visibility(delivery.tag, math.ceil(delay) if delay > 0 else 0)
        else:
            self._delete([delivery.tag])

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._forget(delivery)
        self._to_dlq(delivery, reason)
        with self._held_lock:
            self._held.pop(delivery.tag, None)
            self._leased.pop(delivery.tag, None)

    def _to_dlq(self, d: Delivery, reason: str) -> None:
        self._urls()
        assert self._dlq_url is not None
        entry = self._entry(Outgoing(d.id, d.body), 0, {
            "bk-reason": _attr(reason[:10000] or "dead-lettered"), "bk-failed-at": _attr(repr(time.time())),
            "bk-deliveries": _attr(str(d.delivery_count))})
        entry.pop("DelaySeconds", None)
        self._send([entry], self._dlq_url)
        self._delete([d.tag])

    # --- heartbeat -----------------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        last_sweep = 0.0
        while not self._closed.wait(self.heartbeat_interval):
            # Only messages whose visibility was set at least half an interval ago: one received just now
            # is extended at the next beat (at most 1.5 intervals after its receive), and one acked
            # meanwhile (most, for short tasks) costs no call at all.
            now = time.monotonic()
            young = now - self.heartbeat_interval / 2
            with self._held_lock:
                leased = self._leased
                handles = [h for h in self._held if leased.get(h, 0.0) <= young]
                for h in handles:
                    leased[h] = now
            for i in range(0, len(handles), 10):
                chunk = handles[i:i + 10]
                try:
                    self._call("change_message_visibility_batch", QueueUrl=self._urls(), Entries=[
                        {"Id": str(j), "ReceiptHandle": h, "VisibilityTimeout": math.ceil(self.visibility_timeout)}
                        for j, h in enumerate(chunk)])
                except Exception as exc:  # noqa: BLE001 - the next beat retries
                    log.warning("sqs: visibility heartbeat failed: %s", exc)
            self.journal.touch()
            now = time.monotonic()
            if now - last_sweep > 60:
                last_sweep = now
                sweep_journals(self.journal_dir, older_than=max(600.0, self.visibility_timeout * 10))

    # --- dead letters, inspection --------------------------------------------------------------------
    def _receive_all(self, queue_url: str, limit: int, hide: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        empty = 0
        while len(out) < limit and empty < 2:
            r = self._call("receive_message", QueueUrl=queue_url, MaxNumberOfMessages=min(10, limit - len(out)),
                           WaitTimeSeconds=0, MessageAttributeNames=["All"], VisibilityTimeout=hide,
                           AttributeNames=["ApproximateReceiveCount"])
            msgs = [m for m in r.get("Messages", []) if m["MessageId"] not in seen]
            if not msgs:
                empty += 1
                continue
            empty = 0
            for m in msgs:
                seen.add(m["MessageId"])
                out.append(m)
        return out

    def _show_again(self, queue_url: str, msgs: list[dict[str, Any]]) -> None:
        for i in range(0, len(msgs), 10):
            self._call("change_message_visibility_batch", QueueUrl=queue_url, Entries=[
                {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for j, m in enumerate(msgs[i:i + 10])])

    def _record(self, m: dict[str, Any]) -> DeadLetterRecord:
        attrs = {k: v.get("StringValue", "") for k, v in m.get("MessageAttributes", {}).items()}
        body = base64.b64decode(m["Body"]) if attrs.get("bk-enc") == "b64" else m["Body"].encode()
        reason = attrs.get("bk-reason") or (f"redrive: received {self.max_receives} times without being acked "
                                            "(the queue's SQS redrive policy)")
        return DeadLetterRecord(attrs.get("bk-id") or m["MessageId"], body, reason,
                                float(attrs.get("bk-failed-at") or 0.0), m["ReceiptHandle"])

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRecord]:
        self._urls()
        assert self._dlq_url is not None
        msgs = self._receive_all(self._dlq_url, limit, 30)
        self._show_again(self._dlq_url, msgs)
        return sorted((self._record(m) for m in msgs), key=lambda r: r.failed_at)

    def replay_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        self._urls()
        assert self._dlq_url is not None
        want = set(ids) if ids is not None else None
        msgs = self._receive_all(self._dlq_url, 100_000, 60)
        chosen: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        for m in msgs:
            (chosen if want is None or self._record(m).id in want else others).append(m)
        if others:
            self._show_again(self._dlq_url, others)
        for m in chosen:
            rec = self._record(m)
            self._send([self._entry(Outgoing(rec.id, rec.body), 0)], self._urls())
            self._delete([m["ReceiptHandle"]], self._dlq_url)
        return len(chosen)

    def purge_dead_letters(self) -> int:
        self._urls()
        assert self._dlq_url is not None
        msgs = self._receive_all(self._dlq_url, 100_000, 60)
        for i in range(0, len(msgs), 10):
            self._delete([m["ReceiptHandle"] for m in msgs[i:i + 10]], self._dlq_url)
        return len(msgs)

    def count(self) -> int:
        a = self._call("get_queue_attributes", QueueUrl=self._urls(),
                       AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"])
        attrs = a["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessages", 0)) + int(attrs.get("ApproximateNumberOfMessagesDelayed", 0))

    def purge(self) -> int:
        """Delete the visible messages (receive + delete, not PurgeQueue, which would also delete the
        messages in flight and may run once a minute on AWS). Delayed messages are not touched."""
        msgs = self._receive_all(self._urls(), 1_000_000, 60)
        for i in range(0, len(msgs), 10):
            self._delete([m["ReceiptHandle"] for m in msgs[i:i + 10]])
        return len(msgs)

    def delete_queues(self) -> None:
        """Delete the queue and its dead-letter queue (tests, tooling)."""
        self._urls()
        for u in (self._queue_url, self._dlq_url):
            try:
                self._call("delete_queue", QueueUrl=u)
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        if not self.stop_background(self._closed, self._threads, 10, wake=self._ack_cond):
            return
        if self._acks and self._client.value is not None:
            self._flush_acks()
        with self._held_lock:
            held, self._held = list(self._held), {}
            self._leased = {}
            self._buffer = []
        if held and self._client.value is not None:  # prefetched and unsettled: visible again at once
            try:
                self._show_again(self._urls(), [{"ReceiptHandle": h} for h in held])
            except Exception as exc:  # noqa: BLE001 - they come back after their visibility timeout
                log.warning("sqs: returning %d message(s) on close failed: %s", len(held), exc)
        self.journal.close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "sqs_queue": self.qname, "visibility_timeout": self.visibility_timeout}


def _safe(owner: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]", "_", owner)


def _queue_name(name: str, suffix: str = "") -> str:
    import re

    clean = re.sub(r"[^A-Za-z0-9_-]", "-", name)
    if len(clean) + len(suffix) > 80:
        import hashlib

        h = hashlib.sha1(name.encode()).hexdigest()[:8]
        clean = clean[:80 - len(suffix) - 9] + "-" + h
    return clean + suffix
