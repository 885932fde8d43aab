#!/usr/bin/env bash
# A development/CI PostgreSQL for sandboxkit's fleet mode (`sandboxkit serve --db
# postgresql://...`, `sandboxkit worker`), from the distribution's packages.
#
#   bash scripts/postgres.sh start     # initdb on first use, start (idempotent), create
#                                      # role + database `sandboxkit`, print the URL
#   bash scripts/postgres.sh stop      # fast shutdown (no-op when not running)
#   bash scripts/postgres.sh restart   # stop + start
#   bash scripts/postgres.sh crash     # `pg_ctl stop -m immediate`: no checkpoint, crash
#                                      # recovery at the next start (for tests)
#   bash scripts/postgres.sh url       # postgresql://sandboxkit@127.0.0.1:PORT/sandboxkit
#   bash scripts/postgres.sh status    # exit 0 when running, 3 when not
#   bash scripts/postgres.sh install   # only install Debian's postgresql when missing
#
# Environment: SANDBOXKIT_PG_DIR (default: the project's .cache/postgres) holds data/,
# run/ (the unix socket) and postgres.log; SANDBOXKIT_PG_PORT (default 55432).
#
# The server listens on 127.0.0.1 only, with trust authentication for 127.0.0.1 and for
# the unix socket inside the folder (mode 0700: only the server's user gets in), and
# nothing else in pg_hba.conf: any other address is refused. Not for production.
#
# PostgreSQL refuses to run as root: run as root, the script runs the server as the
# `postgres` user (or creates a system user `sandboxkit-pg` when there is none) and gives
# it the folder. When no initdb is found (/usr/lib/postgresql/*/bin, then PATH) it
# installs Debian's `postgresql` package with apt-get (without its default cluster).
# The schema is not created here: sandboxkit's nodes and workers migrate it at start.
set -euo pipefail

log() { printf '[postgres] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${SANDBOXKIT_PG_DIR:-$here/.cache/postgres}"
PORT="${SANDBOXKIT_PG_PORT:-55432}"
ROLE=sandboxkit
DB=sandboxkit
DATA="$DIR/data"
SOCK="$DIR/run"
LOGFILE="$DIR/postgres.log"

case "$PORT" in
    ''|*[!0-9]*) die "SANDBOXKIT_PG_PORT must be a port number (got '$PORT')" ;;
esac

url() { printf 'postgresql://%s@127.0.0.1:%s/%s\n' "$ROLE" "$PORT" "$DB"; }

# ------------------------------------------------------------------ binaries
BIN=""
find_bin() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] || continue
        # the highest major version (sort -V on the directory names)
        best="$(printf '%s\n%s\n' "$best" "$d" | sed '/^$/d' | sort -V | tail -n 1)"
    done
    if [ -z "$best" ] && command -v initdb >/dev/null 2>&1; then
        d="$(dirname "$(readlink -f "$(command -v initdb)")")"
        [ -x "$d/pg_ctl" ] && best="$d"
    fi
    BIN="$best"
    [ -n "$BIN" ]
}

install_postgres() {
    command -v apt-get >/dev/null 2>&1 || die "no initdb found and no apt-get to install PostgreSQL"
    [ "$(id -u)" = 0 ] || die "no initdb found: install PostgreSQL (apt-get install postgresql) as root"
    log "no initdb found: installing Debian's postgresql package"
    # no default cluster on port 5432: this script makes its own
    mkdir -p /etc/postgresql-common
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        printf 'create_main_cluster = false\n' > /etc/postgresql-common/createcluster.conf
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold \
        postgresql >/dev/null
    find_bin || die "postgresql installed but no initdb found in /usr/lib/postgresql/*/bin"
}

