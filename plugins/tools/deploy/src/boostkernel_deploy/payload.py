"""What ``boostkernel deploy`` ships: the user's project, the wheels of the boostkernel distributions it
needs (and, with ``bundle_deps``, of every third-party dependency), the requirements and the settings.

Which boostkernel distributions: the kernel (with its embedded default plugins), the plugin of each
booster's broker and concurrency mode in the module (found through the plugin registry), and the
distributions of any ``extras`` named. Their wheels come from a ``wheelhouse`` folder when one is given
(``scripts/build_wheelhouse.py`` makes one), else they are packed from the source tree of an editable
install (a workspace clone: ``uv sync --all-packages``), else the remote host installs the same versions
from its package index.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

#: never shipped from the project folder
EXCLUDE_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache",
                ".ruff_cache", "node_modules", "wheelhouse", "dist", "build", ".tox", ".nox"}
EXCLUDE_SUFFIXES = (".pyc", ".pyo")


class PayloadError(Exception):
    """A problem building what is shipped (one line, with the fix)."""


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _canon(re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0])


def distributions_for(module_boosters: list[Any], extras: list[str]) -> list[str]:
    """The boostkernel distributions to install remotely: the kernel, the plugins of the boosters' brokers and
    concurrency modes, the distributions of ``extras``, and every boostkernel distribution they require."""
    from boostkernel.plugins import get_plugins

    ps = get_plugins()
    wanted = {"boostkernel"}
    for b in module_boosters:
        params = b.params
        for kind, name in (("broker", ps.resolve_broker_name(params.broker)), ("executor", params.concurrency)):
            reg = ps.registry.items.get(kind, {}).get(name)
            st = ps.statuses.get(reg.plugin) if reg is not None else None
            if st is not None and st.distribution:
                wanted.add(_canon(st.distribution))
    for extra in extras:
        wanted.add(_canon(extra if extra.startswith("boostkernel") else f"boostkernel-{extra}"))
    todo, seen = list(wanted), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            raise PayloadError(f"{name} is not installed here: install it (pip install {name}) or drop it") from None
        for req in reqs:
            if "extra ==" in req.replace("extra==", "extra =="):
                continue
            dep = _req_name(req)
            if dep.startswith("boostkernel"):
                todo.append(dep)
    return sorted(seen)


def _source_dir(dist: metadata.Distribution) -> Path | None:
    """The local source folder of an editable or local-directory install (PEP 610 ``direct_url.json``)."""
    raw = dist.read_text("direct_url.json")
    if not raw:
        return None
    url = json.loads(raw).get("url", "")
    if not url.startswith("file://"):
        return None
    path = Path(url.removeprefix("file://"))
    return path if (path / "pyproject.toml").exists() else None


def _pack_src_layout(dist: metadata.Distribution, src: Path, out: Path) -> Path | None:
    """A ``py3-none-any`` wheel of a pure-Python src-layout project, packed straight from its source tree
    and the metadata of its editable install (the files hatchling puts in its wheel; milliseconds instead of
    a PEP 517 build). ``None`` when the project is not laid out that way."""
    packages = [p for p in sorted((src / "src").glob("*")) if (p / "__init__.py").exists()] if (src / "src").is_dir() \
        else []
    meta = dist.read_text("METADATA")
    if not packages or not meta:
        return None
    name, version = dist.metadata["Name"], dist.version
    stem = f"{re.sub(r'[-_.]+', '_', name)}-{version}"
    info = f"{stem}.dist-info"
    files: list[tuple[str, bytes]] = []
    for pkg in packages:
        for path in sorted(pkg.rglob("*")):
            rel = path.relative_to(src / "src")
            if path.is_dir() or "__pycache__" in rel.parts or path.suffix in EXCLUDE_SUFFIXES:
                continue
            files.append((rel.as_posix(), path.read_bytes()))
    files.append((f"{info}/METADATA", meta.encode()))
    eps = dist.read_text("entry_points.txt")
    if eps:
        files.append((f"{info}/entry_points.txt", eps.encode()))
    files.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: boostkernel-deploy\nRoot-Is-Purelib: true\n"
                                   b"Tag: py3-none-any\n"))
    record = []
    for arc, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arc},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    wheel = out / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in files:
            z.writestr(zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return wheel


def _build(src: Path, out: Path) -> Path:
    uv = shutil.which("uv")
    cmd = [uv, "build", "--wheel", "--quiet", "--out-dir", str(out), str(src)] if uv else \
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(src)]
    before = set(out.glob("*.whl"))
    r = subprocess.run(cmd, capture_output=True, text=True)
    made = sorted(set(out.glob("*.whl")) - before)
    if r.returncode != 0 or not made:
        raise PayloadError(f"could not build a wheel of {src}: {(r.stderr or r.stdout).strip()[-300:]}")
    return made[0]


def wheels_for(names: list[str], out: Path, wheelhouse: Path | None = None) -> tuple[list[Path], list[str]]:
    """Put a wheel of each distribution into ``out``; return the wheels and the requirement lines
    (``name==version``) that the remote host installs."""
    out.mkdir(parents=True, exist_ok=True)
    wheels: list[Path] = []
    reqs: list[str] = []
    house = {}
    if wheelhouse is not None:
        if not wheelhouse.is_dir():
            raise PayloadError(f"wheelhouse {wheelhouse} is not a folder: build one (python scripts/build_wheelhouse.py "
                               f"--out {wheelhouse}) or drop --wheelhouse")
        house = {_canon(w.name.split("-")[0]): w for w in sorted(wheelhouse.glob("*.whl"))}
    for name in names:
        dist = metadata.distribution(name)
        reqs.append(f"{dist.metadata['Name']}=={dist.version}")
        if name in house:
            wheels.append(Path(shutil.copy2(house[name], out)))
            continue
        src = _source_dir(dist)
        if src is None:
            continue  # installed from an index: the remote host installs the same version from its index
        wheels.append(_pack_src_layout(dist, src, out) or _build(src, out))
    return wheels, reqs


def _pip_command() -> list[str]:
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    uv = shutil.which("uv")
    if uv:
        return [uv, "tool", "run", "--quiet", "--from", "pip", "pip"]
    raise PayloadError("--bundle-deps needs pip (python -m pip) or uv here to download the dependencies' wheels")


def bundle_dependencies(wheel_dir: Path, requirements: list[str], remote: dict[str, Any]) -> float:
    """Download wheels of every third-party dependency of ``requirements`` for the remote interpreter
    (``remote``: its ``version`` "3.11" and ``machine``) into ``wheel_dir``; return the seconds it took."""
    started = time.monotonic()
    cmd = [*_pip_command(), "download", "--disable-pip-version-check", "--quiet", "--dest", str(wheel_dir),
           "--find-links", str(wheel_dir), "--only-binary=:all:", "--python-version", str(remote["version"])]
    import platform

    if remote.get("machine") and (remote["machine"] != platform.machine() or remote.get("system") != platform.system()):
        cmd += ["--platform", f"manylinux2014_{remote['machine']}", "--platform", f"manylinux_2_28_{remote['machine']}",
                "--platform", "any"]
    r = subprocess.run([*cmd, *requirements], capture_output=True, text=True)
    if r.returncode != 0:
        raise PayloadError("could not download the dependencies' wheels for the remote Python "
                           f"{remote['version']}: {(r.stderr or r.stdout).strip()[-400:]} (deploy without "
                           "--bundle-deps to let the remote host install them from its index)")
    return time.monotonic() - started


def _project_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = Path(info.name).parts
    if any(p in EXCLUDE_DIRS for p in parts) or info.name.endswith(EXCLUDE_SUFFIXES):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


@dataclass
class Payload:
    """Everything shipped to one deployment folder, as one gzipped tar archive (``archive()``)."""

    name: str
    module: str
    processes: int
    project: Path
    wheel_dir: Path
    requirements: list[str]
    env: dict[str, str] = field(default_factory=dict)
    worker_args: list[str] = field(default_factory=list)

    def archive(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(str(self.project), arcname="app", filter=_project_filter)
            for wheel in sorted(self.wheel_dir.glob("*.whl")):
                tar.add(str(wheel), arcname=f"wheels/{wheel.name}", filter=_project_filter)
            self._add(tar, "requirements.txt", "".join(r + "\n" for r in self.requirements).encode())
            conf = {"name": self.name, "module": self.module, "processes": self.processes,
                    "worker_args": self.worker_args, "created": time.time(), "from": os.uname().nodename}
            self._add(tar, "deploy.json", json.dumps(conf, indent=1).encode())
            self._add(tar, "env.json", json.dumps(self.env).encode(), mode=0o600)
        return buf.getvalue()

    @staticmethod
    def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        tar.addfile(info, io.BytesIO(data))
