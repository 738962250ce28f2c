/* SPDX-License-Identifier: MIT */
/*
 * conn.c - the reactor's one PostgreSQL connection: nonblocking libpq in
 * pipeline mode, its socket polled through the ring, reconnects with backoff,
 * and the pipeline of items that the inbox and the outbox send over it.
 *
 * Every item is a few statements followed by its own sync, so each is one of
 * the pipeline's implicit transactions: the server commits it when it reaches
 * the sync, and reports it failed (an error before the sync's ReadyForQuery)
 * when the commit does not happen. An error aborts the rest of its item only,
 * never the item behind it. An explicit BEGIN/COMMIT would be worse here: an
 * error inside it leaves the block aborted past the sync, so the item
 * pipelined behind it would fail too and need a ROLLBACK first.
 *
 * After every (re)connect a setup item checks the schema and prepares the
 * statements of the inbox and the outbox. A lost connection hands every item
 * in the pipeline back to its module, which queues it again (all the
 * statements are idempotent) to be sent once the setup has passed.
 */
#include "db_private.h"
#include "log.h"
#include "met.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DB_BACKOFF_MIN_MS 50     /* first reconnect delay */
#define DB_BACKOFF_MAX_MS 500    /* cap: service is back within a second of the database */
#define DB_SETUP_TIMEOUT_MS 5000 /* connect plus setup queries, ms */
#define DB_SCHEMA_RETRY_MS 1000  /* between schema checks while not migrated */
#define DB_TICK_MS 100           /* deadline granularity */
#define DB_STALL_MIN_MS 5000     /* an unanswered transaction older than this breaks the conn */
#define DB_WARN_INTERVAL_MS 1000 /* at most one rate-limited warning per interval */
#define DB_DEFAULT_QUEUE_MAX 10000
#define DB_DEFAULT_ACK_TIMEOUT_MS 10000
#define DB_DEFAULT_MAX_BATCH 512
#define DB_DEFAULT_OUTBOX_MAX 1024
#define DB_DEFAULT_OUTBOX_TIMEOUT_MS 10000

#define DB_SQL_SCHEMA "SELECT max(version) FROM schema_migrations"

static void db_connect(db_t *db);
static void db_flush(db_t *db);
static void db_read_results(db_t *db);
static void db_on_tick(rx_loop_t *loop, rx_timer_t *t);
static void db_on_conn_timer(rx_loop_t *loop, rx_timer_t *t);
static void db_on_send(rx_loop_t *loop, rx_defer_t *d);
static void db_try_free(db_t *db);

/* ---- small helpers ---- */

void db_warn_limited(db_t *db, const char *event, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    uint64_t now = rx_now(db->loop);

    if (db->warn_ms != 0 && now - db->warn_ms < DB_WARN_INTERVAL_MS) {
        db->warn_skipped++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (db->warn_skipped > 0)
        log_warn(event, "%s (%u similar warnings suppressed)", line, db->warn_skipped);
    else
        log_warn(event, "%s", line);
    db->warn_ms = now != 0 ? now : 1;
    db->warn_skipped = 0;
}

static const char *db_conn_error_msg(const db_t *db, char *buf, size_t cap)
{
    const char *m = db->conn != NULL ? PQerrorMessage(db->conn) : NULL;
    db_flatten(m != NULL && *m != '\0' ? m : "connection failed", buf, cap);
    return buf;
}

const char *db_result_msg(const PGresult *r, char *buf, size_t cap)
{
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY);
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

    if (primary == NULL)
        return db_flatten(PQresultErrorMessage(r), buf, cap);
    snprintf(buf, cap, "%s: %s", sev != NULL ? sev : "ERROR", primary);
    return db_flatten(buf, buf, cap);
}

static void db_on_notice(void *arg, const PGresult *res)
{
    char msg[DB_MSG_MAX];
    log_info("db_notice", "%s", db_result_msg(res, msg, sizeof(msg)));
}

/*
 * An error that means the session is over (or as good as): libpq's own
 * errors (no SQLSTATE), FATAL and PANIC, connection exceptions, shutdowns.
 */
