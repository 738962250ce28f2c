/* SPDX-License-Identifier: MIT */
/*
 * processor.c - the per-chat ordered processor (tg_processor.h): claims of
 * chat heads with a lease, the handler run with its reads at once and its
 * effects kept, commits batched across chats with the processed mark first,
 * failures marked, retention and the processor's gauges. One unordered
 * client of db.h's transaction API carries all of it: claims, reads, commits
 * and housekeeping are independent transactions, spread over the connections.
 */
#include "tg_processor.h"

#include "core.h"
#include "log.h"
#include "met.h"

#include <assert.h>
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define TG_PROC_CAPACITY 256
#define TG_PROC_POLL_MS 250
#define TG_PROC_LEASE_MS 30000
#define TG_PROC_HANDLER_MS 10000
#define TG_PROC_RETENTION_EVERY_MS 60000
#define TG_PROC_GAUGES_MS 1000
/* Between two updates of the claims' lower bound (tgring_pending_low), ms. */
#define TG_PROC_FROM_MS 1000
/*
 * A claim starts at least this long after the previous one started. Part of
 * a claim's cost does not depend on how few updates it takes (the calls, the
 * walk's start; ~0.4 ms here while it was planned at every call, before
 * migrations/0009); kicked by every group commit of the inbox, claims under
 * load ran back to back and took 3 or 4 updates each, PostgreSQL spending
 * more on them than on storing the updates. With the gap each claim takes
 * what arrived in 2 ms; a processor that was idle claims at once.
 */
#define TG_PROC_CLAIM_GAP_MS 2
/* Commits of one update that failed for a passing reason before it is left to its lease. */
#define TG_PROC_COMMIT_TRIES 3

/* ---- statements ---- */

#define TG_PS_CLAIM "tgring_proc_claim"
#define TG_PS_RECLAIM "tgring_proc_reclaim"
#define TG_PS_MARK "tgring_proc_mark"  /* the processed marks of a commit's updates */
#define TG_PS_FAIL "tgring_proc_fail"
#define TG_PS_SEND "tgring_proc_send"  /* a commit's Bot API calls */
#define TG_PS_GAUGES "tgring_proc_gauges"
#define TG_PS_PRUNE "tgring_proc_prune"
#define TG_PS_FROM "tgring_proc_from" /* the claims' next lower bound */

/*
 * $1 updates at most, $2 lease ms, $3 token, $4 the walk's lower bound: the
 * oldest unprocessed updates from $4 on that head their chat
 * (migrations/0006_claim_plans.sql and 0009_claim_from.sql say how and why
 * in a function). The second form, sent again after a lost connection, also
 * takes what the first attempt may have leased.
 */
#define TG_PROC_CLAIM_SQL(again)                                                                   \
    "SELECT update_id, chat_id, update_type, body, attempts "                                      \
    "FROM tgring_claim_updates($1, $2, $3, " again ", $4) ORDER BY update_id"

/* The types of statements whose parameters are all int8 (up to 4). */
static const uint32_t tg_ps_i8[4] = {DB_OID_INT8, DB_OID_INT8, DB_OID_INT8, DB_OID_INT8};
static const uint32_t tg_ps_fail_types[3] = {DB_OID_INT8, DB_OID_INT8, DB_OID_TEXT};
static const uint32_t tg_ps_mark_types[2] = {DB_OID_INT8_ARRAY, DB_OID_INT8_ARRAY};
static const uint32_t tg_ps_send_types[6] = {DB_OID_INT8_ARRAY, DB_OID_TEXT_ARRAY,
                                              DB_OID_TEXT_ARRAY, DB_OID_INT8_ARRAY,
                                              DB_OID_INT8, DB_OID_INT8};

static const db_stmt_t tg_proc_stmts[] = {
    {TG_PS_CLAIM, TG_PROC_CLAIM_SQL("false"), 4, tg_ps_i8},
    {TG_PS_RECLAIM, TG_PROC_CLAIM_SQL("true"), 4, tg_ps_i8},
    /* $1 the bound so far (INT64_MIN: none). */
    {TG_PS_FROM, "SELECT low FROM tgring_pending_low($1)", 1, tg_ps_i8},
    /* $1 the updates, $2 their claims' tokens (migrations/0007_outbox_handoff.sql). */
    {TG_PS_MARK, "SELECT tgring_mark_processed_many($1, $2)", 2, tg_ps_mark_types},
    /* Idempotent: a second run finds the update processed and changes nothing. */
    {TG_PS_FAIL,
     "UPDATE updates SET processed_at = now(), failed_at = now(), last_error = $3, "
     "claimed_until = NULL WHERE update_id = $1 AND claim_token = $2 AND processed_at IS NULL",
     3, tg_ps_fail_types},
    /*
     * Not idempotent alone: it only ever runs behind the marks of its
     * updates. $1..$4 the rows (chat, method, body, update) as arrays; $5
     * lease ms and $6 token lease them to this process's sender (both NULL:
     * the claims take them); it returns each row's id and its chat's
     * previous open row, in the arrays' order.
     */
    {TG_PS_SEND, "SELECT id, prev FROM tgring_outbox_add_many($1, $2, $3, $4, $5, $6)", 6,
     tg_ps_send_types},
    /* $1 the claims' lower bound: the lag is that of the lowest unprocessed update from it. */
    {TG_PS_GAUGES,
     "SELECT l.age_s, (SELECT count(*) FROM outbox WHERE sent_at IS NULL "
     "AND failed_at IS NULL AND not_before <= now()) FROM tgring_pending_low($1) l",
     1, tg_ps_i8},
    /*
     * $1 retention hours, $2 updates a round reads at most, $3 where it
     * starts: the processed updates due, in update_id order, up to the first
     * one that is not (migrations/0012_prune_by_id.sql). Returns how many it
     * deleted and the highest (NULL: none), where the next round starts.
     */
    {TG_PS_PRUNE, "SELECT pruned, upto FROM tgring_prune_updates($1, $2, $3)", 3, tg_ps_i8},
};

/* ---- state ---- */

typedef enum tg_proc_state {
    TG_PS_RUNNING = 1, /* the handler has it */
    TG_PS_READY,       /* done: waits for a commit */
    TG_PS_COMMITTING,  /* in a commit transaction */
    TG_PS_FAILING,     /* failed: waits for (or is in) its failed mark */
} tg_proc_state_t;

/* One kept effect: a statement with its parameters' bytes. */
typedef struct tg_proc_eff {
    db_query_t q; /* params point into bytes */
    char *bytes;
    bool call;    /* a Bot API call (tg_proc_send()): q holds the row, not a statement to run */
} tg_proc_eff_t;

