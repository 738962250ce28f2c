/* SPDX-License-Identifier: MIT */
/*
 * conn.c - the reactor's PostgreSQL connections: nonblocking libpq in
 * pipeline mode, each socket polled through the ring, reconnects with
 * backoff, and on each connection the pipeline of items that the parts (the
 * registered users: transaction clients, the inbox) send over it, through
 * their ops tables. A db_t has opt.connections of these; each one
 * connects, passes its setup, fails and reconnects on its own, and the db is
 * ready while any one of them is.
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
 * statements of every part. A lost connection hands every item in its
 * pipeline back to its part, which queues it again (all the statements are
 * idempotent) to be sent on whichever connection is ready.
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
#define DB_DEFAULT_CONNECTIONS 2
#define DB_DEFAULT_QUEUE_MAX 10000
#define DB_DEFAULT_ACK_TIMEOUT_MS 10000
#define DB_DEFAULT_MAX_BATCH 512

#define DB_SQL_SCHEMA "SELECT max(version) FROM schema_migrations"

/* Bytes for a connection's name in a log line, e.g. " (connection 12/16)". */
#define DB_LABEL_MAX 32

static void db_connect(db_conn_t *c);
static void db_flush(db_conn_t *c);
static void db_read_results(db_conn_t *c);
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

/* Which connection a log line is about: "" when there is only one. */
static const char *db_label(const db_conn_t *c, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (c->db->opt.connections > 1)
        snprintf(buf, cap, " (connection %u/%u)", c->idx + 1, c->db->opt.connections);
    return buf;
}

