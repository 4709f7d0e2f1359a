"""boostkernel deploy: the payload, the remote agent's process management, one-line errors with secrets
masked, and (serial) a real deploy over SSH to the private sshd of .ci/services.d/openssh.sh with workers
consuming from Redis."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import signal
import socket
import stat
import sys
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from boostkernel_deploy import agent
from boostkernel_deploy.cli import deploy_command
from boostkernel_deploy.payload import Payload, distributions_for, wheels_for
from boostkernel_deploy.remote import Masker
from click.testing import CliRunner

from boostkernel import boost
from boostkernel.registry import REGISTRY
from boostkernel.testing.helpers import service_url, wait_until

DEFAULTS = {"boostkernel", "boostkernel-sqlite", "boostkernel-threads", "boostkernel-retry"}


# --- the payload ------------------------------------------------------------------------------------------
def test_distributions_follow_the_boosters_brokers_and_the_extras() -> None:
    q = f"deploy_dist_{uuid.uuid4().hex[:8]}"
    try:
        b = boost(q, broker="redis", broker_url="redis://127.0.0.1:6379/15")(lambda x: x)
        names = distributions_for([b], ["schedule"])
    finally:
        REGISTRY.pop(q, None)
    assert DEFAULTS <= set(names)
    assert {"boostkernel-redis", "boostkernel-schedule"} <= set(names)
    assert "boostkernel-rabbitmq" not in names and "boostkernel-deploy" not in names


def test_wheels_are_packed_from_the_workspace_sources_with_valid_records(tmp_path: Path) -> None:
    wheels, reqs = wheels_for(["boostkernel", "boostkernel-redis"], tmp_path)
    assert sorted(w.name for w in wheels) == ["boostkernel-0.1.0-py3-none-any.whl",
                                              "boostkernel_redis-0.1.0-py3-none-any.whl"]
    assert reqs == ["boostkernel==0.1.0", "boostkernel-redis==0.1.0"]
    with zipfile.ZipFile(tmp_path / "boostkernel_redis-0.1.0-py3-none-any.whl") as z:
        names = set(z.namelist())
        assert "boostkernel_redis/__init__.py" in names and "boostkernel_redis/py.typed" in names
        assert not any("__pycache__" in n for n in names)
        info = "boostkernel_redis-0.1.0.dist-info"
        assert "redis = boostkernel_redis" in z.read(f"{info}/entry_points.txt").decode().replace(".plugin", "")
        assert "Name: boostkernel-redis" in z.read(f"{info}/METADATA").decode()
        for row in z.read(f"{info}/RECORD").decode().splitlines():
            path, digest, size = row.split(",")
            if path.endswith("RECORD"):
                continue
            data = z.read(path)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={want}" and int(size) == len(data), path


def test_payload_ships_the_project_without_caches_and_the_env_private(tmp_path: Path) -> None:
    import io
    import tarfile

    project = tmp_path / "proj"
    (project / "pkg" / "__pycache__").mkdir(parents=True)
    (project / ".git").mkdir()
    (project / "pkg" / "tasks.py").write_text("X = 1\n")
    (project / "pkg" / "__pycache__" / "tasks.cpython-311.pyc").write_bytes(b"x")
    (project / ".git" / "HEAD").write_text("ref")
    wheel_dir = tmp_path / "wheels"
    wheels_for(["boostkernel-solo"], wheel_dir)
    data = Payload("app", "pkg.tasks", 3, project, wheel_dir, ["boostkernel-solo==0.1.0"], {"API_TOKEN": "t0ken"},
                   ["-q", "orders"]).archive()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert "app/pkg/tasks.py" in members
        assert not any("__pycache__" in n or ".git" in n for n in members)
        assert "wheels/boostkernel_solo-0.1.0-py3-none-any.whl" in members
        assert members["env.json"].mode == 0o600
        conf = json.load(tar.extractfile("deploy.json"))  # type: ignore[arg-type]
    assert (conf["module"], conf["processes"], conf["worker_args"]) == ("pkg.tasks", 3, ["-q", "orders"])


# --- masking and one-line errors ---------------------------------------------------------------------------
def test_masker_hides_passwords_passphrases_secret_env_values_and_url_passwords() -> None:
    m = Masker()
    m.add("hunter22")
    m.add("my passphrase")
    m.add_env({"API_TOKEN": "tok-123", "BROKER_URL": "amqp://app:s3cr3t@mq:5672/", "REGION": "eu-west"})
    text = m("login hunter22 / my passphrase / tok-123 / amqp://app:s3cr3t@mq:5672/ / s3cr3t again / eu-west")
    for secret in ("hunter22", "my passphrase", "tok-123", "s3cr3t"):
        assert secret not in text
    assert "eu-west" in text and "amqp://app:**@mq:5672/" in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_host_is_one_line_with_the_fix_and_no_secret() -> None:
    port = _free_port()
    r = CliRunner().invoke(deploy_command, ["status", "--host", "127.0.0.1", "--port", str(port)],
                           env={"BOOSTKERNEL_DEPLOY_PASSWORD": "pw-hunter22"})
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    assert f"cannot reach 127.0.0.1:{port}" in lines[0] and "check --host and --port" in lines[0]
    assert "pw-hunter22" not in r.output


def test_bare_deploy_means_start_and_lists_its_subcommands() -> None:
    r = CliRunner().invoke(deploy_command, ["--help"])
    assert r.exit_code == 0
    assert all(c in r.output for c in ("start", "status", "stop"))
    r = CliRunner().invoke(deploy_command, ["myapp.tasks", "--help"])  # routed to `deploy start`
    assert r.exit_code == 0 and "--processes" in r.output and "--bundle-deps" in r.output


# --- the agent on this machine: venv errors, start / status / stop ----------------------------------------
def test_agent_says_how_to_fix_a_python_without_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho 'The virtual environment was not created successfully because ensurepip is "
                    "not available.' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    with pytest.raises(agent.AgentError) as exc:
        agent.install(str(tmp_path / "dep"), "offline", "pip")
    assert "ensurepip is not available" in exc.value.error
    assert "apt-get install python3-venv" in exc.value.fix


FAKE_WORKER = """#!{python}
import os, signal, sys, time
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *a: (print("graceful stop", flush=True), sys.exit(0)))
print("worker", sys.argv[1:], os.environ["API_TOKEN"], flush=True)
while True:
    time.sleep(0.05)
