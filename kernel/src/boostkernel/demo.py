"""``boostkernel demo``: publish, consume and time 10,000 tasks on the embedded default."""

from __future__ import annotations

import tempfile
import time
from typing import Any


def run_demo(n: int = 10_000, broker: str = "sqlite", workers: int = 16) -> None:
    import os

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .booster import boost

    console = Console()
    data_dir = tempfile.mkdtemp(prefix="boostkernel-demo-")
    os.environ.setdefault("BOOSTKERNEL_DATA_DIR", data_dir)

    @boost("demo_square", broker=broker, workers=workers, results=True, data_dir=data_dir)
    def square(x: int) -> int:
        return x * x

    square.purge()
    console.print(f"[bold]boostkernel demo[/bold]: {n:,} tasks on broker [cyan]{broker}[/cyan] "
                  f"(data in {data_dir}), {workers} threads")
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    results = []
    with Progress(*cols, console=console) as progress:
        task = progress.add_task("publishing", total=n)
        t0 = time.perf_counter()
        for start in range(0, n, 500):
            batch = [(i,) for i in range(start, min(n, start + 500))]
            results.extend(square.push_many(batch))
            progress.update(task, advance=len(batch))
        publish_s = time.perf_counter() - t0

        task2 = progress.add_task("consuming", total=n)
        t1 = time.perf_counter()
        square.consume()
        left = n
        while left > 0:
            consumer_broker: Any = square._consumer.broker if square._consumer else None
            in_flight = getattr(consumer_broker, "in_flight", None)
            left = square.count() + (in_flight() if in_flight else 0)
            progress.update(task2, completed=n - left)
            time.sleep(0.1)
        last = results[-1].get(timeout=60)
        consume_s = time.perf_counter() - t1
        progress.update(task2, completed=n)
    square.stop()
    console.print(f"published {n:,} in {publish_s:.2f}s = [green]{n / publish_s:,.0f}/s[/green]; "
                  f"consumed in {consume_s:.2f}s = [green]{n / consume_s:,.0f}/s[/green]")
    for r in results[:3] + results[-2:]:
        console.print(f"  task {r.task_id}: square -> {r.get(timeout=10)}")
    assert last == (n - 1) ** 2
