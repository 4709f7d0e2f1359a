"""Build every distribution of the workspace into a wheelhouse, and (``--check``) prove it installs.

    python scripts/build_wheelhouse.py                       # wheels into ./wheelhouse (git-ignored)
    python scripts/build_wheelhouse.py --out DIR             # elsewhere
    python scripts/build_wheelhouse.py --out DIR --check redis,celery

Until boostkernel is on a public index, this is how ``pip install "boostkernel[redis,celery]"`` works
outside a clone:

    pip install --find-links DIR "boostkernel[redis,celery]"

(third-party dependencies such as redis-py and celery come from PyPI as usual).

``--check EXTRAS`` does what a new user does, in a fresh virtual environment outside the repository:
``pip install --find-links DIR "boostkernel[EXTRAS]"``, then asserts that exactly the kernel, its embedded
default plugins and the plugins of EXTRAS are installed (no other ``boostkernel-*``), that
``boostkernel plugins list`` shows them loaded, and - when ``redis`` is among the extras - that a task runs
on the local Redis (``BOOSTKERNEL_CHECK_REDIS_URL``, default ``redis://127.0.0.1:6379/0``). CI runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "kernel" / "pyproject.toml"


def build(out: Path) -> list[Path]:
    """``uv build --all-packages --wheel`` into ``out`` (emptied of older boostkernel wheels first)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("boostkernel*.whl"):
        old.unlink()
    uv = shutil.which("uv") or sys.exit("uv is needed to build the wheels (pip install uv)")
    subprocess.run([uv, "build", "--all-packages", "--wheel", "--quiet", "--out-dir", str(out)], cwd=ROOT,
                   check=True)
    wheels = sorted(out.glob("boostkernel*.whl"))
    members = list(ROOT.glob("kernel/pyproject.toml")) + list(ROOT.glob("plugins/*/*/pyproject.toml"))
    if len(wheels) != len(members):
        sys.exit(f"expected {len(members)} wheels (one per workspace member), built {len(wheels)}")
    return wheels


def expected_distributions(extras: list[str]) -> set[str]:
    """``boostkernel`` + its unconditional plugin dependencies + the distribution of each extra."""
    meta = tomllib.loads(KERNEL.read_text())["project"]
    names = {"boostkernel"}
    for dep in meta["dependencies"]:
        name = re.split(r"[ <>=;\[]", dep, maxsplit=1)[0]
        if name.startswith("boostkernel-"):
            names.add(name)
    optional = meta["optional-dependencies"]
    for extra in extras:
        if extra not in optional:
            sys.exit(f"boostkernel has no extra {extra!r} (extras: {', '.join(sorted(optional))})")
        names.update(d for d in optional[extra] if d.startswith("boostkernel-"))
    return names


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


def check(wheelhouse: Path, extras: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="bk-wheelhouse-check-") as tmp:
        work = Path(tmp)
        venv = work / "venv"
        _run([sys.executable, "-m", "venv", str(venv)])
        bindir = venv / ("Scripts" if os.name == "nt" else "bin")
        py = str(bindir / "python")
        spec = f"boostkernel[{','.join(extras)}]"
        started = time.monotonic()
        _run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--find-links",
              str(wheelhouse), spec], cwd=work)
        print(f"installed {spec} in {time.monotonic() - started:.0f}s", flush=True)
        # run from outside the clone, with nothing of the workspace on the path
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT_ENVIRONMENT")}
        env["BOOSTKERNEL_DATA_DIR"] = str(work / "data")
        listing = _run([py, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"], cwd=work,
                       capture_output=True, env=env)
        installed = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(listing.stdout)}
        ours = {n: v for n, v in installed.items() if n == "boostkernel" or n.startswith("boostkernel-")}
        want = expected_distributions(extras)
        if set(ours) != want:
            sys.exit(f"installed {sorted(ours)}\nexpected  {sorted(want)}\n"
                     f"missing {sorted(want - set(ours))}, unexpected {sorted(set(ours) - want)}")
        local_version = tomllib.loads(KERNEL.read_text())["project"]["version"]
        if ours["boostkernel"] != local_version:
            sys.exit(f"boostkernel {ours['boostkernel']} was installed, not the wheelhouse's {local_version}")
        cli = str(bindir / "boostkernel")
        out = _run([cli, "plugins", "list", "--json"], cwd=work, capture_output=True, env=env)
        rows = json.loads(out.stdout)
        loaded = {r["distribution"] for r in rows if r["status"] == "loaded"}
        if not want <= loaded:
            sys.exit(f"`boostkernel plugins list` does not show these loaded: {sorted(want - loaded)}\n{out.stdout}")
        _run([cli, "plugins", "list"], cwd=work, env={**env, "COLUMNS": "200"})
        print(f"ok: exactly {len(want)} boostkernel distributions installed and loaded", flush=True)
        if "redis" in extras:
            url = os.environ.get("BOOSTKERNEL_CHECK_REDIS_URL", "redis://127.0.0.1:6379/0")
            queue = f"wheelhouse_check_{uuid.uuid4().hex[:8]}"
            script = work / "redis_task.py"
            script.write_text(textwrap.dedent(f"""
                from boostkernel import boost

                @boost({queue!r}, broker="redis", broker_url={url!r}, results=True)
                def add(x: int, y: int) -> int:
                    return x + y

                r = add.push(1, y=2)
                add.consume()
                print("redis task result:", r.get(timeout=30))
                add.purge()
            """))
            out = _run([py, str(script)], cwd=work, capture_output=True, env=env, timeout=120)
            print(out.stdout.strip(), flush=True)
            if out.stdout.strip().splitlines()[-1] != "redis task result: 3":
                sys.exit(f"the Redis task did not return 3:\n{out.stdout}\n{out.stderr}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "wheelhouse", help="wheelhouse folder (default ./wheelhouse)")
    ap.add_argument("--check", metavar="EXTRAS", default=None,
                    help='comma-separated extras to install in a fresh venv and verify, e.g. "redis,celery"')
    ap.add_argument("--no-build", action="store_true", help="only --check an existing wheelhouse")
    args = ap.parse_args()
    out = args.out.resolve()
    if not args.no_build:
        started = time.monotonic()
        wheels = build(out)
        print(f"built {len(wheels)} wheels into {out} in {time.monotonic() - started:.0f}s", flush=True)
    if args.check is not None:
        check(out, [e.strip() for e in args.check.split(",") if e.strip()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