static bool db_is_conn_error(const db_t *db, const PGresult *r)
{
    if (PQstatus(db->conn) == CONNECTION_BAD)
        return true;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (state == NULL)
        return true;
    if (sev != NULL && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0))
        return true;
    /* 25006: a read-only server, e.g. a standby after a failover; a new connection may
     * reach the primary (target_session_attrs=read-write). */
    return strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
           strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0 ||
           strcmp(state, "25006") == 0;
}

/*
 * Data exceptions (22), integrity constraints (23), errors raised by PL/pgSQL
 * triggers (P0). Anything else (deadlocks, lock or statement timeouts, a full
 * disk, a missing table or privilege) is not the row's fault and is retried.
 */
bool db_is_row_error(const char *state)
{
    return state != NULL && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
                             strncmp(state, "P0", 2) == 0);
}

static bool db_busy(const db_t *db) { return db->in.count > 0 || db->out.count > 0; }

void db_kick(db_t *db)
{
    rx_defer(db->loop, &db->send_defer, db_on_send);
    if (!rx_timer_active(&db->tick))
        rx_timer_start(db->loop, &db->tick, DB_TICK_MS, db_on_tick);
}

/* ---- polling libpq's socket ---- */

static void db_poll_arm(db_t *db, db_poll_t *p, short events)
{
    if (p->op.armed) {
        /*
         * Still armed for this connection: nothing to do. Armed for an earlier
         * one: its cancellation is under way and the op is reusable only after
         * its final completion, which arms this one.
         */
        if (p->epoch != db->epoch)
            p->want = events;
        return;
    }
    int fd = PQsocket(db->conn);
    assert(fd >= 0);
    struct io_uring_sqe *sqe = rx_sqe(db->loop, &p->op);
    io_uring_prep_poll_add(sqe, fd, (unsigned)events);
    p->epoch = db->epoch;
    p->want = 0;
}

static void db_close_conn(db_t *db)
{
    rx_cancel(db->loop, &db->rd.op);
    rx_cancel(db->loop, &db->wr.op);
    db->rd.want = 0;
    db->wr.want = 0;
    if (db->conn != NULL)
        PQfinish(db->conn);
    db->conn = NULL;
    db->epoch++;
    db->prepared = false;
}

static void db_schedule_connect(db_t *db)
{
    db->state = DB_DOWN;
    rx_timer_start(db->loop, &db->conn_timer, db->backoff_ms, db_on_conn_timer);
    db->backoff_ms =
        db->backoff_ms * 2 > DB_BACKOFF_MAX_MS ? DB_BACKOFF_MAX_MS : db->backoff_ms * 2;
}

/* Takes the pipeline's items off it and hands them back to their modules, newest first. */
static void db_give_back(db_t *db)
{
    db_item_t *rev = NULL;

    while (db->phead != NULL) {
        db_item_t *it = db->phead;
        db->phead = it->next;
        it->next = rev;
        rev = it;
    }
    db->ptail = NULL;
    while (rev != NULL) {
        db_item_t *it = rev;
        rev = it->next;
        it->next = NULL;
        it->ops->lost(db, it);
    }
}

/* ---- connecting ---- */

static void db_connect_failed(db_t *db, const char *why)
{
    char msg[DB_MSG_MAX];
    db_warn_limited(db, "db_connect_failed", "cannot connect to the database (retrying): %s",
                    why != NULL ? why : db_conn_error_msg(db, msg, sizeof(msg)));
    db_close_conn(db);
    db_schedule_connect(db);
}

static void db_send_setup(db_t *db);

static void db_on_connected(db_t *db)
{
    char msg[DB_MSG_MAX];

    if (PQsetnonblocking(db->conn, 1) != 0 || PQenterPipelineMode(db->conn) != 1) {
        db_connect_failed(db, db_conn_error_msg(db, msg, sizeof(msg)));
        return;
    }
    db->backoff_ms = DB_BACKOFF_MIN_MS;
    db->was_connected = true;
    met_self()->db_connected = 1;
    log_info("db_connected", "connected to database \"%s\" on %s:%s (server %d)", PQdb(db->conn),
             PQhost(db->conn), PQport(db->conn), PQserverVersion(db->conn));
    db_send_setup(db);
}

