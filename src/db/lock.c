/* SPDX-License-Identifier: MIT */
/*
 * lock.c - a session advisory lock on a connection of its own (db_lock_t in
 * db.h): one nonblocking libpq session, not in pipeline mode, polled through
 * the ring, that tries pg_try_advisory_lock() until it is granted and then
 * proves every check_ms that the session (and so the lock) is still there.
 *
 * One query at a time and one poll op: the queries are a few dozen bytes, so
 * the write side is polled only when libpq could not flush them at once.
 * Whatever goes wrong with the session (a failed connect, an error, an
 * unanswered query, the socket closing) ends it: the lock, if held, is
 * reported lost, and a new session is tried retry_ms later.
 */
#include "db_private.h"
#include "log.h"

#include <assert.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DB_LOCK_RETRY_MS 1000
#define DB_LOCK_CHECK_MS 1000
#define DB_LOCK_TIMEOUT_MS 2000

typedef enum db_lock_state {
    DB_LK_DOWN,       /* no session; the timer runs to the next connect */
    DB_LK_CONNECTING, /* PQconnectPoll in progress; the timer is its deadline */
    DB_LK_IDLE,       /* connected, no query out; the timer runs to the next try or check */
    DB_LK_BUSY,       /* a try or a check is out; the timer is its deadline */
} db_lock_state_t;

struct db_lock {
    rx_loop_t *loop;
    db_lock_options_t opt;
    char *conninfo; /* owned copy; never logged */
    char key[24];   /* opt.key as text, the query's parameter */
    db_lock_cb cb;
    void *arg;
    PGconn *pg; /* NULL while DB_LK_DOWN */
    db_lock_state_t state;
    bool held;        /* granted on this session */
    bool flushing;    /* libpq has output it could not write yet */
    bool got_result;  /* the query out has its result */
    bool granted;     /* that result (of a try) was true */
    bool failed;      /* that result was an error */
    bool closed;      /* db_lock_free() was called */
    bool down_logged; /* a failure was logged since the session was last up */
    uint32_t epoch;   /* bumped when a session is closed */
    rx_op_t op;       /* the poll on libpq's socket */
    uint32_t op_epoch;
    short op_events; /* what op is armed for */
    short want;      /* events to poll for once op's cancelled poll has completed */
    rx_timer_t timer;
};

static void db_lk_on_poll(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags);
static void db_lk_on_timer(rx_loop_t *loop, rx_timer_t *t);

static void db_lk_arm(db_lock_t *l, short events)
{
    if (l->op.armed) {
        /* Armed for another session or other events: re-armed once its cancellation completes. */
        if (l->op_epoch != l->epoch || l->op_events != events) {
            l->want = events;
            if (l->op_epoch == l->epoch)
                rx_cancel(l->loop, &l->op);
        }
        return;
    }
    int fd = PQsocket(l->pg);
    assert(fd >= 0);
    struct io_uring_sqe *sqe = rx_sqe(l->loop, &l->op);
    io_uring_prep_poll_add(sqe, fd, (unsigned)events);
    l->op_epoch = l->epoch;
    l->op_events = events;
    l->want = 0;
}

static void db_lk_close(db_lock_t *l)
{
    rx_cancel(l->loop, &l->op);
    l->want = 0;
    if (l->pg != NULL)
        PQfinish(l->pg);
    l->pg = NULL;
    l->epoch++;
    l->flushing = false;
}

/* Ends the session: the lock, if held, is lost; a new session is tried retry_ms later. */
static void db_lk_lost(db_lock_t *l, const char *why)
{
    bool was_held = l->held;
    db_lk_close(l);
    l->state = DB_LK_DOWN;
    l->held = false;
    rx_timer_start(l->loop, &l->timer, l->opt.retry_ms, db_lk_on_timer);
    if (was_held) {
        log_warn("db_lock_lost", "%s: lost the database lock: %s", l->opt.name, why);
        l->down_logged = true;
        l->cb(l->arg, false);
        return;
    }
    if (!l->down_logged)
        log_warn("db_lock_down", "%s: no session for the database lock (retrying every %u ms): %s",
                 l->opt.name, l->opt.retry_ms, why);
    l->down_logged = true;
}

