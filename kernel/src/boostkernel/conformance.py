"""Static conformance checks of installed plugins (``boostkernel plugins check``, tests/contract)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib import metadata

from .broker import Broker, BrokerCapabilities
from .control import Control
from .executor import Executor, ExecutorCapabilities
from .plugins import get_plugins
from .store import Store, StoreCapabilities

_BASES = {"broker": (Broker, BrokerCapabilities), "executor": (Executor, ExecutorCapabilities),
          "store": (Store, StoreCapabilities), "control": (Control, None)}
#: Client libraries a plugin's entry-point module must not import at load time.
HEAVY = ("redis", "pika", "kafka", "confluent_kafka", "celery", "dramatiq", "huey", "rq", "kombu", "gevent",
         "eventlet", "psycopg", "sqlalchemy", "pulsar", "nats", "paho", "apscheduler", "boto3", "pymongo")


def check_entry_point_light(ep_value: str) -> str | None:
    """Import an entry-point module in a fresh interpreter; report heavy client libraries it pulled in."""
    code = (f"import sys, importlib; importlib.import_module({ep_value!r}); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return f"entry point {ep_value} does not import: {out.stderr.strip().splitlines()[-1:]}"
    heavy = out.stdout.strip()
    return f"entry point {ep_value} imports client libraries at load time: {heavy}" if heavy else None


def check_all(light: bool = True) -> list[str]:
    """Every problem found with the installed plugins (an empty list means all conform)."""
    ps = get_plugins()
    problems: list[str] = []
    for st in ps.statuses.values():
        if st.status == "failed":
            problems.append(f"plugin {st.name}: failed to load: {st.error}")
        if st.source == "entrypoint" and st.status == "loaded" and not st.kinds and st.name != "builtin":
            problems.append(f"plugin {st.name}: registers nothing")
        if st.distribution and st.distribution != "boostkernel":
            try:
                kw = metadata.metadata(st.distribution).get_all("Keywords") or []
                if not any("boostkernel-plugin" in k for k in kw):
                    problems.append(f"plugin {st.name}: distribution {st.distribution} lacks the "
                                    "'boostkernel-plugin' keyword")
            except metadata.PackageNotFoundError:
                pass
        if light and st.entry_point and st.status == "loaded":
            p = check_entry_point_light(st.entry_point)
            if p:
                problems.append(f"plugin {st.name}: {p}")
    for name, reg in ps.registry.items["method"].items():
        where = f"booster method {name!r} (plugin {reg.plugin})"
        try:
            fn = reg.load()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{where}: factory {reg.factory} does not load: {exc}")
            continue
        if not callable(fn):
            problems.append(f"{where}: {reg.factory} is not callable")
        elif not fn.__doc__:
            problems.append(f"{where}: {reg.factory} is undocumented (no docstring)")
    for kind, regs in ps.registry.items.items():
        if kind in ("command", "method"):
            continue
        base, caps_type = _BASES[kind]
        for name, reg in regs.items():
            where = f"{kind} {name!r} (plugin {reg.plugin})"
            if not reg.summary:
                problems.append(f"{where}: no summary")
            try:
                cls = reg.load()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{where}: factory {reg.factory} does not load: {exc}")
                continue
            if not (isinstance(cls, type) and issubclass(cls, base)):
                problems.append(f"{where}: {reg.factory} is not a subclass of {base.__name__}")
                continue
            if getattr(cls, "name", None) != name:
                problems.append(f"{where}: class attribute name={getattr(cls, 'name', None)!r} differs")
            if caps_type is not None and not isinstance(getattr(cls, "capabilities", None), caps_type):
                problems.append(f"{where}: capabilities is not a {caps_type.__name__}")
            if not (cls.__doc__ or importlib.import_module(cls.__module__).__doc__):
                problems.append(f"{where}: undocumented (no docstring)")
            if kind == "control" and not reg.params:
                problems.append(f"{where}: declares no options (or params) that switch it on")
            if kind == "control" and reg.options is not None:
                from .options import describe

                undocumented = [i.name for i in describe(reg.options, name) if not i.doc]
                if undocumented:
                    problems.append(f"{where}: options without a doc: {', '.join(undocumented)}")
    try:
        ps.pm.check_pending()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"hook implementations without a spec: {exc}")
    return problems
