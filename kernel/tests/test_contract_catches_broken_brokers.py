"""The broker contract fails a broker that breaks a delivery rule, and passes the real one.

Each deliberately broken SQLite broker (contract_broken/broken_sqlite_brokers.py) breaks one rule; the
contract test for that rule runs, in a separate pytest process as a plugin author runs it, against the
broken broker (must fail) and against the real SqliteBroker (must pass).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).parent / "contract_broken"

COUNT, PURGE = "test_count_excludes_in_flight", "test_purge_leaves_in_flight_alone"

#: (broken broker, the contract test that must fail for it)
RULES = [
    ("RacyClaim", "test_competing_consumer_processes_each_message_once"),
    ("NoReaper", "test_crash_redelivers_everything_held"),
    ("NoLeaseExtension", "test_live_long_task_is_not_redelivered"),
    ("NoCrashLoopLimit", "test_crash_loop_goes_to_dead_letters"),
    ("NackDelayIgnored", "test_nack_delay_is_honoured"),
    ("NoReconnect", "test_reconnects_after_connection_cut"),
    ("CountsInFlight", COUNT),
    ("PurgeDeletesInFlight", PURGE),
    ("CloseKeepsPrefetched", "test_close_is_idempotent_and_returns_prefetched"),
    ("CloseNotIdempotent", "test_close_is_idempotent_and_returns_prefetched"),
    ("BufferNotReported", COUNT),
    ("BufferNotReported", PURGE),
    ("BufferOverReported", COUNT),
    ("BufferOverReported", PURGE),
    ("BufferedPurgeDeletesInFlight", PURGE),
]

#: correct brokers -> the contract tests they must pass: the real SqliteBroker, and a correct one with a
#: client-side buffer (the count and purge tests must not fail a broker for buffering ahead)
CORRECT = {"Real": sorted({test for _, test in RULES}), "BufferedSqlite": [COUNT, PURGE]}

MODULE = '''
from __future__ import annotations

import pytest
import broken_sqlite_brokers as broken
from boostkernel_sqlite.broker import SqliteBroker
from boostkernel.testing import BrokerContract

FAST = {"lease": 1.0, "heartbeat_interval": 0.2, "reap_interval": 0.2, "max_deliveries": 3}


class _Sqlite(BrokerContract):
    broker_class = SqliteBroker
    lease_seconds = 1.0
    recovery_seconds = 3.0
    settle_time = 2.0

    @pytest.fixture
    def make_broker(self, tmp_path):
        url = f"sqlite:///{tmp_path}/queues.db"
        return lambda queue: self.broker_class(queue, url, **FAST)

    @pytest.fixture
    def cut_connection(self):
        return lambda broker: broker.db.conn.close()


class TestReal(_Sqlite):
    pass
'''


def test_each_broken_broker_fails_its_rule_and_the_real_one_passes(tmp_path: Path) -> None:
    names = sorted({name for name, _ in RULES} | (CORRECT.keys() - {"Real"}))
    src = MODULE + "".join(f"\n\nclass Test{name}(_Sqlite):\n    broker_class = broken.{name}\n" for name in names)
    (tmp_path / "test_broken_contract.py").write_text(src)
    (tmp_path / "pytest.ini").write_text("[pytest]\nxfail_strict = true\nfilterwarnings = error\n")
    ids = [f"test_broken_contract.py::Test{name}::{test}" for name, test in RULES]
    ids += [f"test_broken_contract.py::Test{name}::{test}" for name, tests in CORRECT.items() for test in tests]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:pytest_nameko", "-p", "boostkernel.testing.plugin", "-q", "-p", "no:cacheprovider",
         f"--junitxml={tmp_path / 'out.xml'}", *ids],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    outcome: dict[tuple[str, str], str] = {}
    for case in ET.parse(tmp_path / "out.xml").iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        key = (cls, case.get("name", ""))
        if outcome.get(key) != "failure":  # a failed call may be followed by a teardown error: keep the failure
            outcome[key] = "failure" if "failure" in kinds else kinds[0] if kinds else "passed"
    report = proc.stdout[-6000:]
    for name, test in RULES:
        assert outcome.get((f"Test{name}", test)) == "failure", \
            f"the contract did not catch {name} with {test}: {outcome.get((f'Test{name}', test))}\n{report}"
    for name, tests in CORRECT.items():
        for test in tests:
            assert outcome.get((f"Test{name}", test)) == "passed", f"the correct {name} fails {test}\n{report}"
