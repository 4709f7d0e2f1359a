#!/usr/bin/env bash
# Start beanstalkd on 127.0.0.1:11300 with a binlog (jobs survive a restart). Idempotent: quick when
# something already listens there; installs the Debian package if the binary is missing; no systemd
# (the binary runs in the background); waits until the port accepts connections.
set -euo pipefail

HOST=127.0.0.1
PORT=${BOOSTKERNEL_BEANSTALKD_PORT:-11300}
BINLOG=${BOOSTKERNEL_BEANSTALKD_BINLOG:-/var/lib/boostkernel-beanstalkd}
LOG=/tmp/boostkernel-beanstalkd.log

listening() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

if listening; then
    echo "beanstalkd.sh: something already listens on $HOST:$PORT"
    exit 0
fi

BIN=$(command -v beanstalkd || true)
if [ -z "$BIN" ] && [ -x /usr/bin/beanstalkd ]; then BIN=/usr/bin/beanstalkd; fi
if [ -z "$BIN" ]; then
    echo "beanstalkd.sh: installing beanstalkd"
    export DEBIAN_FRONTEND=noninteractive
    APT="apt-get -o DPkg::Lock::Timeout=300"
    $APT install -y -q beanstalkd >/dev/null 2>&1 || { $APT update -q >/dev/null && $APT install -y -q beanstalkd >/dev/null; }
    BIN=$(command -v beanstalkd || echo /usr/bin/beanstalkd)
fi

mkdir -p "$BINLOG" 2>/dev/null || { BINLOG="$HOME/.cache/boostkernel-beanstalkd"; mkdir -p "$BINLOG"; }
echo "beanstalkd.sh: starting $BIN on $HOST:$PORT (binlog $BINLOG), log $LOG"
nohup setsid "$BIN" -l "$HOST" -p "$PORT" -b "$BINLOG" -z 1048576 >"$LOG" 2>&1 < /dev/null &

for _ in $(seq 1 100); do
    if listening; then
        echo "beanstalkd.sh: beanstalkd is listening on $HOST:$PORT"
        exit 0
    fi
    sleep 0.1
done
echo "beanstalkd.sh: beanstalkd did not start; its log:" >&2
tail -20 "$LOG" >&2 || true
exit 1
