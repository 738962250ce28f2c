/* SPDX-License-Identifier: MIT */
/*
 * txn.c - the generic transaction API of db.h: clients (each a part of the
 * db, see db_private.h), their queues, and their transactions as items of
 * the connections' pipelines (conn.c).
 *
 * A submitted transaction is copied into one allocation (statements,
 * parameters, room for the results), waits in its client's queue and goes
 * out at the end of the turn: on the client's one connection for an ordered
 * client, otherwise each on the ready one whose pipeline is shortest (round
 * robin among equals, db_conn_pick()); at most max_inflight at
 * a time. One whose connection is lost before its sync is queued again at
 * the front, in order, and sent with its `again` statements; one that failed
 * for a passing reason is queued again at the front too, up to DB_TRIES_MAX
 * attempts. The callback runs once: at the sync, at the deadline (the late
 * result is then read and dropped), or from db_free().
 */
#include "db_private.h"
#include "log.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Status of an attempt that failed for a passing reason: it is tried again. */
#define DB_TX_AGAIN 1

#define DB_CLIENT_MAX_PENDING 1024
#define DB_CLIENT_TIMEOUT_MS 10000
#define DB_CLIENT_INFLIGHT 8

struct db_client {
    db_part_t part;
    db_client_options_t opt;
    core_queue_t queue; /* transactions not sent yet (or to be sent again), oldest first */
    unsigned nflight;   /* transactions in the pipelines, answered or not */
    db_conn_t *conn;    /* ordered: the connection they are in flight on; NULL when none is */
    unsigned next_conn; /* where the round robin among equals goes on (db_conn_pick) */
};

/* One statement, with its parameters in libpq's shape. */
typedef struct db_txq {
    const char *stmt;
    const char *again;
    int nparams;
    int binary; /* result format */
    const char *values[DB_PARAMS_MAX];
    int lengths[DB_PARAMS_MAX];
    int formats[DB_PARAMS_MAX];
} db_txq_t;

typedef struct db_tx {
    db_item_t item;    /* in a pipeline while sent */
    core_qlink_t link; /* in the client's queue while not */
    db_client_t *cl;
    db_txn_cb cb;
    void *arg;
    bool answered;        /* its callback ran (it timed out): the result is dropped */
    bool resend;          /* its connection was lost: sent with the `again` statements */
    uint8_t tries;        /* attempts that failed for a passing reason */
    int status;           /* this attempt: 0, -EBADMSG or DB_TX_AGAIN */
    uint64_t enqueued_ms; /* loop time of the submit, ms: the deadline counts from it */
    unsigned nq;
    PGresult **res; /* [nq] this attempt's results, NULL where none */
    db_txq_t q[];   /* [nq], then res[nq], then the parameters' bytes */
} db_tx_t;

/* ---- results ---- */

static const PGresult *db_pg(const db_result_t *r)
{
    return (const PGresult *)(const void *)r;
}

unsigned db_res_rows(const db_result_t *r)
{
    return (unsigned)PQntuples(db_pg(r));
}

unsigned db_res_cols(const db_result_t *r)
{
    return (unsigned)PQnfields(db_pg(r));
}

static bool db_res_in(const db_result_t *r, unsigned row, unsigned col)
{
    return row < db_res_rows(r) && col < db_res_cols(r);
}

bool db_res_null(const db_result_t *r, unsigned row, unsigned col)
{
    return !db_res_in(r, row, col) || PQgetisnull(db_pg(r), (int)row, (int)col);
}

const char *db_res_value(const db_result_t *r, unsigned row, unsigned col, size_t *len)
{
    if (len != NULL)
        *len = 0;
    if (!db_res_in(r, row, col))
        return "";
    if (len != NULL)
        *len = (size_t)PQgetlength(db_pg(r), (int)row, (int)col);
    return PQgetvalue(db_pg(r), (int)row, (int)col);
}

bool db_res_int(const db_result_t *r, unsigned row, unsigned col, int64_t *v)
{
    size_t len;
    const char *p = db_res_value(r, row, col, &len);

    *v = 0;
    if (db_res_null(r, row, col))
        return false;
    if (PQfformat(db_pg(r), (int)col) == 1) {
        uint64_t u8;
        uint32_t u4;
        uint16_t u2;
        switch (len) {
        case 8:
            memcpy(&u8, p, 8);
            *v = (int64_t)be64toh(u8);
            return true;
        case 4:
            memcpy(&u4, p, 4);
            *v = (int32_t)be32toh(u4);
            return true;
        case 2:
            memcpy(&u2, p, 2);
            *v = (int16_t)be16toh(u2);
            return true;
        default:
            return false;
        }
    }
    char *end;
    errno = 0;
    long long x = strtoll(p, &end, 10);
    if (len == 0 || end != p + len || errno != 0)
        return false;
    *v = x;
    return true;
}