struct tg_proc_ctx {
    tg_proc_t *p;
    core_qlink_t link; /* in p->ready or p->failing */
    tg_proc_state_t state;
    unsigned slot;      /* index in p->slots */
    bool finished;      /* done, failed or past its deadline: no more handler calls */
    bool released;      /* the processor is done with it; freed once no read is in flight */
    bool overflow;      /* an effect past TG_PROC_EFFECTS_MAX was refused */
    bool handed;        /* given to the handler: opt.release runs when it is freed */
    bool solo;          /* committed alone: a commit with others failed, nobody knows for whom */
    unsigned reads;     /* queries in flight */
    unsigned tries;     /* commits or failed marks that failed for a passing reason */
    int64_t token;      /* the claim's */
    int64_t now;        /* wall clock at the claim, ms since the epoch */
    uint64_t claimed_ns; /* monotonic, its claim answered; 0 once its first commit went */
    uint64_t deadline;  /* loop ms */
    char *error;        /* the failure, for last_error */
    tg_proc_eff_t *eff; /* [neff] effects */
    unsigned neff, effcap;
    char *body; /* the stored body, NUL-terminated */
    jsmntok_t *tok;
    tg_proc_update_t u;
    alignas(max_align_t) unsigned char data[]; /* opt.ctx_size bytes for the application */
};

/* A commit transaction: which update owns which statements. */
typedef struct tg_proc_batch {
    tg_proc_t *p;
    int64_t token;         /* its Bot API calls are leased under it to the sender (0: not) */
    uint64_t submitted_ms; /* loop time it was submitted */
    uint64_t sent_ns;      /* monotonic, submitted (tgring_processor_commit_seconds) */
    unsigned n;
    tg_proc_ctx_t *items[DB_TXN_MAX];
    /*
     * Statement 0 marks every item processed; then each item's writes, item
     * i's from first[i]; then every item's Bot API calls in one statement,
     * in item order (unless in_order); sends[] says which statements those
     * are.
     */
    unsigned first[DB_TXN_MAX + 1]; /* first[n]: where the writes end */
    /*
     * One update whose writes follow one of its calls (a write may queue
     * outbox rows itself, which must stay behind that call): its statements
     * in its own order, each call one statement, from statement 1.
     */
    bool in_order;
    bool sends[DB_TXN_MAX]; /* statement k inserts Bot API calls */
} tg_proc_batch_t;

/* A read in flight. */
typedef struct tg_proc_read {
    tg_proc_ctx_t *ctx;
    tg_proc_query_cb cb;
    void *arg;
} tg_proc_read_t;

/* Tokens of the processor's scratch: an update that fits is parsed once, then copied. */
#define TG_PROC_SCRATCH_TOKENS 1024

struct tg_proc {
    rx_loop_t *loop;
    tg_proc_options_t opt;
    db_client_t *cl;
    db_stmt_t *stmts; /* the processor's and the application's, as registered */
    unsigned nstmts;
    tg_proc_ctx_t **slots; /* [opt.capacity], NULL = free */
    unsigned nprogress;    /* slots in use */
    unsigned zombies;      /* released contexts waiting for their reads */
    core_queue_t ready;    /* done, waiting for a commit, oldest first */
    core_queue_t failing;  /* failed, waiting for their failed mark */
    rx_timer_t poll;
    rx_timer_t gap;        /* until a claim may start again (TG_PROC_CLAIM_GAP_MS) */
    uint64_t last_claim;   /* loop ms the latest claim was sent */
    rx_defer_t defer;
    bool want_claim;      /* claim at the next chance */
    bool claiming;        /* a claim is in flight */
    bool gauging;         /* a gauge sample is in flight */
    bool fromming;        /* a tgring_pending_low is in flight */
    bool pruning;         /* a retention statement is in flight */
    bool stopping;        /* tg_proc_stop(): no more claims */
    bool detached;        /* tg_proc_detach(): nothing more is submitted */
    uint64_t next_gauges; /* loop ms */
    uint64_t next_prune;  /* loop ms */
    int64_t prune_from;   /* the next retention round starts above it (INT64_MIN at start) */
    jsmntok_t scratch_tok[TG_PROC_SCRATCH_TOKENS]; /* tg_proc_parse()'s */
    /*
     * The claims' lower bound (INT64_MIN: none yet): no unprocessed update
     * below it but what other processes stored since the last unbounded
     * tgring_pending_low. from_seen: the lowest update stored here since the
     * one in flight was sent (INT64_MAX: none).
     */
    int64_t from;
    int64_t from_seen;
    uint64_t next_from;     /* loop ms of the next tgring_pending_low */
    uint64_t next_from_all; /* loop ms of the next one without a bound */
    uint64_t last_poll;     /* loop ms of the previous poll */
    uint64_t token_base;
    uint64_t next_token;
    void (*on_idle)(void *arg);
    void *idle_arg;
};

static void tg_proc_schedule(tg_proc_t *p);

/* ---- helpers ---- */

/* The registered statement named `name`, or NULL. */
static const db_stmt_t *tg_proc_stmt(const tg_proc_t *p, const char *name)
{
    for (unsigned i = ARRAY_SIZE(tg_proc_stmts); i < p->nstmts; i++)
        if (strcmp(p->stmts[i].name, name) == 0)
            return &p->stmts[i];
    return NULL;
}

/* A heap copy of s as valid UTF-8 of at most TG_PROC_ERROR_MAX bytes (core_utf8_copy). */
static char *tg_proc_error_copy(const char *s)
{
    char *dst = xmalloc(TG_PROC_ERROR_MAX + 1);
    dst[core_utf8_copy(dst, TG_PROC_ERROR_MAX, s)] = '\0';
    return dst;
}

static void tg_proc_ctx_free(tg_proc_ctx_t *ctx)
{
    if (ctx->handed && ctx->p->opt.release != NULL)
        ctx->p->opt.release(ctx->p->opt.app, ctx);
    for (unsigned i = 0; i < ctx->neff; i++)
        free(ctx->eff[i].bytes);
    free(ctx->eff);
    free(ctx->error);
    free(ctx->body);
    free(ctx->tok);
    free(ctx);
}

/* The processor is done with ctx: its slot is free; its memory goes once no read is in flight. */
static void tg_proc_release(tg_proc_ctx_t *ctx)
{
    tg_proc_t *p = ctx->p;

    assert(!ctx->released);
    ctx->released = true;
    ctx->finished = true;
    p->slots[ctx->slot] = NULL;
    p->nprogress--;
    if (ctx->reads == 0)
        tg_proc_ctx_free(ctx);
    else
        p->zombies++;
}

/* Pushes the items of q (in order) back at the head of `to`. */
static void tg_proc_push_back(core_queue_t *to, tg_proc_ctx_t **items, unsigned n)
{
    for (unsigned i = n; i-- > 0;)
        core_queue_push_head(to, &items[i]->link);
}

