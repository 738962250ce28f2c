#!/bin/bash
# SPDX-License-Identifier: MIT
#
# postgres-entrypoint.sh - entrypoint of the PostgreSQL stand-in image (postgres.Dockerfile):
# the first-start initialisation of the official image's docker-entrypoint.sh that the compose
# stack relies on, then `exec postgres`.
set -Eeuo pipefail

# file_env VAR [DEFAULT]: VAR from $VAR or from the file ${VAR}_FILE names (not both).
file_env() {
    local var=$1 fvar="$1_FILE" def=${2:-} val
    if [ -n "${!var:-}" ] && [ -n "${!fvar:-}" ]; then
        echo "postgres: both $var and $fvar are set (but are exclusive)" >&2
        exit 1
    fi
    val=$def
    if [ -n "${!var:-}" ]; then
        val=${!var}
    elif [ -n "${!fvar:-}" ]; then
        val=$(<"${!fvar}")
    fi
    export "$var=$val"
    unset "$fvar"
}

if [ "${1:0:1}" = - ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
        echo "postgres: the database is uninitialized and POSTGRES_PASSWORD(_FILE) is not set" >&2
        exit 1
    fi

    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of arguments, as upstream.
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        ${POSTGRES_INITDB_ARGS:-}
    printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

    # A server on the Unix socket only, so that nothing outside sees it ready before the end.
    export PGPASSWORD=$POSTGRES_PASSWORD
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
    psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [ "$POSTGRES_DB" != postgres ]; then
        "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    psql+=(--dbname "$POSTGRES_DB")
    for f in /docker-entrypoint-initdb.d/*; do
        case $f in
        *.sh)
            echo "postgres: running $f"
            if [ -x "$f" ]; then
                "$f"
            else
                # shellcheck disable=SC1090
                . "$f"
            fi
            ;;
        *.sql)
            echo "postgres: running $f"
            "${psql[@]}" -f "$f"
            ;;
        *.sql.gz)
            echo "postgres: running $f"
            gunzip -c "$f" | "${psql[@]}"
            ;;
        *)
            if [ -e "$f" ]; then
                echo "postgres: ignoring $f"
            fi
            ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGPASSWORD
    echo "postgres: init process complete; ready for start up"
fi

exec "$@"
