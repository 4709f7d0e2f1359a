"""The dashboard in a real browser: headless Chromium from Debian's packages (``.ci/services.d/chromium.sh``),
driven by Playwright with its executable path set (never ``playwright install``).

Set ``BOOSTKERNEL_DASHBOARD_SCREENSHOTS=docs/images`` to write a screenshot of each page there.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boostkernel.testing.helpers import wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = os.environ.get("BOOSTKERNEL_DASHBOARD_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        msg = f"{CHROMIUM} is not installed (apt-get install -y -q chromium chromium-driver; .ci/services.d/chromium.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set: browser tests must run)", pytrace=False)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 760})
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    try:
        yield pg
    finally:
        ctx.close()


def shot(page: Any, name: str, full_page: bool = False) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"dashboard-{name}.png"), full_page=full_page)


def greet(name: str) -> str:
    time.sleep(0.02)
    if name == "nobody":
        raise LookupError("nobody to greet")
    return f"hello {name}"


@pytest.mark.serial  # "within 2 s": bounded in time, run alone
def test_pages_load_and_a_pushed_task_appears_with_its_result_within_2s(
        make_booster: Any, serve: Any, page: Any) -> None:
    b = make_booster(greet)
    b.consume()
    for r in [b.push("ann"), b.push("bo"), b.push("nobody")]:
        r.record(10)
    s = serve([b])
    page.goto(s.url + "/")
    row = page.locator(f'#queues tr[data-queue="{b.queue}"]')
    row.wait_for()
    assert row.locator("td.depth").inner_text() == "0"
    for path, sel in (("/workers", "#workers tr[data-worker]"), ("/charts", "#charts .chart canvas"),
                      ("/actions", "#publish")):
        page.goto(s.url + path)
        page.locator(sel).first.wait_for()
    page.goto(s.url + "/tasks")
    page.locator("#tasks tr[data-task]").first.wait_for()
    # a task pushed now shows up, with its result, without a reload, within 2 s
    t0 = time.monotonic()
    r = b.push("zoe")
    cell = page.locator(f'#tasks tr[data-task="{r.task_id}"][data-status="success"] td.result')
    cell.wait_for(timeout=2000)
    assert "hello zoe" in cell.inner_text()
    assert time.monotonic() - t0 <= 2.0
    page.locator(f'#tasks tr[data-task="{r.task_id}"] a').click()
    page.locator("#task-result").wait_for()
    assert "hello zoe" in page.locator("#task-result").inner_text()


@pytest.mark.serial  # no task may start in the 1.5 s after the pause: bounded in time, run alone
def test_pausing_a_queue_from_the_page_stops_its_worker(make_booster: Any, serve: Any, page: Any) -> None:
    ran: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            ran.append(i)
        return i

    b = make_booster(work)
    b.consume()
    assert b.push(0).get(10) == 0
    s = serve([b])
    page.goto(s.url + "/")
    row = page.locator(f'#queues tr[data-queue="{b.queue}"]')
    row.locator('button[data-act="pause"]').click()
    row.locator("td.paused", has_text="paused").wait_for()
    assert b.is_paused()
    time.sleep(0.5)  # the worker reads the flag every 0.1 s (pause_poll_interval)
    b.push_many([(i,) for i in range(1, 6)])
    time.sleep(1.5)
    assert ran == [0], "a paused worker ran new tasks"  # (it may hold a prefetched few, not run them)
    row.locator('button[data-act="resume"]').click()
    assert wait_until(lambda: len(ran) == 6, 10)


def test_without_the_token_beyond_loopback_requests_are_refused(make_booster: Any, serve: Any, page: Any) -> None:
    b = make_booster(greet)
    s = serve([b], host="0.0.0.0", token="tok-123", read_token="peek-456")
    base = f"http://127.0.0.1:{s.port}"
    resp = page.request.get(base + "/api/queues")
    assert resp.status == 401
    page.goto(base + "/tasks")
    assert page.url.startswith(base + "/login")
    page.fill("#token", "wrong")
    page.click("#login")
    page.locator("#login-error").wait_for()
    page.fill("#token", "tok-123")
    page.click("#login")
    page.wait_for_url(base + "/tasks")
    assert page.request.get(base + "/api/queues").status == 200  # the cookie now authenticates


def test_screenshots_of_each_page(make_booster: Any, serve: Any, page: Any) -> None:
    """Drives every page with some traffic (and writes screenshots when asked)."""
    b = make_booster(greet, queue="emails")
    other = make_booster(greet, queue="reports")
    b.consume()
    other.consume()
    b.schedule(interval=300, args=("digest",))
    s = serve([b, other])
    page.goto(s.url + "/charts")
    for i in range(40):
        b.push("nobody" if i % 9 == 0 else f"user{i}")
        other.push(f"r{i}")
        time.sleep(0.05)
    assert wait_until(lambda: b.count() == 0 and other.count() == 0, 10)
    page.locator("#charts .chart canvas").first.wait_for()
    time.sleep(1.0)
    shot(page, "charts", full_page=True)
    for path, name, sel in (("/", "queues", "#queues tr[data-queue]"), ("/workers", "workers", "#workers tr[data-worker]"),
                            ("/tasks", "tasks", "#tasks tr[data-task]"), ("/actions", "actions", "#schedules tr[data-id]")):
        page.goto(s.url + path)
        page.locator(sel).first.wait_for()
        if name == "actions":
            page.fill("#p-kwargs", '{"name": "ana"}')
            page.click("#publish button[type=submit]")
            page.locator("#publish-result", has_text="record").wait_for()
        shot(page, name, full_page=name == "actions")
    page.goto(s.url + "/tasks?status=failure")
    page.locator('#tasks tr[data-status="failure"] a').first.click()
    page.locator("#task-traceback").wait_for()
    shot(page, "task")
