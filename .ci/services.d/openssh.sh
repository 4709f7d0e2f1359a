#!/usr/bin/env bash
# Start a private OpenSSH server on 127.0.0.1:2222 for the remote-deploy tests (boostkernel-deploy).
# Idempotent: quick when something already listens there; installs Debian's openssh-server if sshd is
# missing; no systemd (sshd daemonizes itself with its own config, never the system's /etc/ssh).
#
# Everything lives in one fixed folder, $BOOSTKERNEL_SSH_DIR (default /opt/boostkernel-tools/ssh, or
# ~/.cache/boostkernel-tools/ssh where /opt is not writable), which the tests read:
#   ssh_host_ed25519_key(.pub)  the server's generated host key
#   id_ed25519(.pub)            a generated client key pair (no passphrase), allowed to log in as the
#                               user who ran this script (authorized_keys)
#   known_hosts                 "[127.0.0.1]:2222 <host key>" for strict host-key checking
#   sshd_config, sshd.pid, sshd.log
set -euo pipefail

HOST=127.0.0.1
PORT=${BOOSTKERNEL_SSH_PORT:-2222}
DIR=${BOOSTKERNEL_SSH_DIR:-/opt/boostkernel-tools/ssh}

listening() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

if listening; then
    echo "openssh.sh: something already listens on $HOST:$PORT"
    exit 0
fi

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null 2>&1; then
    echo "openssh.sh: installing openssh-server"
    export DEBIAN_FRONTEND=noninteractive
    APT="apt-get -o DPkg::Lock::Timeout=300"
    $APT install -y -q openssh-server >/dev/null 2>&1 || { $APT update -q >/dev/null && $APT install -y -q openssh-server >/dev/null; }
fi

if [ -z "${BOOSTKERNEL_SSH_DIR:-}" ] && ! mkdir -p "$DIR" 2>/dev/null; then DIR="$HOME/.cache/boostkernel-tools/ssh"; fi
mkdir -p "$DIR"
chmod 700 "$DIR"
[ -f "$DIR/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N "" -C "boostkernel-test-host" -f "$DIR/ssh_host_ed25519_key"
[ -f "$DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C "boostkernel-test-client" -f "$DIR/id_ed25519"
cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
chmod 600 "$DIR/authorized_keys"
echo "[$HOST]:$PORT $(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")" > "$DIR/known_hosts"

cat > "$DIR/sshd_config" <<CONF
ListenAddress $HOST:$PORT
HostKey $DIR/ssh_host_ed25519_key
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PrintMotd no
Subsystem sftp internal-sftp
CONF

mkdir -p /run/sshd 2>/dev/null || true  # privilege separation directory (sshd run as root needs it)
echo "openssh.sh: starting sshd on $HOST:$PORT (keys and known_hosts in $DIR), log $DIR/sshd.log"
/usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log"

for _ in $(seq 1 100); do
    if listening; then
        echo "openssh.sh: sshd is listening on $HOST:$PORT"
        exit 0
    fi
    sleep 0.1
done
echo "openssh.sh: sshd did not start; its log:" >&2
tail -20 "$DIR/sshd.log" >&2 || true
exit 1