static const char *db_conn_error_msg(const db_conn_t *c, char *buf, size_t cap)
{
    const char *m = c->pg != NULL ? PQerrorMessage(c->pg) : NULL;
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
static bool db_is_conn_error(const db_conn_t *c, const PGresult *r)
{
    if (PQstatus(c->pg) == CONNECTION_BAD)
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

void db_take_expired(core_queue_t *q, core_queue_t *out, uint64_t now, uint64_t timeout_ms,
                     uint64_t (*since)(const core_qlink_t *l))
{
    core_qlink_t *prev = NULL, *l = q->head;

    while (l != NULL) {
        core_qlink_t *next = l->next;
        if (now - since(l) >= timeout_ms) {
            core_queue_remove_after(q, prev, l);
            core_queue_push(out, l);
        } else {
            prev = l;
        }
        l = next;
    }
}

static bool db_busy(const db_t *db)
{
    for (const db_part_t *p = db->parts; p != NULL; p = p->next)
        if (p->count > 0)
            return true;
    return false;
}

/* The gauge: 1 while any connection of this worker is up. */
static void db_gauge_connected(const db_t *db)
{
    uint64_t up = 0;
    for (unsigned i = 0; i < db->opt.connections; i++)
        up |= db->conns[i].was_connected;
    met_self()->db_connected = up;
}

void db_kick(db_t *db)
{
    rx_defer(db->loop, &db->send_defer, db_on_send);
    if (!rx_timer_active(&db->tick))
        rx_timer_start(db->loop, &db->tick, DB_TICK_MS, db_on_tick);
}

/* ---- polling libpq's socket ---- */

static void db_poll_arm(db_conn_t *c, db_poll_t *p, short events)
{
    if (p->op.armed) {
        /*
         * Still armed for this session: nothing to do. Armed for an earlier
         * one: its cancellation is under way and the op is reusable only after
         * its final completion, which arms this one.
         */
        if (p->epoch != c->epoch)
            p->want = events;
        return;
    }
    int fd = PQsocket(c->pg);
    assert(fd >= 0);
    struct io_uring_sqe *sqe = rx_sqe(c->db->loop, &p->op);
    io_uring_prep_poll_add(sqe, fd, (unsigned)events);
    p->epoch = c->epoch;
    p->want = 0;
}

static void db_close_conn(db_conn_t *c)
{
    rx_cancel(c->db->loop, &c->rd.op);
    rx_cancel(c->db->loop, &c->wr.op);
    c->rd.want = 0;
    c->wr.want = 0;
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->pg = NULL;
    c->epoch++;
    c->prepared = false;
}

static void db_schedule_connect(db_conn_t *c)
{
    c->state = DB_DOWN;
    rx_timer_start(c->db->loop, &c->timer, c->backoff_ms, db_on_conn_timer);
    c->backoff_ms = c->backoff_ms * 2 > DB_BACKOFF_MAX_MS ? DB_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

/* Takes the pipeline's items off it and hands them back to their parts, newest first. */
static void db_give_back(db_conn_t *c)
{
    core_queue_t rev;
    core_qlink_t *l;

    core_queue_init(&rev);
    while ((l = core_queue_pop(&c->pipe)) != NULL)
        core_queue_push_head(&rev, l);
    c->depth = 0;
    while ((l = core_queue_pop(&rev)) != NULL) {
        db_item_t *it = db_pipe_item(l);
        it->ops->lost(c, it);
    }
}

/* ---- connecting ---- */

static void db_connect_failed(db_conn_t *c, const char *why)
{
    char msg[DB_MSG_MAX];
    db_warn_limited(c->db, "db_connect_failed", "cannot connect to the database (retrying): %s",
                    why != NULL ? why : db_conn_error_msg(c, msg, sizeof(msg)));
    db_close_conn(c);
    db_schedule_connect(c);
}

static void db_send_setup(db_conn_t *c);

static void db_on_connected(db_conn_t *c)
{
    char msg[DB_MSG_MAX], label[DB_LABEL_MAX];

    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        db_connect_failed(c, db_conn_error_msg(c, msg, sizeof(msg)));
        return;
    }
    c->backoff_ms = DB_BACKOFF_MIN_MS;
    c->was_connected = true;
    db_gauge_connected(c->db);
    log_info("db_connected", "connected to database \"%s\" on %s:%s (server %d)%s", PQdb(c->pg),
             PQhost(c->pg), PQport(c->pg), PQserverVersion(c->pg),
             db_label(c, label, sizeof(label)));
    db_send_setup(c);
}

/* Advances PQconnectPoll after its socket became ready, and polls for what it wants next. */
static void db_connect_step(db_conn_t *c)
{
    PostgresPollingStatusType st = PQconnectPoll(c->pg);

    if (st == PGRES_POLLING_OK) {
        db_on_connected(c);
        return;
    }
    /* libpq may have moved to another socket (next host or address): poll the current one. */
    if ((st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) && PQsocket(c->pg) >= 0) {
        db_poll_arm(c, &c->rd, st == PGRES_POLLING_READING ? POLLIN : POLLOUT);
        return;
    }
    db_connect_failed(c, NULL);
}

static void db_connect(db_conn_t *c)
{
    const char *keys[DB_CONN_PARAMS], *vals[DB_CONN_PARAMS];

    db_conn_params(c->db->conninfo, keys, vals);
    c->pg = PQconnectStartParams(keys, vals, 1);
    if (c->pg == NULL) {
        /* libpq's only reason to return NULL is a failed allocation. */
        fprintf(stderr, "tgring: out of memory in PQconnectStartParams\n");
        abort();
    }
    c->state = DB_CONNECTING;
    rx_timer_start(c->db->loop, &c->timer, DB_SETUP_TIMEOUT_MS, db_on_conn_timer);
    if (PQstatus(c->pg) == CONNECTION_BAD || PQsocket(c->pg) < 0) {
        db_connect_failed(c, NULL);
        return;
    }
    PQsetNoticeReceiver(c->pg, db_on_notice, c);
    /* libpq's rule: start as if PQconnectPoll had returned PGRES_POLLING_WRITING. */
    db_poll_arm(c, &c->rd, POLLOUT);
}

/* ---- setup: schema check and prepares, as the first item on a connection ---- */

_Static_assert(sizeof(Oid) == sizeof(uint32_t), "db_stmt_t.types are passed to libpq as Oid");

/* Sends the prepares of p's statements. Returns how many, or -1 when libpq refused one. */
static int db_send_prepares(db_conn_t *c, const db_part_t *p)
{
    for (unsigned i = 0; i < p->nstmts; i++) {
        const db_stmt_t *s = &p->stmts[i];
        if (!PQsendPrepare(c->pg, s->name, s->sql, s->nparams, (const Oid *)s->types))
            return -1;
    }
    return (int)p->nstmts;
}

static int db_setup_send(db_conn_t *c, db_item_t *it)
{
    int n = 1;

    /*
     * The check goes first: on a fresh database the prepares fail (no
     * tables), and the check's answer is what decides what to say about it.
     */
    if (!PQsendQueryParams(c->pg, DB_SQL_SCHEMA, 0, NULL, NULL, NULL, NULL, 0))
        return -1;
    if (!c->setup_prepare)
        return n;
    /*
     * A prepare that succeeded in a setup whose later prepare failed (a table
     * missing) is still there, and preparing it again would fail: start over.
     */
    if (!PQsendQueryParams(c->pg, "DEALLOCATE ALL", 0, NULL, NULL, NULL, NULL, 0))
        return -1;
    n++;
    c->prep_gen = c->db->stmt_gen;
    for (const db_part_t *p = c->db->parts; p != NULL; p = p->next) {
        int k = db_send_prepares(c, p);
        if (k < 0)
            return -1;
        n += k;
    }
    return n;
}

static bool db_setup_result(db_conn_t *c, db_item_t *it, PGresult *r)
{
    char msg[DB_MSG_MAX];
    ExecStatusType st = PQresultStatus(r);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

    if (it->pos == 0) {
        if (st == PGRES_TUPLES_OK) {
            if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
                c->schema_version = atoi(PQgetvalue(r, 0, 0));
            c->schema_ok = c->schema_version >= c->db->need_version;
        } else if (st == PGRES_FATAL_ERROR && (state == NULL || strcmp(state, "42P01") != 0)) {
            /* 42P01: no schema_migrations, a fresh database; anything else is worth a line. */
            db_warn_limited(c->db, "schema_check_failed", "cannot read schema_migrations: %s",
                            db_result_msg(r, msg, sizeof(msg)));
        }
    } else if (it->pos == it->nstmt - 1 && c->setup_prepare && !it->err) {
        c->prepared = st == PGRES_COMMAND_OK;
    } else if (it->pos >= 2 && st == PGRES_FATAL_ERROR && c->schema_ok) {
        db_warn_limited(c->db, "db_prepare_failed", "cannot prepare a statement: %s",
                        db_result_msg(r, msg, sizeof(msg)));
    }
    return false;
}

static void db_setup_done(db_conn_t *c, db_item_t *it)
{
    db_t *db = c->db;
    char label[DB_LABEL_MAX];

    /* A part registered while the prepares were on their way: they lack its statements. */
    if (c->prep_gen != db->stmt_gen)
        c->prepared = false;
    if (c->schema_ok && c->prepared) {
        rx_timer_stop(db->loop, &c->timer);
        c->state = DB_READY;
        db->schema_logged = false;
        log_info("db_ready", "database ready (schema version %d)%s", c->schema_version,
                 db_label(c, label, sizeof(label)));
        /* What was kept across a reconnect, or waited for a connection, goes out now. */
        if (db_busy(db))
            rx_defer(db->loop, &db->send_defer, db_on_send);
        return;
    }
    if (c->schema_ok && c->setup_prepare && c->prep_gen != db->stmt_gen) {
        db_send_setup(c);
        return;
    }
    c->state = DB_WAIT_SCHEMA;
    if (!c->schema_ok && !db->schema_logged) {
        log_warn("schema_not_migrated",
                 "database schema is not migrated (at version %d, this binary needs %d): run "
                 "`tgring migrate`; checking again every %d ms",
                 c->schema_version, db->need_version, DB_SCHEMA_RETRY_MS);
        db->schema_logged = true;
    }
    rx_timer_start(db->loop, &c->timer, DB_SCHEMA_RETRY_MS, db_on_conn_timer);
}

/* Nothing to keep: the next session sends a setup of its own. */
static void db_setup_lost(db_conn_t *c, db_item_t *it) {}

static const db_item_ops_t db_setup_ops = {
    .send = db_setup_send,
    .result = db_setup_result,
    .done = db_setup_done,
    .lost = db_setup_lost,
};

static void db_send_setup(db_conn_t *c)
{
    c->state = DB_SETUP;
    c->setup_prepare = !c->prepared;
    c->schema_ok = false;
    c->schema_version = 0;
    rx_timer_start(c->db->loop, &c->timer, DB_SETUP_TIMEOUT_MS, db_on_conn_timer);
    if (!db_item_push(c, &c->setup))
        return;
    db_poll_arm(c, &c->rd, POLLIN);
    db_flush(c);
}

/* ---- the pipeline ---- */

db_conn_t *db_conn_pick(db_t *db, unsigned *next, bool (*ok)(const db_conn_t *c, void *arg),
                        void *arg)
{
    unsigned n = db->opt.connections;
    db_conn_t *best = NULL;

    for (unsigned k = 0; k < n; k++) {
        db_conn_t *c = &db->conns[(*next + k) % n];
        if (c->state == DB_READY && (ok == NULL || ok(c, arg)) &&
            (best == NULL || c->depth < best->depth))
            best = c;
    }
    if (best != NULL)
        *next = (best->idx + 1) % n;
    return best;
}

bool db_item_push(db_conn_t *c, db_item_t *it)
{
    char msg[DB_MSG_MAX];

    it->pos = 0;
    it->got = false;
    it->err = false;
    it->nstmt = 0;
    it->sent_ms = rx_now(c->db->loop);
    /* In the pipeline from here on, so that a failure below hands it back. */
    core_queue_push(&c->pipe, &it->link);
    c->depth++;
    int n = it->ops->send(c, it);
    if (n < 0 || !PQpipelineSync(c->pg)) {
        db_lost(c, db_conn_error_msg(c, msg, sizeof(msg)));
        return false;
    }
    it->nstmt = (unsigned)n;
    return true;
}

void db_send_queued(db_t *db)
{
    for (db_part_t *p = db->parts; p != NULL; p = p->next)
        p->ops->send(p);
    for (unsigned i = 0; i < db->opt.connections; i++)
        if (db->conns[i].state == DB_READY)
            db_flush(&db->conns[i]);
}

static void db_on_send(rx_loop_t *loop, rx_defer_t *d)
{
    db_t *db = container_of(d, db_t, send_defer);

    if (db->closed) {
        db_try_free(db);
        return;
    }
    db_send_queued(db);
}

/* Writes what libpq has buffered; polls for POLLOUT if the socket is full. */
static void db_flush(db_conn_t *c)
{
    char msg[DB_MSG_MAX];
    int r = PQflush(c->pg);

    if (r < 0) {
        db_lost(c, db_conn_error_msg(c, msg, sizeof(msg)));
        return;
    }
    if (r == 1)
        db_poll_arm(c, &c->wr, POLLOUT);
    /*
     * A flush that found the socket full reads the input into libpq's buffer
     * (so that the server is never stuck writing to us); what it read would
     * not wake the POLLIN poll again, so look at it now.
     */
    db_read_results(c);
}

/*
 * Handles one result (or the NULL that ends a statement's) of the oldest
 * item. Returns false when reading has to stop: nothing more is complete, or
 * the connection was lost.
 */
static bool db_item_result(db_conn_t *c, PGresult *r)
{
    char msg[DB_MSG_MAX];
    db_item_t *it = db_pipe_item(c->pipe.head);

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
            db_lost(c, "pipeline out of step: sync before the last statement's result");
            return false;
        }
        core_queue_pop(&c->pipe);
        c->depth--;
        it->ops->done(c, it);
        return true;
    }
    it->got = true;
    if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
        if (db_is_conn_error(c, r)) {
            db_lost(c, db_result_msg(r, msg, sizeof(msg)));
            PQclear(r);
            return false;
        }
        it->err = true;
    }
    if (!it->ops->result(c, it, r))
        PQclear(r);
    return true;
}