/* ---- failing ---- */

static void tg_proc_on_failed(void *arg, int err, const db_result_t *const *res, unsigned n)
{
    tg_proc_ctx_t *ctx = arg;
    tg_proc_t *p = ctx->p;

    if (err == 0) {
        if (db_res_affected(res[0]) == 1) {
            MET_INC(updates_failed);
            log_warn("update_failed", "update %lld marked failed: %s", (long long)ctx->u.update_id,
                     ctx->error);
        } else {
            MET_INC(updates_lost);
        }
        tg_proc_release(ctx);
    } else if (err == -ECANCELED || err == -EBADMSG || ++ctx->tries >= TG_PROC_COMMIT_TRIES) {
        /* Left to its lease: it is claimed again, and fails again, or is given up. */
        if (err != -ECANCELED)
            log_warn("update_fail_mark_failed", "update %lld: cannot mark it failed (%s)",
                     (long long)ctx->u.update_id, strerror(-err));
        tg_proc_release(ctx);
    } else {
        core_queue_push(&p->failing, &ctx->link);
    }
    tg_proc_schedule(p);
}

static void tg_proc_flush_failing(tg_proc_t *p)
{
    while (!core_queue_empty(&p->failing)) {
        tg_proc_ctx_t *ctx = container_of(core_queue_pop(&p->failing), tg_proc_ctx_t, link);
        db_query_t q = {.stmt = TG_PS_FAIL, .nparams = 3, .binary = true};
        q.params[0] = db_param_int8(ctx->u.update_id);
        q.params[1] = db_param_int8(ctx->token);
        q.params[2] = db_param_text(ctx->error, strlen(ctx->error));
        if (db_txn_submit(p->cl, &q, 1, tg_proc_on_failed, ctx) < 0) {
            core_queue_push_head(&p->failing, &ctx->link);
            return; /* the next poll tries again */
        }
    }
}

/* ---- committing ---- */

/* Bot API calls among ctx's effects. */
static unsigned tg_proc_sends(const tg_proc_ctx_t *ctx)
{
    unsigned n = 0;
    for (unsigned e = 0; e < ctx->neff; e++)
        n += ctx->eff[e].call;
    return n;
}

/*
 * A commit went through: the Bot API calls it leased to the sender go to
 * it. Returns true when some of its calls were not leased so (the claims
 * are to take them).
 */
static bool tg_proc_hand_off(const tg_proc_batch_t *b, const db_result_t *const *res, unsigned n)
{
    tg_proc_t *p = b->p;
    unsigned k = 0, row = 0, nout = 0, total = 0;

    for (unsigned i = 0; i < b->n; i++)
        total += tg_proc_sends(b->items[i]);
    if (total == 0)
        return false;
    if (b->token == 0)
        return true;
    tg_outbox_row_t *out = xcalloc(total, sizeof(*out));
    bool free_rows = false;
    /* The calls' rows come statement after statement, in the order the calls were kept. */
    for (unsigned i = 0; i < b->n; i++) {
        const tg_proc_ctx_t *ctx = b->items[i];
        for (unsigned e = 0; e < ctx->neff; e++) {
            const db_query_t *q = &ctx->eff[e].q;
            int64_t id, prev = 0;
            if (!ctx->eff[e].call)
                continue;
            while (k < n && (!b->sends[k] || res[k] == NULL || row >= db_res_rows(res[k]))) {
                k++;
                row = 0;
            }
            if (k >= n || !db_res_int(res[k], row, 0, &id)) {
                free_rows = true; /* cannot happen: a row per call, in order */
                continue;
            }
            if (!db_res_null(res[k], row, 1))
                db_res_int(res[k], row, 1, &prev);
            row++;
            out[nout++] = (tg_outbox_row_t){
                .id = id,
                .chat_id = q->params[0].i,
                .method = q->params[1].ptr,
                .method_len = q->params[1].len,
                .body = q->params[2].ptr,
                .body_len = q->params[2].len,
                .prev_id = prev,
                .token = b->token,
            };
        }
    }
    if (nout > 0)
        p->opt.on_handoff(p->opt.outbox_arg, out, nout, b->submitted_ms);
    free(out);
    return free_rows;
}

static void tg_proc_on_commit(void *arg, int err, const db_result_t *const *res, unsigned n)
{
    tg_proc_batch_t *b = arg;
    tg_proc_t *p = b->p;

    if (err != -ECANCELED)
        met_observe_latency(&met_self()->processor_commit,
                            (double)(core_mono_ns() - b->sent_ns) / 1e9);
    if (err == 0) {
        bool free_rows = tg_proc_hand_off(b, res, n);
        for (unsigned i = 0; i < b->n; i++) {
            MET_INC(updates_processed);
            tg_proc_release(b->items[i]);
        }
        p->want_claim = true; /* their chats' next updates are heads now */
        if (free_rows && p->opt.on_outbox != NULL)
            p->opt.on_outbox(p->opt.outbox_arg);
    } else if (err == -EBADMSG) {
        unsigned k = 0, j = 0;
        while (k < n && (res[k] == NULL || db_res_sqlstate(res[k]) == NULL))
            k++;
        while (j + 1 < b->n && b->first[j + 1] <= k)
            j++; /* the item whose writes hold statement k, unless k is a shared one */
        if (k >= n) {
            /* No statement says why: as for a passing failure. */
            for (unsigned i = 0; i < b->n; i++)
                b->items[i]->state = TG_PS_READY;
            tg_proc_push_back(&p->ready, b->items, b->n);
            free(b);
            tg_proc_schedule(p);
            return;
        }
        bool shared = k == 0 || b->sends[k];
        if (shared && b->n > 1) {
            /* The marks or the calls of several updates: each is committed alone to find whose. */
            for (unsigned i = b->n; i-- > 0;) {
                b->items[i]->state = TG_PS_READY;
                b->items[i]->solo = true;
                core_queue_push_head(&p->ready, &b->items[i]->link);
            }
            free(b);
            tg_proc_schedule(p);
            return;
        }
        if (shared)
            j = 0;
        tg_proc_ctx_t *bad = b->items[j];
        if (k == 0) {
            /* Its mark raised: committed before (a resend) or taken by another process. */
            MET_INC(updates_lost);
            log_debug("update_lost", "update %lld: processed already or held by another claim",
                      (long long)bad->u.update_id);
            tg_proc_release(bad);
        } else {
            char msg[256], why[512];
            const char *stmt = "tgring_outbox_add_many";
            for (unsigned e = 0, w = b->first[j]; !shared && e < bad->neff; e++) {
                if (!b->in_order && bad->eff[e].call)
                    continue;
                if (w++ == k) {
                    stmt = bad->eff[e].q.stmt;
                    break;
                }
            }
            snprintf(why, sizeof(why), "%s refused: SQLSTATE %s: %s", stmt,
                     db_res_sqlstate(res[k]), db_res_message(res[k], msg, sizeof(msg)));
            free(bad->error);
            bad->error = tg_proc_error_copy(why);
            bad->state = TG_PS_FAILING;
            core_queue_push(&p->failing, &bad->link);
        }
        b->items[j] = NULL;
        for (unsigned i = b->n; i-- > 0;)
            if (b->items[i] != NULL) {
                b->items[i]->state = TG_PS_READY;
                core_queue_push_head(&p->ready, &b->items[i]->link);
            }
    } else if (err == -ECANCELED) {
        for (unsigned i = 0; i < b->n; i++)
            tg_proc_release(b->items[i]);
    } else {
        /* Unknown outcome or a passing failure: the mark makes a second commit safe. */
        unsigned keep = 0;
        for (unsigned i = 0; i < b->n; i++) {
            tg_proc_ctx_t *ctx = b->items[i];
            if (++ctx->tries >= TG_PROC_COMMIT_TRIES) {
                log_warn("update_commit_failed",
                         "update %lld: commit failed %u times (%s); it is processed again when "
                         "its lease runs out",
                         (long long)ctx->u.update_id, ctx->tries, strerror(-err));
                tg_proc_release(ctx);
                continue;
            }
            ctx->state = TG_PS_READY;
            b->items[keep++] = ctx;
        }
        tg_proc_push_back(&p->ready, b->items, keep);
    }
    free(b);
    tg_proc_schedule(p);
}