"""


def _fake_deployment(d: Path, processes: int, env: dict[str, str]) -> None:
    (d / "venv" / "bin").mkdir(parents=True)
    (d / "app").mkdir()
    exe = d / "venv" / "bin" / "boostkernel"
    exe.write_text(FAKE_WORKER.format(python=sys.executable))
    exe.chmod(0o755)
    (d / "deploy.json").write_text(json.dumps({"name": d.name, "module": "pkg.tasks", "processes": processes,
                                               "worker_args": ["-q", "orders"]}))
    (d / "env.json").write_text(json.dumps(env))


@pytest.mark.parametrize("ignore_term, how", [("", "terminated"), ("1", "killed")])
def test_agent_starts_workers_in_their_own_session_and_stops_them(tmp_path: Path, ignore_term: str, how: str) -> None:
    d = tmp_path / "dep"
    _fake_deployment(d, 2, {"API_TOKEN": "tok", "IGNORE_TERM": ignore_term})
    started = agent.start(str(d), settle=0.2)["started"]
    assert [w["index"] for w in started] == [1, 2]
    try:
        for w in started:
            assert os.getsid(w["pid"]) == w["pid"]  # a session of its own: closing the SSH session spares it
            assert (d / "run" / f"worker-{w['index']}.pid").read_text().strip() == str(w["pid"])
        logs = [d / "log" / f"worker-{i}.log" for i in (1, 2)]
        assert wait_until(lambda: all("worker" in p.read_text() for p in logs), timeout=10)
        st = agent.status(str(d), lines=5)
        assert [w["alive"] for w in st["workers"]] == [True, True]
        assert all(w["uptime"] >= 0 for w in st["workers"])
        # API_TOKEN's value is masked in the lines shown (the worker printed it)
        assert st["workers"][0]["lines"] == ["worker ['worker', 'pkg.tasks', '-q', 'orders'] **"]
        with pytest.raises(agent.AgentError, match="still run"):
            agent.start(str(d), settle=0)
        t0 = time.monotonic()
        out = agent.stop(str(d), timeout=1.0)
        assert [w["how"] for w in out["stopped"]] == [how, how]
        assert time.monotonic() - t0 < 8
        st = agent.status(str(d), lines=1)
        assert [w["alive"] for w in st["workers"]] == [False, False]
        assert all(w["stopped"] for w in st["workers"])
        if how == "terminated":
            assert st["workers"][0]["lines"] == ["graceful stop"]
        assert agent.list_deployments(str(tmp_path))["deployments"] == [
            {"name": "dep", "module": "pkg.tasks", "processes": 2, "alive": 0}]
    finally:
        for w in started:
            try:
                os.killpg(w["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_agent_reports_a_worker_that_dies_at_once_with_its_log(tmp_path: Path) -> None:
    d = tmp_path / "dep"
    _fake_deployment(d, 1, {})  # no API_TOKEN: the fake worker fails with a KeyError
    with pytest.raises(agent.AgentError) as exc:
        agent.start(str(d), settle=10)
    assert "worker 1 exited at once" in exc.value.error and "KeyError" in exc.value.error


# --- over SSH ----------------------------------------------------------------------------------------------
@pytest.mark.service("ssh")
def test_auth_failure_is_one_line_with_the_fix(tmp_path: Path, ssh_options: list[str]) -> None:
    import asyncssh

    key = tmp_path / "stranger_key"
    key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    key.chmod(0o600)
    opts = list(ssh_options)
    opts[opts.index("--key-file") + 1] = str(key)
    r = CliRunner().invoke(deploy_command, ["status", *opts, "--passphrase", "sekrit-phrase"])
    assert r.exit_code == 1
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert "SSH authentication failed" in r.output and "--key-file" in r.output
    assert "sekrit-phrase" not in r.output


@pytest.mark.service("ssh")
def test_unknown_host_key_is_refused_with_the_fix(tmp_path: Path, ssh_options: list[str]) -> None:
    opts = list(ssh_options)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    opts[opts.index("--known-hosts") + 1] = str(empty)
    r = CliRunner().invoke(deploy_command, ["status", *opts])
    assert r.exit_code == 1
    assert "host key" in r.output and "ssh-keyscan" in r.output


@pytest.mark.service("ssh")
def test_missing_remote_python_is_one_line_with_the_fix(ssh_options: list[str], tmp_path: Path) -> None:
    r = CliRunner().invoke(deploy_command, ["status", *ssh_options, "--remote-dir", str(tmp_path),
                                            "--python", "/nonexistent/python3"])
    assert r.exit_code == 1
    assert r.output.strip() == ("Error: /nonexistent/python3 is not found on 127.0.0.1: install Python 3.10+ there, "
                                "or pass --python with the path of one")


TASKS = """
import os

