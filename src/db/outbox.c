/* SPDX-License-Identifier: MIT */
/*
 * outbox.c - the sender's side of the outbox table: claims of due rows with
 * a lease, and the marks that follow (sent, retry, fail, retarget, release),
 * each one statement and its own transaction in a connection's pipeline
 * (conn.c), so that its failure touches neither the inbox's batches nor the
 * other operations.
 *
 * Operations wait in a queue and go out at the end of the turn, at most
 * DB_OUTBOX_INFLIGHT at a time, all on one connection: the one that has
 * some in flight, else the first ready one. One pipeline executes them in
 * the order sent; spread over several, a mark could overtake the one made
 * before it. One whose connection is lost before its result is queued again
 * and sent on a ready connection, which is safe because
 * every statement is idempotent: a mark applies only to a row still in the
 * state it changes, and a claim carries a token, so that a claim sent again
 * gets back the rows its first attempt may have leased, not leased twice.
 */
#include "db_private.h"
#include "log.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Result of an attempt that failed for a passing reason: tried again, up to DB_TRIES_MAX. */
#define DB_OB_AGAIN 1

typedef enum db_ob_kind {
    DB_OB_CLAIM,
    DB_OB_SENT,
    DB_OB_RETRY,
    DB_OB_FAIL,
    DB_OB_RETARGET,
    DB_OB_RELEASE,
    DB_OB_DUE,
} db_ob_kind_t;

/* Names for log lines, by kind. */
static const char *const db_ob_names[] = {
    "claim", "sent", "retry", "fail", "retarget", "release", "due",
};

struct db_outbox_op {
    db_item_t item; /* in the pipeline while sent; item.next links the queue otherwise */
    db_ob_kind_t kind;
    bool answered;        /* its callback ran (it timed out): the result is ignored */
    bool resend;          /* a claim whose connection was lost: sent again as a re-claim */
    uint8_t tries;        /* attempts that failed for a passing reason */
    int status;           /* this attempt: 0, -EBADMSG or DB_OB_AGAIN */
    uint64_t enqueued_ms; /* loop time of the call, ms: the deadline counts from it */
    int64_t id;           /* the row (marks) */
    int64_t value;        /* lease ms (claim), delay ms (retry), chat_id (retarget), ms (due) */
    int64_t max;          /* rows (claim) */
    int64_t token;        /* claim token, stored in the rows it leases */
    union {
        db_outbox_claim_cb claim;
        db_outbox_done_cb done;
        db_outbox_count_cb count;
    } cb;
    void *arg;
    PGresult *res; /* the claim's rows or the count, kept until the sync */
    int error_len; /* bytes in error[], -1 for SQL NULL */
    char error[];  /* last_error for retry and fail */
};

/* ---- statements ---- */

#define DB_STMT_CLAIM "tgring_outbox_claim"
#define DB_STMT_RECLAIM "tgring_outbox_reclaim"
#define DB_STMT_SENT "tgring_outbox_sent"
#define DB_STMT_RETRY "tgring_outbox_retry"
#define DB_STMT_FAIL "tgring_outbox_fail"
#define DB_STMT_RETARGET "tgring_outbox_retarget"
#define DB_STMT_RELEASE "tgring_outbox_release"
#define DB_STMT_DUE "tgring_outbox_due"

#define DB_OB_OPEN "sent_at IS NULL AND failed_at IS NULL"
#define DB_OB_DUE_NOW "not_before <= now() AND (claimed_until IS NULL OR claimed_until <= now())"

/*
 * $1 rows, $2 lease ms, $3 token. The rows are locked oldest id first,
 * skipping the ones another transaction holds, and leased in the same
 * statement; RETURNING has no order of its own, hence the outer ORDER BY.
 */
#define DB_OB_CLAIM_SQL(which)                                                                     \
    "WITH c AS (UPDATE outbox SET claimed_until = now() + $2 * interval '1 millisecond', "         \
    "claim_token = $3 WHERE id = ANY (ARRAY (SELECT id FROM outbox WHERE " DB_OB_OPEN " AND "      \
    "(" which ") ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)) "                                   \
    "RETURNING id, chat_id, method, body, attempts) "                                              \
    "SELECT id, chat_id, method, body, attempts FROM c ORDER BY id"