/* Advances PQconnectPoll after its socket became ready, and polls for what it wants next. */
static void db_connect_step(db_t *db)
{
    PostgresPollingStatusType st = PQconnectPoll(db->conn);

    if (st == PGRES_POLLING_OK) {
        db_on_connected(db);
        return;
    }
    /* libpq may have moved to another socket (next host or address): poll the current one. */
    if ((st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) && PQsocket(db->conn) >= 0) {
        db_poll_arm(db, &db->rd, st == PGRES_POLLING_READING ? POLLIN : POLLOUT);
        return;
    }
    db_connect_failed(db, NULL);
}

static void db_connect(db_t *db)
{
    const char *keys[DB_CONN_PARAMS], *vals[DB_CONN_PARAMS];

    db_conn_params(db->conninfo, keys, vals);
    db->conn = PQconnectStartParams(keys, vals, 1);
    if (db->conn == NULL)
        abort();
    db->state = DB_CONNECTING;
    rx_timer_start(db->loop, &db->conn_timer, DB_SETUP_TIMEOUT_MS, db_on_conn_timer);
    if (PQstatus(db->conn) == CONNECTION_BAD || PQsocket(db->conn) < 0) {
        db_connect_failed(db, NULL);
        return;
    }
    PQsetNoticeReceiver(db->conn, db_on_notice, db);
    /* libpq's rule: start as if PQconnectPoll had returned PGRES_POLLING_WRITING. */
    db_poll_arm(db, &db->rd, POLLOUT);
}

/* ---- setup: schema check and prepares, as the first item on a connection ---- */

/* Every prepared statement, module by module. */
static const db_stmt_t *const db_stmt_sets[] = {db_inbox_stmts, db_outbox_stmts};

#define DB_FOR_EACH_STMT(s)                                                                        \
    for (size_t set_ = 0; set_ < sizeof(db_stmt_sets) / sizeof(db_stmt_sets[0]); set_++)           \
        for (const db_stmt_t *s = db_stmt_sets[set_]; s->name != NULL; s++)

static int db_setup_send(db_t *db, db_item_t *it)
{
    int n = 1;

    /*
     * The check goes first: on a fresh database the prepares fail (no
     * tables), and the check's answer is what decides what to say about it.
     */
    if (!PQsendQueryParams(db->conn, DB_SQL_SCHEMA, 0, NULL, NULL, NULL, NULL, 0))
        return -1;
    if (!db->setup_prepare)
        return n;
    /*
     * A prepare that succeeded in a setup whose later prepare failed (a table
     * missing) is still there, and preparing it again would fail: start over.
     */
    if (!PQsendQueryParams(db->conn, "DEALLOCATE ALL", 0, NULL, NULL, NULL, NULL, 0))
        return -1;
    n++;
    DB_FOR_EACH_STMT(s)
    {
        if (!PQsendPrepare(db->conn, s->name, s->sql, s->nparams, s->types))
            return -1;
        n++;
    }
    return n;
}

static bool db_setup_result(db_t *db, db_item_t *it, PGresult *r)
{
    char msg[DB_MSG_MAX];
    ExecStatusType st = PQresultStatus(r);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

    if (it->pos == 0) {
        if (st == PGRES_TUPLES_OK) {
            if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
                db->schema_version = atoi(PQgetvalue(r, 0, 0));
            db->schema_ok = db->schema_version >= db->need_version;
        } else if (st == PGRES_FATAL_ERROR && (state == NULL || strcmp(state, "42P01") != 0)) {
            /* 42P01: no schema_migrations, a fresh database; anything else is worth a line. */
            db_warn_limited(db, "schema_check_failed", "cannot read schema_migrations: %s",
                            db_result_msg(r, msg, sizeof(msg)));
        }
    } else if (it->pos == it->nstmt - 1 && db->setup_prepare && !it->err) {
        db->prepared = st == PGRES_COMMAND_OK;
    } else if (it->pos >= 2 && st == PGRES_FATAL_ERROR && db->schema_ok) {
        db_warn_limited(db, "db_prepare_failed", "cannot prepare a statement: %s",
                        db_result_msg(r, msg, sizeof(msg)));
    }
    return false;
}