/* The message of the session's last error, as one line. */
static const char *db_lk_error(const db_lock_t *l, char *buf, size_t cap)
{
    return db_flatten(l->pg != NULL ? PQerrorMessage(l->pg) : "no connection", buf, cap);
}

/* Sends a try (not held) or a check (held), with its deadline. */
static void db_lk_query(db_lock_t *l)
{
    char msg[DB_MSG_MAX];
    const char *const params[1] = {l->key};
    int ok = l->held ? PQsendQuery(l->pg, "SELECT 1")
                     : PQsendQueryParams(l->pg, "SELECT pg_try_advisory_lock($1::int8)", 1, NULL,
                                         params, NULL, NULL, 0);
    if (!ok) {
        db_lk_lost(l, db_lk_error(l, msg, sizeof(msg)));
        return;
    }
    l->state = DB_LK_BUSY;
    l->got_result = l->granted = l->failed = false;
    int f = PQflush(l->pg);
    if (f < 0) {
        db_lk_lost(l, db_lk_error(l, msg, sizeof(msg)));
        return;
    }
    l->flushing = f == 1;
    rx_timer_start(l->loop, &l->timer, l->opt.timeout_ms, db_lk_on_timer);
    db_lk_arm(l, l->flushing ? POLLIN | POLLOUT : POLLIN);
}

/* The query's answer is complete: what it means for the lock. */
static void db_lk_answered(db_lock_t *l)
{
    l->state = DB_LK_IDLE;
    if (l->failed || !l->got_result) {
        /* The error was logged as it arrived; a session in that state is not trusted. */
        db_lk_lost(l, "the query failed");
        return;
    }
    if (l->held) {
        rx_timer_start(l->loop, &l->timer, l->opt.check_ms, db_lk_on_timer);
        return;
    }
    if (!l->granted) {
        rx_timer_start(l->loop, &l->timer, l->opt.retry_ms, db_lk_on_timer);
        return;
    }
    l->held = true;
    l->down_logged = false;
    rx_timer_start(l->loop, &l->timer, l->opt.check_ms, db_lk_on_timer);
    log_info("db_lock_acquired", "%s: holding the database lock", l->opt.name);
    l->cb(l->arg, true);
}

/* Reads what arrived. Returns false when the session was ended meanwhile. */
static bool db_lk_read(db_lock_t *l)
{
    char msg[DB_MSG_MAX];
    if (!PQconsumeInput(l->pg) || PQstatus(l->pg) == CONNECTION_BAD) {
        db_lk_lost(l, db_lk_error(l, msg, sizeof(msg)));
        return false;
    }
    while (l->state == DB_LK_BUSY && !PQisBusy(l->pg)) {
        PGresult *r = PQgetResult(l->pg);
        if (r == NULL) {
            db_lk_answered(l);
            return l->pg != NULL;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            l->got_result = true;
            l->granted = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        } else {
            l->failed = true;
            log_warn("db_lock_query_failed", "%s: %s", l->opt.name,
                     db_result_msg(r, msg, sizeof(msg)));
        }
        PQclear(r);
    }
    return true;
}

static void db_lk_connect_step(db_lock_t *l)
{
    char msg[DB_MSG_MAX];
    PostgresPollingStatusType st = PQconnectPoll(l->pg);
    if (st == PGRES_POLLING_OK) {
        if (PQsetnonblocking(l->pg, 1) != 0) {
            db_lk_lost(l, db_lk_error(l, msg, sizeof(msg)));
            return;
        }
        rx_timer_stop(l->loop, &l->timer);
        l->state = DB_LK_IDLE;
        db_lk_query(l);
        return;
    }
    if ((st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) && PQsocket(l->pg) >= 0) {
        db_lk_arm(l, st == PGRES_POLLING_READING ? POLLIN : POLLOUT);
        return;
    }
    db_lk_lost(l, db_lk_error(l, msg, sizeof(msg)));
}

