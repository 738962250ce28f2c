/* SPDX-License-Identifier: MIT */
/*
 * outbox.c - the sender's side of the outbox table (tg_outbox.h): claims of
 * due rows with a lease and the marks that follow, each one statement and
 * its own transaction submitted through db.h's generic API, so that its
 * failure touches neither the inbox's batches nor the other operations.
 *
 * The client is an ordered lane: one pipeline executes the operations in
 * the order made; spread over several, a mark could overtake the one made
 * before it. One whose connection is lost before its result is sent again,
 * which is safe because every statement is idempotent: a mark applies only
 * to a row still in the state it changes, and a claim carries a token, so
 * that a claim sent again (as the re-claim statement) gets back the rows its
 * first attempt may have leased, not leased twice. Marks carry that token
 * back: each applies only while the row's claim_token is still its claim's.
 */
#include "tg_outbox.h"

#include "core.h"
#include "log.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

typedef enum tg_ob_kind {
    TG_OB_WALK,
    TG_OB_CLAIM,
    TG_OB_SENT,
    TG_OB_RETRY,
    TG_OB_FAIL,
    TG_OB_RETARGET,
    TG_OB_RELEASE,
    TG_OB_DUE,
} tg_ob_kind_t;

/* Names for log lines, by kind. */
static const char *const tg_ob_names[] = {
    "walk", "claim", "sent", "retry", "fail", "retarget", "release", "due",
};

/* Walked rows a claim looks at per statement, and statements per claim at most. */
#define TG_OB_WALK_ROWS 1024
#define TG_OB_WALK_PAGES 16

/* What a claim found of a chat so far in its walk. */
typedef struct tg_ob_chat {
    int64_t chat_id;
    int64_t last_id; /* the latest open row of the chat walked (0: none yet) */
    bool blocked;    /* an open row of it that is neither ours nor takeable: later ones wait */
    bool used;
} tg_ob_chat_t;

/* A claim between its walk and its lease (see tg_outbox_claim). */
typedef struct tg_ob_claim {
    tg_outbox_t *ob;
    unsigned max, lease_ms;
    int64_t after;   /* the last id walked */
    unsigned pages;  /* walk statements made */
    unsigned n;      /* rows picked */
    int64_t *ids;    /* [max] picked, in id order */
    int64_t *prevs;  /* [max] each one's chat's previous open row, 0: none */
    tg_ob_chat_t *chats;
    unsigned chat_mask; /* chats has chat_mask + 1 slots */
    unsigned nchats;
} tg_ob_claim_t;

/* One operation on its way: what to call back once its transaction is answered. */
typedef struct tg_ob_op {
    tg_ob_kind_t kind;
    int64_t id;    /* the row (marks), for log lines */
    int64_t token; /* the claim's token (claims), given to its rows */
    tg_ob_claim_t *claim; /* walks and claims */
    union {
        tg_outbox_claim_cb claim;
        tg_outbox_done_cb done;
        tg_outbox_count_cb count;
    } cb;
    void *arg;
} tg_ob_op_t;

/* ---- statements ---- */

#define TG_STMT_CLAIM "tgring_outbox_claim"
#define TG_STMT_RECLAIM "tgring_outbox_reclaim"
#define TG_STMT_SENT "tgring_outbox_sent"
#define TG_STMT_RETRY "tgring_outbox_retry"
#define TG_STMT_FAIL "tgring_outbox_fail"
#define TG_STMT_RETARGET "tgring_outbox_retarget"
#define TG_STMT_RELEASE "tgring_outbox_release"
#define TG_STMT_RELEASE_MANY "tgring_outbox_release_many"
#define TG_STMT_DUE "tgring_outbox_due"

#define TG_OB_OPEN "sent_at IS NULL AND failed_at IS NULL"

