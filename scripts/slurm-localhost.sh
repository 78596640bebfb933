#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine (munge, slurmctld, slurmd,
# all as root) for the Slurm fan-out test. Idempotent: does nothing when the
# cluster already answers. Needs Debian's slurm-wlm and munge packages
# (.ci/run installs them). Usage: scripts/slurm-localhost.sh [start|stop]
set -euo pipefail

conf_dir=/etc/slurm
state=/var/spool/cacheclip-slurm
host=$(hostname -s)
# Four CPUs at least, whatever the machine has, so a 4-task array runs at
# once (config_overrides lets slurmd accept the declared count).
cpus=$(( $(nproc) > 4 ? $(nproc) : 4 ))

case "${1:-start}" in
stop)
    for p in slurmd slurmctld; do
        [[ -f /run/$p.pid ]] && kill "$(cat /run/$p.pid)" 2>/dev/null || true
    done
    [[ -f /run/munge/munged.pid ]] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    exit 0
    ;;
start) ;;
*) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac

if sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|alloc'; then
    exit 0
fi

for b in munged slurmctld slurmd sbatch; do
    command -v "$b" >/dev/null || { echo "$b not found: apt-get install slurm-wlm munge" >&2; exit 1; }
done

mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
    munged --force
fi

mkdir -p "$conf_dir" "$state/ctld" "$state/d" /var/log/slurm
cat >"$conf_dir/slurm.conf" <<CONF
ClusterName=cacheclip
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
: >"$conf_dir/cgroup.conf"

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 1 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|alloc'; then
        exit 0
    fi
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm did not come up; logs in /var/log/slurm" >&2
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