/* True when one of ctx's writes follows one of its Bot API calls. */
static bool tg_proc_write_after_send(const tg_proc_ctx_t *ctx)
{
    bool sent = false;
    for (unsigned e = 0; e < ctx->neff; e++) {
        bool send = ctx->eff[e].call;
        if (!send && sent)
            return true;
        sent |= send;
    }
    return false;
}

/* The rows of one TG_PS_SEND statement: chats, methods, bodies, updates. */
typedef struct tg_proc_calls {
    db_array_t a[4];
} tg_proc_calls_t;

static void tg_proc_calls_begin(tg_proc_calls_t *c)
{
    db_array_begin(&c->a[0], DB_OID_INT8);
    db_array_begin(&c->a[1], DB_OID_TEXT);
    db_array_begin(&c->a[2], DB_OID_TEXT);
    db_array_begin(&c->a[3], DB_OID_INT8);
}

/* Adds the Bot API call kept as `q` (tg_proc_send()'s parameters). */
static void tg_proc_calls_add(tg_proc_calls_t *c, const db_query_t *q)
{
    db_array_int8(&c->a[0], q->params[0].i);
    db_array_bytes(&c->a[1], q->params[1].ptr, q->params[1].len);
    db_array_bytes(&c->a[2], q->params[2].ptr, q->params[2].len);
    db_array_int8(&c->a[3], q->params[3].i);
}

/* The statement inserting c's rows, leased under token unless 0. Valid while c is. */
static db_query_t tg_proc_calls_query(tg_proc_calls_t *c, int64_t token, uint32_t lease_ms)
{
    db_query_t q = {.stmt = TG_PS_SEND, .nparams = 6, .binary = true};
    for (unsigned k = 0; k < 4; k++)
        q.params[k] = db_array_param(&c->a[k]);
    if (token != 0) {
        q.params[4] = db_param_int8(lease_ms);
        q.params[5] = db_param_int8(token);
    }
    return q;
}

/*
 * Commits what is ready, as few transactions as DB_TXN_MAX allows: the
 * marks of all a transaction's updates in one statement, their writes, their
 * Bot API calls in one statement. An update whose commit with others failed
 * for a reason nobody could pin on one of them goes alone, and so does one
 * whose writes follow a call of its own (see tg_proc_batch_t.in_order).
 */
static void tg_proc_flush_ready(tg_proc_t *p)
{
    db_array_t marks[2] = {0};
    tg_proc_calls_t *calls = NULL; /* one per TG_PS_SEND statement */
    unsigned calls_cap = 0;

    while (!core_queue_empty(&p->ready)) {
        db_query_t q[DB_TXN_MAX];
        unsigned nq = 1, nsend = 0, ncalls = 0;
        uint32_t lease_ms = 0;
        tg_proc_batch_t *b = xcalloc(1, sizeof(*b));
        b->p = p;
        b->submitted_ms = rx_now(p->loop);
        while (!core_queue_empty(&p->ready)) {
            tg_proc_ctx_t *ctx = container_of(p->ready.head, tg_proc_ctx_t, link);
            unsigned sends = tg_proc_sends(ctx);
            bool in_order = tg_proc_write_after_send(ctx);
            if (b->n > 0 && (ctx->solo || in_order || b->items[0]->solo ||
                             nq + ctx->neff - sends + 1 > DB_TXN_MAX || b->n == DB_TXN_MAX))
                break;
            core_queue_pop(&p->ready);
            b->items[b->n] = ctx;
            b->first[b->n++] = nq;
            nsend += sends;
            b->in_order = in_order;
            for (unsigned i = 0; i < ctx->neff; i++)
                if (in_order || !ctx->eff[i].call)
                    q[nq++] = ctx->eff[i].q; /* calls in order: replaced below */
            if (in_order || ctx->solo)
                break;
        }
        b->first[b->n] = nq;
        if (nsend > 0 && p->opt.handoff_token != NULL && p->opt.on_handoff != NULL)
            b->token = p->opt.handoff_token(p->opt.outbox_arg, &lease_ms);
        unsigned want = b->in_order ? nsend : nsend > 0;
        if (want > calls_cap) {
            calls = xrealloc(calls, want * sizeof(*calls));
            memset(calls + calls_cap, 0, (want - calls_cap) * sizeof(*calls));
            calls_cap = want;
        }
        /* In order, statement k is effect k - 1 of the one update. */
        for (unsigned k = 1; b->in_order && k < nq; k++) {
            if (!b->items[0]->eff[k - 1].call)
                continue;
            tg_proc_calls_begin(&calls[ncalls]);
            tg_proc_calls_add(&calls[ncalls], &q[k]);
            q[k] = tg_proc_calls_query(&calls[ncalls++], b->token, lease_ms);
            b->sends[k] = true;
        }
        if (nsend > 0 && !b->in_order) {
            tg_proc_calls_begin(&calls[0]);
            for (unsigned i = 0; i < b->n; i++) {
                const tg_proc_ctx_t *ctx = b->items[i];
                for (unsigned e = 0; e < ctx->neff; e++)
                    if (ctx->eff[e].call)
                        tg_proc_calls_add(&calls[0], &ctx->eff[e].q);
            }
            b->sends[nq] = true;
            q[nq++] = tg_proc_calls_query(&calls[0], b->token, lease_ms);
        }
        db_array_begin(&marks[0], DB_OID_INT8);
        db_array_begin(&marks[1], DB_OID_INT8);
        for (unsigned i = 0; i < b->n; i++) {
            db_array_int8(&marks[0], b->items[i]->u.update_id);
            db_array_int8(&marks[1], b->items[i]->token);
        }
        q[0] = (db_query_t){.stmt = TG_PS_MARK, .nparams = 2};
        q[0].params[0] = db_array_param(&marks[0]);
        q[0].params[1] = db_array_param(&marks[1]);
        /* The parameters are copied here: the arrays are free for the next transaction. */
        if (db_txn_submit(p->cl, q, nq, tg_proc_on_commit, b) < 0) {
            tg_proc_push_back(&p->ready, b->items, b->n);
            free(b);
            break; /* the next poll tries again */
        }
        b->sent_ns = core_mono_ns();
        for (unsigned i = 0; i < b->n; i++) {
            tg_proc_ctx_t *ctx = b->items[i];
            ctx->state = TG_PS_COMMITTING;
            if (ctx->claimed_ns != 0) /* its first commit: tgring_processor_handle_seconds */
                met_observe_latency(&met_self()->processor_handle,
                                    (double)(b->sent_ns - ctx->claimed_ns) / 1e9);
            ctx->claimed_ns = 0;
        }
    }
    db_array_free(&marks[0]);
    db_array_free(&marks[1]);
    for (unsigned k = 0; k < calls_cap; k++)
        for (unsigned c = 0; c < 4; c++)
            db_array_free(&calls[k].a[c]);
    free(calls);
}