/*
 * Takes every result libpq has complete, in order: per statement one result
 * and a NULL, then PGRES_PIPELINE_SYNC (not followed by a NULL) per item.
 * Stops when the next result is incomplete, or nothing is expected.
 */
static void db_read_results(db_conn_t *c)
{
    char msg[DB_MSG_MAX];

    while (c->pg != NULL && !core_queue_empty(&c->pipe)) {
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            db_lost(c, db_conn_error_msg(c, msg, sizeof(msg)));
            return;
        }
        if (PQisBusy(c->pg))
            return;
        if (!db_item_result(c, PQgetResult(c->pg)))
            return;
    }
}

/* ---- losing a connection ---- */

void db_lost(db_conn_t *c, const char *why)
{
    db_t *db = c->db;
    char label[DB_LABEL_MAX];

    if (c->state == DB_READY || c->state == DB_SETUP || c->state == DB_WAIT_SCHEMA)
        log_warn("db_connection_lost", "lost the database connection%s (reconnecting): %s",
                 db_label(c, label, sizeof(label)), why);
    else
        db_warn_limited(db, "db_connect_failed", "cannot connect to the database (retrying): %s",
                        why);
    if (c->was_connected) {
        met_self()->db_reconnects++;
        c->was_connected = false;
    }
    db_gauge_connected(db);
    /* Whatever was not confirmed is sent again, on this connection or on another. */
    db_give_back(c);
    db_close_conn(c);
    db_schedule_connect(c);
    if (db_busy(db))
        db_kick(db);
}