/* A mark applies to a row under a claim only: sent again after a lost connection, it is a no-op. */
#define DB_OB_CLAIMED "id = $1 AND " DB_OB_OPEN " AND claimed_until IS NOT NULL"

static const Oid db_ob_i8x3[3] = {DB_OID_INT8, DB_OID_INT8, DB_OID_INT8};
static const Oid db_ob_i8_i8_text[3] = {DB_OID_INT8, DB_OID_INT8, DB_OID_TEXT};
static const Oid db_ob_i8_text[2] = {DB_OID_INT8, DB_OID_TEXT};

const db_stmt_t db_outbox_stmts[] = {
    {DB_STMT_CLAIM, DB_OB_CLAIM_SQL(DB_OB_DUE_NOW), 3, db_ob_i8x3},
    /* Also the rows that still hold this claim's lease: its first attempt may have committed. */
    {DB_STMT_RECLAIM,
     DB_OB_CLAIM_SQL("(claim_token = $3 AND claimed_until > now()) OR (" DB_OB_DUE_NOW ")"), 3,
     db_ob_i8x3},
    {DB_STMT_SENT,
     "UPDATE outbox SET sent_at = now(), claimed_until = NULL WHERE id = $1 AND sent_at IS NULL", 1,
     db_ob_i8x3},
    {DB_STMT_RETRY,
     "UPDATE outbox SET attempts = attempts + 1, last_error = $3, "
     "not_before = now() + $2 * interval '1 millisecond', claimed_until = NULL "
     "WHERE " DB_OB_CLAIMED,
     3, db_ob_i8_i8_text},
    {DB_STMT_FAIL,
     "UPDATE outbox SET attempts = attempts + 1, last_error = $2, failed_at = now(), "
     "claimed_until = NULL WHERE " DB_OB_CLAIMED,
     2, db_ob_i8_text},
    {DB_STMT_RETARGET,
     "UPDATE outbox SET chat_id = $2, "
     "body = jsonb_set(body::jsonb, '{chat_id}', to_jsonb($2))::text, "
     "claimed_until = NULL, not_before = now() WHERE id = $1 AND " DB_OB_OPEN,
     2, db_ob_i8x3},
    {DB_STMT_RELEASE, "UPDATE outbox SET claimed_until = NULL WHERE " DB_OB_CLAIMED, 1, db_ob_i8x3},
    {DB_STMT_DUE,
     "SELECT count(*) FROM outbox WHERE " DB_OB_OPEN
     " AND not_before <= now() + $1 * interval '1 millisecond'",
     1, db_ob_i8x3},
    {NULL, NULL, 0, NULL},
};

/* ---- small helpers ---- */

/*
 * Copies the longest prefix of NUL-terminated `s` that fits in
 * DB_OUTBOX_ERROR_MAX bytes as valid UTF-8 (the server refuses anything
 * else in a text column): a malformed byte becomes '?', and a character
 * that does not fit whole is left out. OUT: dst. Returns the bytes copied.
 */
static size_t db_ob_copy_utf8(char *dst, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;

    while (*p != '\0') {
        unsigned c = *p;
        size_t n = c < 0x80                 ? 1
                   : c >= 0xc2 && c <= 0xdf ? 2
                   : c >= 0xe0 && c <= 0xef ? 3
                   : c >= 0xf0 && c <= 0xf4 ? 4
                                            : 0;
        bool ok = n > 0;
        /* A NUL fails the continuation test, so nothing past it is read. */
        for (size_t k = 1; ok && k < n; k++)
            ok = (p[k] & 0xc0) == 0x80;
        /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
        if (ok && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0) ||
                   (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)))
            ok = false;
        if (!ok)
            n = 1;
        if (o + n > DB_OUTBOX_ERROR_MAX)
            break;
        if (ok)
            memcpy(dst + o, p, n);
        else
            dst[o] = '?';
        o += n;
        p += n;
    }
    return o;
}

