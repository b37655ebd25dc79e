#!/usr/bin/env bash
# A private PostgreSQL server on this machine, from Debian's packages, for Optuna searches that
# several sweeper processes share (hydra.sweeper.storage=<url>) and for the tests that run them.
# SQLite stays the single-machine default; this is the "real database" case.
#
#   bash scripts/postgres_local.sh up       # install if needed, create the cluster, start it;
#                                           # the storage URL is the last line on stdout:
#                                           #   URL=$(bash scripts/postgres_local.sh up)
#   bash scripts/postgres_local.sh status   # up (and the URL; exit 0) or down (exit 1)
#   bash scripts/postgres_local.sh down     # stop it (fast shutdown), wait until it has exited
#
# The cluster lives in $NNTRAIN_PG_DIR (default /var/lib/nntrain/postgres as root,
# ~/.cache/nntrain/postgres otherwise; its studies survive `down`), listens on 127.0.0.1 only, at
# port $NNTRAIN_PG_PORT (default 5433: Debian's own server takes 5432), without a Unix socket, and
# has one user, nntrain (password nntrain, a superuser: tests create a database each), owning a
# database nntrain. Run as root, the server runs as the `postgres` system user (PostgreSQL
# refuses root). `up` and `down` are no-ops when already so; two at once wait for each other.
#
# Messages are one line each on stderr, `postgres_local: ...`; a failure is
# `postgres_local: up failed: <what>; <how to fix>` and exit status 1. Set
# NNTRAIN_PG_WAIT_S to wait longer for a slow machine (default 60).
set -Eeuo pipefail
# (-E: the ERR trap below holds inside functions too)
PATH=$PATH:/usr/sbin:/sbin

ACTION=${1:-}
PORT=${NNTRAIN_PG_PORT:-5433}
WAIT_S=${NNTRAIN_PG_WAIT_S:-60}
STOP_WAIT_S=30
DB_USER=nntrain
DB_PASSWORD=nntrain
DB_NAME=nntrain
if ((EUID == 0)); then DEFAULT_DIR=/var/lib/nntrain/postgres; else DEFAULT_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/nntrain/postgres; fi
PG_DIR=$(realpath -m -- "${NNTRAIN_PG_DIR:-$DEFAULT_DIR}") # (absolute: the caller's cwd no longer matters)
DATA=$PG_DIR/data
SERVER_LOG=$PG_DIR/server.log
BIN=

log() { echo "postgres_local: $*" >&2; }
fail() {
  echo "postgres_local: $ACTION failed: $*" >&2
  exit 1
}
# A command that fails where no check expected it still ends in one line, not in silence.
trap 'fail "\`$BASH_COMMAND\` exited with $? (line $LINENO of $0)."' ERR

# The server user cannot read a private working directory (initdb refuses to start there).
cd /

url() { echo "postgresql+psycopg://$DB_USER:$DB_PASSWORD@127.0.0.1:$1/$DB_NAME"; }

