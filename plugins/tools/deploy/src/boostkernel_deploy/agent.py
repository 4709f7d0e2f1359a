"""The remote half of ``boostkernel deploy``: shipped into each deployment's folder and run there with the
remote host's own ``python3`` (standard library only, no boostkernel needed to run it).

    python3 agent.py install DIR --index auto|offline|online --installer auto|pip|uv
    python3 agent.py start DIR [--settle SECONDS]
    python3 agent.py status DIR [--lines N]
    python3 agent.py stop DIR [--timeout SECONDS]
    python3 agent.py alive DIR           # how many workers of the deployment run
    python3 agent.py list ROOT           # the deployments under ROOT

(``boostkernel deploy`` sends this file on standard input: ``python3 - start DIR``.) Each prints one JSON object on stdout; on failure ``{"error": ..., "fix": ...}`` and exit code 2.

A deployment folder holds ``deploy.json`` (module, processes, worker arguments), ``env.json`` (extra
environment, mode 600), ``app/`` (the user's project, the workers' working directory), ``wheels/`` and
``requirements.txt`` (what is installed into ``venv/``), ``run/worker-N.json`` (pid and start time of worker
N; ``run/worker-N.pid`` holds the bare pid) and ``log/worker-N.log`` (its output).

Workers are started in a new session (``setsid``), stdin from /dev/null and output to their log file, so
they do not belong to the SSH session and keep running when it closes. ``stop`` sends SIGTERM to each
worker's process group (a graceful shutdown: running tasks finish), then SIGKILL after the timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from typing import Any


class AgentError(Exception):
    def __init__(self, error: str, fix: str = "") -> None:
        super().__init__(error)
        self.error, self.fix = error, fix


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


# --- install ---------------------------------------------------------------------------------------------
def install(d: str, index: str, installer: str = "auto") -> dict[str, Any]:
    """Create ``venv/`` and install ``requirements.txt`` into it: from the shipped wheels only (offline), from
    the host's package index too (online), or offline first, then online (auto). With ``uv`` on the host's
    PATH (installer auto or uv) uv makes the virtualenv and installs (seconds); otherwise ``python3 -m venv``
    and pip."""
    venv = os.path.join(d, "venv")
    if os.path.exists(venv):
        shutil.rmtree(venv)
    uv = shutil.which("uv") if installer in ("auto", "uv") else None
    if installer == "uv" and uv is None:
        raise AgentError("uv is not on the PATH of this host", "install it (pip install uv) or pass --installer pip")
    python = os.path.join(venv, "bin", "python")
    if uv:
        r = subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, venv], capture_output=True, text=True)
    else:
        r = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(python):
        shutil.rmtree(venv, ignore_errors=True)
        raise AgentError(f"`{sys.executable} -m venv` does not work on this host: {_tail(r.stderr or r.stdout, 3)}",
                         "install the venv module there (Debian/Ubuntu: apt-get install python3-venv) or pass "
                         "--python with an interpreter that has it")
    source = ["--find-links", os.path.join(d, "wheels"), "-r", os.path.join(d, "requirements.txt")]
    if uv:
        base = [uv, "pip", "install", "--quiet", "--python", python, *source]
        offline_flags = ["--offline", "--no-index"]
    else:
        base = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet", *source]
        offline_flags = ["--no-index"]
    started = time.time()
    tried: list[str] = []
    for way in (["offline", "index"] if index == "auto" else ["offline" if index == "offline" else "index"]):
        r = subprocess.run(base + (offline_flags if way == "offline" else []), capture_output=True, text=True, cwd=d)
        if r.returncode == 0:
            return {"installed": way, "installer": "uv" if uv else "pip", "seconds": round(time.time() - started, 1)}
        tried.append(f"{way}: {_tail(r.stderr or r.stdout, 4)}")
    fix = {"offline": "ship every dependency with --bundle-deps (the remote host installs with --no-index)",
           "auto": "ship every dependency with --bundle-deps (then the host needs no package index), or make the "
                   "host reach its package index (see the index error above)",
           "online": "check that the remote host reaches the package index, or deploy with --bundle-deps "
                     "--index offline"}[index]
    raise AgentError(f"{'uv' if uv else 'pip'} could not install the requirements in the remote virtualenv ("
                     + " | ".join(tried) + ")", fix)


# --- processes -------------------------------------------------------------------------------------------
def _workers(d: str) -> list[dict[str, Any]]:
    run = os.path.join(d, "run")
    out = []
    if os.path.isdir(run):
        for name in os.listdir(run):
            if name.startswith("worker-") and name.endswith(".json"):
                rec = _read_json(os.path.join(run, name))
                out.append(rec)
    return sorted(out, key=lambda r: int(r["index"]))


def _alive(pid: int, d: str) -> bool:
    """The process runs, is not a zombie, and is ours (its command line names the deployment folder, so a
    recycled pid of another program does not count)."""
    proc = f"/proc/{pid}"
    if os.path.isdir("/proc"):
        try:
            with open(proc + "/stat", encoding="utf-8", errors="replace") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(proc + "/cmdline", "rb") as fb:
                cmdline = fb.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and os.path.realpath(d) in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(d: str, settle: float) -> dict[str, Any]:
    conf = _read_json(os.path.join(d, "deploy.json"))
    env = dict(os.environ)
    env.update(_read_json(os.path.join(d, "env.json")))
    env.setdefault("BOOSTKERNEL_DATA_DIR", os.path.join(d, "data"))
    env["PYTHONUNBUFFERED"] = "1"
    env["BOOSTKERNEL_DEPLOYMENT"] = conf["name"]
    for var in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(var, None)
    for sub in ("run", "log", "data"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    running = [w for w in _workers(d) if _alive(int(w["pid"]), d)]
    if running:
        raise AgentError(f"{len(running)} worker(s) of this deployment still run",
                         "stop them first (boostkernel deploy stop) or deploy with --replace")
    exe = os.path.join(os.path.realpath(d), "venv", "bin", "boostkernel")
    started: list[dict[str, Any]] = []
    for i in range(1, int(conf["processes"]) + 1):
        log_path = os.path.join(d, "log", f"worker-{i}.log")
        with open(log_path, "ab") as log, open(os.devnull, "rb") as null:
            p = subprocess.Popen([exe, "worker", conf["module"], *conf.get("worker_args", [])],
                                 cwd=os.path.join(d, "app"), env=env, stdin=null, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True)
        rec = {"index": i, "pid": p.pid, "started": time.time(), "log": log_path}
        with open(os.path.join(d, "run", f"worker-{i}.pid"), "w", encoding="utf-8") as f:
            f.write(f"{p.pid}\n")
        _write_json(os.path.join(d, "run", f"worker-{i}.json"), rec)
        started.append({**rec, "popen": p})
    # a worker that cannot import the module or reach its broker exits at once: wait a moment for that
    deadline = time.time() + settle
    while time.time() < deadline and all(w["popen"].poll() is None for w in started):
        time.sleep(0.1)
    dead = [w for w in started if w["popen"].poll() is not None]
    if dead:
        with open(dead[0]["log"], encoding="utf-8", errors="replace") as f:
            tail = _tail(f.read(), 8)
        for w in started:
            if w["popen"].poll() is None:
                _signal_group(int(w["pid"]), signal.SIGTERM)
        raise AgentError(f"worker {dead[0]['index']} exited at once with code {dead[0]['popen'].returncode}; "
                         f"its log ends with: {tail}", "fix the module or its settings (see the log above), "
                                                       "then deploy again")
    for w in started:
        # detached on purpose: never waited for here (they outlive this agent); tell Popen not to warn about it
        w.pop("popen").returncode = 0
    return {"started": started}


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the worker leads its own session and process group: children included
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _last_lines(path: str, n: int) -> list[str]:
    if n <= 0 or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in deque(f, maxlen=n)]


_SECRET_NAME = re.compile(r"(?i)(pass|secret|token|key|credential|auth|private)")
_URL_PASSWORD = re.compile(r"://[^:/@\s]*:([^@/\s]+)@")


def _secrets(d: str) -> list[str]:
    """The values of env.json to hide in the log lines shown: those of secret-looking names, URL passwords
    (the same rule as ``boostkernel_deploy.remote.Masker``)."""
    try:
        env = _read_json(os.path.join(d, "env.json"))
    except (OSError, ValueError):
        return []
    found = set()
    for name, value in env.items():
        if _SECRET_NAME.search(name) and len(value) >= 3:
            found.add(value)
        found.update(m.group(1) for m in _URL_PASSWORD.finditer(value) if len(m.group(1)) >= 3)
    return sorted(found, key=len, reverse=True)


def _masked(lines: list[str], secrets: list[str]) -> list[str]:
    out = []
    for line in lines:
        for s in secrets:
            line = line.replace(s, "**")
        out.append(line)
    return out


def status(d: str, lines: int) -> dict[str, Any]:
    if not os.path.exists(os.path.join(d, "deploy.json")):
        raise AgentError(f"no deployment in {d}", "check --name and --remote-dir (boostkernel deploy status "
                                                  "without --name lists the deployments)")
    conf = _read_json(os.path.join(d, "deploy.json"))
    now = time.time()
    secrets = _secrets(d) if lines > 0 else []
    workers = []
    for w in _workers(d):
        alive = _alive(int(w["pid"]), d)
        workers.append({"index": w["index"], "pid": w["pid"], "alive": alive,
                        "uptime": round(now - float(w["started"]), 1) if alive else None,
                        "stopped": w.get("stopped"), "log": w["log"], "lines": _masked(_last_lines(w["log"], lines), secrets)})
    return {"name": conf["name"], "module": conf["module"], "processes": conf["processes"], "dir": d,
            "workers": workers}


def list_deployments(root: str) -> dict[str, Any]:
    out = []
    if os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            d = os.path.join(root, name)
            if os.path.exists(os.path.join(d, "deploy.json")):
                st = status(d, 0)
                out.append({"name": st["name"], "module": st["module"], "processes": st["processes"],
                            "alive": sum(1 for w in st["workers"] if w["alive"])})
    return {"deployments": out, "root": root}


def stop(d: str, timeout: float) -> dict[str, Any]:
    workers = [w for w in _workers(d) if _alive(int(w["pid"]), d)]
    for w in workers:
        _signal_group(int(w["pid"]), signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline and any(_alive(int(w["pid"]), d) for w in workers):
        time.sleep(0.1)
    result = []
    for w in workers:
        how = "terminated"
        if _alive(int(w["pid"]), d):
            _signal_group(int(w["pid"]), signal.SIGKILL)
            how = "killed"
            end = time.time() + 5
            while time.time() < end and _alive(int(w["pid"]), d):
                time.sleep(0.05)
        w["stopped"] = time.time()
        _write_json(os.path.join(d, "run", f"worker-{w['index']}.json"), w)
        result.append({"index": w["index"], "pid": w["pid"], "how": how})
    return {"stopped": result}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="agent.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("install")
    p.add_argument("dir")
    p.add_argument("--index", choices=("auto", "offline", "online"), default="auto")
    p.add_argument("--installer", choices=("auto", "pip", "uv"), default="auto")
    p = sub.add_parser("start")
    p.add_argument("dir")
    p.add_argument("--settle", type=float, default=2.0)
    p = sub.add_parser("status")
    p.add_argument("dir")
    p.add_argument("--lines", type=int, default=0)
    p = sub.add_parser("alive")
    p.add_argument("dir")
    p = sub.add_parser("list")
    p.add_argument("dir")
    p = sub.add_parser("stop")
    p.add_argument("dir")
    p.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args(argv)
    d = os.path.abspath(os.path.expanduser(a.dir))
    try:
        if a.cmd == "install":
            out = install(d, a.index, a.installer)
        elif a.cmd == "start":
            out = start(d, a.settle)
        elif a.cmd == "status":
            out = status(d, a.lines)
        elif a.cmd == "alive":
            out = {"alive": sum(1 for w in _workers(d) if _alive(int(w["pid"]), d))}
        elif a.cmd == "list":
            out = list_deployments(d)
        else:
            out = stop(d, a.timeout)
    except AgentError as exc:
        print(json.dumps({"error": exc.error, "fix": exc.fix}))
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