# ------------------------------------------------------------------ the server's user
RUNAS=""   # empty: run as the current user
pick_user() {
    [ "$(id -u)" = 0 ] || return 0
    if id postgres >/dev/null 2>&1; then
        RUNAS=postgres
    else
        RUNAS=sandboxkit-pg
        if ! id "$RUNAS" >/dev/null 2>&1; then
            log "creating system user $RUNAS (PostgreSQL does not run as root)"
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "$RUNAS" 2>/dev/null \
                || adduser --system --no-create-home --group "$RUNAS" >/dev/null
        fi
    fi
}

as_server() {  # as_server CMD...: run CMD as the server's user, from a directory it can read
    if [ -n "$RUNAS" ]; then
        (cd / && runuser -u "$RUNAS" -- "$@")
    else
        (cd / && "$@")
    fi
}

pg_ctl_() { as_server "$BIN/pg_ctl" -D "$DATA" "$@"; }

running() { [ -f "$DATA/PG_VERSION" ] && pg_ctl_ status >/dev/null 2>&1; }

psql_() {  # as the superuser, over the unix socket in the folder
    as_server "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres "$@"
}

# ------------------------------------------------------------------ commands
init_cluster() {
    mkdir -p "$DIR"
    if [ -n "$RUNAS" ]; then
        chown "$RUNAS" "$DIR"
        chmod 0700 "$DIR"
        as_server test -w "$DIR" \
            || die "$RUNAS cannot write $DIR (a parent directory is closed to it): choose another SANDBOXKIT_PG_DIR"
    fi
    [ -f "$DATA/PG_VERSION" ] && return 0
    log "initdb into $DATA ($("$BIN/postgres" --version))"
    as_server mkdir -p "$SOCK"
    as_server "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 >/dev/null 2>&1 \
        || as_server "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 \
            --no-locale >/dev/null
    as_server sh -c "cat > '$DATA/pg_hba.conf'" <<'EOF'
# sandboxkit development/CI cluster (scripts/postgres.sh): loopback and the folder's
# socket only, trusted; nothing else may connect.
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
EOF
    as_server sh -c "cat >> '$DATA/postgresql.conf'" <<EOF

# --- scripts/postgres.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK'
unix_socket_permissions = 0700
max_connections = 200
fsync = on
logging_collector = off
EOF
}

start() {
    find_bin || install_postgres
    pick_user
    init_cluster
    # the port lives on the command line: SANDBOXKIT_PG_PORT may change between runs
    if ! running; then
        as_server mkdir -p "$SOCK"
        pg_ctl_ start -w -t 60 -l "$LOGFILE" -o "-p $PORT" >/dev/null \
            || { tail -n 20 "$LOGFILE" >&2 || true; die "PostgreSQL did not start (log: $LOGFILE)"; }
    fi
    local live_port
    live_port="$(sed -n '4p' "$DATA/postmaster.pid" 2>/dev/null || true)"
    [ "$live_port" = "$PORT" ] \
        || die "a server from $DIR already runs on port $live_port, not $PORT (stop it first)"
    psql_ -tA <<EOF >/dev/null
SELECT 'CREATE ROLE $ROLE LOGIN CREATEDB'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') \gexec
SELECT 'CREATE DATABASE $DB OWNER $ROLE'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB') \gexec
EOF
    url
}

stop() {  # stop [MODE]
    find_bin || die "no PostgreSQL binaries found"
    pick_user
    if running; then
        pg_ctl_ stop -w -t 60 -m "${1:-fast}" >/dev/null
    fi
}

cmd="${1:-}"
case "$cmd" in
    install) find_bin || install_postgres ;;
    start) start ;;
    stop) stop fast ;;
    crash) stop immediate ;;
    restart) stop fast; start ;;
    url) url ;;
    status)
        find_bin || { echo "not installed"; exit 3; }
        pick_user
        if running; then echo "running: $(url) (data: $DATA)"; else echo "stopped (data: $DATA)"; exit 3; fi
        ;;
    *) die "usage: postgres.sh install|start|stop|restart|crash|url|status  (env: SANDBOXKIT_PG_DIR, SANDBOXKIT_PG_PORT)" ;;
esac
