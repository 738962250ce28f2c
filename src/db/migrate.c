/* SPDX-License-Identifier: MIT */
/*
 * migrate.c - forward-only schema migrations (`tgring migrate`) and the
 * schema check made at start and by the health check. Blocking libpq on its
 * own short-lived connection, outside the reactor.
 *
 * Each migration runs in its own transaction together with its row in
 * schema_migrations, so a migration is either applied and recorded or
 * neither. A session advisory lock serialises concurrent runners (several
 * replicas starting at once): the second one waits, then finds everything
 * recorded and applies nothing. Migration files must therefore not contain
 * transaction control or statements that cannot run in a transaction block
 * (CREATE INDEX CONCURRENTLY).
 */
#include "db.h"
#include "db_private.h"
#include "log.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* pg_advisory_lock key of the migration runner: "tgrng" as a big-endian integer. */
#define DB_MIGRATE_LOCK_KEY "499951758951"

#define DB_SQL_CREATE_MIGRATIONS                                                                   \
    "CREATE TABLE IF NOT EXISTS schema_migrations ("                                               \
    "version integer PRIMARY KEY, "                                                                \
    "name text NOT NULL, "                                                                         \
    "applied_at timestamptz NOT NULL DEFAULT now())"

void db_conn_params(const char *conninfo, const char *keys[DB_CONN_PARAMS],
                    const char *vals[DB_CONN_PARAMS])
{
    /*
     * libpq ignores connect_timeout in PQconnectPoll (the inbox keeps its own
     * deadline); the blocking connections of migrate and healthcheck need it
     * so that an unreachable host does not hang them.
     */
    keys[0] = "connect_timeout";
    vals[0] = "10";
    keys[1] = "application_name";
    vals[1] = "tgring";
    keys[2] = "dbname";
    vals[2] = conninfo != NULL ? conninfo : "";
    keys[3] = NULL;
    vals[3] = NULL;
}

const char *db_flatten(const char *msg, char *out, size_t cap)
{
    size_t o = 0;
    bool space = false;

    if (cap == 0)
        return out;
    for (const char *p = msg != NULL ? msg : ""; *p != '\0' && o + 1 < cap; p++) {
        if (isspace((unsigned char)*p)) {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < cap)
            out[o++] = ' ';
        space = false;
        out[o++] = *p;
    }
    out[o] = '\0';
    return out;
}

/* CREATE TABLE IF NOT EXISTS and the like send NOTICEs that say nothing useful to an operator. */
static void db_migrate_notice(void *arg, const PGresult *res)
{
    char msg[DB_MSG_MAX];
    log_debug("db_notice", "%s", db_flatten(PQresultErrorMessage(res), msg, sizeof(msg)));
}

static PGconn *db_connect_blocking(const char *conninfo, const char *event)
{
    const char *keys[DB_CONN_PARAMS], *vals[DB_CONN_PARAMS];
    char msg[DB_MSG_MAX];

    db_conn_params(conninfo, keys, vals);
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL) {
        log_error(event, "cannot connect to the database: out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        /*
         * PQerrorMessage may quote a host or a port from the conninfo; main refused
         * those that would hold pieces of the password (db_conninfo_check) and the
         * logger scrubs the password itself.
         */
        log_error(event, "cannot connect to the database: %s",
                  db_flatten(PQerrorMessage(conn), msg, sizeof(msg)));
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeReceiver(conn, db_migrate_notice, NULL);
    return conn;
}

/* Runs one command; on failure logs `what` with the server's error and returns false. */
static bool db_exec_ok(PGconn *conn, const char *sql, ExecStatusType want, const char *what)
{
    char msg[DB_MSG_MAX];
    PGresult *res = PQexec(conn, sql);
    bool ok = PQresultStatus(res) == want;

    if (!ok) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        log_error(
            "migrate_failed", "%s failed: SQLSTATE %s: %s", what, state ? state : "none",
            db_flatten(res ? PQresultErrorMessage(res) : PQerrorMessage(conn), msg, sizeof(msg)));
    }
    PQclear(res);
    return ok;
}

static bool db_version_in(const PGresult *res, int version)
{
    char want[16];
    snprintf(want, sizeof(want), "%d", version);
    for (int i = 0; i < PQntuples(res); i++)
        if (strcmp(PQgetvalue(res, i, 0), want) == 0)
            return true;
    return false;
}

static int db_newest_version(const PGresult *res)
{
    int newest = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        int v = 0;
        if (sscanf(PQgetvalue(res, i, 0), "%d", &v) == 1 && v > newest)
            newest = v;
    }
    return newest;
}

static int db_compiled_newest(void)
{
    int newest = 0;
    for (unsigned i = 0; i < db_migrations_count; i++)
        if (db_migrations[i].version > newest)
            newest = db_migrations[i].version;
    return newest;
}

