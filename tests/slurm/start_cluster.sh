#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine for the slow tests (tests/test_slurm.py), without systemd.
#
#   bash tests/slurm/start_cluster.sh      # installs slurm-wlm and munge if missing (as root), starts the daemons
#   bash tests/slurm/stop_cluster.sh       # stops them again
#
# The node is this machine (`hostname -s`) with 2 CPUs and one partition, "test" (the default). State, spool,
# logs and pid files live under $SSN_SLURM_DIR (default /tmp/ssn-slurm). /etc/slurm/slurm.conf is written so
# that sbatch, squeue, scancel and sinfo work without SLURM_CONF; an existing slurm.conf that this script did
# not write is left alone (the script stops). Running it again while the cluster is up changes nothing.
set -euo pipefail

STATE_DIR=${SSN_SLURM_DIR:-/tmp/ssn-slurm}
CONF=/etc/slurm/slurm.conf
TAG="# written by tests/slurm/start_cluster.sh"
NODE=$(hostname -s)

die() { echo "start_cluster.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (the daemons and apt-get need it)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    echo "installing slurm-wlm and munge"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi

if [ -e "$CONF" ] && ! grep -qF "$TAG" "$CONF"; then
    die "$CONF exists and was not written by this script; not touching a configured cluster"
fi

mkdir -p "$STATE_DIR"/{state,spool,log}
# Memory per node: 90 % of the machine's, so that a job's --mem request is checked against a real bound.
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat > "$CONF.new" <<CONF
$TAG
ClusterName=ssn-test
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# a cancelled job's processes get SIGKILL 5 s after SIGTERM (default 30 s), and finished jobs stay visible
# to squeue/scontrol for 10 minutes
KillWait=5
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=2 RealMemory=$MEM_MB State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
mv "$CONF.new" "$CONF"

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# munge: its socket folder, then the daemon as the munge user (munged refuses to run as root)
[ -s /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || create-munge-key -f; }
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge /etc/munge/munge.key
chmod 0755 /run/munge
if ! running /run/munge/munged.pid; then
    runuser -u munge -- munged
fi
munge -n | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"

running "$STATE_DIR/slurmctld.pid" || slurmctld
running "$STATE_DIR/slurmd.pid" || slurmd

# ready when the node is idle and responding (sinfo marks a node that does not respond with "*"); a node left
# down or drained by an earlier run is resumed
for _ in $(seq 60); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
    case "$state" in
        idle) echo "SLURM cluster up: node $NODE idle in partition test ($STATE_DIR)"; exit 0 ;;
        down*|drain*|fail*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
echo "node $NODE did not become idle (state: ${state:-none}); last log lines:" >&2
tail -n 20 "$STATE_DIR/log/slurmctld.log" "$STATE_DIR/log/slurmd.log" >&2 || true
exit 1
