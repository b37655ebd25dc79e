#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, from Debian's packages, for trying nntrain's
# SLURM launcher for real (and for `pytest -m slurm`). Needs root on Debian/Ubuntu; ~3 minutes
# the first time (apt), seconds after.
#
#   bash scripts/slurm_local.sh up      # install if needed, configure, start; then sinfo works
#   bash scripts/slurm_local.sh down    # cancel every job, stop the daemons
#   bash scripts/slurm_local.sh status
#
# What runs: munged (authentication), MariaDB + slurmdbd (accounting: submitit asks `sacct` for
# its jobs' states), slurmctld (the controller) and slurmd (this machine as the one node, in the
# partition `local`). The node declares 8 CPUs whatever the machine has, so that a 2-job sweep
# and a 2-task DDP job run at once on a small machine; jobs are not confined (no cgroups), as in
# a container. Nothing here is meant for a real cluster.
set -euo pipefail

NODE=$(hostname -s)
CONF=/etc/slurm
LOGS=/var/log/slurm
PACKAGES=(munge slurm-wlm slurmdbd mariadb-server)

log() { echo "slurm_local: $*"; }

install_packages() {
  local missing=()
  for package in "${PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
}

write_configs() {
  mkdir -p "$CONF" "$LOGS" /var/spool/slurmctld /var/spool/slurmd /run/munge /run/mysqld
  cat >"$CONF/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it starts again (default 120): short here, so
# that a time-limit test's requeues take seconds.
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=60
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=8 RealMemory=8000 State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$CONF/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
EOF
  chmod 600 "$CONF/slurmdbd.conf"
  chown munge:munge /run/munge
  chown mysql:mysql /run/mysqld
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq "$seconds"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  log "$what did not come up within ${seconds}s (see $LOGS)"
  return 1
}

up() {
  install_packages
  write_configs
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  wait_for 20 munged munge -n
  if ! pgrep -x mariadbd >/dev/null; then
    runuser -u mysql -- /usr/sbin/mariadbd >"$LOGS/mariadb.log" 2>&1 &
  fi
  wait_for 60 MariaDB mysqladmin ping
  mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  pgrep -x slurmdbd >/dev/null || slurmdbd
  wait_for 60 slurmdbd sacctmgr -n list cluster
  sacctmgr -i -Q add cluster local >/dev/null 2>&1 || true
  pgrep -x slurmctld >/dev/null || slurmctld
  wait_for 60 slurmctld scontrol ping
  pgrep -x slurmd >/dev/null || slurmd
  wait_for 60 "the node" bash -c "sinfo -h -o %T | grep -qE '^(idle|mixed|allocated)'"
  log "up: partition local on $NODE (sinfo, squeue, sacct work; stop with: bash $0 down)"
  sinfo
}

down() {
  if command -v scancel >/dev/null && scontrol ping >/dev/null 2>&1; then
    scancel --user="$(id -un)" 2>/dev/null || true
    scancel --state=PENDING 2>/dev/null || true
  fi
  for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
    if pid=$(pgrep -x "$daemon"); then
      kill $pid
      log "stopped $daemon"
    fi
  done
}

status() {
  for daemon in munged mariadbd slurmdbd slurmctld slurmd; do
    if pgrep -x "$daemon" >/dev/null; then echo "$daemon: running"; else echo "$daemon: stopped"; fi
  done
  scontrol ping 2>/dev/null && sinfo 2>/dev/null || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *)
    echo "usage: bash $0 up|down|status" >&2
    exit 2
    ;;
esac
