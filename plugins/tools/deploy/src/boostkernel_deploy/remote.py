"""The SSH side of ``boostkernel deploy`` (asyncssh, imported only when a deploy command runs).

Every remote step is one command over one SSH connection; the agent (:mod:`boostkernel_deploy.agent`) is
sent on standard input to the remote ``python3``, so nothing but the deployment folder is written there.
Errors become :class:`DeployError`: one line saying what failed and how to fix it, secrets masked.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boostkernel.logs import mask as mask_urls

_SECRET_NAME = re.compile(r"(?i)(pass|secret|token|key|credential|auth|private)")
_URL_PASSWORD = re.compile(r"://[^:/@\s]*:([^@/\s]+)@")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class DeployError(Exception):
    """A deploy step failed: the message is one line with the fix, secrets already masked."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    """Join the lines of ``text`` with `` | `` (remote output quoted in an error stays on one line)."""
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())


@dataclass
class Masker:
    """Masks the known secrets (password, key passphrase, secret-looking environment values, URL passwords)
    and anything :func:`boostkernel.logs.mask` recognises, in every line shown or raised."""

    secrets: set[str] = field(default_factory=set)

    def add(self, value: str | None) -> None:
        if value and len(value) >= 3:
            self.secrets.add(value)

    def add_env(self, env: dict[str, str]) -> None:
        for name, value in env.items():
            if _SECRET_NAME.search(name):
                self.add(value)
            for m in _URL_PASSWORD.finditer(value):
                self.add(m.group(1))

    def __call__(self, text: str) -> str:
        for s in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(s, "**")
        return mask_urls(text)


@dataclass
class Target:
    """Where and how to connect, and where deployments live on the host."""

    host: str
    user: str | None = None
    port: int = 22
    key_file: str | None = None
    password: str | None = None
    passphrase: str | None = None
    known_hosts: str | None = None
    """A known_hosts file; ``None``: the user's ~/.ssh/known_hosts."""
    check_host_key: bool = True
    remote_dir: str = "boostkernel-deploy"
    """Relative paths are under the remote user's home folder."""
    python: str = "python3"
    connect_timeout: float = 15.0

    def where(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    def deployment_dir(self, name: str) -> str:
        return f"{self.remote_dir.rstrip('/')}/{name}"


def check_name(name: str) -> str:
    if not _NAME.match(name) or name in (".", ".."):
        raise DeployError(f"deployment name {name!r} is not valid: use letters, digits, '.', '-' and '_'")
    return name


def _remote_path(path: str) -> str:
    """Quote a remote path; ``~/x`` stays relative to the home folder (where commands start)."""
    if path.startswith("~/"):
        path = path[2:] or "."
    return shlex.quote(path)


def _agent_source() -> bytes:
    return (Path(__file__).parent / "agent.py").read_bytes()


class Remote:
    """One SSH connection to the target (``async with Remote(target, masker) as r``)."""

    def __init__(self, target: Target, masker: Masker) -> None:
        self.t, self.mask = target, masker
        self.conn: Any = None

    async def __aenter__(self) -> Remote:
        try:
            import asyncssh
        except ImportError:
            raise DeployError("boostkernel deploy needs asyncssh: pip install asyncssh") from None
        t = self.t
        if t.key_file and not Path(t.key_file).expanduser().exists():
            raise DeployError(f"key file {t.key_file} does not exist: pass --key-file with the private key that "
                              f"may log in to {t.host}")
        opts: dict[str, Any] = {"port": t.port, "connect_timeout": t.connect_timeout}
        if t.user:
            opts["username"] = t.user
        if t.key_file:
            opts["client_keys"] = [str(Path(t.key_file).expanduser())]
        if t.passphrase:
            opts["passphrase"] = t.passphrase
        if t.password:
            opts["password"] = t.password
        if not t.check_host_key:
            opts["known_hosts"] = None
        elif t.known_hosts:
            opts["known_hosts"] = str(Path(t.known_hosts).expanduser())
        where = t.where()
        try:
            self.conn = await asyncssh.connect(t.host, **opts)
        except asyncssh.PermissionDenied:
            raise DeployError(self.mask(
                f"SSH authentication failed for {where}: the server refused the key and password offered; check "
                f"--user and --key-file (its public key must be in the remote ~/.ssh/authorized_keys), or set "
                f"BOOSTKERNEL_DEPLOY_PASSWORD")) from None
        except asyncssh.HostKeyNotVerifiable as exc:
            raise DeployError(self.mask(
                f"the host key of {t.host}:{t.port} is not trusted ({exc.reason}): check it, then add it "
                f"(ssh-keyscan -p {t.port} {t.host} >> ~/.ssh/known_hosts) or pass --known-hosts FILE")) from None
        except asyncssh.KeyEncryptionError as exc:
            raise DeployError(self.mask(
                f"cannot read the key file {t.key_file}: {exc} (check BOOSTKERNEL_DEPLOY_KEY_PASSPHRASE, the key's "
                f"passphrase)")) from None
        except asyncssh.KeyImportError as exc:
            raise DeployError(self.mask(
                f"cannot read the key file {t.key_file}: {exc} (encrypted key? set BOOSTKERNEL_DEPLOY_KEY_PASSPHRASE "
                f"to its passphrase)")) from None
        except (OSError, asyncio.TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise DeployError(self.mask(
                f"cannot reach {t.host}:{t.port} ({reason}): check --host and --port, that sshd runs there and "
                f"that the network lets this machine through")) from None
        except asyncssh.Error as exc:
            raise DeployError(self.mask(f"SSH to {where} failed: {exc.reason}")) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()
            await self.conn.wait_closed()

    async def run(self, command: str, stdin: bytes | None = None, timeout: float | None = 600) -> tuple[int, str, str]:
        r = await self.conn.run(command, input=stdin, encoding=None, check=False, timeout=timeout)
        out = (r.stdout or b"").decode("utf-8", "replace")
        err = (r.stderr or b"").decode("utf-8", "replace")
        code = r.exit_status if r.exit_status is not None else 255
        return code, out, err

    async def python_info(self) -> dict[str, Any]:
        """Check the remote interpreter; its version, machine and home folder."""
        py = shlex.quote(self.t.python)
        probe = ("import json, os, platform, sys; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
                 "'machine': platform.machine(), 'system': platform.system(), 'home': os.path.expanduser('~'), "
                 "'executable': sys.executable}))")
        code, out, err = await self.run(f"{py} -c {shlex.quote(probe)}", timeout=60)
        if code != 0:
            raise DeployError(self.mask(
                f"{self.t.python} does not run on {self.t.host} ({(err or out).strip()[-200:] or f'exit {code}'}): "
                f"install Python 3.10+ there, or pass --python with the path of one"))
        info: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        if tuple(int(x) for x in info["version"].split(".")) < (3, 10):
            raise DeployError(f"{self.t.python} on {self.t.host} is Python {info['version']}: boostkernel needs 3.10+; "
                              f"pass --python with a newer interpreter")
        return info

    async def agent(self, *args: str, timeout: float | None = 900) -> dict[str, Any]:
        """Run the agent with ``args`` (the deployment folder among them) and return its JSON answer."""
        cmd = " ".join([shlex.quote(self.t.python), "-", *args])
        code, out, err = await self.run(cmd, stdin=_agent_source(), timeout=timeout)
        lines = out.strip().splitlines()
        if code == 127 and not lines:
            raise DeployError(self.mask(f"{self.t.python} is not found on {self.t.host}: install Python 3.10+ there, "
                                        f"or pass --python with the path of one"))
        try:
            answer: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise DeployError(self.mask(f"the remote agent failed on {self.t.host} (exit {code}): "
                                        f"{(err or out).strip()[-300:]}")) from None
        if "error" in answer:
            fix = answer.get("fix")
            raise DeployError(self.mask(f"{answer['error']}" + (f": {fix}" if fix else "")))
        return answer

    async def upload(self, name: str, archive: bytes) -> str:
        """Unpack ``archive`` into the deployment folder (its old ``app/`` and ``wheels/`` removed first);
        return the folder."""
        d = _remote_path(self.t.deployment_dir(name))
        cmd = (f"umask 077 && mkdir -p {d} && cd {d} && rm -rf app wheels requirements.txt && "
               f"tar -xzf - && chmod 600 env.json")
        code, out, err = await self.run(cmd, stdin=archive)
        if code != 0:
            raise DeployError(self.mask(f"could not unpack the project into {self.t.deployment_dir(name)} on "
                                        f"{self.t.host}: {(err or out).strip()[-300:]} (is tar installed there, and "
                                        f"the folder writable? pass --remote-dir)"))
        return self.t.deployment_dir(name)

    def dir_arg(self, name: str | None = None) -> str:
        return _remote_path(self.t.deployment_dir(name) if name else self.t.remote_dir)
