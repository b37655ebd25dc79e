#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, from Debian's packages, for trying nntrain's
# SLURM launcher for real (and for `pytest -m slurm`). Needs root on Debian/Ubuntu; the first time
# apt installs ~100 packages (15-30 s here, minutes on a slow network), then `up` takes seconds.
#
#   bash scripts/slurm_local.sh up      # install if needed, configure, start; returns once the
#                                       # node is idle, responding, and has run a test job
#   bash scripts/slurm_local.sh down    # cancel every job, stop the daemons, wait until each exited
#   bash scripts/slurm_local.sh status
#
# What runs: munged (authentication), MariaDB + slurmdbd (accounting: submitit asks `sacct` for
# its jobs' states), slurmctld (the controller) and slurmd (this machine as the one node, in the
# partition `local`). The node declares 8 CPUs whatever the machine has, so that a 2-job sweep
# and a 2-task DDP job run at once on a small machine; jobs are not confined (no cgroups), as in
# a container. Nothing here is meant for a real cluster.
#
# A failure is one line on stderr, `slurm_local: up failed: <what>; <the logs' last error>`,
# and exit status 1. Set SLURM_LOCAL_WAIT_S to wait longer for a slow machine (default 120).
set -Eeuo pipefail
# (-E: the ERR trap below holds inside functions too)
PATH=$PATH:/usr/sbin:/sbin

