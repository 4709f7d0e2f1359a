"""Fixtures of the dashboard's tests: boosters on a private SQLite broker and a dashboard served by uvicorn."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from boostkernel.testing.helpers import BoosterFactory

FAST = {"pausable": True, "pause_poll_interval": 0.1, "monitor": True, "monitor_interval": 0.2}


@pytest.fixture
def make_booster(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """``make_booster(fn, **params)``: a booster on a SQLite broker in ``tmp_path`` with results, monitor
    and pause switched on (fast intervals); stopped and forgotten after the test."""
    monkeypatch.setenv("BOOSTKERNEL_DATA_DIR", str(tmp_path))
    make = BoosterFactory("dash", broker="sqlite", results=True, workers=4, **FAST)
    yield make
    make.close_all()


@pytest.fixture
def serve() -> Iterator[Callable[..., Any]]:
    """``serve(boosters, **create_app kwargs)``: a running dashboard; returns its ``Server`` (``.url``)."""
    from boostkernel_dashboard import create_app
    from boostkernel_dashboard.server import Server

    servers: list[Any] = []

    def start(boosters: list[Any], host: str = "127.0.0.1", **kwargs: Any) -> Any:
        kwargs.setdefault("interval", 0.25)
        s = Server(create_app(boosters, host=host, **kwargs), host=host).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


class Http:
    """A tiny HTTP client (urllib): keeps cookies, never raises on an error status."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, data: Any = None, headers: dict[str, str] | None = None,
                form: dict[str, str] | None = None) -> tuple[int, str, Any]:
        h = dict(headers or {})
        body = None
        if form is not None:
            from urllib.parse import urlencode

            body = urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        elif data is not None:
            body = json.dumps(data).encode()
            h["Content-Type"] = "application/json"
        if self.cookies:
            h.setdefault("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        req = urllib.request.Request(self.base + path, data=body, headers=h, method=method)
        try:
            resp = opener.open(req, timeout=15)
            status, text, hdrs = resp.status, resp.read().decode(), resp.headers
        except urllib.error.HTTPError as exc:
            status, text, hdrs = exc.code, exc.read().decode(), exc.headers
        for c in hdrs.get_all("set-cookie") or []:
            name, _, rest = c.partition("=")
            value = rest.split(";")[0]
            if value in ('""', "") or "Max-Age=0" in c:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return status, text, hdrs

    def get(self, path: str, **kw: Any) -> tuple[int, str, Any]:
        return self.request("GET", path, **kw)

    def post(self, path: str, data: Any = None, **kw: Any) -> tuple[int, str, Any]:
        return self.request("POST", path, data=data if data is not None else {}, **kw)

    def csrf_headers(self) -> dict[str, str]:
        if "bk_csrf" not in self.cookies:
            self.get("/")
        return {"X-CSRF-Token": self.cookies["bk_csrf"]}


@pytest.fixture
def http() -> Callable[[str], Http]:
    return Http
