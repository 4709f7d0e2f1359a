"""chain, group and chord on real brokers: SQLite (embedded), Redis and RabbitMQ (real servers)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from boostkernel_workflow import ChainResult, ChordResult, GroupResult, Signature, chain, chord, group, sig

from boostkernel import Booster, ConfigError, TaskFailed
from boostkernel.message import uuid7
from boostkernel.testing.control_contract import ControlContract
from boostkernel.testing.helpers import wait_until

Make = Callable[..., Booster[Any, Any]]
ON = {"results": True, "workflow": True}


class Runs:
    """Counts calls per key, from the worker threads."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def hit(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1


class TestWorkflow(ControlContract):
    control = "workflow"
    on_params = ON
    invalid_params = [{"workflow": True}]  # without results=True
    brokers = ("sqlite", "redis", "rabbitmq")

    # --- chain ------------------------------------------------------------------------------------
    def test_chain_passes_each_result_to_the_next_step(self, make_booster: Make) -> None:
        add = make_booster(lambda x, y: x + y, **ON).consume()
        mul = make_booster(lambda x, k: x * k, **ON).consume()
        show = make_booster(lambda x, prefix="=": f"{prefix}{x}", results=True).consume()
        r = chain(add.s(1, 2), mul.s(10), show.s(prefix="total=")).push()
        assert isinstance(r, ChainResult)
        assert r.get(30) == "total=30"
        assert [s.get(5) for s in r.steps] == [3, 30, "total=30"]
        assert (add.s(2, 2) | mul.s(5) | mul.s(2)).push().get(30) == 40  # the | operator

    def test_chain_stops_at_the_failing_step(self, make_booster: Make) -> None:
        runs = Runs()

        def check(x: int) -> int:
            runs.hit("check")
            if x > 10:
                raise ValueError(f"{x} is too large")
            return x

        def never(x: int) -> int:
            runs.hit("never")
            return x

        add = make_booster(lambda x, y: x + y, **ON).consume()
        chk = make_booster(check, **ON).consume()
        last = make_booster(never, results=True).consume()
        r = chain(add.s(5, 6), chk.s(), last.s()).push()
        with pytest.raises(TaskFailed) as info:
            r.get(30)
        assert info.value.exc_type == "ValueError" and info.value.remote_message == "11 is too large"
        rec = r.record()
        assert rec is not None and rec["status"] == "failure" and rec["failed_member"] == r.steps[1].task_id
        assert runs.counts == {"check": 1}  # the step after the failure never ran
        assert last.count() == 0

    # --- group --------------------------------------------------------------------------------------
    def test_group_gathers_results_in_order(self, make_booster: Make) -> None:
        sq = make_booster(lambda x: x * x, results=True).consume()
        r = group(sq.s(i) for i in range(8)).push()
        assert isinstance(r, GroupResult) and len(r) == 8
        assert r.get(30) == [i * i for i in range(8)]
        assert r.ready()

    # --- chord --------------------------------------------------------------------------------------
    def test_chord_calls_back_once_with_every_result(self, make_booster: Make) -> None:
        runs = Runs()

        def total(values: list[int], bonus: int = 0) -> int:
            runs.hit("total")
            return sum(values) + bonus

        sq = make_booster(lambda x: x * x, **ON).consume()
        cb = make_booster(total, results=True).consume()
        r = chord(group(sq.s(i) for i in range(10)), cb.s(bonus=1)).push()
        assert isinstance(r, ChordResult)
        assert r.get(30) == sum(i * i for i in range(10)) + 1
        assert r.members.get(5) == [i * i for i in range(10)]
        assert (group(sq.s(2), sq.s(3)) | cb.s()).push().get(30) == 13  # group | signature is a chord
        assert runs.counts == {"total": 2}

    def test_a_failed_member_fails_the_chord_with_its_error(self, make_booster: Make) -> None:
        runs = Runs()

        def member(x: int) -> int:
            if x == 3:
                raise KeyError(f"no item {x}")
            return x

        def total(values: list[int]) -> int:
            runs.hit("total")
            return sum(values)

        m = make_booster(member, **ON).consume()
        cb = make_booster(total, results=True).consume()
        r = chord([m.s(i) for i in range(5)], cb.s()).push()
        with pytest.raises(TaskFailed) as info:
            r.get(30)
        assert info.value.exc_type == "KeyError" and "no item 3" in info.value.remote_message
        assert r.members.get(10, return_exceptions=True)[:3] == [0, 1, 2]
        assert wait_until(lambda: all(x.ready() for x in r.members), 10)
        assert runs.counts == {}  # the callback never runs

    def test_a_member_retries_per_its_booster_before_failing_the_chord(self, make_booster: Make) -> None:
        attempts = Runs()

        def flaky(x: int) -> int:
            attempts.hit(str(x))
            if x == 1 and attempts.counts["1"] < 3:
                raise ConnectionError("try again")
            if x == 2:
                raise ConnectionError("always down")
            return x

        m = make_booster(flaky, max_retries=2, retry_backoff=0.01, **ON).consume()
        cb = make_booster(lambda values: sorted(values), results=True).consume()
        assert chord([m.s(0), m.s(1)], cb.s()).push().get(30) == [0, 1]  # x=1 succeeded on its 3rd attempt
        assert attempts.counts["1"] == 3
        r = chord([m.s(0), m.s(2)], cb.s()).push()
        with pytest.raises(TaskFailed, match="ConnectionError: always down"):
            r.get(30)
        assert attempts.counts["2"] == 3  # 1 + max_retries attempts, then the chord failed

    def test_a_member_retried_by_republishing_keeps_its_place_in_the_chord(self, make_booster: Make) -> None:
        attempts = Runs()

        def flaky(x: int) -> int:
            attempts.hit(str(x))
            if x == 1 and attempts.counts["1"] < 2:
                raise ConnectionError("try again")
            return x

        m = make_booster(flaky, max_retries=2, retry_mode="republish", **ON).consume()
        cb = make_booster(lambda values: values, results=True).consume()
        assert chord([m.s(0), m.s(1)], cb.s()).push().get(30) == [0, 1]
        assert attempts.counts == {"0": 1, "1": 2}


