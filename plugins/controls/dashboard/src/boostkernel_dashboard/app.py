"""The dashboard's Starlette application: pages, JSON API, server-sent events, actions and ``/metrics``.

Access (see docs/dashboard.md):

* tokens: ``token`` may act, ``read_token`` may only look. Sent as ``Authorization: Bearer <token>`` or
  entered once on ``/login`` (then kept in an HttpOnly, SameSite=Strict cookie). Without any token every
  request is allowed: :func:`check_bind` refuses that beyond loopback.
* actions are ``POST`` requests; with cookie (or no) authentication they need the ``X-CSRF-Token`` header
  equal to the ``bk_csrf`` cookie (double submit) and, when the browser sends one, a same-origin
  ``Origin``. Requests authenticated by the bearer header are not cross-site-forgeable and skip the check.
* ``/metrics`` needs no token when the dashboard listens on loopback only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .records import Query, search
from .sampler import Sampler

HERE = Path(__file__).parent
TOKEN_COOKIE = "bk_dash_token"
CSRF_COOKIE = "bk_csrf"
STATUSES = ("running", "success", "failure", "retry", "dead", "skipped", "expired", "revoked", "duplicate")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token (raises ``ValueError`` with the fix)."""
    if not token and not is_loopback(host):
        raise ValueError(f"the dashboard would listen on {host!r} (beyond loopback) without a token: pass "
                         "--token or set BOOSTKERNEL_DASHBOARD_TOKEN, or bind to 127.0.0.1")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, default=repr), status_code=status, media_type="application/json")


