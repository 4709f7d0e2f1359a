"""The kernel's broker contract against a real ActiveMQ (STOMP on 127.0.0.1:61613, started by
``.ci/services.d/activemq.sh``); the kill -9 scenario is tests/e2e/test_stomp_chaos.py. The durability test restarts a private
ActiveMQ (Debian's package, own data directory and ports) started by the fixture, never the shared one; the
count fallback runs against two more private ActiveMQs, without the statistics plugin and without XStream."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from boostkernel_stomp.broker import StompBroker

from boostkernel.broker import Broker, Outgoing
from boostkernel.errors import BrokerUnavailable
from boostkernel.testing import BrokerContract
from boostkernel.testing.helpers import drop_tcp_connections, service_url
from boostkernel.testing.private import PrivateProcess

pytestmark = pytest.mark.service("stomp")

ACTIVEMQ_JAR = "/usr/share/activemq/bin/activemq.jar"
MAP_JARS = ("xstream", "jettison", "xpp3")  # jms-map-json on the server (.ci/services.d/activemq.sh)
CONFIG = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="bkprivate"
          dataDirectory="{base}/data" schedulerSupport="true" persistent="true">
    <destinationPolicy><policyMap><policyEntries>
      <policyEntry queue="&gt;" prioritizedMessages="true" useCache="false" maxBrowsePageSize="100000"/>
    </policyEntries></policyMap></destinationPolicy>
    {plugins}
    <persistenceAdapter><kahaDB directory="{base}/data/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp+nio://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"""


class PrivateActiveMQ(PrivateProcess):
    """A private ActiveMQ (Debian's jar) on a free port with its own KahaDB, restartable."""

    def __init__(self, base: Path, statistics: bool = True, map_jars: bool = True) -> None:
        super().__init__()
        self.base = base
        (base / "tmp").mkdir(parents=True, exist_ok=True)
        plugins = "<plugins><statisticsBrokerPlugin/></plugins>" if statistics else ""
        (base / "activemq.xml").write_text(CONFIG.format(base=base, port=self.port, plugins=plugins))
        if map_jars:  # the launcher puts ${activemq.base}/lib/optional/*.jar on the class path
            (base / "lib" / "optional").mkdir(parents=True, exist_ok=True)
            for jar in MAP_JARS:
                (base / "lib" / "optional" / f"{jar}.jar").symlink_to(f"/usr/share/java/{jar}.jar")

    @property
    def url(self) -> str:
        return f"stomp://127.0.0.1:{self.port}"

    def start(self) -> None:
        java = shutil.which("java") or "java"
        log = open(self.base / "activemq.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [java, "-Xms64M", "-Xmx256M", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
             f"-Djava.io.tmpdir={self.base}/tmp", "--add-opens", "java.base/java.lang=ALL-UNNAMED",
             "--add-opens", "java.base/java.util=ALL-UNNAMED", "--add-opens", "java.base/java.net=ALL-UNNAMED",
             "-Dactivemq.home=/usr/share/activemq", f"-Dactivemq.base={self.base}", f"-Dactivemq.conf={self.base}",
             f"-Dactivemq.data={self.base}/data", "-jar", ACTIVEMQ_JAR, "start", f"xbean:file:{self.base}/activemq.xml"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.base)
        log.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"private ActiveMQ did not start: {(self.base / 'activemq.log').read_text()[-2000:]}")


@pytest.fixture(scope="module")
def private_activemq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateActiveMQ]:
    if not os.path.exists(ACTIVEMQ_JAR):
        pytest.skip("Debian's activemq package is not installed (run .ci/services.d/activemq.sh)")
    amq = PrivateActiveMQ(tmp_path_factory.mktemp("activemq"))
    amq.start()
    yield amq
    amq.stop()


@pytest.fixture(scope="module", params=["no-plugin", "no-xstream"])
def stock_activemq(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateActiveMQ]:
    """A private ActiveMQ without what ``count()`` needs: without the statistics plugin, like a stock
    installation of the official distribution (XStream and Jettison there, the request not answered), or
    with the plugin but without XStream and Jettison, like Debian's package (the server drops the
    connection at the subscription with the map transformation)."""
    if not os.path.exists(ACTIVEMQ_JAR):
        pytest.skip("Debian's activemq package is not installed (run .ci/services.d/activemq.sh)")
    no_plugin = request.param == "no-plugin"
    amq = PrivateActiveMQ(tmp_path_factory.mktemp("activemq-stock"), statistics=not no_plugin, map_jars=no_plugin)
    amq.start()
    yield amq
    amq.stop()


