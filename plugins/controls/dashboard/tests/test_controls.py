"""The dashboard's controls: monitor (store records), metrics (a worker's Prometheus endpoint), tracing
(OpenTelemetry spans linked from publish to run, within one process and across two)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from boostkernel import Booster
from boostkernel.testing.control_contract import ControlContract
from boostkernel.testing.helpers import wait_until


class TestMonitor(ControlContract):
    control = "monitor"
    on_params = {"monitor": True, "monitor_interval": 0.2}
    invalid_params = [{"monitor": True, "monitor_interval": 0}, {"monitor": True, "monitor_interval": -1}]

    def test_reports_worker_and_counters_to_the_store(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        from boostkernel_dashboard.monitor import published_key
        from boostkernel_dashboard.sampler import monitor_records

        def task(i: int) -> int:
            if i % 3 == 0:
                raise ValueError("every third fails")
            return i

        b = make_booster(task, monitor=True, monitor_interval=0.2)
        b.push_many([(i,) for i in range(9)])
        for i in range(3):
            b.push(i + 100)
        b.consume()

        def done() -> bool:
            recs = monitor_records(b)
            return bool(recs) and sum(recs[0]["outcomes"].values()) == 12

        assert wait_until(done, 20)
        rec = monitor_records(b)[0]
        assert rec["pid"] == os.getpid() and rec["concurrency"] == b.params.concurrency
        assert rec["outcomes"].get("failure") == 3 + 1 and rec["outcomes"].get("success") == 8
        assert sum(rec["buckets"]) == 12 and rec["duration_sum"] >= 0 and rec["running"] == 0
        # publishes are counted by the publishing process (push_many goes through on_publish too)
        assert wait_until(lambda: (b.store.get(published_key(b.queue)) or 0) == 12, 10)
        b.stop()
        assert monitor_records(b) == []  # a stopped worker removes its record


def _metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


class TestMetrics(ControlContract):
    control = "metrics"
    on_params = {"metrics_port": 0}
    invalid_params = [{"metrics_port": -1}, {"metrics_port": 70000}, {"metrics_port": "9100"}]
    brokers = ("sqlite",)

    def test_worker_serves_prometheus_metrics(self, make_booster: Callable[..., Booster[Any, Any]]) -> None:
        from boostkernel_dashboard.metrics import server_port

        def task(i: int) -> int:
            if i < 0:
                raise ValueError("negative")
            return i

        b = make_booster(task, metrics_port=0)
        b.push_many([(i,) for i in range(5)] + [(-1,)])
        b.consume()
        port = server_port("127.0.0.1", 0)
        assert port

        def value(name: str, **labels: str) -> float:
            for fam in text_string_to_metric_families(_metrics_text(port)):
                for s in fam.samples:
                    if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                        return float(s.value)
            return -1.0

        assert wait_until(lambda: value("boostkernel_tasks_total", queue=b.queue, outcome="success") == 5, 10)
        assert wait_until(lambda: value("boostkernel_tasks_total", queue=b.queue, outcome="failure") == 1, 10)
        assert value("boostkernel_task_duration_seconds_count", queue=b.queue) == 6
        assert value("boostkernel_tasks_in_flight", queue=b.queue) == 0
        assert value("boostkernel_queue_depth", queue=b.queue) == 0
        assert wait_until(lambda: value("boostkernel_dead_letters", queue=b.queue) == 1, 10)


# --- tracing ------------------------------------------------------------------------------------
_exporter: Any = None


@pytest.fixture
def spans() -> Iterator[Any]:
    """The in-memory span exporter of this process's (one, global) tracer provider, emptied per test."""
    global _exporter
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if _exporter is None:
        _exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


class TestTracing(ControlContract):
    control = "tracing"
    on_params = {"tracing": True}
    brokers = ("sqlite",)

    def test_publish_and_run_spans_are_linked(self, make_booster: Callable[..., Booster[Any, Any]], spans: Any
                                              ) -> None:
        b = make_booster(lambda x: x * 2, tracing=True, results=True)
        r = b.push(21)
        b.consume()
        assert r.get(10) == 42
        assert wait_until(lambda: any(s.name == f"run {b.queue}" for s in spans.get_finished_spans()), 10)
        by_name = {s.name: s for s in spans.get_finished_spans()}
        pub, run = by_name[f"publish {b.queue}"], by_name[f"run {b.queue}"]
        assert run.context.trace_id == pub.context.trace_id
        assert run.parent is not None and run.parent.span_id == pub.context.span_id
        assert [link.context.span_id for link in run.links] == [pub.context.span_id]
        assert run.attributes["messaging.message.id"] == r.task_id

    def test_one_trace_spans_producer_and_consumer_processes(
            self, make_booster: Callable[..., Booster[Any, Any]], spans: Any, tmp_path: Path) -> None:
        b = make_booster(lambda x: x, tracing=True, results=True)
        out = tmp_path / "spans.json"
        script = tmp_path / "consumer.py"
        script.write_text(textwrap.dedent(f"""
            import json, sys, time
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            from boostkernel import boost

            @boost({b.queue!r}, broker="sqlite", broker_url={b.params.broker_url!r}, tracing=True, results=True)
            def traced(x):
                return x

            traced.consume()
            deadline = time.time() + 30
            while time.time() < deadline and not any(s.name.startswith("run ") for s in exporter.get_finished_spans()):
                time.sleep(0.02)
            traced.stop()
            json.dump([{{"name": s.name, "trace_id": s.context.trace_id, "span_id": s.context.span_id,
                        "parent": s.parent.span_id if s.parent else None,
                        "links": [link.context.span_id for link in s.links]}}
                       for s in exporter.get_finished_spans()], open({str(out)!r}, "w"))
        """))
        r = b.push(7)
        pub = next(s for s in spans.get_finished_spans() if s.name == f"publish {b.queue}")
        env = {**os.environ, "BOOSTKERNEL_DATA_DIR": os.environ.get("BOOSTKERNEL_DATA_DIR", str(tmp_path))}
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert r.get(10) == 7
        got = json.loads(out.read_text())
        run = next(s for s in got if s["name"] == f"run {b.queue}")
        assert run["trace_id"] == pub.context.trace_id
        assert run["parent"] == pub.context.span_id and run["links"] == [pub.context.span_id]


def test_controls_off_cost_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without their options none of the three controls is in a booster's chain."""
    from boostkernel import boost

    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    b = boost(f"dash_off_{time.monotonic_ns()}", broker="memory")(lambda: None)
    assert not {c.name for c in b.make_controls()} & {"monitor", "metrics", "tracing"}
