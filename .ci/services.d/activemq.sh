#!/usr/bin/env bash
# Start Apache ActiveMQ (Debian's `activemq` package, ActiveMQ Classic 5.x) with STOMP on 127.0.0.1:61613.
# Idempotent: quick when something already listens on the STOMP port; otherwise installs the package if
# needed, writes the instance `boostkernel` (STOMP + OpenWire on loopback only, scheduler on for delayed
# messages, the statistics plugin for counting, KahaDB persistence) into /etc/activemq/instances-available,
# enables it, starts it in the background without systemd and waits for the port.
# count() reads the statistics plugin's reply (a map message) over STOMP with transformation:jms-map-json,
# which needs XStream and Jettison on the broker's class path: Debian ships them as libxstream-java and
# libjettison-java (only recommended by libactivemq-java), linked here into the instance's lib/optional,
# which ActiveMQ's launcher adds to its class path.
set -euo pipefail

HOST=127.0.0.1
PORT=${BOOSTKERNEL_ACTIVEMQ_STOMP_PORT:-61613}
OPENWIRE_PORT=${BOOSTKERNEL_ACTIVEMQ_OPENWIRE_PORT:-61616}
INSTANCE=boostkernel
CONF=/etc/activemq/instances-available/$INSTANCE
BASE=/var/lib/activemq/$INSTANCE
LOG=/var/log/activemq-$INSTANCE.log

listening() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

if listening; then
    echo "activemq.sh: something already listens on $HOST:$PORT"
    exit 0
fi

PACKAGES="activemq libxstream-java libjettison-java"
if [ ! -x /usr/bin/activemq ] || [ ! -e /usr/share/java/xstream.jar ] || [ ! -e /usr/share/java/jettison.jar ]; then
    echo "activemq.sh: installing Debian's $PACKAGES"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PACKAGES >/dev/null || {
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PACKAGES >/dev/null; }
fi

mkdir -p "$CONF" "$BASE/data" "$BASE/tmp" "$BASE/lib/optional"
for jar in xstream jettison xpp3; do
    ln -sfn "/usr/share/java/$jar.jar" "$BASE/lib/optional/$jar.jar"
done
cp -n /etc/activemq/instances-available/main/log4j2.properties "$CONF/" 2>/dev/null || true
cat >"$CONF/activemq.xml" <<EOF
<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
                           http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
    <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>
    <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="boostkernel"
            dataDirectory="\${activemq.base}/data" schedulerSupport="true" persistent="true">
        <destinationPolicy>
            <policyMap>
                <policyEntries>
                    <policyEntry queue="&gt;" prioritizedMessages="true" useCache="false" expireMessagesPeriod="0"
                                 maxBrowsePageSize="100000">
                        <deadLetterStrategy>
                            <individualDeadLetterStrategy queuePrefix="DLQ." useQueueForQueueMessages="true"/>
                        </deadLetterStrategy>
                    </policyEntry>
                </policyEntries>
            </policyMap>
        </destinationPolicy>
        <plugins>
            <statisticsBrokerPlugin/>
        </plugins>
        <persistenceAdapter>
            <kahaDB directory="\${activemq.base}/data/kahadb"/>
        </persistenceAdapter>
        <systemUsage>
            <systemUsage>
                <memoryUsage><memoryUsage limit="128 mb"/></memoryUsage>
                <storeUsage><storeUsage limit="2 gb"/></storeUsage>
                <tempUsage><tempUsage limit="1 gb"/></tempUsage>
            </systemUsage>
        </systemUsage>
        <transportConnectors>
            <transportConnector name="openwire" uri="tcp://$HOST:$OPENWIRE_PORT"/>
            <transportConnector name="stomp" uri="stomp+nio://$HOST:$PORT?transport.hbGracePeriodMultiplier=2"/>
        </transportConnectors>
    </broker>
</beans>
EOF
cat >"$CONF/options" <<EOF
ACTIVEMQ_BASE="$BASE"
ACTIVEMQ_CONF="$CONF"
ACTIVEMQ_DATA="$BASE/data"
ACTIVEMQ_TMP="$BASE/tmp"
JAVA_HOME="/usr/lib/jvm/default-java/"
ACTIVEMQ_OPTS="-Xms128M -Xmx384M -Dorg.apache.activemq.UseDedicatedTaskRunner=false"
ACTIVEMQ_ARGS="start xbean:activemq.xml"
EOF
ln -sfn "$CONF" /etc/activemq/instances-enabled/$INSTANCE
chown -R activemq "$BASE" 2>/dev/null || true

echo "activemq.sh: starting ActiveMQ instance $INSTANCE (STOMP $HOST:$PORT), log $LOG"
(
    cd "$BASE"
    export INSTANCE ACTIVEMQ_BASE="$BASE" ACTIVEMQ_CONF="$CONF" ACTIVEMQ_CONFIG_DIR="$CONF" \
        ACTIVEMQ_DATA="$BASE/data" ACTIVEMQ_TMP="$BASE/tmp" ACTIVEMQ_PIDFILE="$BASE/activemq.pid" \
        ACTIVEMQ_HOME=/usr/share/activemq
    . "$CONF/options"
    export ACTIVEMQ_OPTS
    nohup setsid /usr/bin/activemq console "xbean:file:$CONF/activemq.xml" >"$LOG" 2>&1 </dev/null &
)

for _ in $(seq 1 1200); do
    if listening; then
        echo "activemq.sh: ActiveMQ is listening on $HOST:$PORT"
        exit 0
    fi
    sleep 0.1
done
echo "activemq.sh: ActiveMQ did not start within 120 s; its log:" >&2
tail -30 "$LOG" >&2 || true
exit 1
