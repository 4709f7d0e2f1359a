"""``boostkernel``: plugins, worker, demo, and queue operations (push, count, purge, dlq, result)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from .. import __version__

# --- errors: one line with the fix, a non-zero exit; the traceback only with --debug ----------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe_error(exc: BaseException) -> str:
    """What went wrong and how to fix it, in one line (the CLI prints this instead of a traceback)."""
    from ..errors import BoostError, ResultTimeout

    text = _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, ResultTimeout):
        return (f"{text}. The task has not finished yet, or its booster keeps no results (results=True); "
                f"wait longer (--wait SECONDS) or check that a worker consumes the queue")
    if isinstance(exc, BoostError):  # the kernel's own errors already carry the fix
        return text
    if isinstance(exc, ModuleNotFoundError):
        return (f"cannot import {exc.name or 'the module'!r} ({text}). Give a module importable from the "
                f"current directory (a dotted name) or the path of a .py file, or install the missing package")
    if isinstance(exc, FileNotFoundError):
        return f"{text}. Check the path (relative paths start at the current directory)"
    if isinstance(exc, ConnectionError | TimeoutError) or type(exc).__name__ in (
            "ConnectionError", "OperationalError", "AMQPConnectionError", "NoBrokersAvailable", "TimeoutError"):
        return (f"cannot reach the broker ({type(exc).__name__}: {text}). Is the server running? Check --broker/"
                f"--broker-url or BOOSTKERNEL_BROKER_URL")
    if isinstance(exc, TypeError) and "argument" in text:
        return f"the task's arguments do not match: {text}. Pass them as JSON with --kwargs '{{\"name\": value}}'"
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


class _Group(click.Group):
    """The top-level group: any exception of a command becomes one line on stderr and exit code 1. Plugin
    commands declared with a factory are imported on first use (``boostkernel worker`` imports none of them)."""

    lazy: dict[str, Any] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        reg = self.lazy.pop(cmd_name, None)
        if reg is not None:
            try:
                self.add_command(reg.load(), cmd_name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
                click.echo(f"warning: plugin {reg.plugin!r} failed to add command {cmd_name!r}: {exc}", err=True)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:  # noqa: BLE001 - turned into one line unless --debug
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(describe_error(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="boostkernel")
@click.option("--log-level", default="INFO", show_default=True, help="Logging level of boostkernel's loggers.")
@click.option("--debug", is_flag=True, envvar="BOOSTKERNEL_DEBUG",
              help="Show the full traceback of an error (default: one line with the fix).")
def cli(log_level: str, debug: bool) -> None:
    """Run any Python function as a distributed, controlled task."""
    from ..logs import setup_logging

    setup_logging(log_level.upper())


# --- plugins ------------------------------------------------------------------------------------
@cli.group()
def plugins() -> None:
    """Inspect installed plugins."""


def _plugin_rows(load_all: bool = False) -> list[dict[str, Any]]:
    """One row per plugin. Capabilities are read from the plugin classes only for plugins whose distribution
    needs no client library (or all with ``load_all``), so listing never imports redis, celery, eventlet …"""
    from ..options import describe
    from ..plugins import get_plugins

    ps = get_plugins()
    rows = []
    for st in sorted(ps.statuses.values(), key=lambda s: s.name):
        provides: dict[str, Any] = {}
        capabilities: dict[str, Any] = {}
        for kind, names in st.provides.items():
            provides[kind] = names
            for n in names:
                reg = ps.registry.items[kind][n]
                entry: dict[str, Any] = {"summary": reg.summary}
                if kind in ("broker", "executor", "store") and not (load_all or st.light):
                    entry["not_loaded"] = "needs a client library: use --capabilities to import it"
                elif kind in ("broker", "executor", "store"):
                    try:
                        cls = reg.load()
                        entry.update(cls.capabilities.as_dict())
                    except Exception as exc:  # noqa: BLE001 - shown, not raised
                        entry["error"] = f"{type(exc).__name__}: {exc}"
                if kind == "control":
                    entry["params"] = list(reg.params)
                    entry["order"] = reg.order
                    entry["options"] = [i.as_dict() for i in describe(reg.options, n)] if reg.options else []
                capabilities[f"{kind}:{n}"] = entry
        rows.append({
            "name": st.name, "kinds": st.kinds, "provides": provides, "distribution": st.distribution,
            "version": st.version, "source": st.source, "entry_point": st.entry_point,
            "capabilities": capabilities, "status": st.status, "error": st.error,
        })
    return rows


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--capabilities", "load_all", is_flag=True,
              help="Import every plugin class to show its capabilities (imports client libraries).")
def plugins_list(as_json: bool, load_all: bool) -> None:
    """List installed plugins: what each provides, each control's options, distribution, version, status."""
    rows = _plugin_rows(load_all)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="boostkernel plugins")
    for col in ("name", "kinds", "provides", "options", "distribution", "version", "status"):
        table.add_column(col)
    for r in rows:
        provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in r["provides"].items())
        status = r["status"] if not r["error"] else f"[red]{r['status']}[/red]: {r['error']}"
        if r["status"] == "loaded":
            status = "[green]loaded[/green]"
        options = "\n".join(f"{o['name']}: {o['type']} = {o['default']!r}" for cap in r["capabilities"].values()
                            for o in cap.get("options", ()))
        table.add_row(r["name"], ", ".join(r["kinds"]), provides, options or "-", r["distribution"] or "-",
                      r["version"] or "-", status)
    Console().print(table)