/* ---- timers and completions ---- */

static void db_on_conn_timer(rx_loop_t *loop, rx_timer_t *t)
{
    db_conn_t *c = container_of(t, db_conn_t, timer);

    switch (c->state) {
    case DB_DOWN:
        db_connect(c);
        break;
    case DB_CONNECTING:
        db_connect_failed(c, "timed out");
        break;
    case DB_SETUP:
        db_lost(c, "no answer to the setup queries in time");
        break;
    case DB_WAIT_SCHEMA:
        db_send_setup(c);
        break;
    default:
        break;
    }
}

/* Fails what waited past its deadline, wherever it is; detects stuck connections. */
static void db_on_tick(rx_loop_t *loop, rx_timer_t *t)
{
    db_t *db = container_of(t, db_t, tick);
    uint64_t now = rx_now(loop);

    for (db_part_t *p = db->parts; p != NULL; p = p->next)
        p->ops->expire(p, now);
    for (unsigned i = 0; i < db->opt.connections; i++) {
        db_conn_t *c = &db->conns[i];
        if (!core_queue_empty(&c->pipe) && c->pg != NULL &&
            now - db_pipe_item(c->pipe.head)->sent_ms >= db->stall_ms) {
            char why[96];
            snprintf(why, sizeof(why), "no answer to a transaction in %llu ms",
                     (unsigned long long)db->stall_ms);
            db_lost(c, why);
        }
    }
    if (db_busy(db))
        rx_timer_start(loop, &db->tick, DB_TICK_MS, db_on_tick);
    db_check_idle(db);
}