static void db_setup_done(db_t *db, db_item_t *it)
{
    if (db->schema_ok && db->prepared) {
        rx_timer_stop(db->loop, &db->conn_timer);
        db->state = DB_READY;
        db->schema_logged = false;
        log_info("db_ready", "database ready (schema version %d)", db->schema_version);
        /* What was kept across a reconnect goes out now. */
        if (db->in.head != NULL || db->out.head != NULL)
            rx_defer(db->loop, &db->send_defer, db_on_send);
        return;
    }
    db->state = DB_WAIT_SCHEMA;
    if (!db->schema_ok && !db->schema_logged) {
        log_warn("schema_not_migrated",
                 "database schema is not migrated (at version %d, this binary needs %d): run "
                 "`tgring migrate`; checking again every %d ms",
                 db->schema_version, db->need_version, DB_SCHEMA_RETRY_MS);
        db->schema_logged = true;
    }
    rx_timer_start(db->loop, &db->conn_timer, DB_SCHEMA_RETRY_MS, db_on_conn_timer);
}

/* Nothing to keep: the next connection sends a setup of its own. */
static void db_setup_lost(db_t *db, db_item_t *it) {}

static const db_item_ops_t db_setup_ops = {
    .send = db_setup_send,
    .result = db_setup_result,
    .done = db_setup_done,
    .lost = db_setup_lost,
};

static void db_send_setup(db_t *db)
{
    db->state = DB_SETUP;
    db->setup_prepare = !db->prepared;
    db->schema_ok = false;
    db->schema_version = 0;
    rx_timer_start(db->loop, &db->conn_timer, DB_SETUP_TIMEOUT_MS, db_on_conn_timer);
    if (!db_item_push(db, &db->setup))
        return;
    db_poll_arm(db, &db->rd, POLLIN);
    db_flush(db);
}

/* ---- the pipeline ---- */

bool db_item_push(db_t *db, db_item_t *it)
{
    char msg[DB_MSG_MAX];

    it->next = NULL;
    it->pos = 0;
    it->got = false;
    it->err = false;
    it->nstmt = 0;
    it->sent_ms = rx_now(db->loop);
    /* In the pipeline from here on, so that a failure below hands it back. */
    if (db->ptail != NULL)
        db->ptail->next = it;
    else
        db->phead = it;
    db->ptail = it;
    int n = it->ops->send(db, it);
    if (n < 0 || !PQpipelineSync(db->conn)) {
        db_lost(db, db_conn_error_msg(db, msg, sizeof(msg)));
        return false;
    }
    it->nstmt = (unsigned)n;
    return true;
}

void db_send_queued(db_t *db)
{
    if (db->state != DB_READY)
        return;
    if (!db_inbox_send(db) || !db_outbox_send(db))
        return;
    db_flush(db);
}

static void db_on_send(rx_loop_t *loop, rx_defer_t *d)
{
    db_t *db = container_of(d, db_t, send_defer);

    if (db->state == DB_CLOSED) {
        db_try_free(db);
        return;
    }
    db_send_queued(db);
}

/* Writes what libpq has buffered; polls for POLLOUT if the socket is full. */
static void db_flush(db_t *db)
{
    char msg[DB_MSG_MAX];
    int r = PQflush(db->conn);

    if (r < 0) {
        db_lost(db, db_conn_error_msg(db, msg, sizeof(msg)));
        return;
    }
    if (r == 1)
        db_poll_arm(db, &db->wr, POLLOUT);
    /*
     * A flush that found the socket full reads the input into libpq's buffer
     * (so that the server is never stuck writing to us); what it read would
     * not wake the POLLIN poll again, so look at it now.
     */
    db_read_results(db);
}

/*
 * Handles one result (or the NULL that ends a statement's) of the oldest
 * item. Returns false when reading has to stop: nothing more is complete, or
 * the connection was lost.
 */