class TestWorkflowOnSqlite(ControlContract):
    """Redeliveries, configuration errors and the API: on the embedded default only."""

    control = "workflow"
    on_params = ON
    invalid_params = [{"workflow": True}]
    brokers = ("sqlite",)

    def test_redelivered_members_do_not_repeat_the_callback(self, make_booster: Make) -> None:
        """A member message delivered again after its move was made (as after a kill -9 between the
        callback's publication and the ack) counts again but publishes nothing: the claim is held."""
        runs = Runs()

        def member(x: int) -> int:
            runs.hit(f"m{x}")
            return x

        def total(values: list[int]) -> int:
            runs.hit("total")
            return sum(values)

        m = make_booster(member, **ON).consume()
        cb = make_booster(total, results=True).consume()
        wid, cb_id, ids = uuid7(), uuid7(), [uuid7(), uuid7()]
        callback = cb.s()
        for i, tid in enumerate(ids):
            m.s(i + 1)._publish(tid, (), {"w": wid, "k": "chord", "i": i, "n": 2, "cb": callback._wire(cb_id)})
        assert cb.result(cb_id).get(30) == 3
        for _ in range(2):  # the same member message twice more
            m.s(2)._publish(ids[1], (), {"w": wid, "k": "chord", "i": 1, "n": 2, "cb": callback._wire(cb_id)})
        assert wait_until(lambda: runs.counts["m2"] == 3, 15)
        assert wait_until(lambda: m.count() == 0 and cb.count() == 0, 10)
        # the claim belongs to whichever member counted last (the two first deliveries run concurrently)
        assert m.store.get(f"wf:{wid}:n") == 4 and m.store.get(f"wf:{wid}:cb") in ids
        assert runs.counts["total"] == 1 and cb.result(cb_id).get(1) == 3

    def test_a_redelivered_chain_step_does_not_publish_the_next_twice(self, make_booster: Make) -> None:
        runs = Runs()

        def step2(x: int) -> int:
            runs.hit("step2")
            return x + 1

        s1 = make_booster(lambda x: x * 2, **ON).consume()
        s2 = make_booster(step2, results=True).consume()
        wid, ids = uuid7(), [uuid7(), uuid7()]
        meta = {"w": wid, "k": "chain", "rest": [s2.s()._wire(ids[1])], "last": {"q": s2.queue, "id": ids[1]}}
        s1.s(5)._publish(ids[0], (), meta)
        assert s2.result(ids[1]).get(30) == 11
        s1.s(5)._publish(ids[0], (), meta)  # step 1 again, same task id (a redelivery)
        assert wait_until(lambda: s1.count() == 0, 10)
        assert s1.result(ids[0]).get(10) == 10
        assert wait_until(lambda: s2.count() == 0, 5) and runs.counts == {"step2": 1}

    def test_boosters_without_what_a_workflow_needs_fail_with_the_fix(self, make_booster: Make) -> None:
        plain = make_booster(lambda x: x)
        kept = make_booster(lambda x: x, results=True)
        member = make_booster(lambda x: x, **ON)
        with pytest.raises(ConfigError, match=r"needs results=True and workflow=True .*results=True, workflow=True"):
            chain(plain.s(1), kept.s())
        with pytest.raises(ConfigError, match=r"step 1 of a chain, which needs workflow=True"):
            chain(kept.s(1), kept.s())
        with pytest.raises(ConfigError, match=r"last step of a chain, which needs results=True"):
            chain(member.s(1), plain.s())
        with pytest.raises(ConfigError, match=r"member 1 of a group, which needs results=True"):
            group(plain.s(1))
        with pytest.raises(ConfigError, match=r"member 1 of a chord, which needs .*workflow=True"):
            chord([kept.s(1)], kept.s())
        with pytest.raises(ConfigError, match=r"callback, which needs results=True"):
            chord([member.s(1)], plain.s())
        with pytest.raises(ConfigError, match=r"workflow=True on queue .* results=True, workflow=True"):
            make_booster(lambda x: x, workflow=True)

    def test_arguments_that_cannot_fit_fail_when_the_workflow_is_built(self, make_booster: Make) -> None:
        one = make_booster(lambda x: x, **ON)
        with pytest.raises(TypeError, match=r"after the previous step's result"):
            chain(one.s(1), one.s(2))  # the second step would get (result, 2)
        with pytest.raises(TypeError, match="does not fit"):
            group(one.s())
        assert len(chain(one.s(1), one.si(2)).steps) == 2  # an immutable step takes no result

    def test_signatures_are_immutable_values(self, make_booster: Make) -> None:
        f = make_booster(lambda x, y=0: x + y, **ON)
        s = f.s(1, y=2)
        assert isinstance(s, Signature) and s == sig(f, 1, y=2) and hash(s) == hash(sig(f, 1, y=2))
        assert s.args == (1,) and dict(s.kwargs) == {"y": 2} and not s.immutable and f.si(1).immutable
        with pytest.raises(AttributeError):
            s.args = (2,)  # type: ignore[misc]
        with pytest.raises(TypeError):
            s.kwargs["y"] = 3  # type: ignore[index]
        assert repr(s) == f"{f.queue}.s(1, y=2)"

    def test_immutable_step_and_empty_chord(self, make_booster: Make) -> None:
        a = make_booster(lambda x: x + 1, **ON).consume()
        b = make_booster(lambda tag: f"tag:{tag}", results=True).consume()
        assert chain(a.s(1), b.si("fixed")).push().get(30) == "tag:fixed"
        cb = make_booster(lambda values: len(values), results=True).consume()
        assert chord([], cb.s()).push().get(30) == 0

    def test_a_step_whose_queue_has_no_booster_in_the_worker_fails_the_chain(self, make_booster: Make) -> None:
        from boostkernel.registry import REGISTRY

        a = make_booster(lambda x: x + 1, **ON)
        gone = make_booster(lambda x: x, results=True)
        r = chain(a.s(1), gone.s()).push()
        del REGISTRY[gone.queue]  # as if the worker had not imported the module that defines it
        try:
            a.consume()
            with pytest.raises(TaskFailed, match="has no booster in this worker process"):
                r.get(30)
        finally:
            REGISTRY[gone.queue] = gone

    def test_a_move_that_fails_for_a_passing_reason_requeues_the_member(self, make_booster: Make,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """The callback cannot be published (broker down): the member's message is not acknowledged but
        requeued, runs again, and this time the callback is published."""
        runs = Runs()

        def member(x: int) -> int:
            runs.hit(f"m{x}")
            return x

        m = make_booster(member, **ON).consume()
        cb = make_booster(lambda values: sum(values), results=True).consume()
        real = cb.publish
        failures: list[int] = []

        def flaky_publish(*args: Any, **kwargs: Any) -> Any:
            if not failures:
                failures.append(1)
                raise ConnectionError("broker unreachable")
            return real(*args, **kwargs)

        monkeypatch.setattr(cb, "publish", flaky_publish)
        r = chord([m.s(1), m.s(2)], cb.s()).push()
        assert r.get(30) == 3
        assert failures == [1] and sum(runs.counts.values()) == 3  # the member whose move failed ran twice