uint64_t db_res_affected(const db_result_t *r)
{
    return strtoull(PQcmdTuples((PGresult *)db_pg(r)), NULL, 10);
}

static bool db_res_failed(const db_result_t *r)
{
    ExecStatusType st = PQresultStatus(db_pg(r));
    return st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK;
}

const char *db_res_sqlstate(const db_result_t *r)
{
    return db_res_failed(r) ? PQresultErrorField(db_pg(r), PG_DIAG_SQLSTATE) : NULL;
}

const char *db_res_message(const db_result_t *r, char *buf, size_t cap)
{
    if (!db_res_failed(r)) {
        if (cap > 0)
            buf[0] = '\0';
        return buf;
    }
    return db_result_msg(db_pg(r), buf, cap);
}

/* ---- transactions ---- */

static void db_tx_clear(db_tx_t *tx)
{
    for (unsigned i = 0; i < tx->nq; i++) {
        PQclear(tx->res[i]);
        tx->res[i] = NULL;
    }
}

static void db_tx_free(db_tx_t *tx)
{
    db_tx_clear(tx);
    free(tx);
}

/* Runs tx's callback; it no longer counts as owed. The caller frees it, or leaves it in flight. */
static void db_tx_call(db_tx_t *tx, int err)
{
    db_client_t *cl = tx->cl;
    bool results = err == 0 || err == -EBADMSG;

    assert(!tx->answered && cl->part.count > 0);
    tx->answered = true;
    cl->part.count--;
    if (tx->cb != NULL)
        tx->cb(tx->arg, err, results ? (const db_result_t *const *)tx->res : NULL,
               results ? tx->nq : 0);
}

/* Answers every transaction of q with err and frees it. */
static void db_tx_call_all(core_queue_t *q, int err)
{
    core_qlink_t *l;

    while ((l = core_queue_pop(q)) != NULL) {
        db_tx_t *tx = container_of(l, db_tx_t, link);
        db_tx_call(tx, err);
        db_tx_free(tx);
    }
}

static int db_tx_send(db_conn_t *c, db_item_t *it)
{
    db_tx_t *tx = container_of(it, db_tx_t, item);

    tx->status = 0;
    for (unsigned i = 0; i < tx->nq; i++) {
        const db_txq_t *q = &tx->q[i];
        const char *name = tx->resend && q->again != NULL ? q->again : q->stmt;
        if (PQsendQueryPrepared(c->pg, name, q->nparams, q->values, q->lengths, q->formats,
                                q->binary) != 1)
            return -1;
    }
    return (int)tx->nq;
}

static bool db_tx_result(db_conn_t *c, db_item_t *it, PGresult *r)
{
    char msg[DB_MSG_MAX];
    db_tx_t *tx = container_of(it, db_tx_t, item);
    ExecStatusType st = PQresultStatus(r);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    bool stmt = it->pos < tx->nq && tx->res[it->pos] == NULL;

    if (tx->status != 0 || st == PGRES_PIPELINE_ABORTED)
        return false; /* the first failure decides */
    if (stmt && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)) {
        tx->res[it->pos] = r;
        return true;
    }
    if (stmt && db_is_row_error(state)) {
        /* The client decides what the refusal means and logs it with what it knows. */
        tx->status = -EBADMSG;
        tx->res[it->pos] = r;
        return true;
    }
    /* An error at the commit, a passing one, or a result that has no place here. */
    tx->status = DB_TX_AGAIN;
    db_warn_limited(c->db, "db_txn_failed",
                    "%s transaction failed at %s, retrying: %s: SQLSTATE %s: %s", tx->cl->opt.name,
                    it->pos < tx->nq ? tx->q[it->pos].stmt : "commit", PQresStatus(st),
                    state ? state : "none", db_result_msg(r, msg, sizeof(msg)));
    return false;
}

/* One fewer in flight; for an ordered client with none left, the next may go on any connection. */
static void db_tx_landed(db_client_t *cl)
{
    assert(cl->nflight > 0);
    if (--cl->nflight == 0)
        cl->conn = NULL;
}

static void db_tx_done(db_conn_t *c, db_item_t *it)
{
    db_t *db = c->db;
    db_tx_t *tx = container_of(it, db_tx_t, item);
    db_client_t *cl = tx->cl;

    db_tx_landed(cl);
    if (tx->answered) {
        db_tx_free(tx);
    } else if (tx->status == DB_TX_AGAIN && ++tx->tries < DB_TRIES_MAX) {
        db_tx_clear(tx);
        core_queue_push_head(&cl->queue, &tx->link);
    } else {
        db_tx_call(tx, tx->status == DB_TX_AGAIN ? -ECONNRESET : tx->status);
        db_tx_free(tx);
    }
    if (!core_queue_empty(&cl->queue))
        db_kick(db);
    db_check_idle(db);
}