def _fmt_time(ts: Any) -> str:
    if not ts:
        return "-"
    return _dt.datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class Dashboard:
    """State shared by the routes: the boosters, the sampler, the tokens."""

    def __init__(self, boosters: Sequence[Any], token: str | None, read_token: str | None,
                 metrics_public: bool, interval: float) -> None:
        self.boosters = {b.queue: b for b in boosters}
        self.token = token or None
        self.read_token = read_token or None
        if self.read_token and not self.token:
            raise ValueError("a read-only token needs an admin token too (--token): without one anybody may act")
        self.metrics_public = metrics_public
        self.sampler = Sampler(list(boosters), interval=interval)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["time"] = _fmt_time
        self.templates.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, default=repr)

    # --- stores ---------------------------------------------------------------------------------
    def stores(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for b in self.boosters.values():
            s = b.store
            seen.setdefault(id(s), s)
        return list(seen.values())

    def booster(self, queue: str) -> Any:
        b = self.boosters.get(queue)
        if b is None:
            raise KeyError(f"no queue {queue!r} on this dashboard")
        return b

    # --- access ---------------------------------------------------------------------------------
    def role(self, request: Request) -> str | None:
        """``"admin"``, ``"read"`` or ``None`` (not authenticated)."""
        if not self.token:
            return "admin"
        got = self.presented(request)
        if got is None:
            return None
        if hmac.compare_digest(got.encode(), self.token.encode()):
            return "admin"
        if self.read_token and hmac.compare_digest(got.encode(), self.read_token.encode()):
            return "read"
        return None

    @staticmethod
    def presented(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return request.cookies.get(TOKEN_COOKIE)

    def csrf_ok(self, request: Request) -> bool:
        if request.headers.get("authorization", "").lower().startswith("bearer "):
            return True  # a browser never adds this header to a cross-site request
        origin = request.headers.get("origin")
        if origin and origin != "null":
            if urlsplit(origin).netloc != request.headers.get("host", ""):
                return False
        elif origin == "null":
            return False
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = request.headers.get("x-csrf-token", "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


Handler = Callable[[Request], Awaitable[Response]]


def create_app(boosters: Sequence[Any], *, token: str | None = None, read_token: str | None = None,
               host: str = "127.0.0.1", interval: float = 1.0, start_sampler: bool = True) -> Starlette:
    """The dashboard application for ``boosters``. ``host`` is where it will listen: beyond loopback it needs
    ``token`` (:func:`check_bind`), and ``/metrics`` then needs it too."""
    check_bind(host, token)
    dash = Dashboard(boosters, token, read_token, metrics_public=is_loopback(host), interval=interval)
    tpl = dash.templates

    def page(name: str, nav: str) -> Handler:
        async def handler(request: Request) -> Response:
            role = dash.role(request)
            if role is None:
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            return render(request, name, nav, role)
        return handler

    def render(request: Request, name: str, nav: str, role: str, status: int = 200, **ctx: Any) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        queues = sorted(dash.boosters)
        resp = tpl.TemplateResponse(request, name, {
            "nav": nav, "role": role, "csrf": csrf, "queues": queues, "statuses": STATUSES,
            "auth": bool(dash.token), **ctx}, status_code=status)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            resp.set_cookie(CSRF_COOKIE, csrf, httponly=False, samesite="strict", path="/")
        return resp

    def guarded(action: bool = False) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            async def handler(request: Request) -> Response:
                role = dash.role(request)
                if role is None:
                    return _json({"error": "authentication required: send Authorization: Bearer <token>"}, 401)
                if action:
                    if role != "admin":
                        return _json({"error": "this token is read-only"}, 403)
                    if not dash.csrf_ok(request):
                        return _json({"error": "cross-site request refused (missing or wrong X-CSRF-Token)"}, 403)
                try:
                    return await fn(request)
                except KeyError as exc:
                    return _json({"error": str(exc.args[0]) if exc.args else "not found"}, 404)
                except (ValueError, TypeError) as exc:
                    return _json({"error": str(exc)}, 400)
            return handler
        return deco

    # --- login ------------------------------------------------------------------------------------
    async def login(request: Request) -> Response:
        nxt = request.query_params.get("next", "/")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
        if request.method == "POST":
            form = await request.form()
            tok = str(form.get("token", ""))
            ok = bool(dash.token) and (hmac.compare_digest(tok.encode(), (dash.token or "").encode()) or (
                bool(dash.read_token) and hmac.compare_digest(tok.encode(), (dash.read_token or "").encode())))
            if not ok:
                return render(request, "login.html", "login", "none", status=401, error="wrong token", next=nxt)
            resp = RedirectResponse(nxt, status_code=303)
            resp.set_cookie(TOKEN_COOKIE, tok, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
            return resp
        return render(request, "login.html", "login", "none", next=nxt)

    async def logout(request: Request) -> Response:
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(TOKEN_COOKIE, path="/")
        return resp

    # --- reads ------------------------------------------------------------------------------------
    def query_of(request: Request) -> Query:
        p = request.query_params

        def ts(name: str) -> float | None:
            v = p.get(name)
            if not v:
                return None
            try:
                return float(v)
            except ValueError:
                return _dt.datetime.fromisoformat(v).timestamp()

        return Query(queue=p.get("queue") or None, status=p.get("status") or None, since=ts("since"),
                     until=ts("until"), task_id=(p.get("task_id") or "").strip() or None,
                     text=p.get("text") or None, limit=min(int(p.get("limit") or 100), 1000))

    @guarded()
    async def api_queues(request: Request) -> Response:
        return _json(dash.sampler.latest_queues())

    @guarded()
    async def api_workers(request: Request) -> Response:
        return _json(dash.sampler.latest_workers())

    @guarded()
    async def api_tasks(request: Request) -> Response:
        q = query_of(request)
        return _json(await run_in_threadpool(search, dash.stores(), q))

    @guarded()
    async def api_task(request: Request) -> Response:
        tid = request.path_params["task_id"]
        rec = await run_in_threadpool(find_task, tid)
        return _json(rec) if rec is not None else _json({"error": f"no record of task {tid!r}"}, 404)

    def find_task(tid: str) -> dict[str, Any] | None:
        for s in dash.stores():
            rec = s.get_result(tid)
            if rec is not None:
                return rec  # type: ignore[no-any-return]
        return None

    @guarded()
    async def api_series(request: Request) -> Response:
        return _json(dash.sampler.series_of())

    @guarded()
    async def api_dlq(request: Request) -> Response:
        b = dash.booster(request.path_params["queue"])
        recs = await run_in_threadpool(b.dead_letters, int(request.query_params.get("limit") or 100))
        return _json([{"id": r.id, "reason": r.reason, "failed_at": r.failed_at,
                       "body": r.body.decode("utf-8", "replace") if isinstance(r.body, bytes) else str(r.body)}
                      for r in recs])

    @guarded()
    async def api_schedules(request: Request) -> Response:
        return _json(await run_in_threadpool(all_schedules))

    def all_schedules() -> list[dict[str, Any]]:
        try:
            from boostkernel_schedule.api import list_schedules
        except ImportError:
            return []
        out = []
        for b in dash.boosters.values():
            out.extend(list_schedules(b))
        return out

    async def task_page(request: Request) -> Response:
        role = dash.role(request)
        if role is None:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        tid = request.path_params["task_id"]
        rec = await run_in_threadpool(find_task, tid)
        return render(request, "task.html", "tasks", role, status=200 if rec else 404, task_id=tid, rec=rec)

    async def events(request: Request) -> Response:
        if dash.role(request) is None:
            return PlainTextResponse("authentication required", status_code=401)
        want_tasks = request.query_params.get("tasks") == "1"
        q = query_of(request) if want_tasks else None

        async def stream() -> AsyncIterator[bytes]:
            version = -1
            yield b"retry: 1000\n\n"
            while not await request.is_disconnected():
                # with task records, refresh at least 4 times a second (a new record shows within ~0.25 s)
                version = await run_in_threadpool(dash.sampler.wait_change, version, 0.25 if q is not None else 1.0)
                payload: dict[str, Any] = {"queues": dash.sampler.latest_queues(),
                                           "workers": dash.sampler.latest_workers(), "at": time.time()}
                if q is not None:
                    payload["tasks"] = await run_in_threadpool(search, dash.stores(), q)
                yield b"data: " + orjson.dumps(payload, default=repr) + b"\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def metrics(request: Request) -> Response:
        if not dash.metrics_public and dash.role(request) is None:
            return PlainTextResponse("authentication required", status_code=401)
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from .metrics import DashboardCollector

        reg = CollectorRegistry()
        reg.register(DashboardCollector(dash.sampler))
        return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)

    # --- actions ----------------------------------------------------------------------------------
    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        return data

    @guarded(action=True)
    async def act_queue(request: Request) -> Response:
        b = dash.booster(request.path_params["queue"])
        action = request.path_params["action"]
        data = await body(request)
        if action == "pause":
            await run_in_threadpool(b.pause)
            result: Any = {"paused": True}
        elif action == "resume":
            await run_in_threadpool(b.resume)
            result = {"paused": False}
        elif action == "purge":
            result = {"purged": await run_in_threadpool(b.purge)}
        elif action == "replay":
            ids = data.get("ids") or None
            if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
                raise ValueError("ids must be a list of message ids")
            result = {"replayed": await run_in_threadpool(b.replay_dead_letters, ids)}
        else:
            raise KeyError(f"unknown action {action!r}")
        await run_in_threadpool(dash.sampler.sample)
        return _json({"ok": True, "queue": b.queue, **result})

    @guarded(action=True)
    async def act_cancel(request: Request) -> Response:
        data = await body(request)
        tid = request.path_params["task_id"]
        queue = data.get("queue")
        if not queue:
            rec = await run_in_threadpool(find_task, tid)
            queue = rec.get("queue") if rec else None
        if not queue:
            raise ValueError("give the task's queue (no record of it says which)")
        b = dash.booster(str(queue))
        await run_in_threadpool(b.revoke, tid)
        return _json({"ok": True, "revoked": tid, "queue": b.queue})

    @guarded(action=True)
    async def act_publish(request: Request) -> Response:
        data = await body(request)
        b = dash.booster(str(data.get("queue", "")))
        kwargs = data.get("kwargs") or {}
        args = data.get("args") or []
        if not isinstance(kwargs, dict) or not isinstance(args, list):
            raise ValueError("kwargs must be a JSON object and args a JSON array")
        wait = min(float(data.get("wait") or 0.0), 60.0)
        r = await run_in_threadpool(lambda: b.publish(kwargs, None, args=args))
        out: dict[str, Any] = {"ok": True, "task_id": r.task_id, "queue": b.queue}
        if wait > 0:
            out["record"] = await run_in_threadpool(b.store.get_result, r.task_id, wait)
        return _json(out)

    @guarded(action=True)
    async def act_schedule(request: Request) -> Response:
        from boostkernel_schedule import api as sched

        b = dash.booster(request.path_params["queue"])
        sid, action = request.path_params["schedule_id"], request.path_params["action"]
        if action in ("pause", "resume"):
            found = await run_in_threadpool(sched.set_schedule_paused, b, sid, action == "pause")
            if not found:
                raise KeyError(f"no schedule {sid!r} on queue {b.queue!r}")
            return _json({"ok": True, "paused": action == "pause"})
        if action == "run":
            r = await run_in_threadpool(sched.run_schedule_now, b, sid)
            if r is None:
                raise KeyError(f"no schedule {sid!r} on queue {b.queue!r}")
            return _json({"ok": True, "task_id": r.task_id})
        raise KeyError(f"unknown action {action!r}")

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/", page("queues.html", "queues")),
        Route("/workers", page("workers.html", "workers")),
        Route("/tasks", page("tasks.html", "tasks")),
        Route("/tasks/{task_id}", task_page),
        Route("/charts", page("charts.html", "charts")),
        Route("/actions", page("actions.html", "actions")),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/events", events),
        Route("/metrics", metrics),
        Route("/healthz", health),
        Route("/api/queues", api_queues),
        Route("/api/workers", api_workers),
        Route("/api/tasks", api_tasks),
        Route("/api/tasks/{task_id}", api_task),
        Route("/api/tasks/{task_id}/cancel", act_cancel, methods=["POST"]),
        Route("/api/series", api_series),
        Route("/api/schedules", api_schedules),
        Route("/api/dlq/{queue}", api_dlq),
        Route("/api/queues/{queue}/{action}", act_queue, methods=["POST"]),
        Route("/api/publish", act_publish, methods=["POST"]),
        Route("/api/schedules/{queue}/{schedule_id}/{action}", act_schedule, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if start_sampler:
            await run_in_threadpool(dash.sampler.start)
        try:
            yield
        finally:
            await run_in_threadpool(dash.sampler.stop)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dash
    return app


__all__ = ["create_app", "check_bind", "is_loopback"]
