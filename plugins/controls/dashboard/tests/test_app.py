"""The dashboard over HTTP: pages, API, live events, actions, access (tokens, CSRF, read-only), /metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
from boostkernel_dashboard.app import check_bind, create_app
from prometheus_client.parser import text_string_to_metric_families

from boostkernel import TaskOptions
from boostkernel.testing.helpers import wait_until


def add(x: int, y: int) -> int:
    return x + y


def test_pages_api_and_live_events_on_loopback(make_booster: Any, serve: Any, http: Any) -> None:
    b = make_booster(add)
    b.consume()
    r = b.push(2, 3)
    assert r.get(10) == 5
    s = serve([b])
    c = http(s.url)
    for path in ("/", "/workers", "/tasks", "/charts", "/actions", f"/tasks/{r.task_id}", "/static/uPlot.iife.min.js"):
        status, text, _ = c.get(path)
        assert status == 200, (path, text[:200])
    assert wait_until(lambda: json.loads(c.get("/api/workers")[1]), 10)
    workers = json.loads(c.get("/api/workers")[1])
    assert workers[0]["pid"] == os.getpid() and b.queue in workers[0]["queues"]
    assert workers[0]["concurrency"] == "threads" and workers[0]["workers"] == 4
    q = json.loads(c.get("/api/queues")[1])[0]
    assert q["queue"] == b.queue and q["depth"] == 0 and q["dlq"] == 0 and q["paused"] is False
    rec = json.loads(c.get(f"/api/tasks/{r.task_id}")[1])
    assert rec["result"] == 5 and rec["args"] == [2, 3] and rec["worker"] and rec["duration"] >= 0
    assert c.get("/api/tasks/nope")[0] == 404
    # server-sent events: the first message carries queues, workers and (asked for) task records
    with urllib.request.urlopen(f"{s.url}/events?tasks=1&queue={b.queue}", timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp:
            if line.startswith(b"data: "):
                data = json.loads(line[6:])
                break
    assert data["queues"][0]["queue"] == b.queue and data["tasks"][0]["task_id"] == r.task_id


def test_refuses_to_listen_beyond_loopback_without_a_token(make_booster: Any) -> None:
    b = make_booster(add)
    for host in ("0.0.0.0", "192.168.1.10", "::"):
        with pytest.raises(ValueError, match=r"beyond loopback\) without a token"):
            check_bind(host, None)
        with pytest.raises(ValueError):
            create_app([b], host=host)
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("0.0.0.0", "secret")
    env = {k: v for k, v in os.environ.items() if k != "BOOSTKERNEL_DASHBOARD_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "boostkernel", "dashboard", "-q", b.queue, "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1 and "without a token" in out.stderr, out.stderr


def test_tokens_csrf_and_read_only(make_booster: Any, serve: Any, http: Any) -> None:
    b = make_booster(add)
    s = serve([b], host="0.0.0.0", token="admin-secret", read_token="look-only")
    base = f"http://127.0.0.1:{s.port}"
    anon = http(base)
    status, _, hdrs = anon.get("/")
    assert status == 303 and hdrs["location"].startswith("/login")
    assert anon.get("/api/queues")[0] == 401
    assert anon.get("/metrics")[0] == 401  # beyond loopback /metrics needs the token too
    assert anon.get("/events")[0] == 401
    assert anon.post(f"/api/queues/{b.queue}/pause")[0] == 401
    assert anon.get("/api/queues", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert anon.get("/login")[0] == 200
    assert anon.request("POST", "/login", form={"token": "wrong"})[0] == 401
    # bearer: sees and acts; no CSRF token needed (browsers never add this header cross-site)
    bearer = {"Authorization": "Bearer admin-secret"}
    assert anon.get("/api/queues", headers=bearer)[0] == 200
    assert anon.get("/metrics", headers=bearer)[0] == 200
    assert anon.post(f"/api/queues/{b.queue}/pause", headers=bearer)[0] == 200
    assert b.is_paused()
    # the token entered once in the page: a cookie, then actions need the CSRF double submit
    admin = http(base)
    status, _, hdrs = admin.request("POST", "/login?next=/workers", form={"token": "admin-secret"})
    assert status == 303 and hdrs["location"] == "/workers" and "bk_dash_token" in admin.cookies
    assert admin.get("/")[0] == 200
    assert admin.post(f"/api/queues/{b.queue}/resume")[0] == 403  # no CSRF header
    assert admin.post(f"/api/queues/{b.queue}/resume", headers={"X-CSRF-Token": "forged"})[0] == 403
    csrf = admin.csrf_headers()
    evil = {**csrf, "Origin": "http://evil.example"}
    assert admin.post(f"/api/queues/{b.queue}/resume", headers=evil)[0] == 403
    assert b.is_paused()
    assert admin.post(f"/api/queues/{b.queue}/resume", headers=csrf)[0] == 200
    assert not b.is_paused()
    # read-only token: sees everything, acts on nothing
    reader = http(base)
    assert reader.request("POST", "/login", form={"token": "look-only"})[0] == 303
    assert reader.get("/")[0] == 200 and reader.get("/api/queues")[0] == 200
    status, text, _ = reader.post(f"/api/queues/{b.queue}/pause", headers=reader.csrf_headers())
    assert status == 403 and "read-only" in text
    assert reader.post(f"/api/queues/{b.queue}/pause", headers={"Authorization": "Bearer look-only"})[0] == 403
    assert not b.is_paused()
    # log out drops the cookie
    admin.post("/logout")
    assert admin.get("/")[0] == 303


def boom(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    time.sleep(0.01)
    return x * 10


def test_metrics_parse_and_count(make_booster: Any, serve: Any, http: Any) -> None:
    b = make_booster(boom)
    b.consume()
    rs = [b.push(i) for i in range(6)] + [b.push(-1)]
    for r in rs[:6]:
        assert r.get(10) is not None
    assert rs[6].record(10)["status"] == "failure"
    s = serve([b])
    c = http(s.url)

    def families() -> dict[str, Any]:
        return {f.name: f for f in text_string_to_metric_families(c.get("/metrics")[1])}

    def success_count() -> float:
        fams = families()
        fam = fams.get("boostkernel_tasks")
        return sum(x.value for x in fam.samples if x.labels.get("outcome") == "success") if fam else 0

    assert wait_until(lambda: success_count() == 6, 10)
    fams = families()
    assert {"boostkernel_tasks", "boostkernel_task_duration_seconds", "boostkernel_tasks_in_flight",
            "boostkernel_task_retries", "boostkernel_queue_depth", "boostkernel_dead_letters"} <= set(fams)
    failed = [x for x in fams["boostkernel_tasks"].samples if x.labels.get("outcome") == "failure"]
    assert failed and failed[0].value == 1
    counts = [x for x in fams["boostkernel_task_duration_seconds"].samples if x.name.endswith("_count")]
    assert counts[0].value == 7
    dlq = [x for x in fams["boostkernel_dead_letters"].samples]
    assert wait_until(lambda: [x.value for x in families()["boostkernel_dead_letters"].samples] == [1], 10), dlq


def echo(name: str, n: int = 0) -> str:
    if name == "bad":
        raise RuntimeError("bad name")
    return f"hello {name}"


def test_search_task_records(make_booster: Any, serve: Any, http: Any) -> None:
    b = make_booster(echo)
    other = make_booster(add)
    b.consume()
    other.consume()
    t0 = time.time()
    rs = [b.push("alice", 1), b.push("bob", 2), b.push("bad")]
    time.sleep(0.05)
    t1 = time.time()
    r4 = b.push("carol", 3)
    ro = other.push(1, 1)
    for r in (*rs, r4, ro):
        r.record(10)
    s = serve([b, other])
    c = http(s.url)

    def ids(query: str) -> list[str]:
        status, text, _ = c.get("/api/tasks?" + query)
        assert status == 200, text
        return [t["task_id"] for t in json.loads(text)]

    assert set(ids(f"queue={b.queue}")) == {r.task_id for r in (*rs, r4)}
    assert ids(f"queue={other.queue}") == [ro.task_id]
    assert ids("status=failure") == [rs[2].task_id]
    assert ids("text=BOB") == [rs[1].task_id]
    assert ids(f"task_id={r4.task_id[:20]}") == [r4.task_id]
    assert set(ids(f"since={t1}")) == {r4.task_id, ro.task_id}
    assert set(ids(f"queue={b.queue}&since={t0}&until={t1}")) == {r.task_id for r in rs}
    assert ids(f"queue={b.queue}&limit=2") == [r4.task_id, rs[2].task_id]  # newest first
    fail = json.loads(c.get(f"/api/tasks/{rs[2].task_id}")[1])
    assert fail["error"]["type"] == "RuntimeError" and "bad name" in fail["error"]["traceback"]
    page = c.get(f"/tasks/{rs[2].task_id}")[1]
    assert "RuntimeError" in page and "Traceback" in page


def slow(x: int) -> int:
    time.sleep(0.05)
    if x < 0:
        raise ValueError("to the dead-letter queue")
    return x


def test_actions(make_booster: Any, serve: Any, http: Any) -> None:
    b = make_booster(slow, cancellable=True)
    s = serve([b])
    c = http(s.url)
    h = c.csrf_headers()
    # purge: waiting messages are deleted
    b.push_many([(i,) for i in range(5)])
    status, text, _ = c.post(f"/api/queues/{b.queue}/purge", headers=h)
    assert status == 200 and json.loads(text)["purged"] == 5 and b.count() == 0
    # publish and wait for the result
    b.consume()
    status, text, _ = c.post("/api/publish", {"queue": b.queue, "args": [7], "wait": 10}, headers=h)
    out = json.loads(text)
    assert status == 200 and out["record"]["status"] == "success" and out["record"]["result"] == 7
    assert c.post("/api/publish", {"queue": "nope"}, headers=h)[0] == 404
    assert c.post("/api/publish", {"queue": b.queue, "kwargs": [1]}, headers=h)[0] == 400
    # replay the DLQ: a failed task lands there; replay chosen ids, then all
    r = b.push(-1)
    assert r.record(10)["status"] == "failure"
    assert wait_until(lambda: len(json.loads(c.get(f"/api/dlq/{b.queue}")[1])) == 1, 10)
    dl = json.loads(c.get(f"/api/dlq/{b.queue}")[1])[0]
    assert "to the dead-letter queue" in dl["reason"]
    status, text, _ = c.post(f"/api/queues/{b.queue}/replay", {"ids": [dl["id"]]}, headers=h)
    assert status == 200 and json.loads(text)["replayed"] == 1
    assert wait_until(lambda: len(json.loads(c.get(f"/api/dlq/{b.queue}")[1])) == 1, 10)  # failed again
    status, text, _ = c.post(f"/api/queues/{b.queue}/replay", headers=h)
    assert json.loads(text)["replayed"] == 1
    # cancel a task that is still waiting (countdown): it never runs
    pending = b.publish({"x": 1}, TaskOptions(countdown=1.0))
    status, text, _ = c.post(f"/api/tasks/{pending.task_id}/cancel", {"queue": b.queue}, headers=h)
    assert status == 200, text
    assert pending.record(10)["status"] == "revoked"


def tick(n: int) -> int:
    return n


def test_schedules_list_pause_and_run_now(make_booster: Any, serve: Any, http: Any) -> None:
    b = make_booster(tick)
    sid = b.schedule(interval=3600, args=(5,))
    s = serve([b])
    c = http(s.url)
    h = c.csrf_headers()
    rows = json.loads(c.get("/api/schedules")[1])
    assert [r["id"] for r in rows] == [sid] and rows[0]["args"] == [5]
    assert c.post(f"/api/schedules/{b.queue}/{sid}/pause", headers=h)[0] == 200
    assert json.loads(c.get("/api/schedules")[1])[0]["paused"] is True
    assert c.post(f"/api/schedules/{b.queue}/{sid}/resume", headers=h)[0] == 200
    assert "paused" not in json.loads(c.get("/api/schedules")[1])[0]
    assert c.post(f"/api/schedules/{b.queue}/nope/pause", headers=h)[0] == 404
    b.consume()
    status, text, _ = c.post(f"/api/schedules/{b.queue}/{sid}/run", headers=h)
    assert status == 200
    assert b.result(json.loads(text)["task_id"]).get(10) == 5