/* ---- claiming and running ---- */

static int64_t tg_proc_clock(const tg_proc_t *p)
{
    struct timespec ts;
    if (p->opt.clock != NULL)
        return p->opt.clock(p->opt.clock_arg);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Parses ctx's body into its own tokens. Returns 0 or the reason it cannot.
 * Into the processor's scratch first, copied out at the size it took; a
 * larger update is counted, then parsed into tokens of its own.
 */
static const char *tg_proc_parse(tg_proc_t *p, tg_proc_ctx_t *ctx)
{
    tg_json_scratch_t s = {p->scratch_tok, TG_PROC_SCRATCH_TOKENS};
    int rc = tg_update_parse(ctx->body, ctx->u.len, &s, &ctx->u.info);
    if (rc == 0) {
        int count = ctx->u.info.ntok;
        ctx->tok = xmalloc((size_t)count * sizeof(jsmntok_t));
        memcpy(ctx->tok, p->scratch_tok, (size_t)count * sizeof(jsmntok_t));
    } else if (rc == -E2BIG) {
        jsmn_parser jp;
        jsmn_init(&jp);
        int count = jsmn_parse(&jp, ctx->body, ctx->u.len, NULL, 0);
        if (count <= 0)
            return "the stored update is not JSON";
        if (count > TG_PROC_JSON_TOKENS)
            return "the stored update has too many JSON tokens";
        ctx->tok = xcalloc((size_t)count, sizeof(jsmntok_t));
        s = (tg_json_scratch_t){ctx->tok, (unsigned)count};
        rc = tg_update_parse(ctx->body, ctx->u.len, &s, &ctx->u.info);
    }
    if (rc < 0)
        return "the stored update is not a valid update";
    ctx->u.tok = ctx->tok;
    ctx->u.ntok = ctx->u.info.ntok;
    return NULL;
}

/* Takes row `row` of a claim into a new context and hands it to the handler. */
static void tg_proc_start(tg_proc_t *p, int64_t token, const db_result_t *r, unsigned row)
{
    int64_t id, attempts = 0;
    size_t len;
    const char *body = db_res_value(r, row, 3, &len);

    if (!db_res_int(r, row, 0, &id))
        return; /* cannot happen: the primary key */
    db_res_int(r, row, 4, &attempts);
    tg_proc_ctx_t *ctx = xcalloc(1, sizeof(*ctx) + p->opt.ctx_size);
    ctx->p = p;
    for (ctx->slot = 0; p->slots[ctx->slot] != NULL; ctx->slot++)
        assert(ctx->slot + 1 < p->opt.capacity);
    p->slots[ctx->slot] = ctx;
    p->nprogress++;
    ctx->token = token;
    ctx->now = tg_proc_clock(p);
    ctx->claimed_ns = core_mono_ns();
    ctx->deadline = rx_now(p->loop) + p->opt.handler_timeout_ms;
    ctx->body = xmalloc(len + 1);
    memcpy(ctx->body, body, len);
    ctx->body[len] = '\0';
    ctx->u.update_id = id;
    ctx->u.body = ctx->body;
    ctx->u.len = len;
    ctx->state = TG_PS_RUNNING;

    const char *bad = NULL;
    char why[96];
    if (attempts > TG_PROC_ATTEMPTS_MAX) {
        snprintf(why, sizeof(why), "claimed %lld times without finishing", (long long)attempts);
        bad = why;
    } else {
        bad = tg_proc_parse(p, ctx);
    }
    if (bad != NULL) {
        tg_proc_fail(ctx, bad);
        return;
    }
    if (p->opt.handler == NULL) {
        tg_proc_done(ctx);
        return;
    }
    ctx->handed = true;
    p->opt.handler(p->opt.app, ctx, &ctx->u);
}

typedef struct tg_proc_claim {
    tg_proc_t *p;
    int64_t token;
    unsigned asked;
    bool behind;      /* went behind a group commit: no kick comes for its updates */
    uint64_t sent_ns; /* monotonic, submitted (tgring_processor_claim_seconds) */
} tg_proc_claim_t;

static void tg_proc_on_claim(void *arg, int err, const db_result_t *const *res, unsigned n)
{
    tg_proc_claim_t *c = arg;
    tg_proc_t *p = c->p;

    p->claiming = false;
    if (err != -ECANCELED) {
        MET_INC(processor_claims);
        met_observe_latency(&met_self()->processor_claim,
                            (double)(core_mono_ns() - c->sent_ns) / 1e9);
    }
    if (err == 0 && db_res_cols(res[0]) == 5) {
        unsigned rows = db_res_rows(res[0]);
        /* Rows past the room left cannot come: the claim asked for no more. */
        for (unsigned i = 0; i < rows && p->nprogress < p->opt.capacity; i++)
            tg_proc_start(p, c->token, res[0], i);
        if (rows >= c->asked)
            p->want_claim = true;
    } else if (err != 0 && err != -ECANCELED) {
        log_debug("claim_failed", "claiming updates failed (%s); trying again %s",
                  strerror(-err), c->behind ? "now" : "at the next poll");
        /* Its batch's updates were not kicked for: one claim more the usual way. */
        if (c->behind)
            p->want_claim = true;
    }
    free(c);
    tg_proc_schedule(p);
}

static void tg_proc_on_gap(rx_loop_t *loop, rx_timer_t *t)
{
    (void)loop;
    tg_proc_schedule(container_of(t, tg_proc_t, gap));
}

/*
 * Sends a claim when one is wanted and allowed: from the inbox's batch hook,
 * behind the batch just sent (db_txn_submit_behind()), else as any other.
 */
static void tg_proc_claim(tg_proc_t *p)
{
    unsigned room = p->opt.capacity - p->nprogress;
    uint64_t now = rx_now(p->loop);

    if (!p->want_claim || p->claiming || p->stopping || room == 0 || !db_ready(db_client_db(p->cl)))
        return;
    if (now - p->last_claim < TG_PROC_CLAIM_GAP_MS) {
        if (!rx_timer_active(&p->gap))
            rx_timer_start(p->loop, &p->gap, p->last_claim + TG_PROC_CLAIM_GAP_MS - now,
                           tg_proc_on_gap);
        return;
    }
    tg_proc_claim_t *c = xcalloc(1, sizeof(*c));
    c->p = p;
    c->token = (int64_t)(p->token_base + p->next_token);
    c->asked = room;
    c->sent_ns = core_mono_ns();
    db_query_t q = {.stmt = TG_PS_CLAIM, .again = TG_PS_RECLAIM, .nparams = 4, .binary = true};
    q.params[0] = db_param_int8(room);
    q.params[1] = db_param_int8(p->opt.lease_ms);
    q.params[2] = db_param_int8(c->token);
    q.params[3] = db_param_int8(p->from);
    int rc = db_txn_submit_behind(p->cl, &q, 1, tg_proc_on_claim, c);
    if (rc < 0) {
        free(c);
        return;
    }
    if (rc == 1) {
        c->behind = true;
        MET_INC(processor_claims_behind);
    }
    p->next_token++;
    p->claiming = true;
    p->want_claim = false;
    p->last_claim = now;
}

/* ---- housekeeping ---- */

static void tg_proc_on_gauges(void *arg, int err, const db_result_t *const *res, unsigned n)
{
    tg_proc_t *p = arg;
    int64_t lag, depth;

    p->gauging = false;
    if (err == 0 && db_res_int(res[0], 0, 0, &lag) && db_res_int(res[0], 0, 1, &depth)) {
        met_self()->processor_lag_seconds = lag > 0 ? (uint64_t)lag : 0;
        met_self()->outbox_depth = depth > 0 ? (uint64_t)depth : 0;
    }
    tg_proc_schedule(p); /* a stop may wait for this one */
}

static void tg_proc_on_prune(void *arg, int err, const db_result_t *const *res, unsigned n)
{
    tg_proc_t *p = arg;

    p->pruning = false;
    tg_proc_schedule(p); /* a stop may wait for this one */
    if (err != 0)
        return;
    int64_t pruned = 0, upto;
    db_res_int(res[0], 0, 0, &pruned);
    if (db_res_int(res[0], 0, 1, &upto) && upto > p->prune_from)
        p->prune_from = upto;
    uint64_t gone = pruned > 0 ? (uint64_t)pruned : 0;
    met_self()->updates_pruned += gone;
    if (gone > 0)
        log_info("updates_pruned", "deleted %llu processed updates older than %u hours",
                 (unsigned long long)gone, p->opt.retention_hours);
    /* A full batch: more may be due; the next poll goes on. */
    if (gone >= TG_PROC_PRUNE_BATCH)
        p->next_prune = rx_now(p->loop);
}

/* Folds an update stored here into the claims' lower bound. */
static void tg_proc_from_fold(tg_proc_t *p, int64_t update_id)
{
    if (update_id < p->from)
        p->from = update_id;
    if (update_id < p->from_seen)
        p->from_seen = update_id;
}

/*
 * The inbox sent a batch whose lowest update_id is low: a claim sent now,
 * behind it on its connection, runs as soon as it has committed and finds
 * its updates without waiting for their acknowledgement to come back here.
 */
static void tg_proc_on_batch(void *arg, int64_t low)
{
    tg_proc_t *p = arg;

    tg_proc_from_fold(p, low);
    p->want_claim = true;
    tg_proc_claim(p);
}

static void tg_proc_on_from(void *arg, int err, const db_result_t *const *res, unsigned n)
{
    tg_proc_t *p = arg;
    int64_t low;

    p->fromming = false;
    /* Failed: the bound stays (lowered meanwhile by what was stored here). */
    if (err == 0 && db_res_int(res[0], 0, 0, &low))
        p->from = low < p->from_seen ? low : p->from_seen;
    tg_proc_schedule(p); /* a stop may wait for this one */
}

/*
 * The claims' lower bound, moved up every TG_PROC_FROM_MS to the lowest
 * unprocessed update from the bound on, and every half lease computed
 * without one: so what another process stored below it (and did not claim
 * itself: it died) is claimed within half a lease, and what it leased and
 * left once its lease is past, as without a bound.
 */
static void tg_proc_from_update(tg_proc_t *p)
{
    uint64_t now = rx_now(p->loop);

    if (p->fromming || p->stopping || now < p->next_from || !db_ready(db_client_db(p->cl)))
        return;
    bool all = now >= p->next_from_all;
    db_query_t q = {.stmt = TG_PS_FROM, .nparams = 1, .binary = true};
    q.params[0] = db_param_int8(all ? INT64_MIN : p->from);
    if (db_txn_submit(p->cl, &q, 1, tg_proc_on_from, p) < 0)
        return;
    p->fromming = true;
    p->from_seen = INT64_MAX;
    p->next_from = now + TG_PROC_FROM_MS;
    if (all)
        p->next_from_all = now + p->opt.lease_ms / 2;
}

static void tg_proc_housekeeping(tg_proc_t *p)
{
    uint64_t now = rx_now(p->loop);

    if (!p->opt.housekeeping || p->stopping || !db_ready(db_client_db(p->cl)))
        return;
    if (!p->gauging && now >= p->next_gauges) {
        db_query_t q = {.stmt = TG_PS_GAUGES, .nparams = 1, .binary = true};
        q.params[0] = db_param_int8(p->from);
        if (db_txn_submit(p->cl, &q, 1, tg_proc_on_gauges, p) == 0) {
            p->gauging = true;
            p->next_gauges = now + TG_PROC_GAUGES_MS;
        }
    }
    if (p->opt.retention_hours > 0 && !p->pruning && now >= p->next_prune) {
        db_query_t q = {.stmt = TG_PS_PRUNE, .nparams = 3, .binary = true};
        q.params[0] = db_param_int8(p->opt.retention_hours);
        q.params[1] = db_param_int8(TG_PROC_PRUNE_BATCH);
        q.params[2] = db_param_int8(p->prune_from);
        if (db_txn_submit(p->cl, &q, 1, tg_proc_on_prune, p) == 0) {
            p->pruning = true;
            p->next_prune = now + p->opt.retention_every_ms;
        }
    }
}

/* ---- the loop's side ---- */

static bool tg_proc_idle(const tg_proc_t *p)
{
    return p->nprogress == 0 && p->zombies == 0 && db_client_pending(p->cl) == 0;
}

static void tg_proc_on_defer(rx_loop_t *loop, rx_defer_t *d)
{
    tg_proc_t *p = container_of(d, tg_proc_t, defer);

    if (p->detached)
        return;
    tg_proc_flush_failing(p);
    tg_proc_flush_ready(p);
    tg_proc_claim(p);
    if (p->stopping && p->on_idle != NULL && tg_proc_idle(p)) {
        void (*cb)(void *) = p->on_idle;
        p->on_idle = NULL;
        cb(p->idle_arg);
    }
}

static void tg_proc_schedule(tg_proc_t *p)
{
    if (!p->detached)
        rx_defer(p->loop, &p->defer, tg_proc_on_defer);
}

static void tg_proc_on_poll(rx_loop_t *loop, rx_timer_t *t)
{
    tg_proc_t *p = container_of(t, tg_proc_t, poll);
    uint64_t now = rx_now(loop);
    char why[96];

    /*
     * A handler's clock stops while the database is away: it waits for its
     * reads, which are sent again on the next connection, and is not at
     * fault. (Its update's lease may run out meanwhile; another claim then
     * takes it and this one's commit is refused: nothing happens twice.)
     */
    bool db_up = db_ready(db_client_db(p->cl));
    for (unsigned i = 0; i < p->opt.capacity; i++) {
        tg_proc_ctx_t *ctx = p->slots[i];
        if (ctx != NULL && ctx->state == TG_PS_RUNNING && !db_up)
            ctx->deadline += now - p->last_poll;
        else if (ctx != NULL && ctx->state == TG_PS_RUNNING && now >= ctx->deadline) {
            snprintf(why, sizeof(why), "the handler did not finish within %u ms",
                     p->opt.handler_timeout_ms);
            tg_proc_fail(ctx, why);
        }
    }
    p->last_poll = now;
    p->want_claim = true;
    tg_proc_from_update(p);
    tg_proc_housekeeping(p);
    tg_proc_schedule(p);
    rx_timer_start(loop, t, p->opt.poll_ms, tg_proc_on_poll);
}

/* ---- interface ---- */

tg_proc_t *tg_proc_new(rx_loop_t *loop, const tg_proc_options_t *opt)
{
    tg_proc_t *p = xcalloc(1, sizeof(*p));
    uint64_t seed = 0;

    p->loop = loop;
    p->opt = *opt;
    if (p->opt.capacity == 0)
        p->opt.capacity = TG_PROC_CAPACITY;
    if (p->opt.poll_ms == 0)
        p->opt.poll_ms = TG_PROC_POLL_MS;
    if (p->opt.lease_ms == 0)
        p->opt.lease_ms = TG_PROC_LEASE_MS;
    if (p->opt.handler_timeout_ms == 0)
        p->opt.handler_timeout_ms = TG_PROC_HANDLER_MS;
    if (p->opt.retention_every_ms == 0)
        p->opt.retention_every_ms = TG_PROC_RETENTION_EVERY_MS;
    if (p->opt.username == NULL)
        p->opt.username = "";
    p->nstmts = ARRAY_SIZE(tg_proc_stmts) + opt->nstmts;
    p->stmts = xcalloc(p->nstmts, sizeof(*p->stmts));
    memcpy(p->stmts, tg_proc_stmts, sizeof(tg_proc_stmts));
    if (opt->nstmts > 0)
        memcpy(p->stmts + ARRAY_SIZE(tg_proc_stmts), opt->stmts, opt->nstmts * sizeof(db_stmt_t));
    p->slots = xcalloc(p->opt.capacity, sizeof(*p->slots));
    core_queue_init(&p->ready);
    core_queue_init(&p->failing);
    db_client_options_t co = {
        .name = "processor",
        .stmts = p->stmts,
        .nstmts = p->nstmts,
        /* Reads of every update in progress, their commits, a claim and housekeeping. */
        .max_pending = 16 * p->opt.capacity + 64,
        .max_inflight = 32,
    };
    p->cl = db_client_new(opt->db, &co);
    db_set_batch_hook(opt->db, tg_proc_on_batch, p);
    /* Tokens need only differ between live claims, across processes: a random start will do. */
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    }
    p->token_base = seed >> 1; /* a positive bigint */
    p->want_claim = true;
    p->next_gauges = rx_now(loop);
    p->next_prune = rx_now(loop);
    p->prune_from = INT64_MIN;
    p->last_poll = rx_now(loop);
    p->from = INT64_MIN;
    p->from_seen = INT64_MAX;
    p->next_from = rx_now(loop);
    p->next_from_all = rx_now(loop) + p->opt.lease_ms / 2;
    rx_timer_start(loop, &p->poll, 0, tg_proc_on_poll);
    return p;
}

