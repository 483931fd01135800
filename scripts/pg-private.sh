#!/usr/bin/env bash
# A private PostgreSQL 15 for benchmarks, with its data in one directory.
#
#   scripts/pg-private.sh start DIR PORT   init DIR if new, start, create the
#                                          database "dbos", print its URL
#   scripts/pg-private.sh stop DIR         stop it (fast shutdown)
#
# It listens on 127.0.0.1:PORT only, with no Unix socket, and trusts every
# local TCP connection (nothing else can reach it). Durability is
# PostgreSQL's default and is set explicitly: fsync = on,
# synchronous_commit = on, full_page_writes = on, so every commit waits for
# its WAL to reach the disk. The server log is DIR/postgres.log.
#
# Needs the Debian PostgreSQL 15 binaries (apt-get install -y postgresql-15);
# PGBIN overrides where they are. PostgreSQL refuses to run as root: as root,
# the server runs as the user "postgres" and DIR is given to it.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
DBNAME=dbos
PGUSER_NAME=postgres

die() { echo "pg-private: $*" >&2; exit 1; }
usage() { die "usage: $0 start DIR PORT | stop DIR"; }

[[ -x $PGBIN/initdb && -x $PGBIN/pg_ctl ]] ||
	die "PostgreSQL 15 binaries not found in $PGBIN; install them with: apt-get install -y postgresql-15 (or set PGBIN)"

# as_owner runs a server command as the user that owns the data directory.
if [[ $(id -u) -eq 0 ]]; then
	id -u postgres >/dev/null 2>&1 ||
		die "running as root needs the system user \"postgres\" (apt-get install -y postgresql-15 creates it)"
	as_owner() { runuser -u postgres -- "$@"; }
else
	as_owner() { "$@"; }
fi

cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || usage
dir=$(realpath -m -- "$dir")
data=$dir/data
log=$dir/postgres.log

running() { [[ -f $data/postmaster.pid ]] && as_owner "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; }

start() {
	local port=$1
	[[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "PORT must be a TCP port number, got \"$port\""
	mkdir -p -- "$dir"
	if [[ $(id -u) -eq 0 ]]; then
		chown -R postgres: -- "$dir"
		chmod 700 -- "$dir"
		runuser -u postgres -- test -w "$dir" ||
			die "user postgres cannot reach $dir; choose a directory whose parents it may enter (e.g. under /tmp, not under a mode-700 directory of root's)"
	fi
	if running; then
		die "a server is already running on $data; stop it first: $0 stop $dir"
	fi

	if [[ ! -f $data/PG_VERSION ]]; then
		as_owner "$PGBIN/initdb" -D "$data" -U "$PGUSER_NAME" --auth=trust \
			--encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; die "initdb failed in $data"; }
	fi
	# The settings live in their own file, rewritten on every start, so a
	# reused DIR picks up a new PORT.
	as_owner tee "$data/postgresql.private.conf" >/dev/null <<-EOF
		listen_addresses = '127.0.0.1'
		port = $port
		unix_socket_directories = ''
		fsync = on
		synchronous_commit = on
		full_page_writes = on
		max_connections = 100
	EOF
	grep -qx "include 'postgresql.private.conf'" "$data/postgresql.conf" ||
		echo "include 'postgresql.private.conf'" | as_owner tee -a "$data/postgresql.conf" >/dev/null

	# -w: pg_ctl returns once the server accepts connections, or fails.
	local logstart
	logstart=$(stat -c %s -- "$log" 2>/dev/null || echo 0)
	as_owner "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null ||
		{ tail -c +$((logstart + 1)) -- "$log" | tail -n 20 >&2 || true; die "PostgreSQL did not start on 127.0.0.1:$port (log: $log)"; }
	local i
	for ((i = 0; i < 100; i++)); do
		"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$PGUSER_NAME" && break
		sleep 0.1
	done
	"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$PGUSER_NAME" ||
		die "PostgreSQL started but does not accept connections on 127.0.0.1:$port (log: $log)"

	local psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$PGUSER_NAME" -d postgres)
	if [[ -z $("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'") ]]; then
		"${psql[@]}" -c "CREATE DATABASE $DBNAME" >/dev/null || die "cannot create database $DBNAME"
	fi
	echo "postgres://$PGUSER_NAME@127.0.0.1:$port/$DBNAME?sslmode=disable"
}

stop() {
	if ! running; then
		echo "pg-private: no server running on $data" >&2
		return 0
	fi
	as_owner "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null ||
		die "PostgreSQL on $data did not stop (log: $log)"
}

case $cmd in
start)
	[[ $# -eq 3 ]] || usage
	start "$3"
	;;
stop)
	[[ $# -eq 2 ]] || usage
	stop
	;;
*) usage ;;
esac