@plugins.command("check")
def plugins_check() -> None:
    """Static conformance of every installed plugin (exit 1 on any problem)."""
    from ..conformance import check_all

    problems = check_all()
    for p in problems:
        click.echo(f"FAIL {p}", err=True)
    if problems:
        sys.exit(1)
    click.echo("all plugins conform")


# --- worker and demo --------------------------------------------------------------------------------
@cli.command()
@click.argument("module")
@click.option("-q", "--queue", "queues", multiple=True, help="Only these queues (repeatable).")
@click.option("-g", "--group", default=None, help="Only boosters with this group.")
@click.option("-p", "--processes", default=1, show_default=True, help="Worker processes, each with its own pool.")
@click.option("-c", "--concurrency", default=None,
              help="Run every booster with this mode (threads, asyncio, solo, gevent, eventlet …) instead of its own.")
@click.option("--cpu-affinity", default=None, metavar="one|CPUS",
              help="Keep each worker process on one CPU (Linux): 'one' picks it from the CPUs the worker may run on, "
                   "CPU ids ('0,2-3') from those; the --processes children spread over them. Replaces the "
                   "boosters' cpu_affinity. Helps brokers whose client runs its own thread (nats, mqtt).")
def worker(module: str, queues: tuple[str, ...], group: str | None, processes: int, concurrency: str | None,
           cpu_affinity: str | None) -> None:
    """Consume every booster defined in MODULE (a dotted name or a .py path) until SIGTERM/SIGINT.

    gevent/eventlet: the worker monkey-patches the process before importing MODULE (you write no patching).
    """
    from ..errors import ConfigError
    from ..worker import run_worker

    try:
        code = run_worker(module, list(queues) or None, group, processes, concurrency=concurrency, reexec=True,
                          cpu_affinity=cpu_affinity)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@cli.command()
@click.option("-n", "--count", "n", default=10_000, show_default=True, help="Tasks to publish.")
@click.option("--broker", default="sqlite", show_default=True)
@click.option("--workers", default=16, show_default=True)
def demo(n: int, broker: str, workers: int) -> None:
    """Publish N tasks with a progress bar, consume them with threads, print throughput and results."""
    from ..demo import run_demo

    run_demo(n, broker, workers)


