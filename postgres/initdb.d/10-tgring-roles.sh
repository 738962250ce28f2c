#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# 10-tgring-roles.sh - least-privilege roles for tgring, made on the database's first start.
#
# The postgres image runs the scripts of /docker-entrypoint-initdb.d once, when it initialises
# an empty data directory, as the superuser POSTGRES_USER against POSTGRES_DB. This one makes:
#   - the owner role (the user of DATABASE_URL_MIGRATE): owns POSTGRES_DB and its public schema,
#     so `tgring migrate` can create and alter tables; nothing else.
#   - the data role (the user of DATABASE_URL): may connect and read and write the rows of
#     the tables the owner makes (default privileges), run the schema's functions, take
#     advisory locks and LISTEN; it cannot create, alter or drop anything.
# User names and passwords are read from the two URL files, so the roles always match what
# tgring and the migration job log in with. Nothing secret is printed.
#
# Environment: POSTGRES_USER, POSTGRES_DB (the image's); TGRING_OWNER_URL_FILE (default
# /run/secrets/database_url_migrate) and TGRING_APP_URL_FILE (default /run/secrets/database_url);
# psql's PG* variables reach a server elsewhere (the test suite runs this script natively).
set -euo pipefail

owner_file=${TGRING_OWNER_URL_FILE:-/run/secrets/database_url_migrate}
app_file=${TGRING_APP_URL_FILE:-/run/secrets/database_url}

# Prints "user password" (percent-decoded) of a postgresql:// URI's user info.
url_credentials() {
    local url rest auth user pass
    IFS= read -r url <"$1" || [ -n "$url" ]
    case $url in
    postgres://* | postgresql://*) ;;
    *)
        echo "10-tgring-roles.sh: $1 does not hold a postgresql:// URI" >&2
        return 1
        ;;
    esac
    rest=${url#*://}
    rest=${rest%%\?*}
    auth=${rest%@*} # up to the last '@': an unencoded '@' in a password stays in it
    if [ "$auth" = "$rest" ] || [ "${auth#*:}" = "$auth" ]; then
        echo "10-tgring-roles.sh: $1 has no user:password@ part" >&2
        return 1
    fi
    user=${auth%%:*}
    pass=${auth#*:}
    printf '%b\n%b\n' "${user//%/\\x}" "${pass//%/\\x}"
}

{ IFS= read -r owner && IFS= read -r owner_pw; } < <(url_credentials "$owner_file")
{ IFS= read -r app && IFS= read -r app_pw; } < <(url_credentials "$app_file")
if [ -z "${owner:-}" ] || [ -z "${app:-}" ] || [ "$owner" = "$app" ]; then
    echo "10-tgring-roles.sh: the two URLs must name two different users" >&2
    exit 1
fi
db=${POSTGRES_DB:?}

# Values go in as psql variables (:'x' quotes a literal, :"x" an identifier): no quoting here.
psql -v ON_ERROR_STOP=1 -X -q --username "${POSTGRES_USER:?}" --dbname "$db" \
    -v owner="$owner" -v owner_pw="$owner_pw" -v app="$app" -v app_pw="$app_pw" -v db="$db" \
    <<'SQL'
CREATE ROLE :"owner" LOGIN PASSWORD :'owner_pw';
CREATE ROLE :"app" LOGIN PASSWORD :'app_pw';
ALTER DATABASE :"db" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"app";
-- PostgreSQL 15: public belongs to pg_database_owner (now the owner role) and PUBLIC may not
-- create in it; said again for a server that was upgraded from an older release.
ALTER SCHEMA public OWNER TO :"owner";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app";
-- What the owner creates from now on (every migration) the data role may use, no more.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO :"app";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO :"app";
SQL
echo "10-tgring-roles.sh: made the owner role $owner and the data role $app on $db"