static void db_ob_free(db_outbox_op_t *op)
{
    PQclear(op->res);
    free(op);
}

static void db_ob_append(db_outbox_t *out, db_outbox_op_t *op)
{
    op->item.next = NULL;
    if (out->tail != NULL)
        out->tail->next = &op->item;
    else
        out->head = &op->item;
    out->tail = &op->item;
}

static void db_ob_prepend(db_outbox_t *out, db_outbox_op_t *op)
{
    op->item.next = out->head;
    out->head = &op->item;
    if (out->tail == NULL)
        out->tail = &op->item;
}

/* Reads a claim's rows out of its result. Returns false if the result has an unexpected shape. */
static bool db_ob_rows(const PGresult *res, db_outbox_row_t *rows, unsigned n)
{
    if (PQnfields(res) != 5)
        return false;
    for (unsigned i = 0; i < n; i++) {
        int r = (int)i;
        uint64_t id, chat;
        uint32_t attempts;
        if (PQgetlength(res, r, 0) != 8 || PQgetlength(res, r, 1) != 8 ||
            PQgetlength(res, r, 4) != 4 || PQgetisnull(res, r, 2) || PQgetisnull(res, r, 3))
            return false;
        memcpy(&id, PQgetvalue(res, r, 0), 8);
        memcpy(&chat, PQgetvalue(res, r, 1), 8);
        memcpy(&attempts, PQgetvalue(res, r, 4), 4);
        rows[i].id = (int64_t)be64toh(id);
        rows[i].chat_id = (int64_t)be64toh(chat);
        rows[i].method = PQgetvalue(res, r, 2);
        rows[i].method_len = (size_t)PQgetlength(res, r, 2);
        rows[i].body = PQgetvalue(res, r, 3);
        rows[i].body_len = (size_t)PQgetlength(res, r, 3);
        rows[i].attempts = (int)be32toh(attempts);
    }
    return true;
}

/* Runs the claim's callback with its rows (err 0) or with err. */
static void db_ob_call_claim(db_t *db, db_outbox_op_t *op, int err)
{
    db_outbox_row_t *rows = NULL;
    unsigned n = 0;

    if (err == 0) {
        n = (unsigned)PQntuples(op->res);
        rows = n > 0 ? calloc(n, sizeof(*rows)) : NULL;
        if (n > 0 && rows == NULL)
            abort();
        if (!db_ob_rows(op->res, rows, n)) {
            log_error("outbox_claim_bad_result",
                      "a claim returned rows of an unexpected shape; they are claimed again when "
                      "their lease ends");
            err = -EAGAIN;
            n = 0;
        }
    }
    op->cb.claim(op->arg, err, err == 0 ? rows : NULL, err == 0 ? n : 0);
    free(rows);
}

/*
 * Runs op's callback; it no longer counts as owed. The op stays allocated:
 * the caller frees it, or leaves it for its result to arrive.
 */
static void db_ob_call(db_t *db, db_outbox_op_t *op, int err)
{
    assert(!op->answered && db->out.count > 0);
    op->answered = true;
    db->out.count--;
    switch (op->kind) {
    case DB_OB_CLAIM:
        db_ob_call_claim(db, op, err);
        break;
    case DB_OB_DUE: {
        uint64_t v = 0;
        if (err == 0 && PQntuples(op->res) == 1 && PQgetlength(op->res, 0, 0) == 8)
            memcpy(&v, PQgetvalue(op->res, 0, 0), 8);
        else if (err == 0)
            err = -EAGAIN;
        if (op->cb.count != NULL)
            op->cb.count(op->arg, err, err == 0 ? (int64_t)be64toh(v) : 0);
        break;
    }
    default:
        if (op->cb.done != NULL)
            op->cb.done(op->arg, err);
        break;
    }
}

/* Answers every op of the chain (linked by item.next) with err and frees it. */
static void db_ob_call_chain(db_t *db, db_item_t *it, int err)
{
    while (it != NULL) {
        db_outbox_op_t *op = container_of(it, db_outbox_op_t, item);
        it = it->next;
        db_ob_call(db, op, err);
        db_ob_free(op);
    }
}