static void db_try_free(db_t *db)
{
    /* Everything the loop could still hand back to us must have come back. */
    if (db->send_defer.queued || db->idle_defer.queued)
        return;
    for (unsigned i = 0; i < db->opt.connections; i++)
        if (db->conns[i].rd.op.armed || db->conns[i].wr.op.armed)
            return;
    free(db->conns);
    explicit_bzero(db->conninfo, strlen(db->conninfo));
    free(db->conninfo);
    free(db);
}

static void db_on_poll(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    db_poll_t *p = container_of(op, db_poll_t, op);
    db_conn_t *c = p->c;
    char msg[DB_MSG_MAX];

    if (c->db->closed) {
        db_try_free(c->db);
        return;
    }
    if (p->epoch != c->epoch || c->pg == NULL) {
        /* The cancelled poll of a closed session: the op is free for the current one. */
        if (p->want != 0 && c->pg != NULL)
            db_poll_arm(c, p, p->want);
        return;
    }
    if (c->state == DB_CONNECTING) {
        db_connect_step(c);
        return;
    }
    if (p == &c->wr) {
        db_flush(c);
        return;
    }
    if (!PQconsumeInput(c->pg)) {
        db_lost(c, db_conn_error_msg(c, msg, sizeof(msg)));
        return;
    }
    db_read_results(c);
    if (c->pg == NULL || p->epoch != c->epoch)
        return;
    /* Always read, even when nothing is expected: that is how a closed connection shows. */
    db_poll_arm(c, &c->rd, POLLIN);
    db_flush(c);
}

