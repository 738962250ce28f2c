/* SPDX-License-Identifier: MIT */
/*
 * db.c - the inbox: updates stored by group commit over one libpq connection
 * in nonblocking pipeline mode, its socket polled through the reactor.
 *
 * db_store() appends to a pending list; an end-of-turn callback sends what
 * is pending as one transaction (N inserts, then a pipeline sync) and the
 * callbacks run when its result arrives. At most DB_INFLIGHT transactions are
 * in flight; what arrives meanwhile waits for the next one, so batches grow
 * with the load. A lost connection puts every unconfirmed update back in the
 * pending list (the insert is idempotent) and reconnects with backoff.
 *
 * Transactions are the pipeline's implicit ones: everything between two
 * syncs runs in one transaction that the server commits when it reaches the
 * sync, and reports as failed (an error before the sync's ReadyForQuery)
 * when the commit does not happen. An explicit BEGIN/COMMIT would be worse
 * here: an error inside it leaves the block aborted past the sync, so the
 * transaction pipelined behind it would fail too and need a ROLLBACK first.
 */
#include "db.h"
#include "db_private.h"
#include "log.h"
#include "met.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

#define DB_INFLIGHT 2             /* transactions sent and not yet answered */
#define DB_BACKOFF_MIN_MS 50      /* first reconnect delay */
#define DB_BACKOFF_MAX_MS 500     /* cap: service is back within a second of the database */
#define DB_SETUP_TIMEOUT_MS 5000  /* connect plus setup queries, ms */
#define DB_SCHEMA_RETRY_MS 1000   /* between schema checks while not migrated */
#define DB_TICK_MS 100            /* ack deadline granularity */
#define DB_STALL_MIN_MS 5000      /* an unanswered transaction older than this breaks the conn */
#define DB_WARN_INTERVAL_MS 1000  /* at most one rate-limited warning per interval */
#define DB_BATCH_BYTES (1u << 20) /* body bytes per transaction: bounds libpq's buffers */
#define DB_DEFAULT_QUEUE_MAX 10000
#define DB_DEFAULT_ACK_TIMEOUT_MS 10000
#define DB_DEFAULT_MAX_BATCH 512

#define DB_STMT_INSERT "tgring_store_update"
#define DB_SQL_INSERT                                                                              \
    "INSERT INTO updates (update_id, update_type, chat_id, from_id, body) "                        \
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (update_id) DO NOTHING"
#define DB_SQL_SCHEMA "SELECT max(version) FROM schema_migrations"

/* Type OIDs of the insert's parameters (pg_type.dat): int8, text, int8, int8, bytea. */
#define DB_OID_INT8 20
#define DB_OID_TEXT 25
#define DB_OID_BYTEA 17

typedef enum db_state {
    DB_DOWN,        /* no connection; conn_timer runs to the next attempt */
    DB_CONNECTING,  /* PQconnectPoll in progress */
    DB_SETUP,       /* in pipeline mode; schema check and prepare sent */
    DB_WAIT_SCHEMA, /* connected, schema not migrated; conn_timer runs to the next check */
    DB_READY,       /* taking updates */
    DB_CLOSED,      /* db_free() was called */
} db_state_t;

/* Why a transaction failed, which decides what happens to its updates. */
typedef enum db_fail {
    DB_FAIL_NONE,
    DB_FAIL_ROW,       /* the row at fail_idx was refused for its content: -EBADMSG */
    DB_FAIL_ROW_RETRY, /* the row at fail_idx failed for a passing reason: it is retried */
    DB_FAIL_TXN,       /* the transaction failed as a whole (commit): all are retried */
} db_fail_t;

/* Per-update outcome within a transaction. */
enum { DB_OUT_STORED, DB_OUT_DUPLICATE, DB_OUT_REJECTED, DB_OUT_RESET, DB_OUT_RETRY };

/* A one-shot poll on libpq's socket. */
typedef struct db_poll {
    rx_op_t op;
    db_t *db;
    uint32_t epoch; /* connection it was armed for; an older one's completion is ignored */
    short want;     /* events to poll once the previous connection's poll has completed */
} db_poll_t;