/* Called newest first: pushing each at the head keeps them in order. */
static void db_tx_lost(db_conn_t *c, db_item_t *it)
{
    db_tx_t *tx = container_of(it, db_tx_t, item);

    db_tx_landed(tx->cl);
    if (tx->answered) {
        db_tx_free(tx);
        return;
    }
    db_tx_clear(tx);
    /* It may have committed with its answer lost. */
    tx->resend = true;
    core_queue_push_head(&tx->cl->queue, &tx->link);
}

static const db_item_ops_t db_tx_ops = {
    .send = db_tx_send,
    .result = db_tx_result,
    .done = db_tx_done,
    .lost = db_tx_lost,
};

/* ---- the client as a part of the db ---- */

/* Pushes the oldest queued transaction on c. Returns false when c broke meanwhile. */
static bool db_client_push(db_client_t *cl, db_conn_t *c)
{
    db_tx_t *tx = container_of(core_queue_pop(&cl->queue), db_tx_t, link);

    cl->nflight++;
    if (cl->opt.ordered)
        cl->conn = c;
    return db_item_push(c, &tx->item);
}

static void db_client_send(db_part_t *p)
{
    db_client_t *cl = container_of(p, db_client_t, part);
    db_t *db = p->db;

    if (cl->opt.ordered) {
        db_conn_t *c = cl->conn;
        /* A connection that is lost gives all its transactions back, and with them cl->conn. */
        assert(c == NULL || c->state == DB_READY);
        if (c == NULL)
            c = db_conn_pick(db, &cl->next_conn, NULL, NULL);
        while (c != NULL && !core_queue_empty(&cl->queue) && cl->nflight < cl->opt.max_inflight)
            if (!db_client_push(cl, c))
                return;
        return;
    }
    /* Each where the pipeline is shortest, round robin among equals. */
    while (!core_queue_empty(&cl->queue) && cl->nflight < cl->opt.max_inflight) {
        db_conn_t *c = db_conn_pick(db, &cl->next_conn, NULL, NULL);
        if (c == NULL)
            return;
        db_client_push(cl, c);
    }
}

static bool db_tx_expired(const db_tx_t *tx, uint64_t now)
{
    return now - tx->enqueued_ms >= tx->cl->opt.timeout_ms;
}

static uint64_t db_tx_since(const core_qlink_t *l)
{
    return container_of(l, db_tx_t, link)->enqueued_ms;
}

static void db_client_expire(db_part_t *p, uint64_t now)
{
    db_client_t *cl = container_of(p, db_client_t, part);
    db_t *db = p->db;
    core_queue_t expired;

    core_queue_init(&expired);
    db_take_expired(&cl->queue, &expired, now, cl->opt.timeout_ms, db_tx_since);
    /* In flight: answered now, freed when the result (or the loss of the connection) comes. */
    for (unsigned i = 0; i < db->opt.connections; i++)
        for (db_item_t *it = db_pipe_item(db->conns[i].pipe.head); it != NULL;
             it = db_pipe_item(it->link.next)) {
            db_tx_t *tx = container_of(it, db_tx_t, item);
            if (it->ops == &db_tx_ops && tx->cl == cl && !tx->answered && db_tx_expired(tx, now))
                db_tx_call(tx, -ETIMEDOUT);
        }
    db_tx_call_all(&expired, -ETIMEDOUT);
}

static void db_client_cancel(db_part_t *p)
{
    db_client_t *cl = container_of(p, db_client_t, part);

    db_tx_call_all(&cl->queue, -ECANCELED);
    free(cl);
}

static const db_part_ops_t db_client_ops = {
    .send = db_client_send,
    .expire = db_client_expire,
    .cancel = db_client_cancel,
};

/* ---- interface ---- */

db_client_t *db_client_new(db_t *db, const db_client_options_t *opt)
{
    db_client_t *cl = xcalloc(1, sizeof(*cl));

    cl->opt = *opt;
    if (cl->opt.name == NULL)
        cl->opt.name = "client";
    if (cl->opt.max_pending == 0)
        cl->opt.max_pending = DB_CLIENT_MAX_PENDING;
    if (cl->opt.timeout_ms == 0)
        cl->opt.timeout_ms = DB_CLIENT_TIMEOUT_MS;
    if (cl->opt.max_inflight == 0)
        cl->opt.max_inflight = DB_CLIENT_INFLIGHT;
    core_queue_init(&cl->queue);
    cl->part.ops = &db_client_ops;
    cl->part.stmts = opt->stmts;
    cl->part.nstmts = opt->nstmts;
    cl->part.timeout_ms = cl->opt.timeout_ms;
    db_part_add(db, &cl->part);
    return cl;
}