# --- queue operations -------------------------------------------------------------------------------
def booster_for(queue: str, module: str | None, broker: str | None, broker_url: str | None,
                results: bool = False) -> Any:
    """The booster of ``queue`` for a queue command: from MODULE if given, else a stand-in bound to the same
    broker (keeping results when ``results``). Public for plugins' commands (with :func:`queue_options`):
    ``boostkernel.cli.booster_for``."""
    from ..booster import boost
    from ..loading import boosters_of
    from ..registry import REGISTRY

    if module:
        boosters_of(module)
        if queue in REGISTRY:
            return REGISTRY[queue]
        raise click.ClickException(f"{module} defines no booster for queue {queue!r}")
    params: dict[str, Any] = {"validate_args": False}
    if results:
        params["results"] = True
    if broker:
        params["broker"] = broker
    if broker_url:
        params["broker_url"] = broker_url

    def _standin(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the CLI's stand-in booster cannot run tasks")

    _standin.__qualname__ = f"cli_standin_{queue}"
    return boost(queue, **params)(_standin)


_booster = booster_for


_queue_opts = [
    click.argument("queue"),
    click.option("-m", "--module", default=None, help="Module defining the booster (uses its settings)."),
    click.option("--broker", default=None, help="Broker name or URL (default: configuration)."),
    click.option("--broker-url", default=None),
]


def queue_options(f: Any) -> Any:
    """The QUEUE argument and the --module/--broker/--broker-url options of every queue command."""
    for opt in reversed(_queue_opts):
        f = opt(f)
    return f


@cli.command()
@queue_options
def count(queue: str, module: str | None, broker: str | None, broker_url: str | None) -> None:
    """Messages waiting in QUEUE (not those in flight: fetched, or in a consumer's prefetch buffer)."""
    click.echo(booster_for(queue, module, broker, broker_url).count())


@cli.command()
@queue_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(queue: str, module: str | None, broker: str | None, broker_url: str | None, yes: bool) -> None:
    """Delete every waiting message of QUEUE (in-flight ones, fetched or prefetched, stay)."""
    if not yes:
        click.confirm(f"Delete every waiting message of {queue!r}?", abort=True)
    click.echo(f"purged {booster_for(queue, module, broker, broker_url).purge()} message(s)")


@cli.command()
@queue_options
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@click.option("--countdown", type=float, default=None)
@click.option("--priority", type=int, default=None)
@click.option("--wait", "wait_s", type=float, default=None, help="Wait this many seconds for the result.")
def push(queue: str, module: str | None, broker: str | None, broker_url: str | None, kwargs_json: str,
         countdown: float | None, priority: int | None, wait_s: float | None) -> None:
    """Publish one task to QUEUE with --kwargs '{"x": 1}'; print its task id (and result with --wait)."""
    from ..params import TaskOptions

    try:
        kwargs = json.loads(kwargs_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"--kwargs is not JSON: {exc}") from None
    if not isinstance(kwargs, dict):
        raise click.BadParameter(f"--kwargs must be a JSON object, got {type(kwargs).__name__}")
    # Without -m the CLI does not know the booster's settings: to --wait it reads the results store anyway
    # (a booster without results=True never writes one: the wait then times out with that hint).
    b = booster_for(queue, module, broker, broker_url, results=wait_s is not None and not module)
    r = b.publish(kwargs, TaskOptions(countdown=countdown, priority=priority))
    click.echo(r.task_id)
    if wait_s is not None:
        click.echo(json.dumps(r.get(wait_s)))


@cli.command()
@queue_options
@click.argument("task_id")
@click.option("--wait", "wait_s", type=float, default=0.0)
def result(queue: str, module: str | None, broker: str | None, broker_url: str | None, task_id: str,
           wait_s: float) -> None:
    """Print the status record of TASK_ID on QUEUE."""
    b = booster_for(queue, module, broker, broker_url)
    rec = b.store.get_result(task_id, wait_s)
    click.echo(json.dumps(rec, indent=2, default=repr) if rec else "pending (no record)")


@cli.group()
def dlq() -> None:
    """Inspect and replay dead-lettered messages."""


@dlq.command("list")
@queue_options
@click.option("--limit", default=20, show_default=True)
def dlq_list(queue: str, module: str | None, broker: str | None, broker_url: str | None, limit: int) -> None:
    """List dead-lettered messages of QUEUE with their reasons."""
    from rich.console import Console
    from rich.table import Table

    recs = booster_for(queue, module, broker, broker_url).dead_letters(limit)
    table = Table(title=f"dead letters of {queue}")
    for col in ("id", "failed at", "reason", "body"):
        table.add_column(col, overflow="fold")
    for r in recs:
        body = r.body.decode("utf-8", "replace") if isinstance(r.body, bytes) else str(r.body)
        table.add_row(r.id, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.failed_at)), r.reason,
                      body[:200])
    Console().print(table)


@dlq.command("replay")
@queue_options
@click.option("--id", "ids", multiple=True, help="Only these message ids (repeatable); default all.")
def dlq_replay(queue: str, module: str | None, broker: str | None, broker_url: str | None,
               ids: tuple[str, ...]) -> None:
    """Publish dead-lettered messages back to QUEUE."""
    n = booster_for(queue, module, broker, broker_url).replay_dead_letters(list(ids) or None)
    click.echo(f"replayed {n} message(s)")


@dlq.command("purge")
@queue_options
@click.option("--yes", is_flag=True)
def dlq_purge(queue: str, module: str | None, broker: str | None, broker_url: str | None, yes: bool) -> None:
    """Delete the dead-letter queue of QUEUE."""
    if not yes:
        click.confirm(f"Delete every dead letter of {queue!r}?", abort=True)
    click.echo(f"deleted {booster_for(queue, module, broker, broker_url).broker.purge_dead_letters()} dead letter(s)")


_commands_loaded = False


def _load_plugin_commands() -> None:
    global _commands_loaded
    if _commands_loaded:
        return
    _commands_loaded = True
    from ..plugins import get_plugins

    try:
        ps = get_plugins()
        ps.pm.hook.register_commands(cli=cli)
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
        click.echo(f"warning: a plugin failed to add commands: {exc}", err=True)
        return
    # a command declared with registry.add_command(name, factory="module:command") needs no register_commands;
    # it is imported when it is run (or listed by --help)
    for name, reg in ps.registry.items["command"].items():
        if reg.factory and name not in cli.commands:
            _Group.lazy[name] = reg


def main() -> None:
    _load_plugin_commands()
    cli()