/* One transaction in flight. The arrays are allocated once, max_batch long. */
typedef struct db_batch {
    uint32_t id;       /* nonzero while in flight */
    unsigned n;        /* inserts sent */
    unsigned pos;      /* statement whose results are read now; n = the sync */
    bool got;          /* a result for `pos` arrived; the NULL that ends it is next */
    db_fail_t fail;    /* first failure seen */
    unsigned fail_idx; /* its statement for DB_FAIL_ROW and DB_FAIL_ROW_RETRY */
    uint64_t sent_ms;  /* loop time it was sent, ms */
    db_update_t **u;   /* [max_batch]; NULL once that update had its callback */
    uint8_t *out;      /* [max_batch] DB_OUT_* */
} db_batch_t;

struct db {
    rx_loop_t *loop;
    db_options_t opt;
    char *conninfo; /* owned copy */
    PGconn *conn;   /* NULL while DB_DOWN or DB_CLOSED */
    db_state_t state;
    uint32_t epoch;        /* bumped when a connection is closed */
    db_poll_t rd;          /* POLLIN, always armed while connected (POLLOUT while connecting) */
    db_poll_t wr;          /* POLLOUT while libpq has output it could not write */
    rx_timer_t conn_timer; /* reconnect backoff, connect and setup deadline, schema retry */
    rx_timer_t tick;       /* ack deadlines and stall detection, while anything is pending */
    rx_defer_t send_defer; /* sends the pending updates at the end of the turn */
    rx_defer_t idle_defer; /* runs on_idle after db_drain() */
    unsigned backoff_ms;   /* delay before the next connection attempt */
    uint64_t stall_ms;     /* a transaction unanswered this long breaks the connection */

    db_update_t *head; /* pending, oldest first; not sent or to be sent again */
    db_update_t *tail;
    unsigned count; /* updates whose callback is owed: pending and in flight */

    db_batch_t batch[DB_INFLIGHT]; /* ring of transactions in flight, oldest at bhead */
    unsigned bhead;
    unsigned nflight;
    uint32_t next_id; /* batch ids, never 0 */

    /* The setup segment: schema check, then the prepare, then a sync. */
    bool setup_inflight;
    unsigned setup_pos; /* 0 = schema check, 1 = prepare, 2 = the sync */
    bool setup_got;
    bool setup_prepare; /* the prepare was sent in this segment */
    bool prepared;      /* the insert is prepared on this connection */
    bool schema_ok;     /* the check found every compiled-in migration */
    int schema_version; /* newest applied, 0 = none or unknown */
    int need_version;   /* newest compiled in */
    bool schema_logged; /* "not migrated" was said since the last ready */
    bool was_connected; /* a connection was up since the last loss: next loss counts */

    bool draining;
    void (*on_idle)(void *arg);
    void *idle_arg;

    uint64_t warn_ms;      /* loop time of the last rate-limited warning */
    unsigned warn_skipped; /* warnings suppressed since then */
};

static void db_connect(db_t *db);
static void db_lost(db_t *db, const char *why);
static void db_flush(db_t *db);
static void db_read_results(db_t *db);
static void db_on_send(rx_loop_t *loop, rx_defer_t *d);
static void db_on_tick(rx_loop_t *loop, rx_timer_t *t);
static void db_on_conn_timer(rx_loop_t *loop, rx_timer_t *t);
static void db_try_free(db_t *db);

/* ---- small helpers ---- */

static void db_gauge(const db_t *db) { met_self()->db_queue_depth = db->count; }