void tg_proc_kick(tg_proc_t *p, int64_t update_id)
{
    if (p == NULL || p->detached)
        return;
    tg_proc_from_fold(p, update_id);
    p->want_claim = true;
    tg_proc_schedule(p);
}

void tg_proc_stop(tg_proc_t *p, void (*on_idle)(void *arg), void *arg)
{
    p->stopping = true;
    p->on_idle = on_idle;
    p->idle_arg = arg;
    tg_proc_schedule(p);
}

void tg_proc_detach(tg_proc_t *p)
{
    p->detached = true;
    p->on_idle = NULL;
    db_set_batch_hook(db_client_db(p->cl), NULL, NULL);
    rx_timer_stop(p->loop, &p->poll);
    rx_timer_stop(p->loop, &p->gap);
}

void tg_proc_free(tg_proc_t *p)
{
    if (p == NULL)
        return;
    rx_timer_stop(p->loop, &p->poll);
    rx_timer_stop(p->loop, &p->gap);
    for (unsigned i = 0; i < p->opt.capacity; i++)
        if (p->slots[i] != NULL)
            tg_proc_ctx_free(p->slots[i]);
    free(p->slots);
    free(p->stmts);
    free(p);
}

unsigned tg_proc_in_progress(const tg_proc_t *p)
{
    return p->nprogress;
}