static bool db_item_result(db_t *db, PGresult *r)
{
    char msg[DB_MSG_MAX];
    db_item_t *it = db->phead;

    if (r == NULL) {
        if (!it->got)
            return false;
        it->pos++;
        it->got = false;
        return true;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        /* After an error libpq still reports each skipped statement (PIPELINE_ABORTED). */
        if (it->pos < it->nstmt) {
            db_lost(db, "pipeline out of step: sync before the last statement's result");
            return false;
        }
        db->phead = it->next;
        if (db->phead == NULL)
            db->ptail = NULL;
        it->next = NULL;
        it->ops->done(db, it);
        return true;
    }
    it->got = true;
    if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
        if (db_is_conn_error(db, r)) {
            db_lost(db, db_result_msg(r, msg, sizeof(msg)));
            PQclear(r);
            return false;
        }
        it->err = true;
    }
    if (!it->ops->result(db, it, r))
        PQclear(r);
    return true;
}

/*
 * Takes every result libpq has complete, in order: per statement one result
 * and a NULL, then PGRES_PIPELINE_SYNC (not followed by a NULL) per item.
 * Stops when the next result is incomplete, or nothing is expected.
 */
static void db_read_results(db_t *db)
{
    char msg[DB_MSG_MAX];

    while (db->conn != NULL && db->phead != NULL) {
        if (PQstatus(db->conn) == CONNECTION_BAD) {
            db_lost(db, db_conn_error_msg(db, msg, sizeof(msg)));
            return;
        }
        if (PQisBusy(db->conn))
            return;
        if (!db_item_result(db, PQgetResult(db->conn)))
            return;
    }
}

/* ---- losing the connection ---- */

void db_lost(db_t *db, const char *why)
{
    if (db->state == DB_READY || db->state == DB_SETUP || db->state == DB_WAIT_SCHEMA)
        log_warn("db_connection_lost", "lost the database connection (reconnecting): %s", why);
    else
        db_warn_limited(db, "db_connect_failed", "cannot connect to the database (retrying): %s",
                        why);
    if (db->was_connected) {
        met_self()->db_reconnects++;
        db->was_connected = false;
    }
    met_self()->db_connected = 0;
    /* Whatever was not confirmed is sent again on the next connection. */
    db_give_back(db);
    db_close_conn(db);
    db_schedule_connect(db);
}

/* ---- timers and completions ---- */

static void db_on_conn_timer(rx_loop_t *loop, rx_timer_t *t)
{
    db_t *db = container_of(t, db_t, conn_timer);

    switch (db->state) {
    case DB_DOWN:
        db_connect(db);
        break;
    case DB_CONNECTING:
        db_connect_failed(db, "timed out");
        break;
    case DB_SETUP:
        db_lost(db, "no answer to the setup queries in time");
        break;
    case DB_WAIT_SCHEMA:
        db_send_setup(db);
        break;
    default:
        break;
    }
}

/* Fails what waited past its deadline, wherever it is; detects a stuck connection. */
static void db_on_tick(rx_loop_t *loop, rx_timer_t *t)
{
    db_t *db = container_of(t, db_t, tick);
    uint64_t now = rx_now(loop);

    db_inbox_expire(db, now);
    db_outbox_expire(db, now);
    if (db->phead != NULL && db->conn != NULL && now - db->phead->sent_ms >= db->stall_ms) {
        char why[96];
        snprintf(why, sizeof(why), "no answer to a transaction in %llu ms",
                 (unsigned long long)db->stall_ms);
        db_lost(db, why);
    }
    if (db_busy(db))
        rx_timer_start(loop, &db->tick, DB_TICK_MS, db_on_tick);
    db_check_idle(db);
}

static void db_try_free(db_t *db)
{
    /* Everything the loop could still hand back to us must have come back. */
    if (db->rd.op.armed || db->wr.op.armed || db->send_defer.queued || db->idle_defer.queued)
        return;
    free(db->conninfo);
    free(db);
}

static void db_on_poll(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    db_poll_t *p = container_of(op, db_poll_t, op);
    db_t *db = p->db;
    char msg[DB_MSG_MAX];

    if (db->state == DB_CLOSED) {
        db_try_free(db);
        return;
    }
    if (p->epoch != db->epoch || db->conn == NULL) {
        /* The cancelled poll of a closed connection: the op is free for the current one. */
        if (p->want != 0 && db->conn != NULL)
            db_poll_arm(db, p, p->want);
        return;
    }
    if (db->state == DB_CONNECTING) {
        db_connect_step(db);
        return;
    }
    if (p == &db->wr) {
        db_flush(db);
        return;
    }
    if (!PQconsumeInput(db->conn)) {
        db_lost(db, db_conn_error_msg(db, msg, sizeof(msg)));
        return;
    }
    db_read_results(db);
    if (db->conn == NULL || p->epoch != db->epoch)
        return;
    /* Always read, even when nothing is expected: that is how a closed connection shows. */
    db_poll_arm(db, &db->rd, POLLIN);
    db_flush(db);
}