class TestStompContract(BrokerContract):
    lease_seconds = 1.0  # a live consumer keeps its deliveries as long as its connection lives: no lease
    settle_time = 3.0  # a published message is fetchable within milliseconds on ActiveMQ
    recovery_seconds = 5.0  # a SIGKILLed consumer's socket closes at once: ActiveMQ redelivers its messages

    @pytest.fixture
    def cut_connection(self) -> Callable[[Broker], None]:
        def cut(broker: Broker) -> None:
            port = broker.settings.port  # type: ignore[attr-defined]
            if not drop_tcp_connections(port):
                pytest.fail("no connection to cut")

        return cut

    @pytest.fixture
    def restart_service(self, private_activemq: PrivateActiveMQ) -> Callable[[], None]:
        return private_activemq.restart

    @pytest.fixture
    def make_broker(self, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Broker]]:
        if "restart_service" in request.fixturenames:
            url = request.getfixturevalue("private_activemq").url
        else:
            url = service_url("stomp")
        made: list[StompBroker] = []

        def make(queue: str) -> Broker:
            b = StompBroker(queue, url, heartbeat=2.0)
            made.append(b)
            return b

        yield make
        for b in made:
            b.close()
        if made:
            cleaner = StompBroker(made[0].queue, url)
            try:
                cleaner.purge()
                cleaner.purge_dead_letters()
            finally:
                cleaner.close()



def _publish_and_hold_one(url: str, queue: str) -> tuple[StompBroker, StompBroker]:
    """3 messages published to ``queue``; a consumer with a prefetch window of 1 fetched one and holds it
    unacked (in flight), so nothing else is dispatched to it: 2 are waiting."""
    producer = StompBroker(queue, url)
    consumer = StompBroker(queue, url, prefetch=1)
    producer.publish_many([Outgoing(uuid.uuid4().hex, b"{}") for _ in range(3)])
    held = consumer.fetch(1, 10.0)
    assert len(held) == 1 and consumer.buffered() == 0
    return producer, consumer


def test_count_uses_the_statistics_plugin_of_the_private_activemq(private_activemq: PrivateActiveMQ) -> None:
    """The private ActiveMQ is set up like the shared one (statistics plugin, XStream and Jettison):
    ``count_with="statistics"`` (no fallback) counts the 2 waiting messages, not the one in flight."""
    queue = "bk-stats-" + uuid.uuid4().hex[:8]
    producer, consumer = _publish_and_hold_one(private_activemq.url, queue)
    counter = StompBroker(queue, private_activemq.url, count_with="statistics")
    try:
        assert counter.count() == 2
    finally:
        consumer.close()
        producer.purge()
        for b in (producer, counter):
            b.close()


def test_count_on_a_stock_activemq_falls_back_to_the_browser(stock_activemq: PrivateActiveMQ,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """Without the statistics plugin (or the jars its reply needs) the request is not answered: ``count()``
    says so once and counts with the queue browser, which includes the message in flight;
    ``count_with="statistics"`` raises instead."""
    url = stock_activemq.url
    queue = "bk-stock-" + uuid.uuid4().hex[:8]
    producer, consumer = _publish_and_hold_one(url, queue)
    strict = StompBroker(queue, url, count_with="statistics", stats_timeout=0.5)
    auto = StompBroker(queue, url, stats_timeout=0.5)
    browser = StompBroker(queue, url, count_with="browser")
    try:
        with pytest.raises(BrokerUnavailable, match="statistics plugin"):
            strict.count()
        with caplog.at_level(logging.WARNING, logger="boostkernel"):
            assert auto.count() == 3  # 2 waiting + 1 fetched: the browser lists in-flight messages
            assert auto.count() == 3  # the server is not asked again (for NO_STATS_RETRY seconds)
        warnings = [r for r in caplog.records if "statistics plugin" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "queue browser" in warnings[0].getMessage()
        assert browser.count() == 3
    finally:
        consumer.close()
        producer.purge()
        for b in (producer, strict, auto, browser):
            b.close()