/* ---- the handler's context ---- */

void *tg_proc_ctx_data(tg_proc_ctx_t *ctx)
{
    return ctx->data;
}

tg_proc_ctx_t *tg_proc_ctx_of(void *data)
{
    return container_of(data, tg_proc_ctx_t, data);
}

const tg_proc_update_t *tg_proc_ctx_update(const tg_proc_ctx_t *ctx)
{
    return &ctx->u;
}

int64_t tg_proc_now(const tg_proc_ctx_t *ctx)
{
    return ctx->now;
}

const char *tg_proc_username(const tg_proc_ctx_t *ctx)
{
    return ctx->p->opt.username;
}

static void tg_proc_on_read(void *arg, int err, const db_result_t *const *res, unsigned n)
{
    tg_proc_read_t *rd = arg;
    tg_proc_ctx_t *ctx = rd->ctx;
    tg_proc_t *p = ctx->p;

    assert(ctx->reads > 0);
    ctx->reads--;
    if (ctx->finished || p->detached)
        err = -ECANCELED;
    rd->cb(ctx, err, err == 0 || err == -EBADMSG ? res[0] : NULL, rd->arg);
    free(rd);
    if (ctx->released && ctx->reads == 0) {
        p->zombies--;
        tg_proc_ctx_free(ctx);
    }
    tg_proc_schedule(p);
}