static void db_on_idle(rx_loop_t *loop, rx_defer_t *d)
{
    db_t *db = container_of(d, db_t, idle_defer);

    if (db->state == DB_CLOSED) {
        db_try_free(db);
        return;
    }
    if (db->on_idle == NULL || db_busy(db))
        return;
    void (*cb)(void *) = db->on_idle;
    db->on_idle = NULL;
    cb(db->idle_arg);
}

void db_check_idle(db_t *db)
{
    if (db->on_idle != NULL && !db_busy(db))
        rx_defer(db->loop, &db->idle_defer, db_on_idle);
}

/* ---- interface ---- */

db_t *db_new(rx_loop_t *loop, const db_options_t *opt)
{
    db_t *db = calloc(1, sizeof(*db));
    if (db == NULL)
        abort();
    db->loop = loop;
    db->opt = *opt;
    if (db->opt.queue_max == 0)
        db->opt.queue_max = DB_DEFAULT_QUEUE_MAX;
    if (db->opt.ack_timeout_ms == 0)
        db->opt.ack_timeout_ms = DB_DEFAULT_ACK_TIMEOUT_MS;
    if (db->opt.max_batch == 0)
        db->opt.max_batch = DB_DEFAULT_MAX_BATCH;
    if (db->opt.outbox_max == 0)
        db->opt.outbox_max = DB_DEFAULT_OUTBOX_MAX;
    if (db->opt.outbox_timeout_ms == 0)
        db->opt.outbox_timeout_ms = DB_DEFAULT_OUTBOX_TIMEOUT_MS;
    db->conninfo = strdup(opt->conninfo != NULL ? opt->conninfo : "");
    if (db->conninfo == NULL)
        abort();
    db->opt.conninfo = NULL;
    db->rd.op.cb = db_on_poll;
    db->rd.db = db;
    db->wr.op.cb = db_on_poll;
    db->wr.db = db;
    db->setup.ops = &db_setup_ops;
    db->backoff_ms = DB_BACKOFF_MIN_MS;
    /*
     * A commit can legitimately take a while (a checkpoint's fsyncs); past
     * twice the deadline everything in it has been answered anyway, and a
     * connection that silent is more likely gone without a FIN.
     */
    uint64_t longest = db->opt.ack_timeout_ms > db->opt.outbox_timeout_ms
                           ? db->opt.ack_timeout_ms
                           : db->opt.outbox_timeout_ms;
    db->stall_ms = 2 * longest;
    if (db->stall_ms < DB_STALL_MIN_MS)
        db->stall_ms = DB_STALL_MIN_MS;
    for (unsigned i = 0; i < db_migrations_count; i++)
        if (db_migrations[i].version > db->need_version)
            db->need_version = db_migrations[i].version;
    db_inbox_init(db);
    db_outbox_init(db);
    met_self()->db_connected = 0;
    db_connect(db);
    return db;
}

bool db_ready(const db_t *db) { return db->state == DB_READY; }

void db_drain(db_t *db, void (*on_idle)(void *arg), void *arg)
{
    db->draining = true;
    db->on_idle = on_idle;
    db->idle_arg = arg;
    db_check_idle(db);
}

void db_free(db_t *db)
{
    if (db == NULL)
        return;
    rx_timer_stop(db->loop, &db->conn_timer);
    rx_timer_stop(db->loop, &db->tick);
    /* Back into the queues, in order, so that everything is cancelled oldest first. */
    db_give_back(db);
    if (db->conn != NULL) {
        db_close_conn(db);
        met_self()->db_connected = 0;
    }
    db->state = DB_CLOSED;
    db->on_idle = NULL;
    db_inbox_cancel(db);
    db_outbox_cancel(db);
    db_try_free(db);
}
