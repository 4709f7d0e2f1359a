"""A per-message option whose control is off on the booster fails at publish with the fix (issue 13).

Before, ``TaskOptions(timeout=...)`` and ``TaskOptions(max_retries=...)`` on a booster without ``timeout`` /
``max_retries`` were silently ignored (the task ran to the end; it failed after one attempt). docs/index.md
lists which option needs which control.
"""

from __future__ import annotations

import uuid

import pytest

from boostkernel import ConfigError, TaskOptions, boost


def _booster(**params: object):  # type: ignore[no-untyped-def]
    @boost(f"opts_{uuid.uuid4().hex[:8]}", broker="memory", **params)  # type: ignore[call-overload]
    def f(x: int) -> int:
        return x

    return f


@pytest.mark.parametrize(("option", "fix"), [
    ({"timeout": 0.5}, "timeout=60"),
    ({"max_retries": 2}, "max_retries=3"),
    ({"expires": 5.0}, "expires=3600"),
    ({"dedup_key": "k"}, "dedup=True"),
])
def test_option_without_its_control_fails_with_the_fix(option: dict[str, object], fix: str) -> None:
    f = _booster()
    with pytest.raises(ConfigError, match=f"which is off.*{fix}"):
        f.publish({"x": 1}, TaskOptions(**option))  # type: ignore[arg-type]


def test_option_with_its_control_on_is_accepted() -> None:
    f = _booster(timeout=10, max_retries=1, expires=60, dedup=True)
    for option in ({"timeout": 0.5}, {"max_retries": 2}, {"expires": 5.0}, {"dedup_key": "k"}):
        f.publish({"x": 1}, TaskOptions(**option))  # type: ignore[arg-type]
    assert f.count() == 4


def test_zero_retries_needs_no_control() -> None:
    _booster().publish({"x": 1}, TaskOptions(max_retries=0))


@pytest.mark.service("redis")
def test_a_framework_broker_handles_its_own_options() -> None:
    pytest.importorskip("boostkernel_dramatiq")
    q = f"opts_fw_{uuid.uuid4().hex[:8]}"

    @boost(q, broker="dramatiq", broker_url="redis://127.0.0.1:6379/13", expires=60)
    def g(x: int) -> int:
        return x

    try:
        g.publish({"x": 1}, TaskOptions(expires=5))  # dramatiq drops expired messages itself: accepted
        with pytest.raises(ConfigError, match="timeout=60"):
            g.publish({"x": 1}, TaskOptions(timeout=1))  # not switched on: refused
    finally:
        g.purge()


def test_fields_and_overrides_follow_one_rule() -> None:
    """``TaskOptions(timeout=...)`` and ``TaskOptions(overrides={"timeout": ...})`` are checked alike: by the
    option its control declares (type, control on), not by a list of their own."""
    off = _booster()
    for options in (TaskOptions(timeout=0.5), TaskOptions(overrides={"timeout": 0.5})):
        with pytest.raises(ConfigError, match="needs the 'timeout' control on queue .* which is off.*timeout="):
            off.publish({"x": 1}, options)
    off.publish({"x": 1}, TaskOptions(overrides={"max_retries": 0}))  # the option's default: nothing to ignore
    on = _booster(timeout=10)
    with pytest.raises(ConfigError, match="must be float"):
        on.publish({"x": 1}, TaskOptions(timeout="soon"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be float"):
        on.publish({"x": 1}, TaskOptions(overrides={"timeout": "soon"}))
    on.publish({"x": 1}, TaskOptions(timeout=0.5))
    on.publish({"x": 1}, TaskOptions(overrides={"timeout": 0.5}))
    assert on.count() == 2