/* Checks a handler's statement. OUT: *st. Returns 0, -EPIPE, -ENOENT or -EINVAL. */
static int tg_proc_check(tg_proc_ctx_t *ctx, const char *stmt, unsigned n, const db_stmt_t **st)
{
    if (ctx->finished)
        return -EPIPE;
    *st = stmt != NULL ? tg_proc_stmt(ctx->p, stmt) : NULL;
    if (*st == NULL)
        return -ENOENT;
    if (n != (unsigned)(*st)->nparams || n > DB_PARAMS_MAX)
        return -EINVAL;
    return 0;
}

int tg_proc_query(tg_proc_ctx_t *ctx, const char *stmt, const db_param_t *params, unsigned n,
                  tg_proc_query_cb cb, void *arg)
{
    const db_stmt_t *st;
    int r = tg_proc_check(ctx, stmt, n, &st);

    assert(cb != NULL);
    if (r < 0)
        return r;
    db_query_t q = {.stmt = st->name, .nparams = n};
    for (unsigned i = 0; i < n; i++)
        q.params[i] = params[i];
    tg_proc_read_t *rd = xcalloc(1, sizeof(*rd));
    rd->ctx = ctx;
    rd->cb = cb;
    rd->arg = arg;
    r = db_txn_submit(ctx->p->cl, &q, 1, tg_proc_on_read, rd);
    if (r < 0) {
        free(rd);
        return r;
    }
    ctx->reads++;
    return 0;
}

/* Keeps registered statement `name` with params[0..n) (copied) as the next effect. */
static int tg_proc_keep(tg_proc_ctx_t *ctx, const char *name, const db_param_t *params, unsigned n)
{
    size_t bytes = 0;

    if (ctx->neff >= TG_PROC_EFFECTS_MAX) {
        ctx->overflow = true;
        return -E2BIG;
    }
    if (ctx->neff == ctx->effcap) {
        ctx->effcap = ctx->effcap ? 2 * ctx->effcap : 4;
        ctx->eff = xrealloc(ctx->eff, ctx->effcap * sizeof(*ctx->eff));
    }
    for (unsigned i = 0; i < n; i++)
        if (params[i].kind == DB_PARAM_TEXT || params[i].kind == DB_PARAM_BINARY)
            bytes += params[i].len;
    tg_proc_eff_t *e = &ctx->eff[ctx->neff++];
    memset(e, 0, sizeof(*e));
    e->bytes = bytes > 0 ? xmalloc(bytes) : NULL;
    e->q.stmt = name;
    e->q.nparams = n;
    e->q.binary = true;
    char *b = e->bytes;
    for (unsigned i = 0; i < n; i++) {
        e->q.params[i] = params[i];
        if (params[i].kind == DB_PARAM_TEXT || params[i].kind == DB_PARAM_BINARY) {
            /* An empty value still needs a pointer: libpq reads text up to a NUL. */
            if (params[i].len == 0) {
                e->q.params[i].ptr = "";
                continue;
            }
            memcpy(b, params[i].ptr, params[i].len);
            e->q.params[i].ptr = b;
            b += params[i].len;
        }
    }
    return 0;
}

int tg_proc_exec(tg_proc_ctx_t *ctx, const char *stmt, const db_param_t *params, unsigned n)
{
    const db_stmt_t *st;
    int r = tg_proc_check(ctx, stmt, n, &st);
    return r < 0 ? r : tg_proc_keep(ctx, st->name, params, n);
}

int tg_proc_send(tg_proc_ctx_t *ctx, int64_t chat_id, const char *method, const char *json,
                 size_t len)
{
    if (ctx->finished)
        return -EPIPE;
    if (method == NULL || method[0] == '\0' || json == NULL || memchr(json, '\0', len) != NULL)
        return -EINVAL;
    /* Kept as the row's values; the commit sends all its rows in one statement. */
    db_param_t params[4] = {
        db_param_int8(chat_id),
        db_param_text(method, strlen(method)),
        db_param_text(json, len),
        db_param_int8(ctx->u.update_id),
    };
    int r = tg_proc_keep(ctx, TG_PS_SEND, params, 4);
    if (r == 0)
        ctx->eff[ctx->neff - 1].call = true;
    return r;
}

void tg_proc_done(tg_proc_ctx_t *ctx)
{
    char why[96];

    if (ctx->finished)
        return;
    if (ctx->overflow) {
        snprintf(why, sizeof(why), "more than %d effects (writes and Bot API calls)",
                 TG_PROC_EFFECTS_MAX);
        tg_proc_fail(ctx, why);
        return;
    }
    ctx->finished = true;
    ctx->state = TG_PS_READY;
    core_queue_push(&ctx->p->ready, &ctx->link);
    tg_proc_schedule(ctx->p);
}

void tg_proc_fail(tg_proc_ctx_t *ctx, const char *why)
{
    if (ctx->finished)
        return;
    ctx->finished = true;
    for (unsigned i = 0; i < ctx->neff; i++)
        free(ctx->eff[i].bytes);
    ctx->neff = 0;
    free(ctx->error);
    ctx->error = tg_proc_error_copy(why != NULL ? why : "failed");
    ctx->state = TG_PS_FAILING;
    core_queue_push(&ctx->p->failing, &ctx->link);
    tg_proc_schedule(ctx->p);
}
