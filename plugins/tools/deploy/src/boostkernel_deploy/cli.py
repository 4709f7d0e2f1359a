"""``boostkernel deploy``: start, inspect and stop consumers of a module on another host over SSH.

    boostkernel deploy MODULE --host HOST [--processes N] [--env NAME=VALUE]...   (same as ``deploy start``)
    boostkernel deploy status --host HOST [--name NAME] [--lines N]
    boostkernel deploy stop --host HOST --name NAME [--timeout SECONDS]

Settings come from the options, from ``BOOSTKERNEL_DEPLOY_*`` environment variables, and from
``[tool.boostkernel-deploy]`` in the pyproject.toml of the current folder, in that order of precedence.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

T = TypeVar("T")


def _pyproject_settings(start: Path | None = None) -> dict[str, Any]:
    """``[tool.boostkernel-deploy]`` of the nearest pyproject.toml at or above the working directory (a table
    of its own: ``[tool.boostkernel]`` holds booster settings only)."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        path = d / "pyproject.toml"
        if path.exists():
            try:
                import tomllib  # type: ignore[import-not-found,unused-ignore]
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
            table = tomllib.loads(path.read_text()).get("tool", {}).get("boostkernel-deploy", {})
            return {k.replace("-", "_"): v for k, v in table.items()} if isinstance(table, dict) else {}
    return {}