/*
 * A claim is two statements. The walk reads the open rows oldest first from
 * outbox_open_idx, $2 at a time after id $1, with what decides whether each
 * can be taken: its chat, the token of a running lease (null: none) and
 * whether it is due. tg_ob_pick() decides in C, where the walk has seen every
 * older open row of a chat before any later one, so no row needs a probe of
 * its own (a statement that probed each row's chat for an older open row
 * read the whole backlog per row whenever the statistics made the table look
 * tiny). Then the lease takes the picked rows by key: $1 their ids as an
 * array literal, $2 lease ms, $3 token; one changed since the walk (taken by
 * another process, put back) is left out. Both are functions whose plans
 * can only use the indexes as meant (migrations/0006_claim_plans.sql; the
 * lease looks each id up by key and leases by ctid since
 * 0010_outbox_lease_plans.sql). The second form, sent again after a lost
 * connection, also takes the rows the first attempt leased.
 */
#define TG_STMT_WALK "tgring_outbox_walk"
#define TG_OB_WALK_SQL "SELECT id, chat_id, lease_token, due FROM tgring_outbox_walk($1, $2)"
#define TG_OB_CLAIM_SQL(again)                                                                     \
    "SELECT id, chat_id, method, body, attempts "                                                  \
    "FROM tgring_outbox_lease($1::bigint[], $2, $3, " again ") ORDER BY id"

/*
 * $1 row, $2 claim token. A mark applies to a row still under the claim that
 * leased it: one whose lease ran out and was taken by another claim (this
 * process's or another's) is that claim's to mark. Sent again after a lost
 * connection, it finds the lease gone and is a no-op.
 */
#define TG_OB_CLAIMED                                                                              \
    "id = $1 AND claim_token = $2 AND " TG_OB_OPEN " AND claimed_until IS NOT NULL"

static const uint32_t tg_ob_i8x3[3] = {DB_OID_INT8, DB_OID_INT8, DB_OID_INT8};
static const uint32_t tg_ob_text_i8x2[3] = {DB_OID_TEXT, DB_OID_INT8, DB_OID_INT8};
static const uint32_t tg_ob_i8x3_text[4] = {DB_OID_INT8, DB_OID_INT8, DB_OID_INT8, DB_OID_TEXT};
static const uint32_t tg_ob_i8x2_text[3] = {DB_OID_INT8, DB_OID_INT8, DB_OID_TEXT};
static const uint32_t tg_ob_text2[2] = {DB_OID_TEXT, DB_OID_TEXT};

static const db_stmt_t tg_ob_stmts[] = {
    {TG_STMT_WALK, TG_OB_WALK_SQL, 2, tg_ob_i8x3},
    {TG_STMT_CLAIM, TG_OB_CLAIM_SQL("false"), 3, tg_ob_text_i8x2},
    {TG_STMT_RECLAIM, TG_OB_CLAIM_SQL("true"), 3, tg_ob_text_i8x2},
    /*
     * $1 the ids, $2 their claims' tokens, as array literals '{1,2,3}'. Only
     * while the token is the row's: a row sent after its lease was lost may be
     * sent again by the claim that took it, which marks it then. The rows are
     * found by key (no join whose plan could turn to reading the table), each
     * one's token looked up by its position.
     */
    {TG_STMT_SENT,
     "UPDATE outbox SET sent_at = now(), claimed_until = NULL "
     "WHERE id = ANY ($1::bigint[]) AND sent_at IS NULL "
     "AND claim_token = ($2::bigint[])[array_position($1::bigint[], id)]",
     2, tg_ob_text2},
    {TG_STMT_RETRY,
     "UPDATE outbox SET attempts = attempts + 1, last_error = $4, "
     "not_before = now() + $3 * interval '1 millisecond', claimed_until = NULL "
     "WHERE " TG_OB_CLAIMED,
     4, tg_ob_i8x3_text},
    {TG_STMT_FAIL,
     "UPDATE outbox SET attempts = attempts + 1, last_error = $3, failed_at = now(), "
     "claimed_until = NULL WHERE " TG_OB_CLAIMED,
     3, tg_ob_i8x2_text},
    {TG_STMT_RETARGET,
     "UPDATE outbox SET attempts = attempts + 1, chat_id = $3, "
     "body = jsonb_set(body::jsonb, '{chat_id}', to_jsonb($3))::text, "
     "claimed_until = NULL, not_before = now() WHERE " TG_OB_CLAIMED,
     3, tg_ob_i8x3},
    {TG_STMT_RELEASE, "UPDATE outbox SET claimed_until = NULL WHERE " TG_OB_CLAIMED, 2, tg_ob_i8x3},
    /* As TG_STMT_SENT finds its rows: by key, each one's token by its position. */
    {TG_STMT_RELEASE_MANY,
     "UPDATE outbox SET claimed_until = NULL "
     "WHERE id = ANY ($1::bigint[]) AND " TG_OB_OPEN " AND claimed_until IS NOT NULL "
     "AND claim_token = ($2::bigint[])[array_position($1::bigint[], id)]",
     2, tg_ob_text2},
    {TG_STMT_DUE,
     "SELECT count(*) FROM outbox WHERE " TG_OB_OPEN
     " AND not_before <= now() + $1 * interval '1 millisecond'",
     1, tg_ob_i8x3},
};

