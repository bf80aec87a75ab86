#!/usr/bin/env bash
# Stop the single-node SLURM cluster that tests/slurm/start_cluster.sh started: slurmd, slurmctld, munged.
# Jobs still queued or running are cancelled first. Safe to run when nothing is running; the state folder
# ($SSN_SLURM_DIR, default /tmp/ssn-slurm) and /etc/slurm/slurm.conf are removed only with --purge.
set -euo pipefail

STATE_DIR=${SSN_SLURM_DIR:-/tmp/ssn-slurm}
CONF=/etc/slurm/slurm.conf
TAG="# written by tests/slurm/start_cluster.sh"

if [ -e "$CONF" ] && ! grep -qF "$TAG" "$CONF"; then
    echo "stop_cluster.sh: $CONF was not written by start_cluster.sh; not stopping that cluster" >&2
    exit 1
fi

# stop the daemon whose pid file is $1 (SIGTERM, then SIGKILL after 10 s)
stop() {
    local pid_file=$1 name=$2 pid
    [ -f "$pid_file" ] || return 0
    pid=$(cat "$pid_file")
    if kill -0 "$pid" 2>/dev/null && grep -q "$name" "/proc/$pid/comm" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pid_file"
}

if [ -f "$STATE_DIR/slurmctld.pid" ] && command -v scancel >/dev/null; then
    scancel --full --quiet --user root 2>/dev/null || true
fi
stop "$STATE_DIR/slurmd.pid" slurmd
stop "$STATE_DIR/slurmctld.pid" slurmctld
stop /run/munge/munged.pid munged
if [ "${1:-}" = "--purge" ]; then
    rm -rf "$STATE_DIR"
    [ -e "$CONF" ] && rm -f "$CONF"
fi
echo "SLURM cluster stopped"
