#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (root, no systemd, no cgroups); idempotent.
#   munge key + munged, /etc/slurm/slurm.conf for `hostname` (CPUs = nproc, memory from
#   /proc/meminfo), accounting, slurmctld, slurmd, then wait until the node is idle in
#   partition "debug".
# Accounting (sacct: state, elapsed, MaxRSS, exit code of finished jobs): slurmdbd on a local
#   MariaDB (socket only, database slurm_acct_db). Both are Debian packages (slurmdbd,
#   mariadb-server); when missing they are installed with apt-get if the archive answers.
#   Offline without them (or SLURM_ACCOUNTING=0), SLURM runs with
#   AccountingStorageType=accounting_storage/none + JobCompType=jobcomp/filetxt: sacct has
#   no records and perovflow falls back to squeue (state only, no MaxRSS). Memory is a
#   consumable resource (CR_CPU_Memory, 1 GB per CPU unless --mem is given), enforced by
#   jobacct_gather/linux sampling every 2 s (JobAcctGatherParams=OverMemoryKill; no cgroups
#   in containers): a job over --mem is killed and sacct records FAILED, exit 0:9, with
#   MaxRSS above the request (cgroup clusters record OUT_OF_MEMORY instead).
# Usage: bash scripts/slurm-up.sh      (idempotent: re-running it on a running cluster is cheap)
# Env:   SLURM_UP_TIMEOUT (s, default 60), SLURM_CONF_DIR (default /etc/slurm),
#        SLURM_ACCOUNTING=0 (no slurmdbd)
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
# Every step below checks before it acts: re-running the script on a running cluster with the
# same configuration changes nothing (daemons are restarted only when a config file changed).

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

# --- accounting: MariaDB + slurmdbd --------------------------------------------------------
ACCT=${SLURM_ACCOUNTING:-1}
have_acct() { command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null; }
if [ "$ACCT" = 1 ] && ! have_acct; then
  echo ">> installing slurmdbd and mariadb-server (accounting)"
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends \
    slurmdbd mariadb-server >/dev/null 2>&1 || echo ">> could not install them: no accounting"
fi
have_acct || ACCT=0
mkdir -p "$CONF_DIR" /var/log/slurm
if [ "$ACCT" = 1 ]; then
  mkdir -p /run/mysqld && chown mysql: /run/mysqld
  if ! mariadb-admin ping >/dev/null 2>&1; then
    echo ">> starting mariadb (socket only)"
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
    (mariadbd --user=mysql --skip-networking >/var/log/slurm/mariadb.log 2>&1 &)
    for _ in $(seq 1 60); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.5; done
    mariadb-admin ping >/dev/null 2>&1 || die "mariadb did not start" "read /var/log/slurm/mariadb.log"
  fi
  # slurmdbd runs as root and logs in through the socket as root (unix_socket auth): no password
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db"
  DBD_CONF=$(mktemp)
  cat > "$DBD_CONF" <<EOF
# Written by perovflow scripts/slurm-up.sh: accounting on the local MariaDB socket.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
EOF
  if ! cmp -s "$DBD_CONF" "$CONF_DIR/slurmdbd.conf"; then
    install -m 0600 "$DBD_CONF" "$CONF_DIR/slurmdbd.conf"
    pid=$(cat /run/slurmdbd.pid 2>/dev/null || true)
    if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
  fi
  rm -f "$DBD_CONF"
  if ! { [ -f /run/slurmdbd.pid ] && kill -0 "$(cat /run/slurmdbd.pid)" 2>/dev/null; }; then
    echo ">> starting slurmdbd"; slurmdbd || die "slurmdbd did not start" "read /var/log/slurm/slurmdbd.log"
  fi
  ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none"
else
  ACCT_LINES="AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.txt"
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
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
JobAcctGatherParams=OverMemoryKill
$ACCT_LINES
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
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

if [ "$ACCT" = 1 ]; then  # sacctmgr reads slurm.conf: register the cluster after writing it
  for _ in $(seq 1 30); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
  sacctmgr -n -P list cluster format=cluster | grep -qx perovflow \
    || sacctmgr -i add cluster perovflow >/dev/null \
    || die "sacctmgr cannot register the cluster" "read /var/log/slurm/slurmdbd.log"
fi
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() {  # TERM, then wait (up to 30 s) until the daemon has saved its state and exited
  if alive "$1"; then
    kill "$(cat "$1")"
    for _ in $(seq 1 60); do alive "$1" || break; sleep 0.5; done
  fi
}
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
    idle|mixed|allocated|completing) break ;;
    down|drained|draining|fail|failing) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    die "SLURM node $HOST is '${state:-not answering}' after ${TIMEOUT}s" "$LOGS"
  fi
  sleep 1
done
echo ">> SLURM up: node $HOST ($CPUS CPUs, ${MEM_MB} MB) in partition debug"