/* Applies migration `m` with its record in one transaction. */
static bool db_apply(PGconn *conn, const db_migration_t *m)
{
    char msg[DB_MSG_MAX], version[16];
    const char *params[2] = {version, m->name};

    snprintf(version, sizeof(version), "%d", m->version);
    if (!db_exec_ok(conn, "BEGIN", PGRES_COMMAND_OK, "BEGIN"))
        return false;
    /* A file of several statements: PQexec runs them all and returns the last result. */
    PGresult *res = PQexec(conn, m->sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        log_error(
            "migration_failed", "migration %s failed: SQLSTATE %s: %s", m->name,
            state ? state : "none",
            db_flatten(res ? PQresultErrorMessage(res) : PQerrorMessage(conn), msg, sizeof(msg)));
        PQclear(res);
        PQclear(PQexec(conn, "ROLLBACK"));
        return false;
    }
    PQclear(res);
    res = PQexecParams(conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2,
                       NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        log_error("migration_failed", "recording migration %s failed: %s", m->name,
                  db_flatten(PQresultErrorMessage(res), msg, sizeof(msg)));
        PQclear(res);
        PQclear(PQexec(conn, "ROLLBACK"));
        return false;
    }
    PQclear(res);
    if (!db_exec_ok(conn, "COMMIT", PGRES_COMMAND_OK, "COMMIT"))
        return false;
    log_info("migration_applied", "applied migration %s", m->name);
    return true;
}

int db_migrate(const char *conninfo)
{
    PGresult *applied = NULL;
    int n = 0;

    PGconn *conn = db_connect_blocking(conninfo, "migrate_connect_failed");
    if (conn == NULL)
        return -1;
    /* Held until the session ends, so it is released on every exit path by PQfinish. */
    if (!db_exec_ok(conn, "SELECT pg_advisory_lock(" DB_MIGRATE_LOCK_KEY ")", PGRES_TUPLES_OK,
                    "taking the migration lock"))
        goto fail;
    if (!db_exec_ok(conn, DB_SQL_CREATE_MIGRATIONS, PGRES_COMMAND_OK, "creating schema_migrations"))
        goto fail;
    /* Read only now, under the lock: a runner that waited sees what the other one applied. */
    applied = PQexec(conn, "SELECT version FROM schema_migrations");
    if (PQresultStatus(applied) != PGRES_TUPLES_OK) {
        char msg[DB_MSG_MAX];
        log_error("migrate_failed", "reading schema_migrations failed: %s",
                  db_flatten(PQresultErrorMessage(applied), msg, sizeof(msg)));
        goto fail;
    }
    for (unsigned i = 0; i < db_migrations_count; i++) {
        const db_migration_t *m = &db_migrations[i];
        if (db_version_in(applied, m->version))
            continue;
        if (!db_apply(conn, m))
            goto fail;
        n++;
    }
    int newest = db_newest_version(applied);
    if (n == 0)
        log_info("migrations_up_to_date",
                 "database schema is up to date (version %d): no migration to apply",
                 newest > db_compiled_newest() ? newest : db_compiled_newest());
    else
        log_info("migrations_done", "applied %d migration%s; database schema at version %d", n,
                 n == 1 ? "" : "s", db_compiled_newest() > newest ? db_compiled_newest() : newest);
    if (newest > db_compiled_newest())
        log_warn("schema_newer", "the database has migration %d, newer than this binary's %d",
                 newest, db_compiled_newest());
    PQclear(applied);
    PQfinish(conn);
    return n;

fail:
    PQclear(applied);
    PQfinish(conn);
    return -1;
}

int db_check_schema(const char *conninfo)
{
    char pending[256], msg[DB_MSG_MAX];
    size_t o = 0;
    unsigned npending = 0;

    PGconn *conn = db_connect_blocking(conninfo, "db_unreachable");
    if (conn == NULL)
        return -1;
    PGresult *res = PQexec(conn, "SELECT version FROM schema_migrations");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        /* No table yet is the normal state of a fresh database: everything is pending. */
        if (state == NULL || strcmp(state, "42P01") != 0) {
            log_error("schema_check_failed", "cannot read schema_migrations: %s",
                      db_flatten(PQresultErrorMessage(res), msg, sizeof(msg)));
            PQclear(res);
            PQfinish(conn);
            return -1;
        }
        PQclear(res);
        res = NULL;
    }
    pending[0] = '\0';
    for (unsigned i = 0; i < db_migrations_count; i++) {
        const db_migration_t *m = &db_migrations[i];
        if (res != NULL && db_version_in(res, m->version))
            continue;
        npending++;
        if (o < sizeof(pending)) {
            int w = snprintf(pending + o, sizeof(pending) - o, "%s%s", o ? ", " : "", m->name);
            o += w > 0 ? (size_t)w : 0;
        }
    }
    PQclear(res);
    PQfinish(conn);
    if (npending > 0) {
        log_warn("schema_not_migrated",
                 "database schema is not migrated: %u pending migration%s (%s); run `tgring "
                 "migrate`",
                 npending, npending == 1 ? "" : "s", pending);
        return 0;
    }
    log_debug("schema_ok", "all %u migrations applied", db_migrations_count);
    return 1;
}
