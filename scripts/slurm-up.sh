#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (root, no systemd, no cgroups); idempotent.
#   munge key + munged, /etc/slurm/slurm.conf for `hostname` (CPUs = nproc, memory from
#   /proc/meminfo), slurmctld, slurmd, then wait until the node is idle in partition "debug".
# Usage: bash scripts/slurm-up.sh      (re-running it when SLURM is up does nothing)
# Env:   SLURM_UP_TIMEOUT (s, default 60), SLURM_CONF_DIR (default /etc/slurm)
set -euo pipefail

die() { echo "error: $1 (fix: $2)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "slurm-up.sh must run as root" "run it with sudo or as root"
for b in slurmctld slurmd sinfo scontrol munged; do
  command -v "$b" >/dev/null || die "$b is not installed" "run scripts/setup.sh (installs slurm-wlm and munge)"
done

CONF_DIR=${SLURM_CONF_DIR:-/etc/slurm}
CONF=$CONF_DIR/slurm.conf
HOST=$(hostname -s)
TIMEOUT=${SLURM_UP_TIMEOUT:-60}

node_state() { sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n1 | tr -d '*~#!%$@^-'; }
case "$(node_state)" in
  idle|mixed|allocated|completing) echo ">> SLURM already up (node $HOST $(node_state))"; exit 0 ;;
esac

# --- munge -----------------------------------------------------------------------------
MUNGE_USER=root
id munge >/dev/null 2>&1 && MUNGE_USER=munge
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  echo ">> creating munge key"
  if command -v mungekey >/dev/null; then mungekey --create --force --keyfile=/etc/munge/munge.key
  else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
fi
chown -R "$MUNGE_USER:" /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key && chmod 0755 /run/munge
if ! munge -n >/dev/null 2>&1 </dev/null; then
  echo ">> starting munged"
  if [ "$MUNGE_USER" = munge ]; then runuser -u munge -- /usr/sbin/munged --force
  else /usr/sbin/munged --force; fi
  for _ in $(seq 1 20); do munge -n >/dev/null 2>&1 </dev/null && break; sleep 0.5; done
  munge -n >/dev/null 2>&1 </dev/null || die "munged did not start" "see /var/log/munge/munged.log"
fi

# --- slurm.conf ----------------------------------------------------------------------------
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
NEW_CONF=$(mktemp)
cat > "$NEW_CONF" <<EOF
# Written by perovflow scripts/slurm-up.sh: one node, no cgroups (containers), root daemons.
ClusterName=perovflow
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
OverTimeLimit=0
SlurmctldTimeout=60
SlurmdTimeout=60
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$NEW_CONF" "$CONF"; then
  install -m 0644 "$NEW_CONF" "$CONF"
  RESTART=1
else
  RESTART=0
fi
rm -f "$NEW_CONF"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() { if alive "$1"; then kill "$(cat "$1")"; sleep 1; fi; }
if [ "$RESTART" = 1 ]; then stop /run/slurmd.pid; stop /run/slurmctld.pid; fi
LOGS="read /var/log/slurm/slurmctld.log and /var/log/slurm/slurmd.log"
if ! alive /run/slurmctld.pid; then
  echo ">> starting slurmctld"; slurmctld || die "slurmctld did not start" "$LOGS"
fi
if ! alive /run/slurmd.pid; then
  echo ">> starting slurmd"; slurmd || die "slurmd did not start" "$LOGS"
fi

# --- wait for the node -----------------------------------------------------------------------
deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
  state=$(node_state || true)
  case "$state" in
    idle|mixed|allocated) break ;;
    down|drained|draining|fail|failing) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    die "SLURM node $HOST is '${state:-not answering}' after ${TIMEOUT}s" "$LOGS"
  fi
  sleep 1
done
echo ">> SLURM up: node $HOST ($CPUS CPUs, ${MEM_MB} MB) in partition debug"
