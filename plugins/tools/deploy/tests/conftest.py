"""Fixtures of boostkernel-deploy's tests: the private sshd of ``.ci/services.d/openssh.sh`` (127.0.0.1:2222,
keys and known_hosts in ``$BOOSTKERNEL_SSH_DIR``, default /opt/boostkernel-tools/ssh or
~/.cache/boostkernel-tools/ssh) and a runner for the real ``boostkernel`` command."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from boostkernel.testing.helpers import service_url

BOOSTKERNEL = str(Path(sys.executable).with_name("boostkernel"))


def ssh_dir() -> Path | None:
    candidates = [os.environ.get("BOOSTKERNEL_SSH_DIR"), "/opt/boostkernel-tools/ssh",
                  str(Path.home() / ".cache" / "boostkernel-tools" / "ssh")]
    for c in candidates:
        if c and (Path(c) / "id_ed25519").exists() and (Path(c) / "known_hosts").exists():
            return Path(c)
    return None


@pytest.fixture
def ssh_options() -> list[str]:
    """Connection options for the test sshd (the test must carry ``@pytest.mark.service("ssh")``)."""
    d = ssh_dir()
    if d is None:
        msg = "the sshd listens but its keys are missing: run bash .ci/services.d/openssh.sh"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    url = service_url("ssh")
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return ["--host", host, "--port", port.rstrip("/"), "--user", getpass.getuser(),
            "--key-file", str(d / "id_ed25519"), "--known-hosts", str(d / "known_hosts")]


@pytest.fixture
def bk() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``bk("deploy", "status", ...)``: run the installed ``boostkernel`` command, as a user would."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
        env["COLUMNS"] = "200"
        return subprocess.run([BOOSTKERNEL, *args], capture_output=True, text=True, cwd=cwd, env=env,
                              timeout=timeout)

    return run
