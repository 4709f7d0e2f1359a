"""Static checks of the typed API, run by mypy (``uv run --no-sync mypy``; this folder is in its ``files``).

Each ``assert_type`` fails the mypy run if the inferred type differs; each ``type: ignore[code]`` fails it
(strict mode reports unused ignores) if the error it expects is not raised. Nothing here is executed.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from boostkernel_cancel.api import revoke as revoke_task
from boostkernel_pause.api import pause as pause_queue
from typing_extensions import assert_type

from boostkernel import AsyncResult, Booster, TaskOptions, boost


@boost("typing_add", broker="memory", qps=5, max_retries=3, timeout=30, dedup=True)
def add(x: int, y: int = 0) -> int:
    return x + y


@boost("typing_greet", results=True)
async def greet(name: str) -> str:
    return f"hello {name}"


assert isinstance(add, Booster)
assert_type(add(1, 2), int)  # a plain call runs the function

r = add.push(1, y=2)  # push shows the function's own parameters
assert_type(r, AsyncResult[int])
assert_type(r.get(timeout=5), int)
assert_type(add.publish({"x": 1}, TaskOptions(countdown=5)), AsyncResult[int])
assert_type(add.push_many([(1, 2)]), list[AsyncResult[int]])
assert_type(greet.push("ada"), AsyncResult[str])  # AsyncResult of what the coroutine returns
local = greet("ada")  # a local call of an async task is a coroutine
assert_type(local, Coroutine[Any, Any, str]).close()


async def awaiting() -> None:
    result: AsyncResult[str] = greet.push("ada")
    assert_type(await result, str)
    assert_type(await add.aio_push(1), AsyncResult[int])
    assert_type(await greet.push("ada").aget(), str)


add.push("one")  # type: ignore[arg-type]
add.push(1, z=3)  # type: ignore[call-arg]
greet.push(3)  # type: ignore[arg-type]

# Booster methods of the in-tree control plugins (registry.add_booster_method): declared for type checkers
# by boostkernel.methods.PluginMethods, served at run time by Booster.__getattr__.
assert_type(add.pause(), None)
assert_type(add.resume(), None)
assert_type(add.is_paused(), bool)
assert_type(add.revoke(r.task_id), None)
assert_type(greet.revoke("some-id", ttl=60.0), None)
assert_type(add.schedule(cron="*/5 * * * *", args=(1,), kwargs={"y": 2}), str)
assert_type(add.schedule(interval=30), str)
assert_type(add.unschedule("nightly"), bool)
assert_type(add.schedules(), list[dict[str, Any]])
add.revoke()  # type: ignore[call-arg]
add.revoke(42)  # type: ignore[arg-type]
add.schedule("*/5 * * * *")  # type: ignore[call-arg]
add.schedule(cron=5)  # type: ignore[arg-type]
add.pause(True)  # type: ignore[call-arg]
paused: str = add.is_paused()  # type: ignore[assignment]

# The same functions, typed, called directly (the way a third-party plugin's methods are typed).
assert_type(pause_queue(add), None)
assert_type(revoke_task(greet, "some-id"), None)
pause_queue("typing_add")  # type: ignore[arg-type]

# boostkernel-workflow: signatures and the results of chain / group / chord.
from boostkernel_workflow import ChainResult, ChordResult, GroupResult, Signature, chain, chord, group  # noqa: E402

assert_type(add.s(1, y=2), Signature)
assert_type(add.si(1), Signature)
assert_type(chain(add.s(1), add.s()).push(), ChainResult)
assert_type((add.s(1) | add.s()).push().get(5), Any)
assert_type(group(add.s(1), add.s(2)).push(), GroupResult)
assert_type(group(add.s(1), add.s(2)).push().get(5), list[Any])
assert_type(chord(group(add.s(1)), add.s()).push(), ChordResult)