class DeployGroup(click.Group):
    """``boostkernel deploy MODULE …`` is ``boostkernel deploy start MODULE …``; defaults from pyproject."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["start", *args]
        return super().parse_args(ctx, args)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        settings = _pyproject_settings()
        if settings:
            extra.setdefault("default_map", {name: settings for name in self.commands})
        return super().make_context(info_name, args, parent=parent, **extra)


def _connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--host", envvar="BOOSTKERNEL_DEPLOY_HOST", required=True, help="Remote host (or BOOSTKERNEL_DEPLOY_HOST)."),
        click.option("--user", envvar="BOOSTKERNEL_DEPLOY_USER", default=None, help="SSH user (default: yours)."),
        click.option("--port", envvar="BOOSTKERNEL_DEPLOY_PORT", default=22, show_default=True, type=int),
        click.option("--key-file", envvar="BOOSTKERNEL_DEPLOY_KEY_FILE", default=None,
                     help="Private key (default: your ssh agent and ~/.ssh keys)."),
        click.option("--password", envvar="BOOSTKERNEL_DEPLOY_PASSWORD", default=None,
                     help="SSH password: prefer BOOSTKERNEL_DEPLOY_PASSWORD to the command line."),
        click.option("--passphrase", envvar="BOOSTKERNEL_DEPLOY_KEY_PASSPHRASE", default=None,
                     help="Passphrase of the key file: prefer BOOSTKERNEL_DEPLOY_KEY_PASSPHRASE."),
        click.option("--known-hosts", envvar="BOOSTKERNEL_DEPLOY_KNOWN_HOSTS", default=None,
                     help="known_hosts file that must hold the host's key (default ~/.ssh/known_hosts)."),
        click.option("--no-host-key-check", is_flag=True, default=False,
                     help="Accept any host key (insecure: only for throw-away hosts)."),
        click.option("--remote-dir", envvar="BOOSTKERNEL_DEPLOY_REMOTE_DIR", default="boostkernel-deploy",
                     show_default=True, help="Folder of the deployments on the host (relative: in the home folder)."),
        click.option("--python", "python", envvar="BOOSTKERNEL_DEPLOY_PYTHON", default="python3", show_default=True,
                     help="Remote Python 3.10+ interpreter (needs its venv module)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _target(kw: dict[str, Any]) -> tuple[Any, Any]:
    from .remote import Masker, Target

    masker = Masker()
    masker.add(kw.get("password"))
    masker.add(kw.get("passphrase"))
    t = Target(host=kw["host"], user=kw.get("user"), port=kw["port"], key_file=kw.get("key_file"),
               password=kw.get("password"), passphrase=kw.get("passphrase"), known_hosts=kw.get("known_hosts"),
               check_host_key=not kw.get("no_host_key_check"), remote_dir=kw["remote_dir"], python=kw["python"])
    return t, masker


def _run(coro: Coroutine[Any, Any, T], masker: Any) -> T:
    from .payload import PayloadError
    from .remote import DeployError, one_line

    try:
        import asyncio  # here: the CLI's other commands never need it

        return asyncio.run(coro)
    except (DeployError, PayloadError) as exc:
        raise click.ClickException(masker(one_line(str(exc)))) from None


def _default_name(module: str) -> str:
    stem = Path(module).stem if module.endswith(".py") else module
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "app"


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {name!r}", param_hint="--env")
        env[name] = value
    return env


@click.group("deploy", cls=DeployGroup)
def deploy_command() -> None:
    """Run consumers of a module on another host over SSH: `deploy MODULE` (= `deploy start`), `deploy status`,
    `deploy stop`. Settings: options, BOOSTKERNEL_DEPLOY_* variables, [tool.boostkernel-deploy] in pyproject.toml."""


@deploy_command.command("start")
@click.argument("module")
@_connection_options
@click.option("-n", "--processes", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Worker processes to start (each `boostkernel worker MODULE`).")
@click.option("--name", default=None, help="Deployment name (default: from MODULE).")
@click.option("--project", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Project folder shipped as the workers' working directory.")
@click.option("-e", "--env", "env_pairs", multiple=True, help="NAME=VALUE for the workers (repeatable); values "
              "of secret-looking names and URL passwords are masked in every line shown.")
@click.option("-x", "--extra", "extras", multiple=True, help="Also install this boostkernel extra (repeatable).")
@click.option("-q", "--queue", "queues", multiple=True, help="Only these queues (passed to the workers).")
@click.option("-c", "--concurrency", default=None, help="Concurrency mode for every booster (passed to the workers).")
@click.option("--wheelhouse", type=click.Path(path_type=Path), default=None,
              help="Take the boostkernel wheels from this folder (scripts/build_wheelhouse.py).")
@click.option("--bundle-deps", is_flag=True, default=False,
              help="Also ship wheels of every third-party dependency (for a host without a package index).")
@click.option("--index", type=click.Choice(["auto", "offline", "online"]), default="auto", show_default=True,
              help="Remote install: offline = only shipped wheels (pip --no-index); online = the host's index too; "
                   "auto = offline first, then the index.")
@click.option("--installer", type=click.Choice(["auto", "pip", "uv"]), default="auto", show_default=True,
              help="Remote virtualenv and install: uv when the host has it on its PATH (auto), else venv + pip.")
@click.option("--replace", is_flag=True, default=False, help="Stop a running deployment of the same name first.")
@click.option("--stop-timeout", default=30.0, show_default=True, help="With --replace: seconds before SIGKILL.")
@click.option("--no-infer", is_flag=True, default=False,
              help="Do not import MODULE here to find the plugins it needs (then name them with --extra).")
def start_command(module: str, processes: int, name: str | None, project: Path, env_pairs: tuple[str, ...],
                  extras: tuple[str, ...], queues: tuple[str, ...], concurrency: str | None, wheelhouse: Path | None,
                  bundle_deps: bool, index: str, installer: str, replace: bool, stop_timeout: float, no_infer: bool,
                  **conn: Any) -> None:
    """Ship the project and the wheels it needs to the host, install them into a virtualenv there, and start
    PROCESSES workers of MODULE that outlive the SSH session."""
    from .payload import Payload, bundle_dependencies, distributions_for, wheels_for
    from .remote import DeployError, Remote, check_name

    target, masker = _target(conn)
    env = _parse_env(env_pairs)
    masker.add_env(env)
    try:
        name = check_name(name or _default_name(module))
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None
    if module.endswith(".py"):  # a file path: the workers run in the shipped copy of --project
        path = Path(module).resolve() if Path(module).exists() else (project / module).resolve()
        if not path.is_relative_to(project.resolve()):
            raise click.ClickException(f"{module} is not inside the project folder {project.resolve()}: pass "
                                       f"--project with the folder that holds it")
        module = path.relative_to(project.resolve()).as_posix()
    say = _say(masker)
    worker_args = [a for q in queues for a in ("-q", q)] + (["-c", concurrency] if concurrency else [])

    async def go() -> None:
        boosters: list[Any] = []
        if not no_infer:
            boosters = _local_boosters(module, project, masker)
        dists = distributions_for(boosters, list(extras))
        with tempfile.TemporaryDirectory(prefix="bk-deploy-") as tmp:
            wheel_dir = Path(tmp) / "wheels"
            wheels, reqs = wheels_for(dists, wheel_dir, wheelhouse)
            shipped = {w.name.split("-")[0].replace("_", "-").lower() for w in wheels}
            unshipped = [r for r in reqs if r.split("==")[0].lower() not in shipped]
            if unshipped and index == "offline":
                raise click.ClickException(
                    f"no wheel to ship for {', '.join(unshipped)} (installed here from an index, not from a source "
                    f"tree): pass --wheelhouse DIR (python scripts/build_wheelhouse.py --out DIR) or --index online")
            project_reqs = project / "requirements.txt"
            if project_reqs.exists():
                reqs += [ln.strip() for ln in project_reqs.read_text().splitlines()
                         if ln.strip() and not ln.lstrip().startswith(("#", "-"))]
            say(f"deploy {name}: {module} x{processes} to {target.where()}:{target.deployment_dir(name)}")
            say(f"  distributions: {', '.join(dists)} ({len(wheels)} wheel(s) shipped)")
            if unshipped:
                say(f"  from the host's package index: {', '.join(unshipped)} (no local source tree; --wheelhouse "
                    f"DIR ships them)")
            async with Remote(target, masker) as r:
                info = await r.python_info()
                alive = (await r.agent("alive", r.dir_arg(name)))["alive"]
                if alive and not replace:
                    raise DeployError(f"deployment {name} already runs on {target.host} ({alive} worker(s) alive): "
                                      f"stop it first (boostkernel deploy stop --name {name}) or pass --replace")
                if alive:
                    stopped = await r.agent("stop", r.dir_arg(name), "--timeout", str(stop_timeout),
                                            timeout=stop_timeout + 60)
                    say(f"  stopped {len(stopped['stopped'])} running worker(s)")
                if bundle_deps:
                    seconds = bundle_dependencies(wheel_dir, reqs, info)
                    say(f"  bundled {len(list(wheel_dir.glob('*.whl'))) - len(wheels)} dependency wheel(s) for "
                        f"Python {info['version']} in {seconds:.1f}s")
                payload = Payload(name, module, processes, project.resolve(), wheel_dir, reqs, env, worker_args)
                archive = payload.archive()
                started = time.monotonic()
                await r.upload(name, archive)
                say(f"  shipped {len(archive) / 1e6:.1f} MB in {time.monotonic() - started:.1f}s")
                installed = await r.agent("install", r.dir_arg(name), "--index", index, "--installer", installer)
                say(f"  installed into {target.deployment_dir(name)}/venv with {installed['installer']} "
                    f"({installed['installed']}) in "
                    f"{installed['seconds']}s")
                out = await r.agent("start", r.dir_arg(name))
                for w in out["started"]:
                    say(f"  worker {w['index']}: pid {w['pid']}, log {w['log']}")
                say(f"started {len(out['started'])} worker(s); `boostkernel deploy status --name {name}` shows them")

    _run(go(), masker)


def _local_boosters(module: str, project: Path, masker: Any) -> list[Any]:
    """Import MODULE here (from the project folder) to read which plugins its boosters use."""
    import os
    import sys

    from boostkernel.loading import boosters_of

    root = str(project.resolve())
    added = root not in sys.path
    if added:
        sys.path.insert(0, root)
    cwd = os.getcwd()
    try:
        os.chdir(root)
        return boosters_of(module)
    except Exception as exc:  # noqa: BLE001 - the user's module: any error
        raise click.ClickException(masker(
            f"could not import {module} here to find the plugins it needs ({type(exc).__name__}: {exc}): fix it, "
            f"or pass --no-infer and name the plugins with --extra")) from None
    finally:
        os.chdir(cwd)
        if added:
            sys.path.remove(root)


def _say(masker: Any) -> Callable[[str], None]:
    def say(line: str) -> None:
        click.echo(masker(line), err=True)

    return say


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@deploy_command.command("status")
@_connection_options
@click.option("--name", default=None, help="Deployment name (default: list every deployment on the host).")
@click.option("-l", "--lines", default=0, show_default=True, help="Also show the last N lines of each worker's log.")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the status as JSON.")
def status_command(name: str | None, lines: int, as_json: bool, **conn: Any) -> None:
    """Each worker of a deployment: alive or not, pid, uptime, and the last lines of its log on request."""
    import json

    from .remote import Remote, check_name

    target, masker = _target(conn)

    async def go() -> dict[str, Any]:
        async with Remote(target, masker) as r:
            if name is None:
                return await r.agent("list", r.dir_arg())
            return await r.agent("status", r.dir_arg(check_name(name)), "--lines", str(lines))

    st = _run(go(), masker)
    if as_json:
        click.echo(masker(json.dumps(st, indent=1)))
        return
    if name is None:
        if not st["deployments"]:
            click.echo(f"no deployment in {target.remote_dir} on {target.host}")
        for d in st["deployments"]:
            click.echo(f"{d['name']}: {d['module']}, {d['alive']}/{d['processes']} alive")
        return
    alive = sum(1 for w in st["workers"] if w["alive"])
    click.echo(masker(f"{st['name']}: {st['module']} on {target.host}, {alive}/{len(st['workers'])} alive"))
    for w in st["workers"]:
        state = "alive" if w["alive"] else "stopped"
        click.echo(f"  worker {w['index']}: {state:7} pid {w['pid']:<8} uptime {_uptime(w['uptime'])}")
        for line in w["lines"]:
            click.echo(masker(f"    | {line}"))


@deploy_command.command("stop")
@_connection_options
@click.option("--name", required=True, help="Deployment name.")
@click.option("--timeout", default=30.0, show_default=True,
              help="Seconds to wait after SIGTERM (graceful: running tasks finish) before SIGKILL.")
def stop_command(name: str, timeout: float, **conn: Any) -> None:
    """Stop every worker of a deployment: SIGTERM, then SIGKILL after --timeout."""
    from .remote import Remote, check_name

    target, masker = _target(conn)

    async def go() -> dict[str, Any]:
        async with Remote(target, masker) as r:
            return await r.agent("stop", r.dir_arg(check_name(name)), "--timeout", str(timeout),
                                 timeout=timeout + 60)

    out = _run(go(), masker)
    if not out["stopped"]:
        click.echo(f"{name}: no worker was running")
    for w in out["stopped"]:
        click.echo(f"  worker {w['index']}: pid {w['pid']} {w['how']}")
    if out["stopped"]:
        click.echo(f"{name}: stopped {len(out['stopped'])} worker(s)")
