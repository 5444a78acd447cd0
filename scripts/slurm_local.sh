#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the `slurm` tests (make test-slurm) and for
# trying the README's SLURM lines without a cluster. Needs root and apt (Debian/Ubuntu).
#
#   scripts/slurm_local.sh start    install slurm-wlm + munge if missing, write slurm.conf, start
#                                   munged, slurmctld, slurmd; wait until the node is idle
#   scripts/slurm_local.sh status   exit 0 and print sinfo if the cluster answers, else exit 1
#   scripts/slurm_local.sh stop     stop the daemons this script started (by PID), cancel jobs
#
# Idempotent: `start` on a running cluster only checks it; `stop` on a stopped one does nothing.
# Sized from this machine: NodeName=$(hostname -s), CPUs=$(nproc), RealMemory = 90 % of
# MemTotal, DefMemPerCPU = RealMemory / CPUs (without it one job takes the node's memory and
# jobs run one at a time). task/affinity pins each job to its CPUs (task/none let two 1-CPU jobs
# share all cores: 6x slower); proctrack/linuxproc needs no cgroups or systemd. One partition,
# `local` (default). No accounting database: `sacct` fails (submitit logs "Bypassing sacct
# error"); `scontrol show job` knows finished jobs for MinJobAge seconds.
# Environment: MRINET_SLURM_DIR (state, logs, spool; default /tmp/mrinet-slurm),
# SLURM_CONF (default /etc/slurm/slurm.conf; an existing file not written by this script is
# never overwritten).
set -euo pipefail

STATE=${MRINET_SLURM_DIR:-/tmp/mrinet-slurm}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
MARK="# written by mrinet scripts/slurm_local.sh"
PARTITION=local

say() { echo "slurm_local: $*"; }
die() { echo "slurm_local: error: $*" >&2; exit 1; }

alive() { # pidfile -> 0 if that process runs
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

answers() { timeout 10 sinfo -h >/dev/null 2>&1; }

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    [[ $(id -u) == 0 ]] || die "installing slurm-wlm and munge needs root (or install them first)"
    command -v apt-get >/dev/null || die "no apt-get: install slurm-wlm and munge by hand"
    say "installing slurm-wlm munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
    if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script: set SLURM_CONF=/another/path"
    fi
    local host cpus mem_mb real_mb per_cpu
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    real_mb=$((mem_mb * 9 / 10))
    per_cpu=$((real_mb / cpus))
    mkdir -p "$(dirname "$CONF")" "$STATE"/{ctld,d,log}
    cat >"$CONF" <<EOF
$MARK (state in $STATE)
ClusterName=mrinet-local
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it may start again (default 120): 10 s keeps
# the preemption tests short without forcing StartTime=now, which can race the requeue (the
# node still revoking the previous run's credential kills the new start: "Job credential
# revoked", the job FAILED)
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# backfill every 5 s (default 30): a requeued job starts soon after its BeginTime
SchedulerParameters=bf_interval=5
DefMemPerCPU=$per_cpu
ReturnToService=2
MpiDefault=none
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# finished jobs stay visible to scontrol for 10 minutes (there is no sacct here)
MinJobAge=600
# SIGTERM -> SIGKILL grace on cancel, requeue and time limit
KillWait=10
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=120
MessageTimeout=30
JobRequeue=1
NodeName=$host CPUs=$cpus RealMemory=$real_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    say "wrote $CONF: node $host, $cpus CPUs, ${real_mb} MB (DefMemPerCPU=$per_cpu), partition $PARTITION"
}

start_munge() {
    if [[ -S /run/munge/munge.socket.2 ]] && munge -n </dev/null >/dev/null 2>&1; then
        return
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        (umask 077; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null)
        chown munge:munge /etc/munge/munge.key
    fi
    # munged daemonises itself and writes /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --force
    touch "$STATE/munged.started"
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && return; sleep 0.2; done
    die "munged did not start (see /var/log/munge/munged.log)"
}

start_daemon() { # name -> run it in the foreground (-D) in the background, PID to $STATE
    local name=$1 pidfile=$STATE/$1.pid.mrinet
    alive "$pidfile" && return
    setsid "/usr/sbin/$name" -D -f "$CONF" >>"$STATE/log/$name.out" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

start() {
    if alive "$STATE/slurmctld.pid.mrinet" && alive "$STATE/slurmd.pid.mrinet" && answers; then
        say "already running"
        status
        return
    fi
    install
    write_conf
    start_munge
    start_daemon slurmctld
    for _ in $(seq 100); do answers && break; sleep 0.2; done
    answers || die "slurmctld does not answer (see $STATE/log/slurmctld.log)"
    start_daemon slurmd
    local state=""
    for _ in $(seq 150); do
        state=$(sinfo -h -N -o %t 2>/dev/null | head -1)
        [[ $state == idle || $state == mix || $state == alloc ]] && break
        sleep 0.2
    done
    if [[ $state == drain* || $state == down* ]]; then
        scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
        sleep 1
        state=$(sinfo -h -N -o %t | head -1)
    fi
    [[ $state == idle || $state == mix || $state == alloc ]] \
        || die "node state '$state' (see $STATE/log/slurmd.log; sinfo -R says why)"
    say "started (slurmctld $(cat "$STATE/slurmctld.pid.mrinet"), slurmd $(cat "$STATE/slurmd.pid.mrinet"))"
    status
}

status() {
    if answers; then
        sinfo -o "%P %a %D %t %c %m %G"
        return 0
    fi
    say "not running"
    return 1
}

stop_pid() { # pidfile -> TERM, wait, KILL
    local pidfile=$1 pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

stop() {
    if answers; then
        scancel --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do [[ -z $(squeue -h -t R,CG 2>/dev/null) ]] && break; sleep 0.2; done
    fi
    stop_pid "$STATE/slurmd.pid.mrinet"
    stop_pid "$STATE/slurmctld.pid.mrinet"
    # munged only if this script started it (another munged may serve something else)
    if [[ -f $STATE/munged.started ]]; then
        stop_pid /run/munge/munged.pid
        rm -f "$STATE/munged.started"
    fi
    say "stopped"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