static void db_lk_connect(db_lock_t *l)
{
    const char *keys[DB_CONN_PARAMS], *vals[DB_CONN_PARAMS];
    char msg[DB_MSG_MAX];

    db_conn_params(l->conninfo, keys, vals);
    l->pg = PQconnectStartParams(keys, vals, 1);
    if (l->pg == NULL) {
        fprintf(stderr, "tgring: out of memory in PQconnectStartParams\n");
        abort();
    }
    l->state = DB_LK_CONNECTING;
    rx_timer_start(l->loop, &l->timer, l->opt.timeout_ms, db_lk_on_timer);
    if (PQstatus(l->pg) == CONNECTION_BAD || PQsocket(l->pg) < 0) {
        db_lk_lost(l, db_lk_error(l, msg, sizeof(msg)));
        return;
    }
    /* libpq's rule: start as if PQconnectPoll had returned PGRES_POLLING_WRITING. */
    db_lk_arm(l, POLLOUT);
}

static void db_lk_on_timer(rx_loop_t *loop, rx_timer_t *t)
{
    db_lock_t *l = container_of(t, db_lock_t, timer);
    char why[64];

    switch (l->state) {
    case DB_LK_DOWN:
        db_lk_connect(l);
        break;
    case DB_LK_CONNECTING:
        db_lk_lost(l, "connecting timed out");
        break;
    case DB_LK_IDLE:
        db_lk_query(l);
        break;
    case DB_LK_BUSY:
        snprintf(why, sizeof(why), "no answer in %u ms", l->opt.timeout_ms);
        db_lk_lost(l, why);
        break;
    }
}

static void db_lk_on_poll(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    db_lock_t *l = container_of(op, db_lock_t, op);
    char msg[DB_MSG_MAX];

    if (l->closed) {
        free(l);
        return;
    }
    if (l->op_epoch != l->epoch || l->pg == NULL || res == -ECANCELED) {
        /* A cancelled poll: the op is free for what the current session wants. */
        if (l->want != 0 && l->pg != NULL)
            db_lk_arm(l, l->want);
        return;
    }
    if (l->state == DB_LK_CONNECTING) {
        db_lk_connect_step(l);
        return;
    }
    if (l->flushing) {
        int f = PQflush(l->pg);
        if (f < 0) {
            db_lk_lost(l, db_lk_error(l, msg, sizeof(msg)));
            return;
        }
        l->flushing = f == 1;
    }
    /* Always read, even when nothing is expected: that is how a closed session shows. */
    if (!db_lk_read(l))
        return;
    db_lk_arm(l, l->flushing ? POLLIN | POLLOUT : POLLIN);
}

db_lock_t *db_lock_new(rx_loop_t *loop, const db_lock_options_t *opt, db_lock_cb cb, void *arg)
{
    assert(cb != NULL);
    db_lock_t *l = xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->opt = *opt;
    l->conninfo = xstrdup(opt->conninfo != NULL ? opt->conninfo : "");
    l->opt.conninfo = NULL;
    if (l->opt.name == NULL)
        l->opt.name = "lock";
    if (l->opt.retry_ms == 0)
        l->opt.retry_ms = DB_LOCK_RETRY_MS;
    if (l->opt.check_ms == 0)
        l->opt.check_ms = DB_LOCK_CHECK_MS;
    if (l->opt.timeout_ms == 0)
        l->opt.timeout_ms = DB_LOCK_TIMEOUT_MS;
    snprintf(l->key, sizeof(l->key), "%" PRId64, opt->key);
    l->cb = cb;
    l->arg = arg;
    l->op.cb = db_lk_on_poll;
    l->state = DB_LK_DOWN;
    /* Connect from the loop, so that the callback can never run inside db_lock_new(). */
    rx_timer_start(loop, &l->timer, 0, db_lk_on_timer);
    return l;
}

bool db_lock_held(const db_lock_t *l)
{
    return l->held;
}

void db_lock_free(db_lock_t *l)
{
    if (l == NULL)
        return;
    rx_timer_stop(l->loop, &l->timer);
    if (l->held)
        log_info("db_lock_released", "%s: released the database lock", l->opt.name);
    db_lk_close(l);
    l->held = false;
    l->closed = true;
    explicit_bzero(l->conninfo, strlen(l->conninfo));
    free(l->conninfo);
    l->conninfo = NULL;
    if (!l->op.armed)
        free(l);
}