# as_server COMMAND...: run as the server's user: `postgres` when we are root, else ourselves.
as_server() {
  if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

[[ $PORT =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || {
  ACTION=${ACTION:-up}
  fail "NNTRAIN_PG_PORT=$PORT is not a port number; set it to a free port such as 5433."
}

# BIN: the directory of pg_ctl, initdb, postgres, psql and pg_isready. The version that made
# the cluster when there is one (an upgrade installs a newer one beside it), else the newest.
find_binaries() {
  local dir version
  BIN=
  if [[ -f $DATA/PG_VERSION ]]; then
    version=$(<"$DATA/PG_VERSION")
    [[ -x /usr/lib/postgresql/$version/bin/pg_ctl ]] && BIN=/usr/lib/postgresql/$version/bin && return 0
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    [[ -x $dir/pg_ctl && -x $dir/initdb ]] && BIN=$dir
  done
  [[ -n $BIN ]] && return 0
  command -v pg_ctl >/dev/null && command -v initdb >/dev/null && BIN=$(dirname "$(command -v pg_ctl)")
  return 0
}

install_postgres() {
  local apt_log=/var/log/postgres_local-apt.log
  ((EUID == 0)) || fail "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/pg_ctl); install it with: sudo apt-get update && sudo apt-get install -y postgresql, then run up again."
  command -v apt-get >/dev/null || fail "PostgreSQL's server is not installed and this is not Debian/Ubuntu (no apt-get); install it with the system's package manager (pg_ctl and initdb on PATH), then run up again."
  log "installing postgresql with apt-get (under a minute on a fast network; apt's output goes to $apt_log)"
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } \
    </dev/null >"$apt_log" 2>&1; then
    fail "apt-get could not install postgresql: $(grep -E '^(E|Err):' "$apt_log" | tail -n 1 || true) (its output: $apt_log); check the network and apt's sources, then run up again."
  fi
  find_binaries
  [[ -n $BIN ]] || fail "apt-get installed postgresql but no pg_ctl is in /usr/lib/postgresql/*/bin (a broken install); reinstall with: apt-get install --reinstall postgresql."
}

# The live processes of this cluster: named postgres, working in $DATA (every PostgreSQL
# process works in its data directory; a zombie has exited and has none).
server_pids() {
  local proc
  for proc in /proc/[0-9]*; do
    [[ $(cat "$proc/comm" 2>/dev/null) == postgres ]] || continue
    [[ $(readlink "$proc/cwd" 2>/dev/null) == "$DATA" ]] && echo "${proc#/proc/}"
  done
  return 0
}

# The pid of this cluster's live postmaster (its postmaster.pid names it), or nothing.
postmaster_pid() {
  local pid
  pid=$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  [[ " $(server_pids | xargs) " == *" $pid "* ]] && echo "$pid"
  return 0
}

# The port the running server listens on (the fourth line of postmaster.pid).
running_port() { sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true; }

accepting() { [[ -x $BIN/pg_isready ]] && "$BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -t 2 >/dev/null 2>&1; }

# Anything listening on 127.0.0.1:$1 (a connection is accepted)?
port_taken() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# SERVER_LOG's size when this start began: an error is looked for only in what was written since.
LOG_START=0
last_error() {
  local line
  [[ -f $SERVER_LOG ]] || { echo "; it wrote no log ($SERVER_LOG)" && return 0; }
  (($(stat -c %s "$SERVER_LOG") >= LOG_START)) || LOG_START=0
  line=$(tail -c +"$((LOG_START + 1))" "$SERVER_LOG" | grep -aE 'FATAL|PANIC|ERROR' | tail -n 1 | tr -s ' \t' ' ' || true)
  if [[ -n $line ]]; then echo "; last error in $SERVER_LOG: ${line:0:300}"; else echo "; no error in $SERVER_LOG since this start"; fi
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

# $PG_DIR exists, belongs to the server's user, and that user can reach it.
prepare_dir() {
  mkdir -p "$PG_DIR" || fail "could not create $PG_DIR; set NNTRAIN_PG_DIR to a writable directory."
  if ((EUID == 0)); then
    id -u postgres >/dev/null 2>&1 || fail "there is no \`postgres\` system user to run the server as (PostgreSQL refuses root); create it with: adduser --system --group postgres, or run up as another user."
    chown postgres: "$PG_DIR"
    [[ ! -e $SERVER_LOG ]] || chown postgres: "$SERVER_LOG"
    runuser -u postgres -- test -w "$PG_DIR" -a -x "$PG_DIR" ||
      fail "the postgres user cannot reach $PG_DIR (a directory above it is private to root); set NNTRAIN_PG_DIR to a directory outside /root, e.g. under /var/lib or /tmp."
  fi
}

# A new cluster: made in a side directory and moved into place once complete, so that an
# interrupted initdb never leaves a half-made cluster behind.
init_cluster() {
  local staging=$PG_DIR/data.initdb pwfile=$PG_DIR/.initdb-password began=$SECONDS
  rm -rf "$staging"
  (umask 077 && echo "$DB_PASSWORD" >"$pwfile")
  ((EUID == 0)) && chown postgres: "$pwfile"
  if ! as_server "$BIN/initdb" -D "$staging" -U "$DB_USER" --pwfile="$pwfile" --auth=scram-sha-256 \
    -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1; then
    rm -f "$pwfile"
    fail "initdb could not create the cluster: $(grep -v '^$' "$PG_DIR/initdb.log" | tail -n 1) (its output: $PG_DIR/initdb.log); remove $PG_DIR or set NNTRAIN_PG_DIR elsewhere, then run up again."
  fi
  rm -f "$pwfile"
  echo "include_if_exists = 'nntrain.conf'  # postgres_local.sh's settings, rewritten at each up" >>"$staging/postgresql.conf"
  mv "$staging" "$DATA"
  log "created a PostgreSQL $(<"$DATA/PG_VERSION") cluster in $DATA in $((SECONDS - began)) s"
}

write_settings() {
  cat >"$DATA/nntrain.conf" <<EOF
# Written by nntrain's scripts/postgres_local.sh at each up.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
# Sweepers, their trials and parallel test workers each hold a few connections.
max_connections = 200
EOF
  ((EUID == 0)) && chown postgres: "$DATA/nntrain.conf"
  return 0
}

# What a server that died (kill -9, a crash, a reboot) leaves behind: children still exiting,
# a postmaster.pid naming a process that is gone (or whose pid another process now has).
clear_a_crash() {
  local pids
  pids=$(server_pids | xargs)
  if [[ -n $pids ]]; then
    # shellcheck disable=SC2086 # several pids
    gone_within 10 $pids || {
      # shellcheck disable=SC2086
      kill -KILL $pids 2>/dev/null || true
      # shellcheck disable=SC2086
      gone_within 10 $pids || fail "processes of the dead server (pids $pids) outlived SIGKILL; find them with: ps -o pid,stat,wchan -p ${pids// /,}."
    }
    log "waited for the processes the dead server left (pids $pids) to exit"
  fi
  if [[ -f $DATA/postmaster.pid ]]; then
    rm -f "$DATA/postmaster.pid"
    log "removed a stale $DATA/postmaster.pid (the server had died without stopping)"
  fi
  return 0
}

create_database() {
  local exists
  export PGPASSWORD=$DB_PASSWORD
  exists=$("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d postgres -XtAq \
    -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" 2>&1) ||
    fail "psql could not connect to the server it started: ${exists//$'\n'/ }$(last_error)."
  [[ $exists == 1 ]] && return 0
  exists=$("$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" "$DB_NAME" 2>&1) ||
    fail "createdb could not create the database $DB_NAME: ${exists//$'\n'/ }$(last_error)."
}

up() {
  local began=$SECONDS pid port status=0
  find_binaries
  [[ -n $BIN ]] || install_postgres
  prepare_dir
  exec 9>>"$PG_DIR/lock"
  flock -w "$((WAIT_S + STOP_WAIT_S))" 9 || fail "another up or down on $PG_DIR did not finish within $((WAIT_S + STOP_WAIT_S)) s; try again, or look for it with: ps aux | grep postgres_local."
  find_binaries # (another up may have made the cluster meanwhile)
  pid=$(postmaster_pid)
  if [[ -n $pid ]]; then
    port=$(running_port)
    [[ $port == "$PORT" ]] || fail "the server in $PG_DIR already runs on port $port, not $PORT; use NNTRAIN_PG_PORT=$port, or run down first."
    wait_until_accepting
    log "already up (pid $pid, data in $DATA)"
    url "$PORT"
    return 0
  fi
  if port_taken "$PORT"; then
    fail "port $PORT on 127.0.0.1 is taken by another program (another PostgreSQL?); set NNTRAIN_PG_PORT to a free port, then run up again."
  fi
  [[ -f $DATA/PG_VERSION ]] || init_cluster
  clear_a_crash
  write_settings
  touch "$SERVER_LOG"
  ((EUID == 0)) && chown postgres: "$SERVER_LOG"
  LOG_START=$(stat -c %s "$SERVER_LOG")
  # In a session of its own (a Ctrl-C at the terminal or in pytest does not reach it); pg_ctl
  # sends its output to the log, never to our stdout (a caller reading it to its end would wait).
  # Nor does it inherit the lock (fd 9): the server would hold it for as long as it runs.
  as_server setsid -w "$BIN/pg_ctl" start -D "$DATA" -l "$SERVER_LOG" -w -t "$WAIT_S" -s \
    </dev/null >/dev/null 2>&1 9>&- || status=$?
  ((status == 0)) || fail "the server did not start within $WAIT_S s (pg_ctl exit $status)$(last_error)."
  wait_until_accepting
  create_database
  log "up in $((SECONDS - began)) s: PostgreSQL $(<"$DATA/PG_VERSION") on 127.0.0.1:$PORT, data in $DATA, log $SERVER_LOG (stop with: bash $0 down)"
  url "$PORT"
}

wait_until_accepting() {
  local deadline=$((SECONDS + WAIT_S))
  until accepting "$PORT"; do
    ((SECONDS < deadline)) || fail "the server runs but does not accept connections on 127.0.0.1:$PORT after $WAIT_S s$(last_error)."
    sleep 0.3
  done
}

down() {
  local began=$SECONDS pid pids
  if [[ ! -d $DATA ]]; then
    log "already down (no cluster in $PG_DIR)"
    return 0
  fi
  find_binaries
  exec 9>>"$PG_DIR/lock"
  flock -w "$((WAIT_S + STOP_WAIT_S))" 9 || fail "another up or down on $PG_DIR did not finish within $((WAIT_S + STOP_WAIT_S)) s; try again."
  pid=$(postmaster_pid)
  pids=$(server_pids | xargs)
  if [[ -z $pid ]]; then
    [[ -z $pids ]] || clear_a_crash
    log "already down (data in $DATA)"
    return 0
  fi
  [[ -n $BIN ]] || fail "the server runs (pid $pid) but pg_ctl is gone; stop it with: kill -INT $pid."
  if ! as_server "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t "$STOP_WAIT_S" -s >/dev/null 2>&1; then
    log "the server did not stop within $STOP_WAIT_S s of a fast shutdown: stopping it at once (immediate)"
    as_server "$BIN/pg_ctl" stop -D "$DATA" -m immediate -w -t 10 -s >/dev/null 2>&1 || true
  fi
  # shellcheck disable=SC2086 # several pids
  if ! gone_within 10 $pids; then
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    # shellcheck disable=SC2086
    gone_within 10 $pids || fail "the server's processes (pids $pids) outlived SIGKILL; find them with: ps -o pid,stat,wchan -p ${pids// /,}."
    log "killed the server's processes that outlived its shutdown (SIGKILL)"
  fi
  log "down in $((SECONDS - began)) s: the server has exited (data kept in $DATA)"
}

status() {
  local pid port
  find_binaries
  pid=$(postmaster_pid)
  if [[ -z $pid ]]; then
    echo "postgres_local: down (data in $PG_DIR; start with: bash $0 up)"
    return 1
  fi
  port=$(running_port)
  if ! accepting "$port"; then
    echo "postgres_local: not ready: the server runs (pid $pid) but does not accept connections on 127.0.0.1:$port (its log: $SERVER_LOG)"
    return 1
  fi
  echo "postgres_local: up: PostgreSQL $(<"$DATA/PG_VERSION") on 127.0.0.1:$port (pid $pid, data in $DATA)"
  url "$port"
}

case $ACTION in
  up) up ;;
  down) down ;;
  status)
    trap - ERR
    status
    ;;
  *)
    trap - ERR
    echo "usage: bash $0 up|down|status" >&2
    exit 2
    ;;
esac
