#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for the Slurm test (tests/it/slurm.rs) and
# for trying deploy/slurm/ locally. Idempotent: installs Debian's slurm-wlm and munge when
# missing, writes /etc/slurm/slurm.conf for this host, starts munged (as user munge),
# slurmctld and slurmd when they are not running, and waits until the node is idle.
#
# Run as root (Debian 12; works in a container without systemd: ProctrackType=proctrack/linuxproc,
# TaskPlugin=task/none, SlurmUser=root). Prints the time each part took.
#
#   scripts/slurm_cluster.sh          # install if needed, start, wait for an idle node
#   scripts/slurm_cluster.sh --status # sinfo, squeue; exit 1 when no cluster answers
set -euo pipefail

if [ "${1:-}" = "--status" ]; then
    sinfo && squeue
    exit $?
fi
[ "$(id -u)" = 0 ] || { echo "slurm_cluster.sh: run as root (it installs packages and starts daemons)" >&2; exit 1; }

started=$SECONDS
stamp() { echo "== slurm_cluster [$((SECONDS - started)) s] $*"; }

# The node answers and is idle (or busy with jobs): nothing to do.
node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -n 1; }
case "$(node_state)" in
    idle|mixed|allocated|completing)
        stamp "cluster already up: node $(node_state)"
        exit 0 ;;
esac

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    stamp "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the packages' scripts from starting daemons: this script starts them.
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
stamp "packages present: $(slurmctld -V)"

# munge: its key, directories and daemon (as user munge, which the package creates).
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile /etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    stamp "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null || { echo "slurm_cluster.sh: munge does not work (see /var/log/munge/munged.log)" >&2; exit 1; }

# slurm.conf: one node, this host, all its CPUs.
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
conf=/etc/slurm/slurm.conf
new_conf=$(cat <<EOF
# Written by attn-spectra's scripts/slurm_cluster.sh: a single-node cluster for tests.
ClusterName=attnspectra
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
)
if [ "$(cat "$conf" 2>/dev/null)" != "$new_conf" ]; then
    printf '%s\n' "$new_conf" > "$conf"
    stamp "wrote $conf (node $host, $cpus CPUs)"
fi

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! alive /run/slurmctld.pid; then
    stamp "starting slurmctld"
    slurmctld
fi
if ! alive /run/slurmd.pid; then
    stamp "starting slurmd"
    slurmd
fi

# Wait for the node (at most 90 s); a node left down by an earlier run is resumed.
for i in $(seq 90); do
    state=$(node_state)
    case "$state" in
        idle|mixed|allocated|completing)
            stamp "node $host is $state"
            exit 0 ;;
        down*|drain*|fail*)
            scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
done
echo "slurm_cluster.sh: the node did not become idle in 90 s (state: '$(node_state)'); see /var/log/slurm/" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