/* ---- small helpers ---- */

/* The previous open row of picked row id's chat, as the walk saw it (0: none). */
static int64_t tg_ob_prev(const tg_ob_claim_t *c, int64_t id)
{
    unsigned lo = 0, hi = c->n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (c->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->n && c->ids[lo] == id ? c->prevs[lo] : 0;
}

/* Reads a claim's rows out of its result. Returns false if the result has an unexpected shape. */
static bool tg_ob_rows(const db_result_t *res, const tg_ob_op_t *op, tg_outbox_row_t *rows,
                       unsigned n)
{
    if (db_res_cols(res) != 5)
        return false;
    for (unsigned i = 0; i < n; i++) {
        int64_t attempts;
        if (!db_res_int(res, i, 0, &rows[i].id) || !db_res_int(res, i, 1, &rows[i].chat_id) ||
            !db_res_int(res, i, 4, &attempts) || db_res_null(res, i, 2) || db_res_null(res, i, 3))
            return false;
        rows[i].prev_id = tg_ob_prev(op->claim, rows[i].id);
        rows[i].method = db_res_value(res, i, 2, &rows[i].method_len);
        rows[i].body = db_res_value(res, i, 3, &rows[i].body_len);
        rows[i].attempts = (int)attempts;
        rows[i].token = op->token;
    }
    return true;
}

/* Runs the claim's callback with its rows (err 0) or with err. */
static void tg_ob_call_claim(tg_ob_op_t *op, int err, const db_result_t *res)
{
    tg_outbox_row_t *rows = NULL;
    unsigned n = 0;

    if (err == 0) {
        n = db_res_rows(res);
        rows = n > 0 ? xcalloc(n, sizeof(*rows)) : NULL;
        if (!tg_ob_rows(res, op, rows, n)) {
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

/* v[0..n) as a bigint array literal '{1,-2,3}' in lit: up to 22 bytes each. */
static size_t tg_ob_array(char *lit, const int64_t *v, unsigned n)
{
    size_t len = 0;
    lit[len++] = '{';
    for (unsigned i = 0; i < n; i++)
        len += (size_t)sprintf(lit + len, i > 0 ? ",%lld" : "%lld", (long long)v[i]);
    lit[len++] = '}';
    return len;
}

static void tg_ob_claim_free(tg_ob_claim_t *c)
{
    if (c == NULL)
        return;
    free(c->ids);
    free(c->prevs);
    free(c->chats);
    free(c);
}

/* The walk's record of chat_id, made empty the first time. */
static tg_ob_chat_t *tg_ob_chat(tg_ob_claim_t *c, int64_t chat_id)
{
    if (2 * (c->nchats + 1) > c->chat_mask + 1) {
        tg_ob_chat_t *old = c->chats;
        unsigned old_slots = c->chat_mask + 1;
        unsigned slots = old != NULL ? 2 * old_slots : 256;
        c->chats = xcalloc(slots, sizeof(*c->chats));
        c->chat_mask = slots - 1;
        c->nchats = 0;
        for (unsigned i = 0; old != NULL && i < old_slots; i++)
            if (old[i].used)
                *tg_ob_chat(c, old[i].chat_id) = old[i];
        free(old);
    }
    unsigned i = (unsigned)(((uint64_t)chat_id * 0x9E3779B97F4A7C15u) >> 40) & c->chat_mask;
    while (c->chats[i].used && c->chats[i].chat_id != chat_id)
        i = (i + 1) & c->chat_mask;
    if (!c->chats[i].used) {
        c->chats[i] = (tg_ob_chat_t){.chat_id = chat_id, .used = true};
        c->nchats++;
    }
    return &c->chats[i];
}

/*
 * Decides, for each walked row in id order, whether the claim takes it: due,
 * not leased, and its chat not blocked. A chat is blocked from its first open
 * row that is neither leased by this outbox's claims (whose rows its sender
 * holds and sends in order) nor taken here: a row not due yet, or leased by
 * another process. Returns false if the result has an unexpected shape.
 */
static bool tg_ob_pick(tg_ob_claim_t *c, const db_result_t *res)
{
    const tg_outbox_t *ob = c->ob;
    uint64_t first = ob->token_base, last = ob->token_base + ob->next_token;
    unsigned rows = db_res_rows(res);
    if (db_res_cols(res) != 4)
        return false;
    for (unsigned i = 0; i < rows; i++) {
        int64_t id, chat_id, token = 0, due;
        if (!db_res_int(res, i, 0, &id) || !db_res_int(res, i, 1, &chat_id) ||
            !db_res_int(res, i, 3, &due))
            return false;
        bool leased = !db_res_null(res, i, 2);
        if (leased && !db_res_int(res, i, 2, &token))
            return false;
        c->after = id;
        tg_ob_chat_t *ch = tg_ob_chat(c, chat_id);
        int64_t prev = ch->last_id;
        ch->last_id = id;
        if (ch->blocked)
            continue;
        if (leased) {
            ch->blocked = (uint64_t)token < first || (uint64_t)token > last;
            continue;
        }
        if (!due || c->n == c->max) {
            ch->blocked = true; /* not taken now: nothing after it either */
            continue;
        }
        c->ids[c->n] = id;
        c->prevs[c->n] = prev;
        c->n++;
    }
    return true;
}

static int tg_ob_submit(tg_outbox_t *ob, tg_ob_op_t *op, const db_query_t *q);

/* Submits the claim's next walk statement. Returns 0 or -EAGAIN (op freed, not the claim). */
static int tg_ob_walk(tg_ob_claim_t *c, tg_ob_op_t *op)
{
    db_query_t q = {.stmt = TG_STMT_WALK, .nparams = 2, .binary = true};
    q.params[0] = db_param_int8(c->after);
    q.params[1] = db_param_int8(TG_OB_WALK_ROWS);
    c->pages++;
    return tg_ob_submit(c->ob, op, &q);
}

/* Submits the lease of the picked rows. Returns 0 or -EAGAIN (op freed, not the claim). */
static int tg_ob_lease(tg_ob_claim_t *c, tg_ob_op_t *op)
{
    char *lit = xmalloc((size_t)c->n * 22 + 3);
    size_t len = tg_ob_array(lit, c->ids, c->n);
    db_query_t q = {.stmt = TG_STMT_CLAIM, .again = TG_STMT_RECLAIM, .nparams = 3, .binary = true};
    q.params[0] = db_param_text(lit, len);
    q.params[1] = db_param_int8(c->lease_ms);
    q.params[2] = db_param_int8(op->token);
    int r = tg_ob_submit(c->ob, op, &q);
    free(lit);
    return r;
}

/*
 * A walk statement answered: picks from its rows, then walks on (a full page,
 * room left, pages left), or leases what it picked, or answers no rows.
 */
static void tg_ob_walked(tg_ob_op_t *op, int err, const db_result_t *res)
{
    tg_ob_claim_t *c = op->claim;
    if (err == 0 && !tg_ob_pick(c, res)) {
        log_error("outbox_claim_bad_result", "a claim's walk returned rows of an unexpected shape");
        err = -EAGAIN;
    }
    if (err == 0) {
        tg_ob_op_t *next = xcalloc(1, sizeof(*next));
        *next = *op;
        bool more = db_res_rows(res) == TG_OB_WALK_ROWS && c->n < c->max &&
                    c->pages < TG_OB_WALK_PAGES;
        if (!more && c->n == 0) {
            free(next);
            op->cb.claim(op->arg, 0, NULL, 0);
            tg_ob_claim_free(c);
            return;
        }
        next->kind = more ? TG_OB_WALK : TG_OB_CLAIM;
        if ((more ? tg_ob_walk(c, next) : tg_ob_lease(c, next)) == 0)
            return;
        err = -EAGAIN;
    }
    op->cb.claim(op->arg, err, NULL, 0);
    tg_ob_claim_free(c);
}

static void tg_ob_on_txn(void *arg, int err, const db_result_t *const *res, unsigned n)
{
    tg_ob_op_t *op = arg;
    bool query = op->kind == TG_OB_WALK || op->kind == TG_OB_CLAIM || op->kind == TG_OB_DUE;

    if (err == -EBADMSG) {
        char msg[256];
        log_warn("outbox_rejected", "outbox row %lld: %s refused by the database: SQLSTATE %s: %s",
                 (long long)op->id, tg_ob_names[op->kind], db_res_sqlstate(res[0]),
                 db_res_message(res[0], msg, sizeof(msg)));
    }
    /* Nothing was read: for a claim or a count a passing failure, to be tried later. */
    if (query && (err == -EBADMSG || err == -ECONNRESET))
        err = -EAGAIN;
    switch (op->kind) {
    case TG_OB_WALK:
        tg_ob_walked(op, err, err == 0 ? res[0] : NULL);
        break;
    case TG_OB_CLAIM:
        tg_ob_call_claim(op, err, err == 0 ? res[0] : NULL);
        tg_ob_claim_free(op->claim);
        break;
    case TG_OB_DUE: {
        int64_t v = 0;
        if (err == 0 && (db_res_rows(res[0]) != 1 || !db_res_int(res[0], 0, 0, &v)))
            err = -EAGAIN;
        if (op->cb.count != NULL)
            op->cb.count(op->arg, err, err == 0 ? v : 0);
        break;
    }
    default:
        if (op->cb.done != NULL)
            op->cb.done(op->arg, err);
        break;
    }
    free(op);
}

/* A new operation, to be given its callback and submitted. */
static tg_ob_op_t *tg_ob_new(tg_ob_kind_t kind, int64_t id, void *arg)
{
    tg_ob_op_t *op = xcalloc(1, sizeof(*op));
    op->kind = kind;
    op->id = id;
    op->arg = arg;
    return op;
}

/* Submits q as op's transaction; frees op when it is not taken. Returns 0 or -EAGAIN. */
static int tg_ob_submit(tg_outbox_t *ob, tg_ob_op_t *op, const db_query_t *q)
{
    int r = db_txn_submit(ob->cl, q, 1, tg_ob_on_txn, op);
    if (r < 0)
        free(op);
    return r;
}

/* A mark of row `id` under claim `token` by `stmt`, with up to two more parameters. */
static int tg_ob_mark(tg_outbox_t *ob, tg_ob_kind_t kind, const char *stmt, int64_t id,
                      int64_t token, unsigned nparams, db_param_t p3, db_param_t p4,
                      tg_outbox_done_cb cb, void *arg)
{
    db_query_t q = {.stmt = stmt, .nparams = nparams, .binary = true};
    q.params[0] = db_param_int8(id);
    q.params[1] = db_param_int8(token);
    q.params[2] = p3;
    q.params[3] = p4;
    tg_ob_op_t *op = tg_ob_new(kind, id, arg);
    op->cb.done = cb;
    return tg_ob_submit(ob, op, &q);
}

/* ---- interface ---- */

void tg_outbox_init(tg_outbox_t *ob, db_t *db, const tg_outbox_options_t *opt)
{
    uint64_t seed = 0;
    db_client_options_t co = {
        .name = "outbox",
        .stmts = tg_ob_stmts,
        .nstmts = ARRAY_SIZE(tg_ob_stmts),
        .max_pending = opt != NULL ? opt->max : 0,
        .timeout_ms = opt != NULL ? opt->timeout_ms : 0,
        /*
         * Each operation is its own transaction with its own commit, which the
         * server does one after the other on that connection: the cap bounds
         * how long an inbox batch can wait behind them.
         */
        .max_inflight = 8,
        .ordered = true,
    };

    memset(ob, 0, sizeof(*ob));
    ob->cl = db_client_new(db, &co);
    /* Tokens need only differ between live claims, across processes: a random start will do. */
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    }
    /* Below 2^62: the tokens of a run of claims never wrap, so they form one range. */
    ob->token_base = seed >> 2;
}

int tg_outbox_claim(tg_outbox_t *ob, unsigned max, unsigned lease_ms, tg_outbox_claim_cb cb,
                    void *arg)
{
    assert(cb != NULL && max > 0);
    if (db_draining(db_client_db(ob->cl)))
        return -EAGAIN;
    tg_ob_claim_t *c = xcalloc(1, sizeof(*c));
    c->ob = ob;
    c->max = max < TG_OUTBOX_CLAIM_MAX ? max : TG_OUTBOX_CLAIM_MAX;
    c->lease_ms = lease_ms;
    c->ids = xcalloc(c->max, sizeof(*c->ids));
    c->prevs = xcalloc(c->max, sizeof(*c->prevs));
    tg_ob_op_t *op = tg_ob_new(TG_OB_WALK, 0, arg);
    op->claim = c;
    op->token = (int64_t)(ob->token_base + ob->next_token);
    op->cb.claim = cb;
    int r = tg_ob_walk(c, op);
    if (r == 0)
        ob->next_token++;
    else
        tg_ob_claim_free(c);
    return r;
}

int64_t tg_outbox_token(tg_outbox_t *ob)
{
    return (int64_t)(ob->token_base + ob->next_token++);
}

/* A mark of many rows, each under its own token: statement stmt with the two as arrays. */
static int tg_ob_mark_many(tg_outbox_t *ob, tg_ob_kind_t kind, const char *stmt,
                           const int64_t *ids, const int64_t *tokens, unsigned n,
                           tg_outbox_done_cb cb, void *arg)
{
    assert(n > 0 && n <= TG_OUTBOX_SENT_MAX);
    size_t cap = (size_t)n * 22 + 3;
    char *lit = xmalloc(2 * cap);
    db_query_t q = {.stmt = stmt, .nparams = 2, .binary = true};
    q.params[0] = db_param_text(lit, tg_ob_array(lit, ids, n));
    q.params[1] = db_param_text(lit + cap, tg_ob_array(lit + cap, tokens, n));
    tg_ob_op_t *op = tg_ob_new(kind, ids[0], arg);
    op->cb.done = cb;
    int r = tg_ob_submit(ob, op, &q);
    free(lit);
    return r;
}

int tg_outbox_sent_many(tg_outbox_t *ob, const int64_t *ids, const int64_t *tokens, unsigned n,
                        tg_outbox_done_cb cb, void *arg)
{
    return tg_ob_mark_many(ob, TG_OB_SENT, TG_STMT_SENT, ids, tokens, n, cb, arg);
}

int tg_outbox_release_many(tg_outbox_t *ob, const int64_t *ids, const int64_t *tokens, unsigned n,
                           tg_outbox_done_cb cb, void *arg)
{
    return tg_ob_mark_many(ob, TG_OB_RELEASE, TG_STMT_RELEASE_MANY, ids, tokens, n, cb, arg);
}

int tg_outbox_sent(tg_outbox_t *ob, int64_t id, int64_t token, tg_outbox_done_cb cb, void *arg)
{
    return tg_outbox_sent_many(ob, &id, &token, 1, cb, arg);
}

/* The error text as a parameter: copied (cut, made valid) into buf, or SQL NULL. */
static db_param_t tg_ob_error(const char *error, char buf[TG_OUTBOX_ERROR_MAX])
{
    if (error == NULL)
        return db_param_text(NULL, 0);
    return db_param_text(buf, core_utf8_copy(buf, TG_OUTBOX_ERROR_MAX, error));
}

int tg_outbox_retry(tg_outbox_t *ob, int64_t id, int64_t token, uint64_t delay_ms,
                    const char *error, tg_outbox_done_cb cb, void *arg)
{
    char buf[TG_OUTBOX_ERROR_MAX];
    if (delay_ms > TG_OUTBOX_DELAY_MAX_MS)
        delay_ms = TG_OUTBOX_DELAY_MAX_MS;
    return tg_ob_mark(ob, TG_OB_RETRY, TG_STMT_RETRY, id, token, 4,
                      db_param_int8((int64_t)delay_ms), tg_ob_error(error, buf), cb, arg);
}

int tg_outbox_fail(tg_outbox_t *ob, int64_t id, int64_t token, const char *error,
                   tg_outbox_done_cb cb, void *arg)
{
    char buf[TG_OUTBOX_ERROR_MAX];
    db_param_t none = {0};
    return tg_ob_mark(ob, TG_OB_FAIL, TG_STMT_FAIL, id, token, 3, tg_ob_error(error, buf), none, cb,
                      arg);
}

int tg_outbox_retarget(tg_outbox_t *ob, int64_t id, int64_t token, int64_t chat_id,
                       tg_outbox_done_cb cb, void *arg)
{
    db_param_t none = {0};
    return tg_ob_mark(ob, TG_OB_RETARGET, TG_STMT_RETARGET, id, token, 3, db_param_int8(chat_id),
                      none, cb, arg);
}

int tg_outbox_release(tg_outbox_t *ob, int64_t id, int64_t token, tg_outbox_done_cb cb, void *arg)
{
    db_param_t none = {0};
    return tg_ob_mark(ob, TG_OB_RELEASE, TG_STMT_RELEASE, id, token, 2, none, none, cb, arg);
}

int tg_outbox_due(tg_outbox_t *ob, uint64_t within_ms, tg_outbox_count_cb cb, void *arg)
{
    if (within_ms > TG_OUTBOX_DELAY_MAX_MS)
        within_ms = TG_OUTBOX_DELAY_MAX_MS;
    db_query_t q = {.stmt = TG_STMT_DUE, .nparams = 1, .binary = true};
    q.params[0] = db_param_int8((int64_t)within_ms);
    tg_ob_op_t *op = tg_ob_new(TG_OB_DUE, 0, arg);
    op->cb.count = cb;
    return tg_ob_submit(ob, op, &q);
}

unsigned tg_outbox_pending(const tg_outbox_t *ob)
{
    return db_client_pending(ob->cl);
}
