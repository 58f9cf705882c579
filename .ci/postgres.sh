#!/usr/bin/env bash
# Start the machine's PostgreSQL cluster and create the role and database that
# store/pgstore's tests use, then print the environment they need as export
# lines on stdout (progress goes to stderr), for:
#
#	eval "$(bash .ci/postgres.sh)"                  # DSN only
#	eval "$(bash .ci/postgres.sh --allow-restart)"  # also let the fault test
#	                                                # restart the cluster (CI)
#
# Idempotent: a running cluster, an existing role or database are fine. Runs as
# root (or via sudo); the role it creates is not a superuser: it owns its
# database, which is all a kadstore node needs (see docs/POSTGRES.md).
#
# Settings (environment): PG_VERSION (15), PG_CLUSTER (main), KADSTORE_TEST_PG_DB
# (kadstore_test), KADSTORE_TEST_PG_ROLE (kadstore_test),
# KADSTORE_TEST_PG_PASSWORD (kadstore_test).
set -euo pipefail

version="${PG_VERSION:-15}"
cluster="${PG_CLUSTER:-main}"
db="${KADSTORE_TEST_PG_DB:-kadstore_test}"
role="${KADSTORE_TEST_PG_ROLE:-kadstore_test}"
password="${KADSTORE_TEST_PG_PASSWORD:-kadstore_test}"
allow_restart=0
for arg in "$@"; do
	case "$arg" in
	--allow-restart) allow_restart=1 ;;
	*) echo "postgres.sh: unknown argument $arg" >&2; exit 2 ;;
	esac
done

log() { echo "postgres.sh: $*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
	as_root() { "$@"; }
	as_postgres() { runuser -u postgres -- "$@"; }
else
	as_root() { sudo -n "$@"; }
	as_postgres() { sudo -n -u postgres "$@"; }
fi

if ! command -v pg_ctlcluster >/dev/null; then
	log "pg_ctlcluster not found: install PostgreSQL $version (apt-get install postgresql-$version)"
	exit 1
fi

# pg_lsclusters prints: Ver Cluster Port Status Owner Data-directory Log-file
line="$(pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c')"
if [ -z "$line" ]; then
	log "no cluster $version/$cluster (create it with: pg_createcluster $version $cluster)"
	exit 1
fi
port="$(awk '{print $3}' <<<"$line")"
status="$(awk '{print $4}' <<<"$line")"
if [ "$status" != online ]; then
	log "starting cluster $version/$cluster"
	as_root pg_ctlcluster "$version" "$cluster" start >&2
fi
for _ in $(seq 1 60); do
	if pg_isready -q -h 127.0.0.1 -p "$port"; then break; fi
	sleep 0.5
done
pg_isready -h 127.0.0.1 -p "$port" >&2

psql_admin() { as_postgres psql -p "$port" -X -q -v ON_ERROR_STOP=1 -tA "$@"; }

# Quote the password as an SQL literal.
password_sql="'${password//\'/\'\'}'"
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != 1 ]; then
	log "creating role $role"
	psql_admin -c "CREATE ROLE \"$role\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD $password_sql" >&2
else
	psql_admin -c "ALTER ROLE \"$role\" LOGIN PASSWORD $password_sql" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
	log "creating database $db"
	psql_admin -c "CREATE DATABASE \"$db\" OWNER \"$role\"" >&2
fi

dsn="postgres://$role:$password@127.0.0.1:$port/$db?sslmode=disable"
log "ready: $dsn"
printf "export KADSTORE_TEST_POSTGRES='%s'\n" "$dsn"
printf "export KADSTORE_TEST_PG_CLUSTER='%s %s'\n" "$version" "$cluster"
if [ "$allow_restart" = 1 ]; then
	printf "export KADSTORE_TEST_PG_RESTART=1\n"
fi