NODE=$(hostname -s)
CONF=/etc/slurm
LOGS=/var/log/slurm
MUNGE_LOG=/var/log/munge/munged.log
PACKAGES=(munge slurm-wlm slurmdbd mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
WAIT_S=${SLURM_LOCAL_WAIT_S:-120}
# Seconds a daemon gets to exit on SIGTERM before SIGKILL: slurmctld saves its state and
# MariaDB flushes its tables, which takes a few seconds on a busy machine.
STOP_WAIT_S=30
ACTION=${1:-}
# The first line of the slurm.conf written here: tests that stop and start the cluster
# (tests/test_slurm.py) do so only where it is this one, never on a real cluster.
WRITTEN_BY="# Written by nntrain's scripts/slurm_local.sh: a single-node cluster for trying nntrain."

log() { echo "slurm_local: $*"; }
fail() {
  echo "slurm_local: $ACTION failed: $*" >&2
  exit 1
}
# A command that fails where no check expected it still ends in one line, not in silence.
trap 'fail "\`$BASH_COMMAND\` exited with $? (line $LINENO of $0)."' ERR

# The pids of the live processes named exactly $1 (a zombie is not alive: it has exited).
live_pids() { ps -C "$1" -o pid=,stat= 2>/dev/null | awk '$2 !~ /^Z/ {print $1}' || true; }
running() { [[ -n $(live_pids "$1") ]]; }

# An error every slurmctld start logs, whatever is wrong or right (Debian builds the PMIx MPI
# plugin; MpiDefault=none does not use it): never the reason a start failed.
LOG_NOISE='mpi/pmix'

# Log sizes when this `up` began: an error is looked for only in what was written since.
declare -A LOG_START=()
mark_logs() {
  local file
  for file in "$LOGS"/*.log "$MUNGE_LOG"; do
    [[ -f $file ]] && LOG_START[$file]=$(stat -c %s "$file")
  done
  return 0
}

# The newest error or fatal line written since this `up` began, in the first of the given
# logs that has one, as ` last error in FILE: LINE`; nothing if there is none.
last_error() {
  local file start line
  for file in "$@"; do
    [[ -f $file ]] || continue
    start=${LOG_START[$file]:-0}
    (($(stat -c %s "$file") >= start)) || start=0 # rotated or truncated: read it whole
    line=$(tail -c +"$((start + 1))" "$file" | grep -aiE 'error|fatal' | grep -v "$LOG_NOISE" | tail -n 1 | tr -s ' \t' ' ' || true)
    if [[ -n $line ]]; then
      echo "; last error in $file: ${line:0:300}"
      return 0
    fi
  done
  echo "; no error in its logs ($*) since this start"
}

require_root_on_debian() {
  ((EUID == 0)) || fail "it needs root (it installs packages and starts daemons as root); run it as root or with sudo."
  command -v dpkg >/dev/null || fail "it needs Debian or Ubuntu (dpkg and apt-get); on another system install munge, SLURM and slurmdbd with its package manager."
}

install_packages() {
  local missing=() package apt_log=/var/log/slurm_local-apt.log
  for package in "${PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]} (under a minute on a fast network; apt's output goes to $apt_log)"
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; } \
    </dev/null >"$apt_log" 2>&1; then
    fail "apt-get could not install ${missing[*]}: $(grep -E '^(E|Err):' "$apt_log" | tail -n 1 || true) (its output: $apt_log); check the network and apt's sources, then run up again."
  fi
}

# The packages say they are installed, yet a daemon or a tool may be gone (a broken install).
check_programs() {
  local program
  for program in munge munged mariadbd mysqladmin slurmdbd slurmctld slurmd sinfo scontrol sacctmgr srun; do
    command -v "$program" >/dev/null || [[ -x /usr/sbin/$program ]] ||
      fail "$program is missing although its package is installed (a broken install); reinstall with: apt-get install --reinstall ${PACKAGES[*]}."
  done
}

# A real cluster's slurm.conf is never overwritten, nor its daemons stopped (older versions
# of this script wrote theirs without the first line, but with this cluster's name next).
check_the_cluster_is_ours() {
  if [[ -f $CONF/slurm.conf ]] && ! head -n 2 "$CONF/slurm.conf" | grep -qxE "$WRITTEN_BY|ClusterName=local"; then
    fail "$CONF/slurm.conf was not written by this script (a real cluster's?), so this machine's SLURM is left alone; move that file away to try the local cluster, or use the cluster it configures."
  fi
}

write_configs() {
  mkdir -p "$CONF" "$LOGS" /var/spool/slurmctld /var/spool/slurmd /run/munge /run/mysqld
  cat >"$CONF/slurm.conf" <<EOF
$WRITTEN_BY
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
# (no mail here: the default MailProg, which is not installed, is an error in every start's log)
MailProg=/bin/true
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

# start NAME LOG COMMAND...: run a daemon unless one is alive. Its own output goes to
# $LOGS/NAME.out (never to our stdout: a caller reading our output to its end would wait for
# the daemon); a daemon that refuses to start says why there, or in LOG.
start() {
  local name=$1 daemon_log=$2 status=0
  shift 2
  running "$name" && return 0
  setsid "$@" </dev/null >"$LOGS/$name.out" 2>&1 || status=$?
  if ((status != 0)); then
    LOG_START[$LOGS/$name.out]=0
    fail "$name did not start (exit $status)$(last_error "$LOGS/$name.out" "$daemon_log")."
  fi
}

# wait_for WHAT LOG COMMAND...: until COMMAND succeeds (WAIT_S at most), or one line: why.
wait_for() {
  local what=$1 daemon_log=$2 deadline=$((SECONDS + WAIT_S))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "$what did not answer within ${WAIT_S} s$(last_error "$daemon_log" "$LOGS/slurmctld.log")."
    sleep 0.5
  done
}

start_database() {
  start munged "$MUNGE_LOG" runuser -u munge -- /usr/sbin/munged
  wait_for "munged (munge -n)" "$MUNGE_LOG" munge -n
  # mariadbd stays in the foreground: started in the background, in a session of its own.
  if ! running mariadbd; then
    setsid runuser -u mysql -- /usr/sbin/mariadbd </dev/null >"$LOGS/mariadb.log" 2>&1 &
  fi
  wait_for "MariaDB (mysqladmin ping)" "$LOGS/mariadb.log" mysqladmin ping
  mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;" >/dev/null 2>&1 ||
    fail "MariaDB refused to create slurmdbd's user$(last_error "$LOGS/mariadb.log")."
  start slurmdbd "$LOGS/slurmdbd.log" slurmdbd
  wait_for "slurmdbd (sacctmgr list cluster)" "$LOGS/slurmdbd.log" sacctmgr -n list cluster
  sacctmgr -i -Q add cluster local >/dev/null 2>&1 || true # (already there after the first up)
}

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1 || true; }
node_reason() { sinfo -h -N -n "$NODE" -o %E 2>/dev/null | head -n 1 || true; }

# Until the node is idle (or running jobs) and responding. sinfo marks a node that does not
# answer with a suffix (idle*, down*): that is not ready. A node that answers but is down or
# drained (a job that would not die drains it) is resumed, once, and said.
wait_for_node() {
  local state deadline=$((SECONDS + WAIT_S)) resumed=0
  while :; do
    state=$(node_state)
    case $state in
      idle | mixed | allocated) return 0 ;;
      down | drained | draining | drain)
        if ((!resumed)); then
          log "the node $NODE was $state (reason: $(node_reason)): resuming it"
          scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
          resumed=1
        fi
        ;;
    esac
    ((SECONDS < deadline)) || fail "the node $NODE is ${state:-missing from sinfo} after ${WAIT_S} s: $(why_not_ready "$state")$(last_error "$LOGS/slurmd.log" "$LOGS/slurmd.out" "$LOGS/slurmctld.log")."
    sleep 0.5
  done
}

why_not_ready() {
  local why="not idle"
  [[ $1 == *'*' ]] && why="not responding (the * means slurmd does not answer the controller)"
  running slurmd || why="$why, and slurmd is not running"
  echo "$why"
}

# A node that looks idle but cannot start a job (munge, a stale slurmd) is caught here;
# PROOF says what showed the node works.
check_a_job_runs() {
  local out
  if [[ $(node_state) != idle ]]; then # busy with jobs: it runs them already
    PROOF="running jobs"
    return 0
  fi
  if ! out=$(timeout "$WAIT_S" srun --immediate=60 -N 1 -n 1 -t 1 -J slurm_local_check true 2>&1); then
    fail "the node $NODE is idle but a test job (srun true) did not run: $(echo "$out" | tail -n 1)$(last_error "$LOGS/slurmd.log" "$LOGS/slurmctld.log")."
  fi
  PROOF="a test job ran"
}

up() {
  local began=$SECONDS
  require_root_on_debian
  check_the_cluster_is_ours
  install_packages
  check_programs
  write_configs
  mark_logs
  start_database
  start slurmctld "$LOGS/slurmctld.log" slurmctld
  wait_for "slurmctld (scontrol ping)" "$LOGS/slurmctld.log" scontrol ping
  start slurmd "$LOGS/slurmd.log" slurmd
  wait_for_node
  check_a_job_runs
  wait_for_node # (the test job leaves the node `completing` for a moment)
  log "up in $((SECONDS - began)) s: node $NODE $(node_state) in partition local, $PROOF (sinfo, squeue, sacct work; stop with: bash $0 down)"
}

# True once none of the pids is alive; false after $1 seconds.
gone_within() {
  local deadline=$((SECONDS + $1)) pid alive
  shift
  while :; do
    alive=0
    for pid in "$@"; do
      [[ $(ps -o stat= -p "$pid" 2>/dev/null) =~ ^[^Z] ]] && alive=1
    done
    ((alive)) || return 0
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# stop NAME: SIGTERM, wait until it has exited; SIGKILL what is left after STOP_WAIT_S, and say so.
stop() {
  local name=$1 pids
  pids=$(live_pids "$name" | xargs)
  [[ -n $pids ]] || return 0
  # shellcheck disable=SC2086 # several pids
  kill -TERM $pids 2>/dev/null || true
  # shellcheck disable=SC2086
  if gone_within "$STOP_WAIT_S" $pids; then
    log "stopped $name"
    return 0
  fi
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  # shellcheck disable=SC2086
  gone_within 10 $pids || fail "$name (pid $pids) is still alive 10 s after SIGKILL (stuck in the kernel?); find it with: ps -C $name -o pid,stat,wchan."
  log "$name did not exit within ${STOP_WAIT_S} s of SIGTERM: killed it (SIGKILL)"
}

# Every job cancelled, and gone from the queue (SLURM gives a job KillWait=30 s after
# SIGTERM), before the daemons that would end its processes stop.
cancel_jobs() {
  command -v scancel >/dev/null && scontrol ping >/dev/null 2>&1 || return 0
  [[ -n $(squeue -h -o %i 2>/dev/null) ]] || return 0
  scancel --user="$(id -un)" 2>/dev/null || true
  scancel --state=PENDING 2>/dev/null || true
  local deadline=$((SECONDS + 45))
  while [[ -n $(squeue -h -t running,completing,pending -o %i 2>/dev/null) ]]; do
    if ((SECONDS >= deadline)); then
      log "jobs still in the queue 45 s after scancel: stopping the daemons anyway"
      return 0
    fi
    sleep 0.5
  done
  log "cancelled every job"
}

# A job step whose processes outlived slurmd (the case that kept slurmd from exiting): its
# slurmstepd and everything under it, SIGKILLed, and said.
kill_leftover_steps() {
  local steps pids=() pid
  steps=$(live_pids slurmstepd | xargs)
  [[ -n $steps ]] || return 0
  for pid in $steps; do
    pids+=("$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null | xargs))
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  log "killed job steps left after slurmd stopped (SIGKILL): pids ${pids[*]}"
}

down() {
  local began=$SECONDS daemon
  require_root_on_debian
  check_the_cluster_is_ours
  cancel_jobs
  for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
    stop "$daemon"
  done
  kill_leftover_steps
  log "down in $((SECONDS - began)) s: every daemon has exited"
}

status() {
  local daemon
  for daemon in "${DAEMONS[@]}"; do
    if running "$daemon"; then echo "$daemon: running"; else echo "$daemon: stopped"; fi
  done
  if scontrol ping >/dev/null 2>&1; then
    echo "node $NODE: $(node_state) $(node_reason)"
    sinfo
  fi
}

case $ACTION in
  up) up ;;
  down) down ;;
  status) status ;;
  *)
    trap - ERR
    echo "usage: bash $0 up|down|status" >&2
    exit 2
    ;;
esac
