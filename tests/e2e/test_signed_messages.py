"""Signed messages (``signing_key``, docs/signing.md) and the caps on per-message overrides.

On sqlite, redis and rabbitmq: a signed message runs; a message whose body is changed inside the broker
(the stored row or list element rewritten, or a modified copy published past the signer) is refused into
the dead-letter queue with "bad signature" and never runs; an unsigned one with "unsigned message". Key
rotation: a consumer holding ``new,old`` runs messages signed with either and signs with ``new``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from boostkernel import ConfigError, TaskOptions, boost
from boostkernel.broker import Outgoing
from boostkernel.message import Envelope, decode
from boostkernel.signing import Signer, open_envelope, sign_envelope
from boostkernel.testing import wait_until
from boostkernel.testing.control_contract import require_broker
from boostkernel.testing.helpers import service_url

pytestmark = pytest.mark.timeout(120)

BROKERS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.service("redis")),
    pytest.param("rabbitmq", id="rabbitmq", marks=pytest.mark.service("rabbitmq")),
]


def _params(broker: str, tmp_path: Path) -> dict[str, Any]:
    require_broker(broker)
    if broker == "sqlite":
        return {"broker": "sqlite", "data_dir": str(tmp_path)}
    return {"broker": broker, "broker_url": service_url(broker)}


def _tamper_in_broker(broker: str, b: Any, old: bytes, new: bytes) -> None:
    """Change the stored body of the waiting message holding ``old`` (same length) to hold ``new``."""
    br = b.broker
    if broker == "sqlite":
        con = sqlite3.connect(br.path)
        rows = con.execute("SELECT seq, body FROM bk_messages WHERE queue = ?", (b.queue,)).fetchall()
        hits = [(seq, bytes(body)) for seq, body in rows if old in bytes(body)]
        assert len(hits) == 1, rows
        con.execute("UPDATE bk_messages SET body = ? WHERE seq = ?", (hits[0][1].replace(old, new), hits[0][0]))
        con.commit()
        con.close()
    elif broker == "redis":
        r = br.redis
        els = r.lrange(br._q0, 0, -1)
        idx = [i for i, el in enumerate(els) if old in el]
        assert len(idx) == 1, els
        r.lset(br._q0, idx[0], els[idx[0]].replace(old, new))
    else:  # rabbitmq: whoever can write to the broker publishes a modified copy past the signer
        sealed = b.message((1,)).body
        assert old in sealed
        br.publish(Outgoing("tampered-copy", sealed.replace(old, new)))


@pytest.mark.parametrize("broker", BROKERS)
def test_tampered_and_unsigned_messages_are_dead_lettered_never_run(broker: str, tmp_path: Path,
                                                                      unique_queue: str) -> None:
    ran: list[int] = []
    lock = threading.Lock()

    @boost(unique_queue, signing_key="k-new,k-old", workers=2, **_params(broker, tmp_path))
    def work(n: int) -> None:
        with lock:
            ran.append(n)

    work.purge()
    try:
        if broker != "rabbitmq":
            work.push(1)  # rewritten in place below: 1 -> 9
        work.broker.publish(Outgoing("unsigned-1", Envelope(unique_queue, [7]).encode()))  # no signature
        other = sign_envelope(Signer(["not-our-key"]), Envelope(unique_queue, [8]).encode())
        work.broker.publish(Outgoing("foreign-key", other))
        _tamper_in_broker(broker, work, b'"args":[1]', b'"args":[9]')
        old_key = sign_envelope(Signer(["k-old"]), Envelope(unique_queue, [5]).encode())
        work.broker.publish(Outgoing("old-key", old_key))  # rotation: still accepted
        work.push(2)
        work.consume()
        assert wait_until(lambda: sorted(ran) == [2, 5] and len(work.dead_letters()) == 3, 30), \
            (ran, work.dead_letters())
        reasons = sorted(d.reason for d in work.dead_letters())
        assert reasons == ["bad signature", "bad signature", "unsigned message"], reasons
        time.sleep(0.3)  # nothing else turns up late
        assert sorted(ran) == [2, 5]
    finally:
        work.stop()
        work.purge()


def test_producer_signs_with_the_first_key_and_body_is_plain_json(tmp_path: Path, unique_queue: str) -> None:
    @boost(unique_queue, signing_key=("new", "old"), data_dir=str(tmp_path))
    def f(x: int) -> None: ...

    body = f.message((3,)).body
    assert body.startswith(b'{"sig":"')
    canonical = open_envelope(Signer(["new"]), body)  # signed with the first key only
    with pytest.raises(ValueError, match="bad signature"):
        open_envelope(Signer(["old"]), body)
    assert decode(canonical, unique_queue).args == [3]
    assert decode(body, unique_queue).args == [3]  # still one JSON object ("sig" is an extra member)
    assert "new" not in repr(f.params) and "old" not in repr(f.params)


def test_retry_copy_is_signed_again(tmp_path: Path, unique_queue: str) -> None:
    from boostkernel import Retry

    attempts: list[int] = []

    @boost(unique_queue, signing_key="k", data_dir=str(tmp_path))
    def f() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise Retry()

    f.push()
    f.consume()
    try:
        assert wait_until(lambda: len(attempts) == 3, 20), attempts
        time.sleep(0.2)
        assert f.dead_letters() == []
    finally:
        f.stop()


def test_off_costs_nothing_and_key_from_environment(tmp_path: Path, unique_queue: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from boostkernel.consumer import Consumer

    @boost(unique_queue, data_dir=str(tmp_path))
    def plain() -> None: ...

    assert plain.signer is None and Consumer(plain)._decode is decode
    assert not plain.message().body.startswith(b'{"sig"')

    monkeypatch.setenv("BOOSTKERNEL_SIGNING_KEY", "a, b")

    @boost(unique_queue + "_env", data_dir=str(tmp_path))
    def signed() -> None: ...

    open_envelope(Signer(["a"]), signed.message().body)
    with pytest.raises(ConfigError, match="signing_key"):
        boost(unique_queue + "_empty", signing_key=" , ", data_dir=str(tmp_path))(lambda: None)


# --- caps on per-message overrides --------------------------------------------------------------------


def test_per_message_overrides_above_the_cap_fail_at_publish(tmp_path: Path, unique_queue: str) -> None:
    @boost(unique_queue, max_retries=1, max_retries_cap=3, timeout=1.0, timeout_cap=5.0, data_dir=str(tmp_path))
    def f() -> None: ...

    f.publish({}, TaskOptions(max_retries=3, timeout=5.0))  # at the caps: fine
    with pytest.raises(ConfigError, match="exceeds max_retries_cap=3"):
        f.publish({}, TaskOptions(max_retries=4))
    with pytest.raises(ConfigError, match="exceeds timeout_cap=5.0"):
        f.publish({}, TaskOptions(overrides={"timeout": 60.0}))
    with pytest.raises(ConfigError, match="max_retries_cap=0: must be an integer >= max_retries"):
        boost(unique_queue + "_bad", max_retries=2, max_retries_cap=0, data_dir=str(tmp_path))(lambda: None)
    f.purge()


def test_a_foreign_message_cannot_raise_its_own_limits(tmp_path: Path, unique_queue: str) -> None:
    runs: list[int] = []

    @boost(unique_queue, max_retries=1, max_retries_cap=1, timeout=0.3, timeout_cap=0.5, data_dir=str(tmp_path))
    def f(n: int) -> None:
        runs.append(n)
        if n == 1:
            raise ConnectionError("always")
        time.sleep(5)  # n == 2: asks for 60 s, stopped at the 0.5 s cap

    # Written by another producer, past publish-time checks: asks for 50 retries and a 60 s timeout.
    f.broker.publish(Outgoing("greedy-1", Envelope(unique_queue, [1], options={"max_retries": 50}).encode()))
    f.broker.publish(Outgoing("greedy-2", Envelope(unique_queue, [2], options={"timeout": 60}).encode()))
    start = time.monotonic()
    f.consume()
    try:
        assert wait_until(lambda: len(f.dead_letters()) == 2, 20), f.dead_letters()
        assert runs.count(1) == 2, runs  # the first run + max_retries_cap (1) retry, not 50
        assert time.monotonic() - start < 4.0  # the 60 s timeout was clamped
    finally:
        f.stop()


def test_framework_broker_refuses_the_key_without_showing_it(unique_queue: str) -> None:
    require_broker("huey")
    with pytest.raises(ConfigError, match=r"signing_key=\*\*\* cannot be honoured") as err:
        boost(unique_queue, broker="huey", signing_key="topsecret")(lambda: None)
    assert "topsecret" not in str(err.value)


def test_open_envelope_edge_cases() -> None:
    s = Signer(["k"])
    body = Envelope("q", [1]).encode()
    sealed = sign_envelope(s, body)
    assert open_envelope(s, sealed) == body
    assert open_envelope(s, sealed.decode()) == body  # brokers that hand back text
    for bad, reason in [(body, "unsigned message"), (b"", "unsigned message"), (b'{"sig":"zz"}', "unsigned message"),
                        (b'{"sig":"' + b"g" * 64 + b'",' + body[1:], "bad signature"),
                        (sealed.replace(b'"args":[1]', b'"args":[2]'), "bad signature"),
                        (sealed[:-1], "bad signature")]:
        with pytest.raises(ValueError, match=reason):
            open_envelope(s, bad)