/* ---- the operation as a pipeline item ---- */

static int db_ob_send(db_conn_t *c, db_item_t *it)
{
    static const int formats[3] = {1, 1, 1};
    db_outbox_op_t *op = container_of(it, db_outbox_op_t, item);
    uint64_t i8[3];
    const char *values[3] = {(const char *)&i8[0], (const char *)&i8[1], (const char *)&i8[2]};
    int lengths[3] = {8, 8, 8};
    const char *stmt;
    int n;

    i8[0] = htobe64((uint64_t)op->id);
    i8[1] = htobe64((uint64_t)op->value);
    i8[2] = 0;
    switch (op->kind) {
    case DB_OB_CLAIM:
        stmt = op->resend ? DB_STMT_RECLAIM : DB_STMT_CLAIM;
        i8[0] = htobe64((uint64_t)op->max);
        i8[2] = htobe64((uint64_t)op->token);
        n = 3;
        break;
    case DB_OB_SENT:
        stmt = DB_STMT_SENT;
        n = 1;
        break;
    case DB_OB_RETRY:
        stmt = DB_STMT_RETRY;
        n = 3;
        break;
    case DB_OB_FAIL:
        stmt = DB_STMT_FAIL;
        n = 2;
        break;
    case DB_OB_RETARGET:
        stmt = DB_STMT_RETARGET;
        n = 2;
        break;
    case DB_OB_RELEASE:
        stmt = DB_STMT_RELEASE;
        n = 1;
        break;
    default:
        stmt = DB_STMT_DUE;
        i8[0] = htobe64((uint64_t)op->value);
        n = 1;
        break;
    }
    /* The text parameter is the last one: the error, or SQL NULL for none. */
    if (op->kind == DB_OB_RETRY || op->kind == DB_OB_FAIL) {
        values[n - 1] = op->error_len >= 0 ? op->error : NULL;
        lengths[n - 1] = op->error_len;
    }
    op->status = 0;
    return PQsendQueryPrepared(c->pg, stmt, n, values, lengths, formats, 1) == 1 ? 1 : -1;
}

static bool db_ob_result(db_conn_t *c, db_item_t *it, PGresult *r)
{
    char msg[DB_MSG_MAX];
    db_outbox_op_t *op = container_of(it, db_outbox_op_t, item);
    ExecStatusType st = PQresultStatus(r);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

    if (op->status != 0 || st == PGRES_PIPELINE_ABORTED)
        return false; /* the first failure decides */
    if (it->pos == 0 && st == PGRES_TUPLES_OK && op->res == NULL &&
        (op->kind == DB_OB_CLAIM || op->kind == DB_OB_DUE)) {
        op->res = r;
        return true;
    }
    if (it->pos == 0 && st == PGRES_COMMAND_OK && op->kind != DB_OB_CLAIM && op->kind != DB_OB_DUE)
        return false;
    /* An error, at the statement or at its commit, or a result that has no place here. */
    db_result_msg(r, msg, sizeof(msg));
    if (it->pos == 0 && db_is_row_error(state) && op->kind != DB_OB_CLAIM &&
        op->kind != DB_OB_DUE) {
        op->status = -EBADMSG;
        log_warn("outbox_rejected", "outbox row %lld: %s refused by the database: SQLSTATE %s: %s",
                 (long long)op->id, db_ob_names[op->kind], state, msg);
        return false;
    }
    op->status = DB_OB_AGAIN;
    db_warn_limited(
        c->db, "db_outbox_failed", "outbox %s (row %lld) failed, retrying: %s: SQLSTATE %s: %s",
        db_ob_names[op->kind], (long long)op->id, PQresStatus(st), state ? state : "none", msg);
    return false;
}

/* One fewer in flight; with none left, the next ones may go on any connection. */
static void db_ob_landed(db_outbox_t *out)
{
    if (--out->nflight == 0)
        out->conn = NULL;
}

