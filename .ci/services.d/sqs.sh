#!/usr/bin/env bash
# Start a local SQS-compatible server (moto in server mode, a real HTTP endpoint) on 127.0.0.1:9324.
# Idempotent: installs moto[server] into a private venv outside the repo if needed, starts it in the
# background unless something already listens on the port, waits until it accepts connections.
# moto keeps its state in memory: a restart loses every queue (docs/brokers/sqs.md).
set -euo pipefail

HOST=127.0.0.1
PORT=${BOOSTKERNEL_SQS_PORT:-9324}
TOOLS=${BOOSTKERNEL_TOOLS_DIR:-/opt/boostkernel-tools}
VENV="$TOOLS/moto-venv"
LOG="$TOOLS/moto.log"

listening() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

if listening; then
    echo "sqs.sh: something already listens on $HOST:$PORT"
    exit 0
fi

mkdir -p "$TOOLS" 2>/dev/null || { TOOLS="$HOME/.cache/boostkernel-tools"; VENV="$TOOLS/moto-venv"; LOG="$TOOLS/moto.log"; mkdir -p "$TOOLS"; }

if [ ! -x "$VENV/bin/moto_server" ]; then
    if command -v uv >/dev/null 2>&1; then
        [ -x "$VENV/bin/python" ] || uv venv -q "$VENV"
        uv pip install -q --python "$VENV/bin/python" "moto[server]"
    else
        [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q "moto[server]"
    fi
fi

echo "sqs.sh: starting moto (moto_sqs_server.py) on $HOST:$PORT, log $LOG"
# moto_sqs_server.py: moto's server with receive made atomic (moto as released hands one message to two
# concurrent receives: duplicates the contract suite would blame on the plugin)
nohup setsid "$VENV/bin/python" "$(dirname "$0")/moto_sqs_server.py" -H "$HOST" -p "$PORT" >"$LOG" 2>&1 < /dev/null &

for _ in $(seq 1 300); do
    if listening; then
        echo "sqs.sh: moto is listening on $HOST:$PORT"
        exit 0
    fi
    sleep 0.1
done
echo "sqs.sh: moto did not start; its log:" >&2
tail -20 "$LOG" >&2 || true
exit 1