/* Warnings that could repeat in a tight loop (reconnect attempts): one per second. */
static void db_warn_limited(db_t *db, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void db_warn_limited(db_t *db, const char *event, const char *fmt, ...)
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

/*
 * The severity and primary message of a result's error, without DETAIL: for
 * a refused row that holds the row's values, i.e. the user's message text,
 * which has no place in logs.
 */
static const char *db_result_msg(const PGresult *r, char *buf, size_t cap)
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

/* Prepends the chain first..last (linked by next) to the pending list. */
static void db_prepend(db_t *db, db_update_t *first, db_update_t *last)
{
    if (first == NULL)
        return;
    last->next = db->head;
    db->head = first;
    if (db->tail == NULL)
        db->tail = last;
}

static void db_check_idle(db_t *db);

/* Runs u's callback; it no longer counts as pending. */
static void db_finish(db_t *db, db_update_t *u, int status)
{
    met_slot_t *m = met_self();

    assert(db->count > 0);
    db->count--;
    db_gauge(db);
    u->next = NULL;
    u->batch = 0;
    if (status == DB_STORED)
        m->updates_stored++;
    else if (status == DB_DUPLICATE)
        m->updates_duplicate++;
    else if (status == -EBADMSG)
        m->updates_rejected++;
    u->cb(u, status);
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
    db->setup_inflight = false;
    db->prepared = false;
}

static void db_schedule_connect(db_t *db)
{
    db->state = DB_DOWN;
    rx_timer_start(db->loop, &db->conn_timer, db->backoff_ms, db_on_conn_timer);
    db->backoff_ms =
        db->backoff_ms * 2 > DB_BACKOFF_MAX_MS ? DB_BACKOFF_MAX_MS : db->backoff_ms * 2;
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

/* ---- setup: schema check and prepare, in the pipeline ---- */

static void db_send_setup(db_t *db)
{
    static const Oid types[5] = {DB_OID_INT8, DB_OID_TEXT, DB_OID_INT8, DB_OID_INT8, DB_OID_BYTEA};
    char msg[DB_MSG_MAX];

    db->state = DB_SETUP;
    db->setup_inflight = true;
    db->setup_pos = 0;
    db->setup_got = false;
    db->setup_prepare = !db->prepared;
    db->schema_ok = false;
    db->schema_version = 0;
    rx_timer_start(db->loop, &db->conn_timer, DB_SETUP_TIMEOUT_MS, db_on_conn_timer);
    /*
     * The check goes first: on a fresh database the prepare fails (no table
     * updates), and the check's answer is what decides what to say about it.
     */
    if (!PQsendQueryParams(db->conn, DB_SQL_SCHEMA, 0, NULL, NULL, NULL, NULL, 0) ||
        (db->setup_prepare && !PQsendPrepare(db->conn, DB_STMT_INSERT, DB_SQL_INSERT, 5, types)) ||
        !PQpipelineSync(db->conn)) {
        db_lost(db, db_conn_error_msg(db, msg, sizeof(msg)));
        return;
    }
    db_poll_arm(db, &db->rd, POLLIN);
    db_flush(db);
}

static void db_setup_done(db_t *db)
{
    db->setup_inflight = false;
    if (db->schema_ok && db->prepared) {
        rx_timer_stop(db->loop, &db->conn_timer);
        db->state = DB_READY;
        db->schema_logged = false;
        log_info("db_ready", "database ready (schema version %d)", db->schema_version);
        /* Updates kept across a reconnect go out now. */
        if (db->head != NULL)
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
 * An error that says the row itself is unacceptable, so retrying it cannot
 * help: data exceptions (22), integrity constraints (23), errors raised by
 * PL/pgSQL triggers (P0). Anything else (deadlocks, lock or statement
 * timeouts, a full disk, a read-only standby, a missing table or privilege)
 * is not the row's fault: it is retried, and answered 503 if it persists,
 * so that Telegram delivers it again rather than an update being dropped.
 */
static bool db_is_row_error(const char *state)
{
    return state != NULL && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
                             strncmp(state, "P0", 2) == 0);
}

/* Handles one result (or the NULL that ends a statement's) of the setup segment. */
static bool db_setup_result(db_t *db, PGresult *r)
{
    char msg[DB_MSG_MAX];

    if (r == NULL) {
        if (!db->setup_got)
            return false;
        db->setup_pos++;
        db->setup_got = false;
        return true;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
        db_setup_done(db);
        return true;
    }
    db->setup_got = true;
    if (st == PGRES_FATAL_ERROR && db_is_conn_error(db, r)) {
        db_lost(db, db_result_msg(r, msg, sizeof(msg)));
        return false;
    }
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (db->setup_pos == 0) {
        if (st == PGRES_TUPLES_OK) {
            if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
                db->schema_version = atoi(PQgetvalue(r, 0, 0));
            db->schema_ok = db->schema_version >= db->need_version;
        } else if (st == PGRES_FATAL_ERROR && (state == NULL || strcmp(state, "42P01") != 0)) {
            /* 42P01: no schema_migrations, a fresh database; anything else is worth a line. */
            db_warn_limited(db, "schema_check_failed", "cannot read schema_migrations: %s",
                            db_result_msg(r, msg, sizeof(msg)));
        }
    } else if (db->setup_pos == 1 && db->setup_prepare) {
        if (st == PGRES_COMMAND_OK)
            db->prepared = true;
        else if (st == PGRES_FATAL_ERROR && db->schema_ok)
            db_warn_limited(db, "db_prepare_failed", "cannot prepare the insert: %s",
                            db_result_msg(r, msg, sizeof(msg)));
    }
    return true;
}

/* ---- sending transactions ---- */

static bool db_send_insert(db_t *db, const db_update_t *u)
{
    static const int formats[5] = {1, 1, 1, 1, 1};
    uint64_t id = htobe64((uint64_t)u->update_id);
    uint64_t chat = htobe64((uint64_t)u->chat_id);
    uint64_t from = htobe64((uint64_t)u->from_id);
    const char *values[5] = {
        (const char *)&id,
        u->type,
        u->has_chat ? (const char *)&chat : NULL,
        u->has_from ? (const char *)&from : NULL,
        u->body != NULL ? u->body : "", /* a NULL value would be SQL NULL */
    };
    int lengths[5] = {8, (int)u->type_len, 8, 8, (int)u->body_len};

    return PQsendQueryPrepared(db->conn, DB_STMT_INSERT, 5, values, lengths, formats, 0) == 1;
}

/* Sends the oldest pending updates as one transaction. Returns false if the connection broke. */
static bool db_send_batch(db_t *db)
{
    char msg[DB_MSG_MAX];
    db_batch_t *b = &db->batch[(db->bhead + db->nflight) % DB_INFLIGHT];
    size_t bytes = 0;

    assert(db->nflight < DB_INFLIGHT && b->id == 0);
    if (++db->next_id == 0)
        db->next_id = 1;
    b->id = db->next_id;
    b->n = 0;
    b->pos = 0;
    b->got = false;
    b->fail = DB_FAIL_NONE;
    b->sent_ms = rx_now(db->loop);
    /* In flight from here on, so that a failure below puts back what was taken. */
    db->nflight++;
    while (db->head != NULL && b->n < db->opt.max_batch &&
           (b->n == 0 || bytes + db->head->body_len <= DB_BATCH_BYTES)) {
        db_update_t *u = db->head;
        db->head = u->next;
        if (db->head == NULL)
            db->tail = NULL;
        u->next = NULL;
        u->batch = b->id;
        b->u[b->n] = u;
        b->out[b->n] = DB_OUT_STORED;
        b->n++;
        bytes += u->body_len;
        if (!db_send_insert(db, u)) {
            db_lost(db, db_conn_error_msg(db, msg, sizeof(msg)));
            return false;
        }
    }
    if (!PQpipelineSync(db->conn)) {
        db_lost(db, db_conn_error_msg(db, msg, sizeof(msg)));
        return false;
    }
    met_observe_batch(&met_self()->db_batch_size, (double)b->n);
    return true;
}

static void db_on_send(rx_loop_t *loop, rx_defer_t *d)
{
    db_t *db = container_of(d, db_t, send_defer);
    bool sent = false;

    if (db->state == DB_CLOSED) {
        db_try_free(db);
        return;
    }
    if (db->state != DB_READY)
        return;
    while (db->head != NULL && db->nflight < DB_INFLIGHT) {
        if (!db_send_batch(db))
            return;
        sent = true;
    }
    if (sent)
        db_flush(db);
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

/* ---- results ---- */

/* The oldest transaction in flight got its sync: run callbacks, or put updates back. */
static void db_batch_done(db_t *db, db_batch_t *b)
{
    db_update_t *first = NULL, *last = NULL;

    db->bhead = (db->bhead + 1) % DB_INFLIGHT;
    db->nflight--;
    if (b->fail != DB_FAIL_NONE) {
        for (unsigned i = 0; i < b->n; i++) {
            db_update_t *u = b->u[i];
            if (u == NULL)
                continue;
            bool blamed = b->fail == DB_FAIL_TXN || i == b->fail_idx;
            if (b->fail == DB_FAIL_ROW && i == b->fail_idx)
                b->out[i] = DB_OUT_REJECTED;
            else if (blamed && ++u->tries >= DB_TRIES_MAX)
                b->out[i] = DB_OUT_RESET;
            else
                b->out[i] = DB_OUT_RETRY;
            if (b->out[i] != DB_OUT_RETRY)
                continue;
            /* Batch-mates go back to the front, in order, for the next transaction. */
            b->u[i] = NULL;
            u->batch = 0;
            u->next = NULL;
            if (last != NULL)
                last->next = u;
            else
                first = u;
            last = u;
        }
        db_prepend(db, first, last);
    }
    /*
     * The slot is free from here, but it is filled only by db_on_send() at the
     * end of the turn, so the callbacks below may call db_store() safely.
     */
    b->id = 0;
    unsigned reset = 0;
    long long reset_id = 0;
    for (unsigned i = 0; i < b->n; i++) {
        db_update_t *u = b->u[i];
        if (u == NULL)
            continue;
        b->u[i] = NULL;
        switch (b->out[i]) {
        case DB_OUT_STORED:
            db_finish(db, u, DB_STORED);
            break;
        case DB_OUT_DUPLICATE:
            db_finish(db, u, DB_DUPLICATE);
            break;
        case DB_OUT_REJECTED:
            db_finish(db, u, -EBADMSG);
            break;
        default:
            if (reset++ == 0)
                reset_id = (long long)u->update_id;
            db_finish(db, u, -ECONNRESET);
            break;
        }
    }
    if (reset > 0)
        log_warn("updates_not_stored",
                 "%u update%s not stored (first %lld): the transaction failed %d times", reset,
                 reset == 1 ? "" : "s", reset_id, DB_TRIES_MAX);
    b->n = 0;
    if (db->head != NULL)
        rx_defer(db->loop, &db->send_defer, db_on_send);
    db_check_idle(db);
}

/* Records the first failure of transaction b, at statement b->pos. */
static void db_batch_error(db_t *db, db_batch_t *b, const PGresult *r)
{
    char msg[DB_MSG_MAX];
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    db_update_t *u = b->pos < b->n ? b->u[b->pos] : NULL;
    long long id = u != NULL ? (long long)u->update_id : -1;

    if (b->fail != DB_FAIL_NONE)
        return;
    db_result_msg(r, msg, sizeof(msg));
    if (b->pos >= b->n) {
        b->fail = DB_FAIL_TXN;
        db_warn_limited(db, "db_commit_failed",
                        "transaction of %u updates failed at commit, retrying: SQLSTATE %s: %s",
                        b->n, state ? state : "none", msg);
    } else if (db_is_row_error(state)) {
        b->fail = DB_FAIL_ROW;
        b->fail_idx = b->pos;
        if (u != NULL)
            log_warn("update_rejected", "update %lld rejected by the database: SQLSTATE %s: %s", id,
                     state, msg);
    } else {
        b->fail = DB_FAIL_ROW_RETRY;
        b->fail_idx = b->pos;
        db_warn_limited(db, "db_insert_failed",
                        "storing update %lld failed, retrying: SQLSTATE %s: %s", id,
                        state ? state : "none", msg);
    }
}

/* Handles one result (or the NULL that ends a statement's) of the oldest transaction. */
static bool db_batch_result(db_t *db, PGresult *r)
{
    char msg[DB_MSG_MAX];
    db_batch_t *b = &db->batch[db->bhead];

    if (r == NULL) {
        if (!b->got)
            return false;
        b->pos++;
        b->got = false;
        return true;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
        if (b->pos < b->n && b->fail == DB_FAIL_NONE) {
            db_lost(db, "pipeline out of step: sync before the last insert's result");
            return false;
        }
        db_batch_done(db, b);
        return true;
    }
    b->got = true;
    switch (st) {
    case PGRES_COMMAND_OK:
        if (b->pos < b->n) {
            /* ON CONFLICT DO NOTHING inserts one row or none. */
            b->out[b->pos] = strcmp(PQcmdTuples(r), "0") == 0 ? DB_OUT_DUPLICATE : DB_OUT_STORED;
            break;
        }
        /* A second result for a statement cannot be told apart from the commit: fail safe. */
        __attribute__((fallthrough));
    case PGRES_PIPELINE_ABORTED:
        /* Skipped after an earlier error: that error decides. */
        if (b->fail == DB_FAIL_NONE) {
            b->fail = DB_FAIL_TXN;
            db_warn_limited(db, "db_unexpected_result", "unexpected %s in a transaction; retrying",
                            PQresStatus(st));
        }
        break;
    default:
        if (db_is_conn_error(db, r)) {
            db_lost(db, db_result_msg(r, msg, sizeof(msg)));
            return false;
        }
        db_batch_error(db, b, r);
        break;
    }
    return true;
}

/*
 * Takes every result libpq has complete, in order: per transaction one
 * result and a NULL per insert, then PGRES_PIPELINE_SYNC (not followed by a
 * NULL). Stops when the next result is incomplete, or nothing is expected.
 */
static void db_read_results(db_t *db)
{
    char msg[DB_MSG_MAX];

    while (db->conn != NULL && (db->setup_inflight || db->nflight > 0)) {
        if (PQstatus(db->conn) == CONNECTION_BAD) {
            db_lost(db, db_conn_error_msg(db, msg, sizeof(msg)));
            return;
        }
        if (PQisBusy(db->conn))
            return;
        PGresult *r = PQgetResult(db->conn);
        bool more = db->setup_inflight ? db_setup_result(db, r) : db_batch_result(db, r);
        PQclear(r);
        if (!more)
            return;
    }
}

/* ---- losing the connection ---- */

static void db_lost(db_t *db, const char *why)
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
    /*
     * Whatever was not confirmed is sent again on the next connection (the
     * insert is idempotent). Newest first, so the oldest ends up in front.
     */
    for (unsigned k = db->nflight; k-- > 0;) {
        db_batch_t *b = &db->batch[(db->bhead + k) % DB_INFLIGHT];
        db_update_t *first = NULL, *last = NULL;
        for (unsigned i = 0; i < b->n; i++) {
            db_update_t *u = b->u[i];
            if (u == NULL)
                continue;
            b->u[i] = NULL;
            u->batch = 0;
            u->next = NULL;
            if (last != NULL)
                last->next = u;
            else
                first = u;
            last = u;
        }
        db_prepend(db, first, last);
        b->id = 0;
        b->n = 0;
    }
    db->nflight = 0;
    db->bhead = 0;
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

/* Fails the updates whose ack deadline passed, wherever they are; detects a stuck connection. */
static void db_on_tick(rx_loop_t *loop, rx_timer_t *t)
{
    db_t *db = container_of(t, db_t, tick);
    uint64_t now = rx_now(loop);
    db_update_t *expired = NULL, **ep = &expired;
    db_update_t **pp = &db->head, *prev = NULL;

    while (*pp != NULL) {
        db_update_t *u = *pp;
        if (now - u->enqueued_ms < db->opt.ack_timeout_ms) {
            prev = u;
            pp = &u->next;
            continue;
        }
        *pp = u->next;
        if (db->tail == u)
            db->tail = prev;
        u->next = NULL;
        *ep = u;
        ep = &u->next;
    }
    for (unsigned k = 0; k < db->nflight; k++) {
        db_batch_t *b = &db->batch[(db->bhead + k) % DB_INFLIGHT];
        for (unsigned i = 0; i < b->n; i++) {
            db_update_t *u = b->u[i];
            if (u == NULL || now - u->enqueued_ms < db->opt.ack_timeout_ms)
                continue;
            /* Its result still comes and is ignored; the slot stays for the positions. */
            b->u[i] = NULL;
            u->next = NULL;
            *ep = u;
            ep = &u->next;
        }
    }
    if (db->nflight > 0 && now - db->batch[db->bhead].sent_ms >= db->stall_ms) {
        char why[96];
        snprintf(why, sizeof(why), "no answer to a transaction in %llu ms",
                 (unsigned long long)db->stall_ms);
        db_lost(db, why);
    }
    while (expired != NULL) {
        db_update_t *u = expired;
        expired = u->next;
        db_finish(db, u, -ETIMEDOUT);
    }
    if (db->count > 0)
        rx_timer_start(loop, &db->tick, DB_TICK_MS, db_on_tick);
    db_check_idle(db);
}

static void db_try_free(db_t *db)
{
    /* Everything the loop could still hand back to us must have come back. */
    if (db->rd.op.armed || db->wr.op.armed || db->send_defer.queued || db->idle_defer.queued)
        return;
    for (unsigned k = 0; k < DB_INFLIGHT; k++) {
        free(db->batch[k].u);
        free(db->batch[k].out);
    }
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
    if (db->on_idle == NULL || db->count > 0)
        return;
    void (*cb)(void *) = db->on_idle;
    db->on_idle = NULL;
    cb(db->idle_arg);
}

static void db_check_idle(db_t *db)
{
    if (db->on_idle != NULL && db->count == 0)
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
    db->conninfo = strdup(opt->conninfo != NULL ? opt->conninfo : "");
    if (db->conninfo == NULL)
        abort();
    db->opt.conninfo = NULL;
    for (unsigned k = 0; k < DB_INFLIGHT; k++) {
        db->batch[k].u = calloc(db->opt.max_batch, sizeof(*db->batch[k].u));
        db->batch[k].out = calloc(db->opt.max_batch, sizeof(*db->batch[k].out));
        if (db->batch[k].u == NULL || db->batch[k].out == NULL)
            abort();
    }
    db->rd.op.cb = db_on_poll;
    db->rd.db = db;
    db->wr.op.cb = db_on_poll;
    db->wr.db = db;
    db->backoff_ms = DB_BACKOFF_MIN_MS;
    /*
     * A commit can legitimately take a while (a checkpoint's fsyncs); past
     * twice the ack timeout every update in it has been answered anyway, and
     * a connection that silent is more likely gone without a FIN.
     */
    db->stall_ms = 2 * (uint64_t)db->opt.ack_timeout_ms;
    if (db->stall_ms < DB_STALL_MIN_MS)
        db->stall_ms = DB_STALL_MIN_MS;
    for (unsigned i = 0; i < db_migrations_count; i++)
        if (db_migrations[i].version > db->need_version)
            db->need_version = db_migrations[i].version;
    met_self()->db_connected = 0;
    db_gauge(db);
    db_connect(db);
    return db;
}

int db_store(db_t *db, db_update_t *u)
{
    assert(u->cb != NULL);
    if (db->state != DB_READY || db->draining || db->count >= db->opt.queue_max)
        return -EAGAIN;
    /* libpq takes int lengths; the HTTP layer caps bodies far below this. */
    assert(u->body_len <= INT_MAX && u->type_len <= INT_MAX);
    u->next = NULL;
    u->enqueued_ms = rx_now(db->loop);
    u->batch = 0;
    u->tries = 0;
    if (db->tail != NULL)
        db->tail->next = u;
    else
        db->head = u;
    db->tail = u;
    db->count++;
    db_gauge(db);
    rx_defer(db->loop, &db->send_defer, db_on_send);
    if (!rx_timer_active(&db->tick))
        rx_timer_start(db->loop, &db->tick, DB_TICK_MS, db_on_tick);
    return 0;
}

bool db_ready(const db_t *db) { return db->state == DB_READY; }

unsigned db_pending(const db_t *db) { return db->count; }

void db_drain(db_t *db, void (*on_idle)(void *arg), void *arg)
{
    db->draining = true;
    db->on_idle = on_idle;
    db->idle_arg = arg;
    db_check_idle(db);
}

void db_free(db_t *db)
{
    db_update_t *cancelled = NULL, **cp = &cancelled;

    if (db == NULL)
        return;
    rx_timer_stop(db->loop, &db->conn_timer);
    rx_timer_stop(db->loop, &db->tick);
    /* Oldest first: in flight, then pending. */
    for (unsigned k = 0; k < db->nflight; k++) {
        db_batch_t *b = &db->batch[(db->bhead + k) % DB_INFLIGHT];
        for (unsigned i = 0; i < b->n; i++) {
            if (b->u[i] == NULL)
                continue;
            *cp = b->u[i];
            cp = &b->u[i]->next;
            b->u[i] = NULL;
        }
        b->n = 0;
    }
    db->nflight = 0;
    *cp = db->head;
    db->head = db->tail = NULL;
    if (db->conn != NULL) {
        db_close_conn(db);
        met_self()->db_connected = 0;
    }
    db->state = DB_CLOSED;
    db->on_idle = NULL;
    while (cancelled != NULL) {
        db_update_t *u = cancelled;
        cancelled = u->next;
        db_finish(db, u, -ECANCELED);
    }
    db_try_free(db);
}