static void db_ob_done(db_conn_t *c, db_item_t *it)
{
    db_t *db = c->db;
    db_outbox_op_t *op = container_of(it, db_outbox_op_t, item);
    bool passing = op->kind == DB_OB_CLAIM || op->kind == DB_OB_DUE;

    db_ob_landed(&db->out);
    if (op->answered) {
        db_ob_free(op);
    } else if (op->status == DB_OB_AGAIN && ++op->tries < DB_TRIES_MAX) {
        /* Nothing of a failed transaction stayed: the claim needs no token search. */
        PQclear(op->res);
        op->res = NULL;
        db_ob_prepend(&db->out, op);
    } else {
        int err = op->status == DB_OB_AGAIN ? (passing ? -EAGAIN : -ECONNRESET) : op->status;
        db_ob_call(db, op, err);
        db_ob_free(op);
    }
    if (db->out.head != NULL)
        db_kick(db);
    db_check_idle(db);
}

static void db_ob_lost(db_conn_t *c, db_item_t *it)
{
    db_t *db = c->db;
    db_outbox_op_t *op = container_of(it, db_outbox_op_t, item);

    db_ob_landed(&db->out);
    if (op->answered) {
        db_ob_free(op);
        return;
    }
    PQclear(op->res);
    op->res = NULL;
    /* It may have committed with its answer lost: the re-claim finds what it leased. */
    if (op->kind == DB_OB_CLAIM)
        op->resend = true;
    db_ob_prepend(&db->out, op);
}

static const db_item_ops_t db_ob_ops = {
    .send = db_ob_send,
    .result = db_ob_result,
    .done = db_ob_done,
    .lost = db_ob_lost,
};

/* ---- called by conn.c ---- */

void db_outbox_init(db_t *db)
{
    uint64_t seed = 0;

    /* Tokens need only differ between live claims, across processes: a random start will do. */
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    }
    db->out.token_base = seed;
}

void db_outbox_send(db_t *db)
{
    db_outbox_t *out = &db->out;
    db_conn_t *c = out->conn;

    /* A connection that is lost gives all its operations back, and with them out->conn. */
    assert(c == NULL || c->state == DB_READY);
    for (unsigned i = 0; c == NULL && i < db->opt.connections; i++)
        if (db->conns[i].state == DB_READY)
            c = &db->conns[i];
    while (c != NULL && out->head != NULL && out->nflight < DB_OUTBOX_INFLIGHT) {
        db_item_t *it = out->head;
        out->head = it->next;
        if (out->head == NULL)
            out->tail = NULL;
        out->nflight++;
        out->conn = c;
        if (!db_item_push(c, it))
            return;
    }
}

void db_outbox_expire(db_t *db, uint64_t now)
{
    db_outbox_t *out = &db->out;
    db_item_t *expired = NULL, **ep = &expired;
    db_item_t **pp = &out->head, *prev = NULL;

    while (*pp != NULL) {
        db_outbox_op_t *op = container_of(*pp, db_outbox_op_t, item);
        if (now - op->enqueued_ms < db->opt.outbox_timeout_ms) {
            prev = *pp;
            pp = &(*pp)->next;
            continue;
        }
        *pp = op->item.next;
        if (out->tail == &op->item)
            out->tail = prev;
        op->item.next = NULL;
        *ep = &op->item;
        ep = &op->item.next;
    }
    /* In flight: answered now, freed when the result (or the loss of the connection) comes. */
    for (db_item_t *it = out->conn != NULL ? out->conn->phead : NULL; it != NULL; it = it->next) {
        db_outbox_op_t *op = container_of(it, db_outbox_op_t, item);
        if (it->ops == &db_ob_ops && !op->answered &&
            now - op->enqueued_ms >= db->opt.outbox_timeout_ms)
            db_ob_call(db, op, -ETIMEDOUT);
    }
    db_ob_call_chain(db, expired, -ETIMEDOUT);
}

void db_outbox_cancel(db_t *db)
{
    db_item_t *queued = db->out.head;

    db->out.head = db->out.tail = NULL;
    db_ob_call_chain(db, queued, -ECANCELED);
}

/* ---- interface ---- */

