"""One example module for every framework broker: it names no broker.

Choose the framework and its transport from the environment, nothing else changes::

    BOOSTKERNEL_BROKER=celery   BOOSTKERNEL_BROKER_URL=redis://127.0.0.1:6379/13 python -m examples.frameworks.run
    BOOSTKERNEL_BROKER=dramatiq BOOSTKERNEL_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/ python -m examples.frameworks.run

(``@boost(..., broker="celery", broker_url=...)`` in code does the same.)
"""

from __future__ import annotations

from boostkernel import boost, current_task


@boost("fw_example_add", results=True)
def add(x: int, y: int) -> int:
    return x + y


@boost("fw_example_flaky", results=True, max_retries=2)
def flaky(fail_times: int) -> int:
    """Fails ``fail_times`` times, then returns the attempt number that succeeded."""
    ctx = current_task()
    attempt = ctx.attempt if ctx else 0
    if attempt < fail_times:
        raise ConnectionError(f"attempt {attempt} failed on purpose")
    return attempt


@boost("fw_example_fail", results=True)
def fail(message: str) -> None:
    raise ValueError(message)




@boost("fw_example_slow", results=True)
def slow(marker: str, seconds: float) -> str:
    """Writes ``marker`` when it starts (the kill test watches it), then works for ``seconds``."""
    import os
    import time
    from pathlib import Path

    Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "done"


ALL = (add, flaky, fail, slow)