/* Bytes a parameter takes in the copy. */
static size_t db_param_size(const db_param_t *p)
{
    switch (p->kind) {
    case DB_PARAM_TEXT:
        return p->len + 1; /* libpq reads text up to a NUL */
    case DB_PARAM_BINARY:
        return p->len;
    case DB_PARAM_INT8:
        return 8;
    default:
        return 0;
    }
}

/* Copies q's parameters into tq, their bytes to *bytes (advanced). */
static void db_txq_copy(db_txq_t *tq, const db_query_t *q, char **bytes)
{
    tq->stmt = q->stmt;
    tq->again = q->again;
    tq->nparams = (int)q->nparams;
    tq->binary = q->binary ? 1 : 0;
    for (unsigned k = 0; k < q->nparams; k++) {
        const db_param_t *p = &q->params[k];
        char *b = *bytes;
        size_t len = db_param_size(p);
        uint64_t be;
        /* libpq takes int lengths; parameters this large have no place in one statement. */
        assert(len <= INT_MAX);
        tq->values[k] = p->kind == DB_PARAM_NULL ? NULL : b;
        tq->formats[k] = p->kind == DB_PARAM_TEXT || p->kind == DB_PARAM_NULL ? 0 : 1;
        tq->lengths[k] = p->kind == DB_PARAM_TEXT ? (int)p->len : (int)len;
        switch (p->kind) {
        case DB_PARAM_TEXT:
            memcpy(b, p->ptr, p->len);
            b[p->len] = '\0';
            break;
        case DB_PARAM_BINARY:
            memcpy(b, p->ptr, p->len);
            break;
        case DB_PARAM_INT8:
            be = htobe64((uint64_t)p->i);
            memcpy(b, &be, 8);
            break;
        default:
            break;
        }
        *bytes = b + len;
    }
}

/* A copy of q[0..nq) as a transaction of cl, counted as owed and not queued yet. */
static db_tx_t *db_tx_new(db_client_t *cl, const db_query_t *q, unsigned nq, db_txn_cb cb,
                          void *arg)
{
    size_t bytes = 0;

    assert(nq >= 1 && nq <= DB_TXN_MAX);
    for (unsigned i = 0; i < nq; i++) {
        assert(q[i].stmt != NULL && q[i].nparams <= DB_PARAMS_MAX);
        for (unsigned k = 0; k < q[i].nparams; k++)
            bytes += db_param_size(&q[i].params[k]);
    }
    db_tx_t *tx = xcalloc(1, sizeof(*tx) + nq * sizeof(db_txq_t) + nq * sizeof(PGresult *) + bytes);
    tx->item.ops = &db_tx_ops;
    tx->cl = cl;
    tx->cb = cb;
    tx->arg = arg;
    tx->enqueued_ms = rx_now(cl->part.db->loop);
    tx->nq = nq;
    tx->res = (PGresult **)(void *)&tx->q[nq];
    char *b = (char *)&tx->res[nq];
    for (unsigned i = 0; i < nq; i++)
        db_txq_copy(&tx->q[i], &q[i], &b);
    cl->part.count++;
    return tx;
}

int db_txn_submit(db_client_t *cl, const db_query_t *q, unsigned nq, db_txn_cb cb, void *arg)
{
    db_t *db = cl->part.db;

    if (cl->part.count >= cl->opt.max_pending || !db_ready(db))
        return -EAGAIN;
    db_tx_t *tx = db_tx_new(cl, q, nq, cb, arg);
    core_queue_push(&cl->queue, &tx->link);
    db_kick(db);
    return 0;
}

int db_txn_submit_behind(db_client_t *cl, const db_query_t *q, unsigned nq, db_txn_cb cb,
                         void *arg)
{
    db_t *db = cl->part.db;
    db_conn_t *c = db->behind;

    if (c == NULL || c->state != DB_READY || cl->opt.ordered || cl->nflight >= cl->opt.max_inflight)
        return db_txn_submit(cl, q, nq, cb, arg);
    if (cl->part.count >= cl->opt.max_pending)
        return -EAGAIN;
    db_tx_t *tx = db_tx_new(cl, q, nq, cb, arg);
    cl->nflight++;
    /* On failure the connection is down and db_tx_lost() queued it again (and the batch). */
    bool pushed = db_item_push(c, &tx->item);
    db_kick(db);
    return pushed ? 1 : 0;
}

unsigned db_client_pending(const db_client_t *cl)
{
    return cl->part.count;
}

db_t *db_client_db(const db_client_t *cl)
{
    return cl->part.db;
}