/* A new operation, or NULL when it cannot be taken now (the caller returns -EAGAIN). */
static db_outbox_op_t *db_ob_new(db_t *db, db_ob_kind_t kind, int64_t id, int64_t value,
                                 const char *error, void *arg)
{
    char text[DB_OUTBOX_ERROR_MAX];
    size_t len = 0;

    if (db->out.count >= db->opt.outbox_max || !db_ready(db))
        return NULL;
    if (error != NULL)
        len = db_ob_copy_utf8(text, error);
    db_outbox_op_t *op = calloc(1, sizeof(*op) + len + 1);
    if (op == NULL)
        abort();
    op->item.ops = &db_ob_ops;
    op->kind = kind;
    op->enqueued_ms = rx_now(db->loop);
    op->id = id;
    op->value = value;
    op->arg = arg;
    op->error_len = error != NULL ? (int)len : -1;
    memcpy(op->error, text, len);
    return op;
}

static int db_ob_queue(db_t *db, db_outbox_op_t *op)
{
    db_ob_append(&db->out, op);
    db->out.count++;
    db_kick(db);
    return 0;
}

int db_outbox_claim(db_t *db, unsigned max, unsigned lease_ms, db_outbox_claim_cb cb, void *arg)
{
    assert(cb != NULL && max > 0);
    if (db->draining)
        return -EAGAIN;
    db_outbox_op_t *op = db_ob_new(db, DB_OB_CLAIM, 0, lease_ms, NULL, arg);
    if (op == NULL)
        return -EAGAIN;
    op->max = max < DB_OUTBOX_CLAIM_MAX ? max : DB_OUTBOX_CLAIM_MAX;
    op->token = (int64_t)(db->out.token_base + db->out.next_token++);
    op->cb.claim = cb;
    return db_ob_queue(db, op);
}

/* The marks: a row id, a value, an optional error text and a done callback. */
static int db_ob_mark(db_t *db, db_ob_kind_t kind, int64_t id, int64_t value, const char *error,
                      db_outbox_done_cb cb, void *arg)
{
    db_outbox_op_t *op = db_ob_new(db, kind, id, value, error, arg);
    if (op == NULL)
        return -EAGAIN;
    op->cb.done = cb;
    return db_ob_queue(db, op);
}

int db_outbox_sent(db_t *db, int64_t id, db_outbox_done_cb cb, void *arg)
{
    return db_ob_mark(db, DB_OB_SENT, id, 0, NULL, cb, arg);
}

int db_outbox_retry(db_t *db, int64_t id, uint64_t delay_ms, const char *error,
                    db_outbox_done_cb cb, void *arg)
{
    if (delay_ms > DB_OUTBOX_DELAY_MAX_MS)
        delay_ms = DB_OUTBOX_DELAY_MAX_MS;
    return db_ob_mark(db, DB_OB_RETRY, id, (int64_t)delay_ms, error, cb, arg);
}

int db_outbox_fail(db_t *db, int64_t id, const char *error, db_outbox_done_cb cb, void *arg)
{
    return db_ob_mark(db, DB_OB_FAIL, id, 0, error, cb, arg);
}

int db_outbox_retarget(db_t *db, int64_t id, int64_t chat_id, db_outbox_done_cb cb, void *arg)
{
    return db_ob_mark(db, DB_OB_RETARGET, id, chat_id, NULL, cb, arg);
}

int db_outbox_release(db_t *db, int64_t id, db_outbox_done_cb cb, void *arg)
{
    return db_ob_mark(db, DB_OB_RELEASE, id, 0, NULL, cb, arg);
}

int db_outbox_due(db_t *db, uint64_t within_ms, db_outbox_count_cb cb, void *arg)
{
    if (within_ms > DB_OUTBOX_DELAY_MAX_MS)
        within_ms = DB_OUTBOX_DELAY_MAX_MS;
    db_outbox_op_t *op = db_ob_new(db, DB_OB_DUE, 0, (int64_t)within_ms, NULL, arg);
    if (op == NULL)
        return -EAGAIN;
    op->cb.count = cb;
    return db_ob_queue(db, op);
}

unsigned db_outbox_pending(const db_t *db)
{
    return db->out.count;
}
