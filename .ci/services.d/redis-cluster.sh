#!/usr/bin/env bash
# Start a private 3-master Redis Cluster on 127.0.0.1:7000-7002 and a private Redis Sentinel setup (a master
# on 7010 watched by one sentinel on 7011, service name "bkmaster") for the Redis plugin's cluster and
# sentinel tests. Never touches the shared Redis on 6379. Idempotent: a node or sentinel already answering
# is left alone; the cluster is created only if it is not yet formed; waits until the cluster is "ok".
# Data lives in a temporary directory ($BOOSTKERNEL_REDIS_CLUSTER_DIR, default /tmp/boostkernel-redis-cluster).
set -euo pipefail

HOST=127.0.0.1
PORTS=(7000 7001 7002)
SENTINEL_MASTER=7010
SENTINEL_PORT=7011
DIR=${BOOSTKERNEL_REDIS_CLUSTER_DIR:-/tmp/boostkernel-redis-cluster}

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "redis-cluster.sh: redis-server/redis-cli not installed" >&2
    exit 1
fi
mkdir -p "$DIR"

alive() { redis-cli -h "$HOST" -p "$1" ping 2>/dev/null | grep -q PONG; }
wait_alive() {
    for _ in $(seq 1 100); do alive "$1" && return 0; sleep 0.1; done
    echo "redis-cluster.sh: nothing answers on $HOST:$1; log:" >&2
    tail -20 "$DIR/$1.log" >&2 || true
    return 1
}

for port in "${PORTS[@]}"; do
    if alive "$port"; then
        continue
    fi
    mkdir -p "$DIR/$port"
    redis-server --port "$port" --bind "$HOST" --protected-mode no --cluster-enabled yes \
        --cluster-config-file "$DIR/$port/nodes.conf" --cluster-node-timeout 5000 --dir "$DIR/$port" \
        --appendonly no --save "" --daemonize yes --logfile "$DIR/$port.log" --pidfile "$DIR/$port.pid"
done
for port in "${PORTS[@]}"; do wait_alive "$port"; done

cluster_ok() { redis-cli -h "$HOST" -p "${PORTS[0]}" cluster info 2>/dev/null | grep -q "cluster_state:ok"; }
known() { redis-cli -h "$HOST" -p "${PORTS[0]}" cluster info 2>/dev/null | grep -q "cluster_known_nodes:${#PORTS[@]}"; }
if ! known; then
    echo "redis-cluster.sh: creating the cluster on ports ${PORTS[*]}"
    redis-cli --cluster create $(for p in "${PORTS[@]}"; do printf '%s:%s ' "$HOST" "$p"; done) \
        --cluster-replicas 0 --cluster-yes >"$DIR/create.log" 2>&1 || { cat "$DIR/create.log" >&2; exit 1; }
fi
for _ in $(seq 1 100); do cluster_ok && break; sleep 0.1; done
cluster_ok || { echo "redis-cluster.sh: cluster not ok" >&2; redis-cli -p "${PORTS[0]}" cluster info >&2; exit 1; }
echo "redis-cluster.sh: Redis Cluster ok on $HOST:${PORTS[0]}-${PORTS[-1]}"

# --- Sentinel: one master, one sentinel (quorum 1) ----------------------------------------------------
if ! alive "$SENTINEL_MASTER"; then
    mkdir -p "$DIR/$SENTINEL_MASTER"
    redis-server --port "$SENTINEL_MASTER" --bind "$HOST" --protected-mode no --dir "$DIR/$SENTINEL_MASTER" \
        --appendonly no --save "" --daemonize yes --logfile "$DIR/$SENTINEL_MASTER.log" \
        --pidfile "$DIR/$SENTINEL_MASTER.pid"
fi
wait_alive "$SENTINEL_MASTER"
if ! alive "$SENTINEL_PORT"; then
    cat >"$DIR/sentinel.conf" <<CONF
port $SENTINEL_PORT
bind $HOST
protected-mode no
daemonize yes
logfile $DIR/$SENTINEL_PORT.log
pidfile $DIR/$SENTINEL_PORT.pid
dir $DIR
sentinel monitor bkmaster $HOST $SENTINEL_MASTER 1
sentinel down-after-milliseconds bkmaster 5000
CONF
    redis-server "$DIR/sentinel.conf" --sentinel
fi
wait_alive "$SENTINEL_PORT"
for _ in $(seq 1 100); do
    redis-cli -p "$SENTINEL_PORT" sentinel get-master-addr-by-name bkmaster 2>/dev/null | grep -q "$SENTINEL_MASTER" && break
    sleep 0.1
done
echo "redis-cluster.sh: Redis Sentinel on $HOST:$SENTINEL_PORT (service bkmaster -> $HOST:$SENTINEL_MASTER)"