static void db_on_idle(rx_loop_t *loop, rx_defer_t *d)
{
    db_t *db = container_of(d, db_t, idle_defer);

    if (db->closed) {
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

/* ---- statements of a part registered late: a prepare item per connection ---- */

typedef struct db_prep {
    db_item_t item;
    const db_part_t *part;
    bool failed; /* a prepare failed: the connection is set up anew */
} db_prep_t;

static int db_prep_send(db_conn_t *c, db_item_t *it)
{
    return db_send_prepares(c, container_of(it, db_prep_t, item)->part);
}

static bool db_prep_result(db_conn_t *c, db_item_t *it, PGresult *r)
{
    char msg[DB_MSG_MAX];
    db_prep_t *pr = container_of(it, db_prep_t, item);

    if (PQresultStatus(r) != PGRES_COMMAND_OK && !pr->failed) {
        pr->failed = true;
        db_warn_limited(c->db, "db_prepare_failed", "cannot prepare a statement: %s",
                        db_result_msg(r, msg, sizeof(msg)));
    }
    return false;
}

static void db_prep_done(db_conn_t *c, db_item_t *it)
{
    db_prep_t *pr = container_of(it, db_prep_t, item);
    bool failed = pr->failed;

    free(pr);
    /* The reconnect's setup prepares every statement again, or waits for the schema. */
    if (failed)
        db_lost(c, "a statement could not be prepared");
}

static void db_prep_lost(db_conn_t *c, db_item_t *it)
{
    free(container_of(it, db_prep_t, item));
}

static const db_item_ops_t db_prep_ops = {
    .send = db_prep_send,
    .result = db_prep_result,
    .done = db_prep_done,
    .lost = db_prep_lost,
};

void db_part_add(db_t *db, db_part_t *p)
{
    db_part_t **pp = &db->parts;

    while (*pp != NULL)
        pp = &(*pp)->next;
    p->next = NULL;
    p->db = db;
    *pp = p;
    /*
     * A commit can legitimately take a while (a checkpoint's fsyncs); past
     * twice the longest deadline everything in it has been answered anyway,
     * and a connection that silent is more likely gone without a FIN.
     */
    if (2 * p->timeout_ms > db->stall_ms)
        db->stall_ms = 2 * p->timeout_ms;
    if (p->nstmts == 0)
        return;
    db->stmt_gen++;
    for (unsigned i = 0; i < db->opt.connections; i++) {
        db_conn_t *c = &db->conns[i];
        /* A setup in flight sees the new generation when it is done; a later one prepares all. */
        if (c->state != DB_READY) {
            c->prepared = false;
            continue;
        }
        db_prep_t *pr = xcalloc(1, sizeof(*pr));
        pr->item.ops = &db_prep_ops;
        pr->part = p;
        /* Ahead of anything of p's in this pipeline; written at the end of the turn. */
        db_item_push(c, &pr->item);
    }
    db_kick(db);
}

/* ---- wiring ---- */

db_t *db_conns_new(rx_loop_t *loop, const db_options_t *opt)
{
    db_t *db = xcalloc(1, sizeof(*db));
    db->loop = loop;
    db->opt = *opt;
    if (db->opt.connections == 0)
        db->opt.connections = DB_DEFAULT_CONNECTIONS;
    if (db->opt.connections > DB_CONNECTIONS_MAX)
        db->opt.connections = DB_CONNECTIONS_MAX;
    if (db->opt.queue_max == 0)
        db->opt.queue_max = DB_DEFAULT_QUEUE_MAX;
    if (db->opt.ack_timeout_ms == 0)
        db->opt.ack_timeout_ms = DB_DEFAULT_ACK_TIMEOUT_MS;
    if (db->opt.max_batch == 0)
        db->opt.max_batch = DB_DEFAULT_MAX_BATCH;
    db->conninfo = xstrdup(opt->conninfo != NULL ? opt->conninfo : "");
    db->conns = xcalloc(db->opt.connections, sizeof(*db->conns));
    db->opt.conninfo = NULL;
    /* Raised by each part to twice its deadline (db_part_add). */
    db->stall_ms = DB_STALL_MIN_MS;
    for (unsigned i = 0; i < db_migrations_count; i++)
        if (db_migrations[i].version > db->need_version)
            db->need_version = db_migrations[i].version;
    for (unsigned i = 0; i < db->opt.connections; i++) {
        db_conn_t *c = &db->conns[i];
        c->db = db;
        c->idx = i;
        c->rd.op.cb = db_on_poll;
        c->rd.c = c;
        c->wr.op.cb = db_on_poll;
        c->wr.c = c;
        c->setup.ops = &db_setup_ops;
        c->backoff_ms = DB_BACKOFF_MIN_MS;
    }
    return db;
}

void db_conns_start(db_t *db)
{
    met_self()->db_connected = 0;
    for (unsigned i = 0; i < db->opt.connections; i++)
        db_connect(&db->conns[i]);
}

bool db_ready(const db_t *db)
{
    for (unsigned i = 0; i < db->opt.connections; i++)
        if (db->conns[i].state == DB_READY)
            return true;
    return false;
}

void db_drain(db_t *db, void (*on_idle)(void *arg), void *arg)
{
    db->draining = true;
    db->on_idle = on_idle;
    db->idle_arg = arg;
    db_check_idle(db);
}

bool db_draining(const db_t *db)
{
    return db->draining;
}

void db_conns_free(db_t *db)
{
    bool connected = false;

    rx_timer_stop(db->loop, &db->tick);
    for (unsigned i = 0; i < db->opt.connections; i++) {
        db_conn_t *c = &db->conns[i];
        rx_timer_stop(db->loop, &c->timer);
        /* Back into the queues, each connection's in order, to be cancelled with the rest. */
        db_give_back(c);
        connected = connected || c->pg != NULL;
        if (c->pg != NULL)
            db_close_conn(c);
        c->state = DB_CLOSED;
    }
    if (connected)
        met_self()->db_connected = 0;
    db->closed = true;
    db->on_idle = NULL;
    while (db->parts != NULL) {
        db_part_t *p = db->parts;
        db->parts = p->next;
        p->ops->cancel(p);
    }
    db_try_free(db);
}