from boostkernel import boost


@boost(os.environ["DEPLOY_TEST_QUEUE"], broker="redis", broker_url=os.environ["DEPLOY_TEST_REDIS"], results=True)
def whoami(x: int) -> dict:
    print(f"task {x} sees token {os.environ.get('API_TOKEN')}", flush=True)  # the user's code leaks it to the log
    return {"x": x, "pid": os.getpid(), "token_ok": os.environ.get("API_TOKEN") == "tok-SECRET-42"}
"""


def _cli(*args: str) -> Any:
    """``boostkernel deploy ARGS`` in this process (no interpreter start-up: seconds saved per call)."""
    return CliRunner().invoke(deploy_command, list(args))


@pytest.fixture
def e2e(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ssh_options: list[str]) -> Iterator[dict[str, Any]]:
    project = tmp_path / "proj"
    project.mkdir()
    module = f"deploy_e2e_{uuid.uuid4().hex[:8]}"
    (project / f"{module}.py").write_text(textwrap.dedent(TASKS))
    queue = f"{module}_q"
    redis_url = service_url("redis")
    monkeypatch.setenv("DEPLOY_TEST_QUEUE", queue)
    monkeypatch.setenv("DEPLOY_TEST_REDIS", redis_url)
    conn = [*ssh_options, "--remote-dir", str(tmp_path / "remote")]
    ctx = {"project": project, "module": module, "queue": queue, "conn": conn, "redis": redis_url,
           "remote": tmp_path / "remote" / module}
    yield ctx
    if (ctx["remote"] / "deploy.json").exists():
        _cli("stop", *conn, "--name", module, "--timeout", "5")
    REGISTRY.pop(queue, None)


def _import(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.serial
@pytest.mark.service("redis")
@pytest.mark.service("ssh")
def test_deploy_runs_workers_that_outlive_the_session_and_stop(e2e: dict[str, Any], bk: Callable[..., Any]) -> None:
    conn, module = e2e["conn"], e2e["module"]
    # the real command in its own process; offline: every wheel (ours and the third-party ones) is
    # shipped and the host installs with --no-index
    r = bk("deploy", module, *conn, "-n", "2", "--env", f"DEPLOY_TEST_QUEUE={e2e['queue']}",
           "--env", f"DEPLOY_TEST_REDIS={e2e['redis']}", "--env", "API_TOKEN=tok-SECRET-42",
           "--bundle-deps", "--index", "offline", cwd=e2e["project"])
    assert r.returncode == 0, r.stderr
    assert "started 2 worker(s)" in r.stderr and "(offline)" in r.stderr
    assert "tok-SECRET-42" not in r.stdout + r.stderr
    remote = e2e["remote"]
    assert stat.S_IMODE((remote / "env.json").stat().st_mode) == 0o600

    # the deploy command and its SSH session are gone; a fresh session finds both workers alive
    st = json.loads(_cli("status", *conn, "--name", module, "--json").output)
    pids = {w["pid"] for w in st["workers"] if w["alive"]}
    assert len(pids) == 2, st
    for pid in pids:
        assert os.getsid(pid) == pid  # each leads its own session, apart from sshd's

    again = _cli(module, *conn, "--no-infer")  # a second deploy does not clobber a running one
    assert again.exit_code == 1 and "already runs" in again.output and "--replace" in again.output

    tasks = _import(e2e["project"] / f"{module}.py")
    results = [tasks.whoami.push(i) for i in range(20)]
    values = [res.get(timeout=60) for res in results]
    assert [v["x"] for v in values] == list(range(20))
    assert {v["pid"] for v in values} <= pids and os.getpid() not in {v["pid"] for v in values}
    assert all(v["token_ok"] for v in values)

    text = _cli("status", *conn, "--name", module, "--lines", "40")
    assert text.exit_code == 0, text.output
    assert "2/2 alive" in text.output and f"consuming {e2e['queue']}" in text.output
    assert "tok-SECRET-42" not in text.output and "sees token **" in text.output, text.output
    assert f"{module}: {module}, 2/2 alive" in _cli("status", *conn).output

    stop = _cli("stop", *conn, "--name", module, "--timeout", "20")
    assert stop.exit_code == 0, stop.output
    assert stop.output.count(" terminated") == 2, stop.output  # SIGTERM was enough: graceful
    text = _cli("status", *conn, "--name", module)
    assert "0/2 alive" in text.output and text.output.count(": stopped") == 2, text.output
    for pid in pids:
        assert not agent._alive(pid, str(remote))


def test_settings_come_from_pyproject_below_env_and_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port_file, port_env = _free_port(), _free_port()
    (tmp_path / "pyproject.toml").write_text(f'[tool.boostkernel-deploy]\nhost = "127.0.0.1"\nport = {port_file}\n')
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    r = CliRunner().invoke(deploy_command, ["status"])
    assert r.exit_code == 1 and f"cannot reach 127.0.0.1:{port_file}" in r.output, r.output
    r = CliRunner().invoke(deploy_command, ["status"], env={"BOOSTKERNEL_DEPLOY_PORT": str(port_env)})
    assert f"cannot reach 127.0.0.1:{port_env}" in r.output, r.output
    r = CliRunner().invoke(deploy_command, ["status", "--port", "1"], env={"BOOSTKERNEL_DEPLOY_PORT": str(port_env)})
    assert "cannot reach 127.0.0.1:1 " in r.output, r.output


def _tiny_wheel(folder: Path) -> None:
    """A minimal wheel of a distribution ``bkdeploy-probe`` (module ``bkdeploy_probe``), no dependencies."""
    folder.mkdir(parents=True, exist_ok=True)
    info = "bkdeploy_probe-1.0.dist-info"
    files = {"bkdeploy_probe.py": b"VALUE = 42\n",
             f"{info}/METADATA": b"Metadata-Version: 2.1\nName: bkdeploy-probe\nVersion: 1.0\n",
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for n, d in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    with zipfile.ZipFile(folder / "bkdeploy_probe-1.0-py3-none-any.whl", "w") as z:
        for n, d in files.items():
            z.writestr(n, d)


@pytest.mark.serial  # python -m venv with ensurepip: seconds of CPU
def test_agent_installs_offline_with_venv_and_pip(tmp_path: Path) -> None:
    """The path for a host without uv: ``python3 -m venv`` then ``pip install --no-index`` of shipped wheels."""
    d = tmp_path / "dep"
    _tiny_wheel(d / "wheels")
    (d / "requirements.txt").write_text("bkdeploy-probe==1.0\n")
    out = agent.install(str(d), "offline", "pip")
    assert (out["installed"], out["installer"]) == ("offline", "pip")
    import subprocess

    probe = subprocess.run([str(d / "venv" / "bin" / "python"), "-c", "import bkdeploy_probe; print(bkdeploy_probe.VALUE)"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "42", probe.stderr


def test_agent_offline_install_names_the_missing_wheels_fix(tmp_path: Path) -> None:
    import shutil

    if shutil.which("uv") is None:
        pytest.skip("uv is not on the PATH (the pip path is covered by the serial test)")
    d = tmp_path / "dep"
    _tiny_wheel(d / "wheels")
    (d / "requirements.txt").write_text("bkdeploy-probe==1.0\nbkdeploy-not-shipped==9.9\n")
    with pytest.raises(agent.AgentError) as exc:
        agent.install(str(d), "offline", "uv")
    assert "offline:" in exc.value.error and "bkdeploy-not-shipped" in exc.value.error
    assert "--bundle-deps" in exc.value.fix


@pytest.mark.service("ssh")
def test_encrypted_key_without_its_passphrase_says_which_variable_to_set(tmp_path: Path,
                                                                        ssh_options: list[str]) -> None:
    import asyncssh

    key = tmp_path / "encrypted_key"
    key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key(passphrase="right-phrase"))
    key.chmod(0o600)
    opts = list(ssh_options)
    opts[opts.index("--key-file") + 1] = str(key)
    r = CliRunner().invoke(deploy_command, ["status", *opts])
    assert r.exit_code == 1
    assert "cannot read the key file" in r.output and "BOOSTKERNEL_DEPLOY_KEY_PASSPHRASE" in r.output
    r = CliRunner().invoke(deploy_command, ["status", *opts], env={"BOOSTKERNEL_DEPLOY_KEY_PASSPHRASE": "wrong-phrase"})
    assert r.exit_code == 1 and "cannot read the key file" in r.output and "wrong-phrase" not in r.output


def test_wheels_come_from_the_wheelhouse_when_given(tmp_path: Path) -> None:
    from boostkernel_deploy.payload import PayloadError

    house = tmp_path / "house"
    house.mkdir()
    (house / "boostkernel_solo-0.1.0-py3-none-any.whl").write_bytes(b"from the wheelhouse")
    wheels, reqs = wheels_for(["boostkernel-solo", "boostkernel-threads"], tmp_path / "out", house)
    assert reqs == ["boostkernel-solo==0.1.0", "boostkernel-threads==0.1.0"]
    by_name = {w.name: w for w in wheels}
    assert by_name["boostkernel_solo-0.1.0-py3-none-any.whl"].read_bytes() == b"from the wheelhouse"
    assert "boostkernel_threads-0.1.0-py3-none-any.whl" in by_name  # not in the wheelhouse: packed from source
    with pytest.raises(PayloadError, match="build_wheelhouse.py"):
        wheels_for(["boostkernel-solo"], tmp_path / "out2", tmp_path / "missing")


def test_a_module_file_outside_the_project_is_refused(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "elsewhere.py").write_text("X = 1\n")
    r = CliRunner().invoke(deploy_command, [str(tmp_path / "elsewhere.py"), "--host", "127.0.0.1",
                                            "--project", str(tmp_path / "proj")])
    assert r.exit_code == 1 and "is not inside the project folder" in r.output and "--project" in r.output
