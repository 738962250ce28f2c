/* SPDX-License-Identifier: MIT */
/*
 * test_sender.c - the outbox sender's decisions (src/tg/sender.c, included)
 * with what lies below it faked here: the outbox store (tg_outbox.h) is a
 * small table in memory that records every claim and mark and, like the
 * real claim, hands out only the oldest open row of each chat; the HTTP pool
 * (httpc_request(), beneath tg_call_start()) records every Bot API call and
 * lets the test answer it with a status and body of its choosing, or with a
 * transport error. Answers still go through the real tg_api_parse(). The
 * leader lock (db_lock_*() of db.h) is a switch the test flips.
 *
 * Time is the loop's own: the test moves loop.now and fires the timers that
 * fall due itself, so seconds of retry_after and backoff pass at once and
 * every run sees the same clock. The checks are on the calls made (row, chat,
 * loop time, order) and the marks written (kind, row, delay, error), never on
 * elapsed wall-clock time.
 */
#include "../../../src/tg/sender.c"

#include "tap.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define TOKEN "123456:test-token"
#define ROWS_MAX 512
#define MARKS_MAX 1024
#define CALLS_MAX 512
#define OPS_MAX 256

#define OK_BODY "{\"ok\":true,\"result\":{\"message_id\":1}}"
#define BAD_GATEWAY "{\"ok\":false,\"error_code\":502,\"description\":\"Bad Gateway\"}"

static rx_loop_t loop;

/* ---- the fake outbox store ---- */

enum { ROW_DUE, ROW_CLAIMED, ROW_DONE };

typedef struct fake_row {
    int64_t id;
    int64_t chat_id;
    int attempts;
    int state;           /* ROW_* */
    uint64_t not_before; /* loop ms: not claimed before */
    uint64_t claimed_at; /* loop ms of the latest claim */
    const char *method;  /* "sendMessage" unless a case says otherwise */
    int64_t token;       /* the latest claim's token */
    char body[96];
} fake_row_t;

typedef struct fake_mark {
    int what; /* REC_SENT, REC_RETRY, ... as sender.c names its decisions */
    int64_t id;
    uint64_t delay_ms; /* of a retry */
    char error[TG_OUTBOX_ERROR_MAX + 1];
    int64_t chat_id; /* the new chat of a retarget */
    uint64_t at;     /* loop ms */
    uint64_t held;   /* ms since the row's latest claim */
    bool stale;      /* made under another claim's token than the row's: changed nothing */
} fake_mark_t;

/* An operation whose callback is owed; answered from the loop, in the order made. */
typedef struct fake_op {
    tg_outbox_claim_cb claim_cb; /* a claim, or else */
    tg_outbox_done_cb done_cb;   /* a mark (may be NULL) */
    void *arg;
    unsigned max; /* rows, of a claim */
    uint64_t at;  /* loop ms it was made: a claim's lease starts then */
    int err;      /* a mark's answer */
} fake_op_t;

static struct {
    fake_row_t rows[ROWS_MAX]; /* in id order */
    unsigned nrows;
    fake_mark_t marks[MARKS_MAX];
    unsigned nmarks;
    fake_op_t ops[OPS_MAX];
    unsigned nops;
    unsigned claims;         /* claims made */
    unsigned sent_batches;   /* tg_outbox_sent_many() calls */
    unsigned release_batches; /* tg_outbox_release_many() calls */
    bool stale_snapshot;     /* claims ignore what holds rows back, as a snapshot taken
                                before a row was put back would; for one claim */
    unsigned claim_max;      /* `max` of the first claim */
    unsigned claim_lease_ms; /* `lease_ms` of the first claim */
    bool refuse_retarget;    /* retargets fail -EBADMSG, the row unchanged (a body not JSON) */
    int64_t next_token;      /* of the next claim */
    bool hold_claims;        /* claims wait unanswered until answer_claims() */
    bool down;               /* every claim and mark gets -EAGAIN, as with no connection ready */
    unsigned reset_marks;    /* the next marks are answered -ECONNRESET, unwritten */
    unsigned lost;           /* marks answered so */
    rx_defer_t defer;
} ob;

static void add_row(int64_t id, int64_t chat_id, int attempts)
{
    assert(ob.nrows < ROWS_MAX);
    assert(ob.nrows == 0 || ob.rows[ob.nrows - 1].id < id);
    fake_row_t *r = &ob.rows[ob.nrows++];
    memset(r, 0, sizeof(*r));
    r->id = id;
    r->chat_id = chat_id;
    r->attempts = attempts;
    r->method = "sendMessage";
    snprintf(r->body, sizeof(r->body), "{\"chat_id\":%lld,\"row\":%lld}", (long long)chat_id,
             (long long)id);
}

static fake_row_t *find_row(int64_t id)
{
    for (unsigned i = 0; i < ob.nrows; i++)
        if (ob.rows[i].id == id)
            return &ob.rows[i];
    assert(!"a mark for a row the store never had");
    return NULL;
}

/*
 * True when an older open row of rows[i]'s chat holds it back: one that is
 * neither claimed (held by the sender) nor due now, so not taken ahead of it.
 */
static bool behind_older(unsigned i)
{
    for (unsigned j = 0; j < i; j++) {
        const fake_row_t *r = &ob.rows[j];
        if (r->chat_id == ob.rows[i].chat_id && r->state != ROW_DONE && r->state != ROW_CLAIMED &&
            !(r->state == ROW_DUE && r->not_before <= loop.now))
            return true;
    }
    return false;
}

/* The next older open row of rows[i]'s chat, 0 when none. */
static int64_t prev_open(unsigned i)
{
    for (unsigned j = i; j-- > 0;)
        if (ob.rows[j].chat_id == ob.rows[i].chat_id && ob.rows[j].state != ROW_DONE)
            return ob.rows[j].id;
    return 0;
}

/* Claims rows as the real statement does: due rows that nothing holds back, oldest first. */
static void answer_claim(const fake_op_t *op)
{
    tg_outbox_row_t out[ROWS_MAX];
    unsigned n = 0;
    int64_t token = ++ob.next_token;
    for (unsigned i = 0; i < ob.nrows && n < op->max; i++) {
        fake_row_t *r = &ob.rows[i];
        if (r->state != ROW_DUE || r->not_before > loop.now ||
            (!ob.stale_snapshot && behind_older(i)))
            continue;
        int64_t prev = prev_open(i);
        r->state = ROW_CLAIMED;
        r->claimed_at = op->at;
        r->token = token;
        out[n++] = (tg_outbox_row_t){
            .id = r->id,
            .chat_id = r->chat_id,
            .method = r->method,
            .method_len = strlen(r->method),
            .body = r->body,
            .body_len = strlen(r->body),
            .attempts = r->attempts,
            .prev_id = prev,
            .token = token,
        };
    }
    ob.stale_snapshot = false; /* one claim only */
    op->claim_cb(op->arg, 0, out, n);
}

static void on_ob_defer(rx_loop_t *l, rx_defer_t *d)
{
    /* Operations made by these callbacks wait for the next pass, as a round trip would. */
    fake_op_t ops[OPS_MAX];
    unsigned n = ob.nops;
    memcpy(ops, ob.ops, n * sizeof(ops[0]));
    ob.nops = 0;
    for (unsigned i = 0; i < n; i++) {
        if (ops[i].claim_cb != NULL && ob.hold_claims)
            ob.ops[ob.nops++] = ops[i]; /* still waiting, in order, before those made since */
        else if (ops[i].claim_cb != NULL)
            answer_claim(&ops[i]);
        else if (ops[i].done_cb != NULL)
            ops[i].done_cb(ops[i].arg, ops[i].err);
    }
}

static void push_op(fake_op_t op)
{
    assert(ob.nops < OPS_MAX);
    ob.ops[ob.nops++] = op;
    rx_defer(&loop, &ob.defer, on_ob_defer);
}

/*
 * Records a mark of row id under `token`, answered `err`; true when it
 * applies: err is 0 and the row is under that token (a stale mark changes
 * nothing).
 */
static bool push_mark_err(int what, int64_t id, int64_t token, uint64_t delay_ms,
                          const char *error, int64_t chat_id, int err, tg_outbox_done_cb cb,
                          void *arg)
{
    assert(ob.nmarks < MARKS_MAX);
    fake_mark_t *m = &ob.marks[ob.nmarks++];
    memset(m, 0, sizeof(*m));
    m->what = what;
    m->id = id;
    m->delay_ms = delay_ms;
    if (error != NULL)
        snprintf(m->error, sizeof(m->error), "%s", error);
    m->chat_id = chat_id;
    m->at = loop.now;
    m->held = loop.now - find_row(id)->claimed_at;
    m->stale = find_row(id)->token != token;
    push_op((fake_op_t){.done_cb = cb, .err = err, .arg = arg});
    return !m->stale && err == 0;
}

static bool push_mark(int what, int64_t id, int64_t token, uint64_t delay_ms, const char *error,
                      int64_t chat_id, tg_outbox_done_cb cb, void *arg)
{
    return push_mark_err(what, id, token, delay_ms, error, chat_id, 0, cb, arg);
}

/*
 * A mark the store does not write: refused while it is down (*r = -EAGAIN),
 * or taken and answered -ECONNRESET (*r = 0) while reset_marks lasts. True
 * when the mark goes no further.
 */
static bool unwritten(int *r, tg_outbox_done_cb cb, void *arg)
{
    *r = ob.down ? -EAGAIN : 0;
    if (ob.down)
        return true;
    if (ob.reset_marks == 0)
        return false;
    ob.reset_marks--;
    ob.lost++;
    push_op((fake_op_t){.done_cb = cb, .arg = arg, .err = -ECONNRESET});
    return true;
}

void tg_outbox_init(tg_outbox_t *o, db_t *db, const tg_outbox_options_t *opt)
{
    memset(o, 0, sizeof(*o));
}

int tg_outbox_claim(tg_outbox_t *o, unsigned max, unsigned lease_ms, tg_outbox_claim_cb cb,
                    void *arg)
{
    if (ob.down) {
        ob.claims++; /* tried */
        return -EAGAIN;
    }
    if (ob.claims++ == 0) {
        ob.claim_max = max;
        ob.claim_lease_ms = lease_ms;
    }
    push_op((fake_op_t){.claim_cb = cb, .arg = arg, .max = max, .at = loop.now});
    return 0;
}

int64_t tg_outbox_token(tg_outbox_t *o)
{
    return ++ob.next_token;
}

int tg_outbox_sent_many(tg_outbox_t *o, const int64_t *ids, const int64_t *tokens, unsigned n,
                        tg_outbox_done_cb cb, void *arg)
{
    assert(n > 0 && n <= TG_OUTBOX_SENT_MAX);
    int r;
    if (unwritten(&r, cb, arg))
        return r;
    ob.sent_batches++;
    for (unsigned i = 0; i < n; i++)
        if (push_mark(REC_SENT, ids[i], tokens[i], 0, NULL, 0, i + 1 == n ? cb : NULL, arg))
            find_row(ids[i])->state = ROW_DONE;
    return 0;
}

int tg_outbox_retry(tg_outbox_t *o, int64_t id, int64_t token, uint64_t delay_ms, const char *error,
                    tg_outbox_done_cb cb, void *arg)
{
    fake_row_t *r = find_row(id);
    int ret;
    if (unwritten(&ret, cb, arg))
        return ret;
    if (push_mark(REC_RETRY, id, token, delay_ms, error, 0, cb, arg)) {
        r->state = ROW_DUE;
        r->not_before = loop.now + delay_ms;
        r->attempts++;
    }
    return 0;
}

int tg_outbox_fail(tg_outbox_t *o, int64_t id, int64_t token, const char *error,
                   tg_outbox_done_cb cb, void *arg)
{
    fake_row_t *r = find_row(id);
    int ret;
    if (unwritten(&ret, cb, arg))
        return ret;
    if (push_mark(REC_FAIL, id, token, 0, error, 0, cb, arg)) {
        r->state = ROW_DONE;
        r->attempts++;
    }
    return 0;
}

int tg_outbox_retarget(tg_outbox_t *o, int64_t id, int64_t token, int64_t chat_id,
                       tg_outbox_done_cb cb, void *arg)
{
    fake_row_t *r = find_row(id);
    int ret;
    if (unwritten(&ret, cb, arg))
        return ret;
    if (ob.refuse_retarget) {
        push_mark_err(REC_RETARGET, id, token, 0, NULL, chat_id, -EBADMSG, cb, arg);
        return 0;
    }
    if (push_mark(REC_RETARGET, id, token, 0, NULL, chat_id, cb, arg)) {
        r->state = ROW_DUE;
        r->not_before = loop.now;
        r->attempts++;
        r->chat_id = chat_id;
        snprintf(r->body, sizeof(r->body), "{\"chat_id\":%lld,\"row\":%lld}", (long long)chat_id,
                 (long long)id);
    }
    return 0;
}

int tg_outbox_release(tg_outbox_t *o, int64_t id, int64_t token, tg_outbox_done_cb cb, void *arg)
{
    int r;
    if (unwritten(&r, cb, arg))
        return r;
    if (push_mark(REC_RELEASE, id, token, 0, NULL, 0, cb, arg))
        find_row(id)->state = ROW_DUE;
    return 0;
}

int tg_outbox_release_many(tg_outbox_t *o, const int64_t *ids, const int64_t *tokens, unsigned n,
                           tg_outbox_done_cb cb, void *arg)
{
    int r;
    assert(n > 0 && n <= TG_OUTBOX_SENT_MAX);
    if (unwritten(&r, cb, arg))
        return r;
    ob.release_batches++;
    for (unsigned i = 0; i < n; i++)
        if (push_mark(REC_RELEASE, ids[i], tokens[i], 0, NULL, 0, i + 1 == n ? cb : NULL, arg))
            find_row(ids[i])->state = ROW_DUE;
    return 0;
}

/* Marks of kind `what` for row id (any row when id is 0). */
static unsigned count_marks(int what, int64_t id)
{
    unsigned n = 0;
    for (unsigned i = 0; i < ob.nmarks; i++)
        n += ob.marks[i].what == what && (id == 0 || ob.marks[i].id == id);
    return n;
}

/* The latest mark of row id, or NULL. */
static const fake_mark_t *last_mark(int64_t id)
{
    for (unsigned i = ob.nmarks; i-- > 0;)
        if (ob.marks[i].id == id)
            return &ob.marks[i];
    return NULL;
}

/* ---- the fake leader lock ---- */

static struct {
    db_lock_cb cb;
    void *arg;
    int64_t key;
    bool exists; /* made and not freed */
    bool held;
} lk;

db_lock_t *db_lock_new(rx_loop_t *l, const db_lock_options_t *opt, db_lock_cb cb, void *arg)
{
    assert(!lk.exists);
    lk.cb = cb;
    lk.arg = arg;
    lk.key = opt->key;
    lk.exists = true;
    lk.held = false;
    return (db_lock_t *)&lk;
}

bool db_lock_held(const db_lock_t *l)
{
    return lk.held;
}

void db_lock_free(db_lock_t *l)
{
    if (l == NULL)
        return;
    assert(lk.exists && l == (db_lock_t *)&lk);
    lk.exists = lk.held = false;
}

/* ---- the fake HTTP pool ---- */

typedef struct fake_call {
    httpc_req_t *req; /* NULL once answered */
    char path[TG_PATH_MAX];
    int64_t id;          /* the row, from the body */
    int64_t chat_id;     /* from the body */
    uint64_t at;         /* loop ms */
    uint64_t lease_at;   /* loop ms its row's lease began: its claim's submission */
    uint32_t timeout_ms; /* the call's deadline, from `at` */
} fake_call_t;

static struct {
    fake_call_t c[CALLS_MAX];
    unsigned n;
    unsigned overlaps; /* calls made while another to the same chat was unanswered */
    int refuse;        /* what httpc_request() returns for row refuse_row's calls (0: none) */
    int64_t refuse_row;
    unsigned refused; /* calls refused so */
} api;

int httpc_request(httpc_pool_t *p, httpc_req_t *req)
{
    assert(p == (httpc_pool_t *)&api);
    int64_t row = 0;
    tg_api_get_int(req->body, req->body_len, "row", &row);
    /* As the real pool, a path with a space or a control character is malformed. */
    for (const char *c = req->path; *c != '\0'; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            api.refused++;
            return -EINVAL;
        }
    if (api.refuse != 0 && row == api.refuse_row) {
        api.refused++;
        return api.refuse;
    }
    assert(api.n < CALLS_MAX);
    fake_call_t *c = &api.c[api.n++];
    c->req = req;
    snprintf(c->path, sizeof(c->path), "%s", req->path);
    c->id = c->chat_id = 0;
    tg_api_get_int(req->body, req->body_len, "row", &c->id);
    tg_api_get_int(req->body, req->body_len, "chat_id", &c->chat_id);
    c->at = loop.now;
    c->lease_at = c->id != 0 ? find_row(c->id)->claimed_at : 0; /* 0: a call of no row */
    c->timeout_ms = req->timeout_ms;
    for (unsigned i = 0; i + 1 < api.n; i++)
        api.overlaps += api.c[i].req != NULL && api.c[i].chat_id == c->chat_id;
    return 0;
}

/* ---- the loop, on a clock the test moves ---- */

static rx_defer_t stop_defer;

static void on_stop(rx_loop_t *l, rx_defer_t *d)
{
    rx_stop(l);
}

/*
 * Runs the end-of-turn callbacks queued so far and those they queue: rx_run()
 * runs every defer before it looks at `stopping`, so a defer that stops the
 * loop makes it return before it would wait or read the clock.
 */
static void settle(void)
{
    rx_defer(&loop, &stop_defer, on_stop);
    rx_run(&loop);
}

/* Moves the loop's clock on by ms, firing each timer at its own deadline, as rx_run() would. */
static void advance(uint64_t ms)
{
    uint64_t end = loop.now + ms;
    settle();
    while (loop.heap_len > 0 && loop.heap[0]->deadline <= end) {
        rx_timer_t *t = loop.heap[0];
        if (t->deadline > loop.now)
            loop.now = t->deadline;
        rx_timer_stop(&loop, t);
        t->cb(&loop, t);
        settle();
    }
    loop.now = end;
    settle();
}

/* Answers call i with an HTTP response, from the loop as the pool would. */
static void answer(unsigned i, int status, const char *body, int64_t retry_after)
{
    httpc_req_t *req = api.c[i].req;
    assert(i < api.n && req != NULL);
    api.c[i].req = NULL;
    httpc_response_t resp = {
        .status = status, .body = body, .body_len = strlen(body), .retry_after = retry_after};
    req->cb(req, 0, &resp);
    settle();
}

static void answer_ok(unsigned i)
{
    answer(i, 200, OK_BODY, -1);
}

/* Ends call i with a transport error (-ECONNRESET, -ETIMEDOUT...). */
static void answer_err(unsigned i, int err)
{
    httpc_req_t *req = api.c[i].req;
    assert(i < api.n && req != NULL);
    api.c[i].req = NULL;
    req->cb(req, err, NULL);
    settle();
}

/* Answers ok every open call, and those made meanwhile. */
static void answer_all_ok(void)
{
    for (unsigned i = 0; i < api.n; i++)
        if (api.c[i].req != NULL)
            answer_ok(i);
}

/* The lock is granted (true) or lost (false), from the loop as the real one says it. */
static void lock_set(bool held)
{
    assert(lk.exists);
    lk.held = held;
    lk.cb(lk.arg, held);
    settle();
}

/* Answers call i 429 with parameters.retry_after = seconds. */
static void answer_429(unsigned i, int seconds)
{
    char body[160];
    snprintf(body, sizeof(body),
             "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: retry "
             "after %d\",\"parameters\":{\"retry_after\":%d}}",
             seconds, seconds);
    answer(i, 429, body, -1);
}

/* Lets ms pass in steps of step ms, answering ok every call as the step ends. */
static void run_answering(uint64_t ms, uint64_t step)
{
    for (uint64_t t = 0; t < ms; t += step) {
        answer_all_ok();
        advance(step);
    }
    answer_all_ok();
}

/* The first call for row id, from call `from` on; -1 when none. */
static int call_of(int64_t id, unsigned from)
{
    for (unsigned i = from; i < api.n; i++)
        if (api.c[i].id == id)
            return (int)i;
    return -1;
}

/* Calls to chat made at loop times in [from, to). */
static unsigned calls_to(int64_t chat_id, uint64_t from, uint64_t to)
{
    unsigned n = 0;
    for (unsigned i = 0; i < api.n; i++)
        n += api.c[i].chat_id == chat_id && api.c[i].at >= from && api.c[i].at < to;
    return n;
}

/* ---- a sender per case ---- */

static tg_sender_t *s;
static met_slot_t met0; /* the counters when the case began */
static int idle_runs;

static tg_sender_options_t options(void)
{
    tg_sender_options_t o = {
        .token = TOKEN,
        .http = (httpc_pool_t *)&api,
        .max_attempts = 5,
        .lease_ms = 30000,
        .capacity = 16,
        .poll_ms = 100,
        .backoff_ms = 1000,
        .backoff_max_ms = 4000,
        /* timeout_ms 0: derived from the lease */
    };
    /* Rates loose enough not to matter, unless a case tightens them. */
    tg_rate_config_default(&o.rate);
    o.rate.global = o.rate.chat = o.rate.group = (tg_rate_spec_t){1000, 1000, 1000};
    o.rate.table_size = 64;
    return o;
}

/* begin() over row 1 to chat 100 and row 2 to chat 200; OUT: the two calls. False (and a
 * failed check) unless both went out. */
static bool begin_two_chats(const tg_sender_options_t *o, const char *what, int *c1, int *c2);

static void on_idle(void *arg)
{
    idle_runs++;
}

/* Starts a sender over the rows added so far; it claims and sends in the first turn. */
static void begin(const tg_sender_options_t *o)
{
    int err = 0;
    met0 = *met_self();
    idle_runs = 0;
    s = tg_sender_new(&loop, o, &err);
    if (s == NULL)
        tap_bail("tg_sender_new refused the options");
    settle();
}

static bool begin_two_chats(const tg_sender_options_t *o, const char *what, int *c1, int *c2)
{
    add_row(1, 100, 0);
    add_row(2, 200, 0);
    begin(o);
    *c1 = call_of(1, 0);
    *c2 = call_of(2, 0);
    return tap_ok(*c1 >= 0 && *c2 >= 0, "%s: both chats are called", what);
}

/* Stops and frees the sender (open calls end -ECANCELED), then empties the fakes. */
static void finish(void)
{
    tg_sender_stop(s, on_idle, NULL);
    for (unsigned i = 0; i < api.n; i++)
        if (api.c[i].req != NULL)
            answer_err(i, -ECANCELED);
    settle();
    assert(ob.nops == 0);
    tg_sender_free(s);
    s = NULL;
    memset(&ob, 0, sizeof(ob));
    memset(&api, 0, sizeof(api));
    loop.now += 100000; /* nothing of one case is within a window of the next */
}

/* ---- one call ---- */

static int call_done;
static void on_test_call(tg_call_t *call, int err, const tg_api_result_t *res)
{
    call_done++;
}

/* The path of a call holds the token: it fits at the longest token and method, and is wiped. */
static void test_call_path(void)
{
    char token[CFG_TOKEN_MAX + 1], method[TG_METHOD_MAX + 1];
    memcpy(token, "123456:", 7);
    memset(token + 7, 'T', CFG_TOKEN_MAX - 7);
    token[CFG_TOKEN_MAX] = '\0';
    memset(method, 'm', TG_METHOD_MAX - 1);
    method[TG_METHOD_MAX - 1] = '\0';
    char zeros[TG_PATH_MAX] = {0};
    tg_call_t call;
    memset(&call, 0, sizeof(call));
    int r = tg_call_start(&call, (httpc_pool_t *)&api, token, method, "{}", 2, 1000, on_test_call);
    tap_ok(r == 0 && api.n == 1 && strncmp(api.c[0].path + 4, token, CFG_TOKEN_MAX) == 0,
           "call: the longest token and method fit the path");
    answer_ok(0);
    tap_ok(call_done == 1 && memcmp(call.path, zeros, sizeof(zeros)) == 0,
           "call: its path, with the token, is wiped when the call ends");

    method[TG_METHOD_MAX - 1] = 'm';
    method[TG_METHOD_MAX] = '\0';
    memset(call.path, 'x', sizeof(call.path));
    r = tg_call_start(&call, (httpc_pool_t *)&api, token, method, "{}", 2, 1000, on_test_call);
    tap_ok(r == -ENAMETOOLONG && api.n == 1 && memcmp(call.path, zeros, sizeof(zeros)) == 0,
           "call: a path that does not fit is refused, and what was written of it wiped");
    memset(&api, 0, sizeof(api));
}

/* ---- cases ---- */

static void test_sent(void)
{
    tg_sender_options_t o = options();
    add_row(1, 100, 0);
    begin(&o);
    tap_ok(ob.claims >= 1 && ob.claim_max == o.capacity && ob.claim_lease_ms == o.lease_ms,
           "ok: the sender claims up to its capacity with its lease");
    tap_ok(api.n == 1 && strcmp(api.c[0].path, "/bot" TOKEN "/sendMessage") == 0 &&
               api.c[0].id == 1 && api.c[0].chat_id == 100,
           "ok: the row goes out as one call with its method and body");
    answer_ok(0);
    tap_ok(ob.nmarks == 1 && ob.marks[0].what == REC_SENT && ob.marks[0].id == 1,
           "ok: the answer is recorded as one sent mark, and nothing else");
    advance(10000);
    tap_eq_int(api.n, 1, "ok: a sent row is not sent again");
    tap_eq_int((long long)(met_self()->outbox_sent - met0.outbox_sent), 1,
               "ok: counted in outbox_sent");
    finish();
}

static void test_final(void)
{
    tg_sender_options_t o = options();
    add_row(1, 100, 0);
    begin(&o);
    answer(0, 400,
           "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: chat not found\"}", -1);
    const fake_mark_t *m = last_mark(1);
    tap_ok(ob.nmarks == 1 && m != NULL && m->what == REC_FAIL,
           "final 4xx: one fail mark, no retry");
    tap_ok(m != NULL && strstr(m->error, "400") != NULL &&
               strstr(m->error, "Bad Request: chat not found") != NULL,
           "final 4xx: the error text has the code and the description (%s)",
           m != NULL ? m->error : "");
    advance(60000);
    tap_eq_int(api.n, 1, "final 4xx: the row is not sent again");
    tap_ok(met_self()->outbox_failed - met0.outbox_failed == 1 &&
               met_self()->outbox_retried == met0.outbox_retried,
           "final 4xx: counted failed, not retried");
    finish();
}

/*
 * A method that is no Bot API method name is failed when it is claimed,
 * before it can take a rate token, and its chat's next row goes.
 */
static void test_bad_method(void)
{
    tg_sender_options_t o = options();
    o.rate.global = (tg_rate_spec_t){1, 10000, 1}; /* one call in 10 s */
    add_row(1, 100, 0);
    ob.rows[0].method = "send Message";
    add_row(2, 100, 0);
    add_row(3, 200, 0);
    /* 64 letters: one more than a method may have. */
    ob.rows[2].method = "sendMessageWithANameLongerThanAnyMethodOfTheBotApiEverHadXXXXXXX";
    begin(&o);
    uint64_t t0 = loop.now;
    advance(1000);
    const fake_mark_t *m1 = last_mark(1), *m3 = last_mark(3);
    tap_ok(m1 != NULL && m1->what == REC_FAIL && strstr(m1->error, "method") != NULL,
           "bad method: a method with a space is failed with the reason (%s)",
           m1 != NULL ? m1->error : "");
    tap_ok(m3 != NULL && m3->what == REC_FAIL,
           "bad method: a method longer than 63 bytes is failed, not cut and sent");
    int c2 = call_of(2, 0);
    tap_ok(api.n == 1 && c2 == 0 && api.c[c2].at < t0 + 1000 && api.refused == 0,
           "bad method: the chat's next row goes at once, on the one rate token the failed rows "
           "did not take (%u calls, %u refused)",
           api.n, api.refused);
    tap_eq_int((long long)(met_self()->outbox_failed - met0.outbox_failed), 2,
               "bad method: both counted in outbox_failed");
    finish();
}

/*
 * A request the HTTP client refuses (not for a full queue) is failed for good;
 * a full queue only delays the row.
 */
static void test_refused(void)
{
    tg_sender_options_t o = options();
    api.refuse = -EINVAL;
    api.refuse_row = 1;
    add_row(1, 100, 0);
    add_row(2, 100, 0);
    begin(&o);
    advance(1000);
    const fake_mark_t *m = last_mark(1);
    tap_ok(m != NULL && m->what == REC_FAIL && strstr(m->error, "refused") != NULL &&
               api.refused == 1,
           "refused: the row is failed at its first refusal (%s)", m != NULL ? m->error : "");
    int c2 = call_of(2, 0);
    tap_ok(c2 >= 0, "refused: its chat's next row goes");
    if (c2 >= 0)
        answer_ok((unsigned)c2);
    finish();

    api.refuse = -EAGAIN;
    api.refuse_row = 1;
    add_row(1, 100, 0);
    begin(&o);
    tap_ok(api.refused >= 1 && ob.nmarks == 0, "queue full: the row is kept, no mark");
    api.refuse = 0;
    advance(1000);
    tap_ok(call_of(1, 0) >= 0, "queue full: it goes once the queue has room");
    answer_all_ok();
    finish();
}

static void test_backoff(void)
{
    tg_sender_options_t o = options(); /* backoff 1000 ms doubling to 4000 ms, 5 attempts */
    add_row(1, 100, 0);
    begin(&o);
    uint64_t prev = 0;
    for (unsigned k = 0; k < o.max_attempts; k++) {
        if (!tap_eq_int(api.n, k + 1, "5xx: attempt %u is made once the row is due", k + 1))
            break;
        answer(k, 502, BAD_GATEWAY, -1);
        const fake_mark_t *m = last_mark(1);
        if (k + 1 == o.max_attempts) {
            tap_ok(m != NULL && m->what == REC_FAIL && strstr(m->error, "502 Bad Gateway"),
                   "5xx: the last attempt is marked failed (%s)", m != NULL ? m->error : "");
            break;
        }
        uint64_t d = (uint64_t)o.backoff_ms << k;
        if (d > o.backoff_max_ms)
            d = o.backoff_max_ms;
        bool ok = m != NULL && m->what == REC_RETRY && m->delay_ms >= d / 2 && m->delay_ms < d;
        /* Jitter keeps each delay in [d/2, d), so an uncapped one always beats the last. */
        if (d < o.backoff_max_ms || k == 0)
            ok = ok && m->delay_ms > prev;
        tap_ok(ok, "5xx: attempt %u is retried in %llu ms, within [%llu, %llu)%s", k + 1,
               m != NULL ? (unsigned long long)m->delay_ms : 0ull, (unsigned long long)d / 2,
               (unsigned long long)d,
               d < o.backoff_max_ms || k == 0 ? " and longer than before" : "");
        prev = m != NULL ? m->delay_ms : 0;
        advance(prev + o.poll_ms);
    }
    advance(60000);
    tap_eq_int(api.n, o.max_attempts, "5xx: no call after max_attempts");
    tap_ok(met_self()->outbox_retried - met0.outbox_retried == o.max_attempts - 1 &&
               met_self()->outbox_failed - met0.outbox_failed == 1,
           "5xx: counted as retried %u times, then failed", o.max_attempts - 1);
    finish();
}

static void test_transport(void)
{
    tg_sender_options_t o = options();
    add_row(1, 100, 0);
    add_row(2, 200, (int)o.max_attempts - 1); /* its last attempt */
    begin(&o);
    int c1 = call_of(1, 0), c2 = call_of(2, 0);
    if (!tap_ok(c1 >= 0 && c2 >= 0, "transport: both rows are called"))
        goto out;
    answer_err((unsigned)c1, -ECONNRESET);
    const fake_mark_t *m = last_mark(1);
    tap_ok(m != NULL && m->what == REC_RETRY && m->delay_ms >= o.backoff_ms / 2 &&
               m->delay_ms < o.backoff_ms && strncmp(m->error, "transport: ", 11) == 0,
           "transport: a reset is retried after the first backoff (%llu ms, %s)",
           m != NULL ? (unsigned long long)m->delay_ms : 0ull, m != NULL ? m->error : "");
    answer_err((unsigned)c2, -ETIMEDOUT);
    m = last_mark(2);
    tap_ok(m != NULL && m->what == REC_FAIL && strncmp(m->error, "transport: ", 11) == 0,
           "transport: a timeout on the last attempt is marked failed");
    /* The pool counts transport errors (botapi_transport_errors); the sender counts the rows. */
    tap_ok(met_self()->outbox_retried - met0.outbox_retried == 1 &&
               met_self()->outbox_failed - met0.outbox_failed == 1,
           "transport: one row counted retried, one failed");
out:
    finish();
}

/* A 429 short enough to wait out in memory: no mark, the same row goes again after the pause. */
static void test_limited_short(void)
{
    tg_sender_options_t o = options();
    int c1, c2;
    if (!begin_two_chats(&o, "429 short", &c1, &c2))
        goto out;
    uint64_t t0 = loop.now;
    answer_429((unsigned)c1, 2);
    tap_eq_int(ob.nmarks, 0, "429 short: the row keeps its lease (no mark)");
    answer_ok((unsigned)c2);
    add_row(3, 200, 0);
    add_row(4, 100, 0);
    run_answering(1900, 100);
    tap_eq_int(calls_to(100, t0 + 1, t0 + 2000), 0, "429 short: no call to the chat while paused");
    tap_ok(calls_to(200, t0, t0 + 2000) >= 1, "429 short: the other chat is called meanwhile");
    advance(2000 - (loop.now - t0));
    int again = call_of(1, (unsigned)c1 + 1);
    tap_ok(again >= 0 && api.c[again].at == t0 + 2000,
           "429 short: the same row goes again when the pause ends");
    answer_all_ok();
    int c4 = call_of(4, 0);
    tap_ok(c4 > again && last_mark(1) != NULL && last_mark(1)->what == REC_SENT,
           "429 short: then the chat's next row, in order");
out:
    finish();
}

/* A 429 longer than half the lease: the row goes back to the store with the delay. */
static void test_limited_long(void)
{
    tg_sender_options_t o = options();
    o.lease_ms = 4000;
    int c1, c2;
    if (!begin_two_chats(&o, "429 long", &c1, &c2))
        goto out;
    uint64_t t0 = loop.now;
    answer_429((unsigned)c1, 3);
    const fake_mark_t *m = last_mark(1);
    tap_ok(m != NULL && m->what == REC_RETRY && m->delay_ms == 3000 && strstr(m->error, "429"),
           "429 long: a retry mark with the 3 s retry_after as its delay (%llu ms)",
           m != NULL ? (unsigned long long)m->delay_ms : 0ull);
    tap_eq_int((long long)(met_self()->outbox_limited - met0.outbox_limited), 1,
               "429 long: counted in outbox_limited");
    answer_ok((unsigned)c2);
    add_row(3, 100, 0);
    add_row(4, 200, 0);
    run_answering(2900, 100);
    tap_eq_int(calls_to(100, t0 + 1, t0 + 3000), 0, "429 long: no call to the chat while paused");
    tap_ok(call_of(4, 0) >= 0 && api.c[call_of(4, 0)].at < t0 + 3000,
           "429 long: the other chat's next row goes meanwhile");
    run_answering(2000, 100);
    /* The put-back row is its chat's oldest: it goes first, then row 3, never the reverse. */
    int a1 = call_of(1, (unsigned)c1 + 1), a3 = call_of(3, 0);
    tap_ok(a1 >= 0 && a3 > a1 && api.c[a1].at >= t0 + 3000,
           "429 long: after the pause the put-back row goes again, then the chat's next, in id "
           "order (calls %d, %d)",
           a1, a3);
    tap_eq_int(count_marks(REC_SENT, 1) + count_marks(REC_SENT, 3), 2,
               "429 long: both marked sent, once each");
out:
    finish();
}

/*
 * A retry_after of 10^9 s, for one chat and then for the bot: each pause is
 * cut to an hour, and every chat goes again after it.
 */
static void test_limited_huge(void)
{
    const int huge = 1000000000;
    const uint64_t hour = 3600 * 1000;
    tg_sender_options_t o = options();
    o.poll_ms = 1000;
    int c1, c2;
    if (!begin_two_chats(&o, "429 huge", &c1, &c2))
        goto out;
    uint64_t t0 = loop.now;
    answer_429((unsigned)c1, huge);
    const fake_mark_t *m = last_mark(1);
    tap_ok(m != NULL && m->what == REC_RETRY && m->delay_ms == hour,
           "429 huge, one chat: the row is put back for an hour, not 10^9 s (%llu ms)",
           m != NULL ? (unsigned long long)m->delay_ms : 0ull);
    answer_ok((unsigned)c2);
    advance(hour - 1);
    tap_eq_int(calls_to(100, t0 + 1, UINT64_MAX), 0, "429 huge, one chat: no call within the hour");
    advance(1 + o.poll_ms);
    int again = call_of(1, (unsigned)c1 + 1);
    tap_ok(again >= 0 && api.c[again].at <= t0 + hour + o.poll_ms,
           "429 huge, one chat: the row goes again when the hour is over");
    answer_all_ok();

    /* Past the window in which the first 429 would count. */
    advance(2 * GLOBAL_429_WINDOW_MS);
    add_row(3, 300, 0);
    add_row(4, 400, 0);
    add_row(5, 500, 0);
    advance(o.poll_ms);
    int c3 = call_of(3, 0), c4 = call_of(4, 0), c5 = call_of(5, 0);
    if (!tap_ok(c3 >= 0 && c4 >= 0 && c5 >= 0, "429 huge, global: three chats are called"))
        goto out;
    answer_429((unsigned)c3, huge);
    advance(300);
    uint64_t t1 = loop.now;
    answer_429((unsigned)c4, huge);
    answer_ok((unsigned)c5);
    add_row(6, 500, 0);
    unsigned before = api.n;
    advance(hour - 1);
    tap_eq_int(api.n, before, "429 huge, global: no call to any chat within the hour");
    advance(1 + o.poll_ms);
    answer_all_ok();
    advance(o.poll_ms);
    tap_ok(calls_to(300, t1 + hour, UINT64_MAX) >= 1 && calls_to(400, t1 + hour, UINT64_MAX) >= 1 &&
               calls_to(500, t1 + hour, UINT64_MAX) >= 1,
           "429 huge, global: every chat goes again when the hour is over");
    answer_all_ok();
out:
    finish();
}

/* A row its chat's rate holds back goes back to the store before its lease ends; it comes again. */
static void test_hold_release(void)
{
    tg_sender_options_t o = options();
    o.lease_ms = 4000;
    o.rate.chat = (tg_rate_spec_t){1, 10000, 1}; /* one call per chat every 10 s */
    add_row(1, 100, 0);
    add_row(2, 100, 0);
    begin(&o);
    uint64_t t0 = loop.now;
    if (!tap_ok(api.n == 1 && api.c[0].id == 1, "hold: the chat's first row goes"))
        goto out;
    answer_ok(0);
    run_answering(11000, 100);
    const fake_mark_t *rel = NULL;
    unsigned releases = 0;
    for (unsigned i = 0; i < ob.nmarks; i++)
        if (ob.marks[i].what == REC_RELEASE && ob.marks[i].id == 2) {
            releases++;
            if (rel == NULL || ob.marks[i].held < rel->held)
                rel = &ob.marks[i];
        }
    /* The longest a row may wait: a call started then still ends a tenth of the lease early. */
    uint64_t hold = o.lease_ms - o.lease_ms / 10 - api.c[0].timeout_ms;
    tap_ok(rel != NULL && rel->held == hold,
           "hold: a row held for lease - timeout - lease/10 is released then (%u times, after "
           "%llu ms at least)",
           releases, rel != NULL ? (unsigned long long)rel->held : 0ull);
    int c2 = call_of(2, 0);
    tap_ok(c2 >= 0 && api.c[c2].at >= t0 + 10000 && count_marks(REC_SENT, 2) == 1,
           "hold: claimed again, it goes once the chat's rate allows, and once");
out:
    finish();
}

/* Answers the claims the fake store holds back (ob.hold_claims), then holds the next or not. */
static void answer_claims(bool hold_next)
{
    ob.hold_claims = false;
    rx_defer(&loop, &ob.defer, on_ob_defer);
    settle();
    ob.hold_claims = hold_next;
}

/*
 * A row's time counts from its claim's submission, which the lease started
 * no earlier than, and hold + call timeout end a tenth of the lease before
 * the lease does. Claims answered 500 ms late; chat 100's second row waits
 * 2 s for the chat's rate after the first went.
 */
/* True when tg_sender_new() refuses o with -EINVAL; a sender it makes anyway is freed unused. */
static bool refused(const tg_sender_options_t *o)
{
    int err = 0;
    tg_sender_t *x = tg_sender_new(&loop, o, &err);
    if (x == NULL)
        return err == -EINVAL;
    tg_sender_stop(x, NULL, NULL);
    settle();
    tg_sender_free(x);
    return false;
}

static void test_hold_margin(void)
{
    tg_sender_options_t o = options();
    o.lease_ms = 4000;
    o.timeout_ms = 3700;
    tap_ok(refused(&o),
           "margin: a timeout that leaves no time to hold a row within the lease is refused");
    o.timeout_ms = 3201;
    tap_ok(refused(&o), "margin: so is one that leaves less than a tenth of the lease to hold");
    o.timeout_ms = 0;
    o.rate.chat = (tg_rate_spec_t){1, 2000, 1}; /* one call per chat every 2 s */
    add_row(1, 100, 0);
    add_row(2, 100, 0);
    ob.hold_claims = true;
    begin(&o);
    advance(500);
    answer_claims(true);
    if (!tap_ok(api.n == 1 && api.c[0].id == 1, "margin: the late claim's row goes"))
        goto out;
    answer_ok(0);
    advance(500);
    answer_claims(false);
    run_answering(8000, 100);
    uint64_t end = o.lease_ms - o.lease_ms / 10, worst = 0;
    for (unsigned i = 0; i < api.n; i++)
        if (api.c[i].at + api.c[i].timeout_ms - api.c[i].lease_at > worst)
            worst = api.c[i].at + api.c[i].timeout_ms - api.c[i].lease_at;
    tap_ok(worst <= end,
           "margin: every call's deadline is at most lease - lease/10 after its claim was made "
           "(%llu ms, at most %llu)",
           (unsigned long long)worst, (unsigned long long)end);
    const fake_mark_t *rel = NULL;
    for (unsigned i = 0; i < ob.nmarks && rel == NULL; i++)
        if (ob.marks[i].what == REC_RELEASE && ob.marks[i].id == 2)
            rel = &ob.marks[i];
    tap_ok(rel != NULL && rel->held + api.c[0].timeout_ms <= end,
           "margin: the row the rate held back was released in time for a call to end within it "
           "(after %llu ms, call timeout %u ms)",
           rel != NULL ? (unsigned long long)rel->held : 0ull, api.c[0].timeout_ms);
    tap_eq_int(count_marks(REC_SENT, 2), 1, "margin: it was sent later, once");
out:
    answer_claims(false);
    finish();
}

/* Two chats limited within a second: the limit is the bot's, every chat waits. */
static void test_limited_global(void)
{
    tg_sender_options_t o = options();
    o.lease_ms = 8000;
    add_row(1, 100, 0);
    add_row(2, 200, 0);
    add_row(3, 300, 0);
    begin(&o);
    int c1 = call_of(1, 0), c2 = call_of(2, 0), c3 = call_of(3, 0);
    if (!tap_ok(c1 >= 0 && c2 >= 0 && c3 >= 0, "429 global: three chats are called"))
        goto out;
    answer_429((unsigned)c1, 5);
    advance(300);
    uint64_t t1 = loop.now;
    answer_429((unsigned)c2, 5);
    answer_ok((unsigned)c3);
    tap_ok(count_marks(REC_RETRY, 1) == 1 && count_marks(REC_RETRY, 2) == 1,
           "429 global: both limited rows are put back");
    add_row(4, 300, 0);
    add_row(5, 400, 0);
    unsigned before = api.n;
    run_answering(4900, 100);
    tap_eq_int(api.n, before, "429 global: no call to any chat for the 5 s pause");
    tap_eq_int((long long)(met_self()->outbox_limited - met0.outbox_limited), 2,
               "429 global: both answers counted in outbox_limited");
    run_answering(5000 - (loop.now - t1) + o.poll_ms, 100);
    tap_ok(calls_to(300, t1 + 5000, UINT64_MAX) >= 1 && calls_to(400, t1 + 5000, UINT64_MAX) >= 1,
           "429 global: every chat goes again when the pause ends");
out:
    finish();
}

static void test_migrate(void)
{
    tg_sender_options_t o = options();
    add_row(1, -100, 0);
    begin(&o);
    answer(
        0, 400,
        "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: group chat was "
        "upgraded to a supergroup chat\",\"parameters\":{\"migrate_to_chat_id\":-1001234567890}}",
        -1);
    const fake_mark_t *m = last_mark(1);
    tap_ok(ob.nmarks == 1 && m != NULL && m->what == REC_RETARGET && m->chat_id == -1001234567890,
           "migrate: a retarget mark with the new chat, and no sent, retry or fail mark");
    advance(o.poll_ms);
    tap_ok(api.n == 2 && api.c[1].id == 1 && api.c[1].chat_id == -1001234567890,
           "migrate: the re-targeted row is claimed again and goes to the new chat");
    answer_ok(1);
    tap_ok(last_mark(1) != NULL && last_mark(1)->what == REC_SENT,
           "migrate: and is marked sent then");
    finish();
}

/* Answers call i 400 with parameters.migrate_to_chat_id = to. */
static void answer_migrate(unsigned i, int64_t to)
{
    char body[200];
    snprintf(body, sizeof(body),
             "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: group chat was "
             "upgraded to a supergroup chat\",\"parameters\":{\"migrate_to_chat_id\":%lld}}",
             (long long)to);
    answer(i, 400, body, -1);
}

/* Migrations that would never end: to the row's own chat, A to B to A, a refused retarget. */
static void test_migrate_loops(void)
{
    tg_sender_options_t o = options(); /* 5 attempts */
    add_row(1, -100, 0);
    begin(&o);
    answer_migrate(0, -100);
    const fake_mark_t *m = last_mark(1);
    tap_ok(ob.nmarks == 1 && m != NULL && m->what == REC_FAIL && strstr(m->error, "own chat"),
           "migrate to itself: failed at once, no retarget (%s)", m != NULL ? m->error : "");
    advance(10000);
    tap_eq_int(api.n, 1, "migrate to itself: not sent again");
    finish();

    add_row(1, -100, 0);
    begin(&o);
    unsigned n = 0;
    for (int i; n < 4 * o.max_attempts && (i = call_of(1, n)) >= 0; n++) {
        answer_migrate((unsigned)i, api.c[i].chat_id == -100 ? -200 : -100);
        advance(o.poll_ms);
    }
    m = last_mark(1);
    tap_ok(n == o.max_attempts && count_marks(REC_RETARGET, 1) == o.max_attempts - 1 && m != NULL &&
               m->what == REC_FAIL && strstr(m->error, "giving up") != NULL,
           "migrate A to B to A: each retarget counts, the row fails after %u sends (%u sends, "
           "%s)",
           o.max_attempts, n, m != NULL ? m->error : "");
    tap_eq_int(find_row(1)->attempts, o.max_attempts,
               "migrate A to B to A: attempts is the maximum");
    finish();

    ob.refuse_retarget = true;
    add_row(1, -100, 0);
    add_row(2, -100, 0);
    begin(&o);
    answer_migrate(0, -200);
    advance(o.poll_ms);
    m = last_mark(1);
    tap_ok(m != NULL && m->what == REC_FAIL && strstr(m->error, "refused") != NULL &&
               count_marks(REC_RETARGET, 1) == 1,
           "retarget refused: the row is failed with the reason (%s)", m != NULL ? m->error : "");
    int c2 = call_of(2, 0);
    tap_ok(c2 >= 0 && api.c[c2].chat_id == -100, "retarget refused: the chat's next row goes");
    answer_all_ok();
    advance(o.lease_ms);
    tap_eq_int(call_of(1, 1), -1, "retarget refused: the row is not sent again");
    finish();
}

/* A row re-targeted into a chat whose later row is held goes first: held rows stay in id order. */
static void test_migrate_merge(void)
{
    tg_sender_options_t o = options();
    add_row(1, -100, 0);
    add_row(2, 200, 0);
    begin(&o);
    int c1 = call_of(1, 0), c2 = call_of(2, 0);
    if (!tap_ok(c1 >= 0 && c2 >= 0, "merge: both chats are called"))
        goto out;
    answer_429((unsigned)c2, 2); /* row 2 stays held, its chat paused for 2 s */
    answer((unsigned)c1, 400,
           "{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: group chat was "
           "upgraded to a supergroup chat\",\"parameters\":{\"migrate_to_chat_id\":200}}",
           -1);
    run_answering(3000, 100);
    int a1 = call_of(1, (unsigned)c1 + 1), a2 = call_of(2, (unsigned)c2 + 1);
    tap_ok(a1 >= 0 && a2 > a1 && api.c[a1].chat_id == 200,
           "merge: the re-targeted row 1 goes to chat 200 before its held row 2 (calls %d, %d)", a1,
           a2);
    tap_eq_int(api.overlaps, 0, "merge: never two calls in flight to one chat");
out:
    finish();
}

/* Answers ok, in one turn of the loop, every call open now. */
static void answer_open_in_one_turn(void)
{
    httpc_response_t resp = {.status = 200, .body = OK_BODY, .body_len = strlen(OK_BODY)};
    for (unsigned i = 0; i < api.n; i++) {
        httpc_req_t *req = api.c[i].req;
        if (req == NULL)
            continue;
        api.c[i].req = NULL;
        req->cb(req, 0, &resp);
    }
    settle();
}

static void test_sent_batch(void)
{
    tg_sender_options_t o = options();
    for (int i = 0; i < 5; i++)
        add_row(i + 1, 100 + i, 0);
    add_row(6, 100, 0); /* chat 100's second row: claimable once row 1 is marked */
    begin(&o);
    tap_eq_int(api.n, 5, "batch: the five chats' first rows go at once");
    answer_open_in_one_turn();
    tap_ok(ob.sent_batches == 1 && count_marks(REC_SENT, 0) == 5,
           "batch: five answers in one turn are marked sent by one write (%u writes, %u marks)",
           ob.sent_batches, count_marks(REC_SENT, 0));
    tap_ok(api.n == 6 && api.c[5].id == 6,
           "batch: the claim after the write finds chat 100's next row");
    answer_open_in_one_turn();
    tap_ok(ob.sent_batches == 2 && count_marks(REC_SENT, 6) == 1,
           "batch: the next turn's answer is a write of its own");
    finish();

    /* With a delay, answers of several turns share one write. */
    o.mark_delay_ms = 5;
    o.poll_ms = 1000;
    for (int i = 0; i < 3; i++)
        add_row(i + 1, 100 + i, 0);
    begin(&o);
    tap_eq_int(api.n, 3, "batch delay: three chats' rows go at once");
    answer_ok(0);
    advance(2);
    answer_ok(1);
    advance(2);
    tap_ok(ob.sent_batches == 0, "batch delay: nothing written within the delay (%u writes)",
           ob.sent_batches);
    advance(2);
    tap_ok(ob.sent_batches == 1 && count_marks(REC_SENT, 1) == 1 && count_marks(REC_SENT, 2) == 1,
           "batch delay: the two answers 2 ms apart are written together after 5 ms (%u writes)",
           ob.sent_batches);
    answer_ok(2);
    tg_sender_stop(s, on_idle, NULL);
    settle();
    tap_ok(count_marks(REC_SENT, 3) == 1 && idle_runs == 1,
           "batch delay: a stop writes what waits at once, then the sender is idle");
    finish();
}

static void test_run_put_back(void)
{
    tg_sender_options_t o = options();
    add_row(1, 100, 0);
    add_row(2, 100, 0);
    add_row(3, 200, 0);
    find_row(1)->not_before = loop.now + 60000; /* put back with a delay, after the snapshot */
    ob.stale_snapshot = true;
    begin(&o);
    tap_ok(call_of(2, 0) < 0 && count_marks(REC_RELEASE, 2) == 1,
           "run: a row whose chat's previous row is neither held nor done is given back, unsent");
    tap_ok(call_of(3, 0) >= 0, "run: other chats' rows go");
    finish();
}

static void test_run(void)
{
    tg_sender_options_t o = options();
    for (int i = 0; i < 3; i++)
        add_row(i + 1, 100, 0);
    begin(&o);
    tap_ok(find_row(2)->state == ROW_CLAIMED && find_row(3)->state == ROW_CLAIMED &&
               api.n == 1 && api.c[0].id == 1,
           "run: the first claim takes the chat's three rows; the first goes alone");
    answer_ok(0);
    tap_ok(api.n == 2 && api.c[1].id == 2, "run: the second goes when the first is answered");
    answer_ok(1);
    answer_ok(2);
    tap_eq_int(count_marks(REC_SENT, 0), 3, "run: all three marked sent");
    finish();
}

static void test_order(void)
{
    tg_sender_options_t o = options();
    static const int64_t chat[] = {100, 100, 200, 100, 200, 200};
    for (int i = 0; i < 6; i++)
        add_row(i + 1, chat[i], 0);
    begin(&o);
    tap_ok(api.n == 2 && api.c[0].id == 1 && api.c[1].id == 3,
           "order: the first row of each chat goes at once, the others wait");
    /* Answer the newest open call first, so that the chats finish out of step. */
    for (int left = 1; left;) {
        left = 0;
        for (unsigned i = api.n; i-- > 0;)
            if (api.c[i].req != NULL) {
                answer_ok(i);
                left = 1;
                break;
            }
    }
    char got[64] = "";
    for (unsigned i = 0; i < api.n; i++)
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld/%lld", i ? " " : "",
                 (long long)api.c[i].id, (long long)api.c[i].chat_id);
    int64_t last_a = 0, last_b = 0;
    bool ordered = api.n == 6;
    for (unsigned i = 0; i < api.n; i++) {
        int64_t *last = api.c[i].chat_id == 100 ? &last_a : &last_b;
        ordered = ordered && api.c[i].id > *last;
        *last = api.c[i].id;
    }
    tap_ok(ordered, "order: each chat's rows are called once each, in id order (%s)", got);
    tap_eq_int(api.overlaps, 0, "order: never two calls in flight to one chat");
    tap_eq_int(count_marks(REC_SENT, 0), 6, "order: all six marked sent");
    finish();
}

/* Row id of chat, as a commit leased it under token, handed over with prev. */
static tg_outbox_row_t handed(int64_t id, int64_t chat_id, int64_t prev, int64_t token)
{
    add_row(id, chat_id, 0);
    fake_row_t *r = find_row(id);
    r->state = ROW_CLAIMED;
    r->claimed_at = loop.now;
    r->token = token;
    return (tg_outbox_row_t){
        .id = id,
        .chat_id = chat_id,
        .method = r->method,
        .method_len = strlen(r->method),
        .body = r->body,
        .body_len = strlen(r->body),
        .prev_id = prev,
        .token = token,
    };
}

static void test_handoff(void)
{
    tg_sender_options_t o = options();
    uint32_t lease = 0;
    begin(&o);
    int64_t t = tg_sender_handoff_token(s, &lease);
    tap_ok(t != 0 && lease == o.lease_ms, "hand-off: a leading sender gives a token and its lease");
    unsigned claims = ob.claims;
    tg_outbox_row_t two[2] = {handed(1, 100, 0, t), handed(2, 100, 1, t)};
    tg_sender_take(s, two, 2, loop.now);
    settle();
    tap_ok(api.n == 1 && api.c[0].id == 1 && ob.claims == claims,
           "hand-off: the chat's first row goes at once, without a claim");
    answer_ok(0);
    tap_ok(api.n == 2 && api.c[1].id == 2, "hand-off: the next goes once the first is answered");
    answer_ok(1);
    tap_ok(count_marks(REC_SENT, 1) == 1 && count_marks(REC_SENT, 2) == 1 &&
               last_mark(2)->stale == false,
           "hand-off: both marked sent under the hand-off's token");

    t = tg_sender_handoff_token(s, &lease);
    tg_outbox_row_t r3 = handed(3, 100, 2, t);
    tg_sender_take(s, &r3, 1, loop.now);
    settle();
    tap_ok(call_of(3, 0) >= 0, "hand-off: a row after one sent lately goes");
    answer_all_ok();

    /* Row 4 of chat 300 was put back with a delay: not held, not done. */
    add_row(4, 300, 0);
    find_row(4)->not_before = loop.now + 5000;
    t = tg_sender_handoff_token(s, &lease);
    tg_outbox_row_t r5 = handed(5, 300, 4, t);
    tg_sender_take(s, &r5, 1, loop.now);
    advance(1000);
    tap_ok(call_of(5, 0) < 0 && count_marks(REC_RELEASE, 5) == 0,
           "hand-off: a row whose chat's earlier row is neither held nor known done waits, "
           "held and unsent");
    advance(10000);
    answer_all_ok();
    advance(1000);
    answer_all_ok();
    int c4 = call_of(4, 0), c5 = call_of(5, 0);
    tap_ok(c4 >= 0 && c5 > c4 && count_marks(REC_RELEASE, 5) == 0,
           "hand-off: once a claim brings the earlier row, both go, in id order (%d, %d)", c4,
           c5);
    tap_eq_int((long long)(met_self()->outbox_handed - met0.outbox_handed), 4,
               "hand-off: counted in outbox_handed");
    finish();

    o.lock_conninfo = "postgresql:///fake";
    begin(&o);
    tap_eq_int(tg_sender_handoff_token(s, &lease), 0, "hand-off: a standby gives no token");
    finish();
}

/*
 * Past half its capacity the sender claims only to bring an earlier row that
 * a held row waits for; those claims go on, 5 ms apart while they bring rows.
 */
static void test_waiting_claims(void)
{
    tg_sender_options_t o = options();
    uint32_t lease = 0;
    o.capacity = 8;
    begin(&o); /* its first claim finds nothing: the next one waits a poll period */
    int64_t t = tg_sender_handoff_token(s, &lease);
    tg_outbox_row_t rows[7];
    for (int i = 0; i < 6; i++)
        rows[i] = handed(10 + i, 1000 + i, 0, t);
    /* Row 30 of chat 2000 was put back with a delay: row 31 waits for it, held. */
    add_row(30, 2000, 0);
    find_row(30)->not_before = loop.now + 60000;
    rows[6] = handed(31, 2000, 30, t);
    for (int i = 0; i < 40; i++)
        add_row(100 + i, 3000 + i, 0); /* due, unclaimed: every claim brings some */
    tg_sender_take(s, rows, 7, loop.now);
    unsigned claims = ob.claims;
    advance(o.poll_ms + 50);
    unsigned made = ob.claims - claims;
    tap_ok(made >= 2 && made <= 1 + 50 / 5 + 1,
           "waiting claims: past half the capacity, claims for a waiting row go on, spaced "
           "(%u in 50 ms; one each 5 ms while they bring rows)", made);
    tap_ok(call_of(31, 0) < 0, "waiting claims: the waiting row stays unsent");
    finish();
}

/*
 * An answer lets its chat's next row be claimed at once, but claims start
 * at least 5 ms apart, and 20 ms after one that found nothing: answered
 * every millisecond, the sender does not walk the outbox at every answer.
 */
static void test_claim_gap(void)
{
    tg_sender_options_t o = options();
    uint32_t lease = 0;
    begin(&o); /* finds nothing */
    unsigned claims = ob.claims, answered = 0;
    uint64_t t0 = loop.now;
    for (int i = 0; i < 30; i++) {
        int64_t t = tg_sender_handoff_token(s, &lease);
        tg_outbox_row_t r = handed(200 + i, 5000 + i, 0, t);
        tg_sender_take(s, &r, 1, loop.now);
        advance(1);
        while (answered < api.n && api.c[answered].req == NULL)
            answered++;
        if (answered < api.n)
            answer_ok(answered++);
    }
    unsigned made = ob.claims - claims;
    uint64_t ms = loop.now - t0;
    tap_ok(answered >= 25 && made >= 1 && made <= ms / 20 + 1,
           "claim gap: claims that find nothing start at least 20 ms apart, an answer every ms "
           "or not (%u claims in %llu ms, %u answers)", made, (unsigned long long)ms, answered);
    finish();

    /* One chat's 40 rows in the outbox: every answer makes the next one claimable. */
    for (int i = 0; i < 40; i++)
        add_row(300 + i, 7000, 0);
    begin(&o);
    claims = ob.claims;
    t0 = loop.now;
    for (int i = 0; i < 40; i++) {
        advance(1);
        answer_all_ok();
    }
    made = ob.claims - claims;
    ms = loop.now - t0;
    int last = -1;
    for (int i = 0; i < 40; i++)
        if (call_of(300 + i, 0) >= 0)
            last = i;
    tap_ok(made >= 2 && made <= ms / 5 + 1 && last == 39,
           "claim gap: claims that bring rows start at least 5 ms apart (%u claims in %llu ms, "
           "rows up to %d of 40 sent)", made, (unsigned long long)ms, last + 1);
    finish();
}

/*
 * A claim's rows, older than rows handed over meanwhile, go into the held
 * list in id order (hold() walks from the batch's previous row): with one
 * call out at a time, each answer sends the lowest held row, so the calls
 * follow the ids, claimed and handed interleaved.
 */
static void test_held_order(void)
{
    tg_sender_options_t o = options();
    o.max_calls = 1;
    o.capacity = 64;
    uint32_t lease = 0;
    ob.hold_claims = true;
    begin(&o); /* its first claim waits, unanswered */
    int64_t t = tg_sender_handoff_token(s, &lease);
    tg_outbox_row_t rows[20];
    for (int i = 0; i < 20; i++) {
        add_row(11 + 2 * i, 1000 + 2 * i, 0);                    /* the claim brings these */
        rows[i] = handed(12 + 2 * i, 1001 + 2 * i, 0, t); /* handed over first */
    }
    tg_sender_take(s, rows, 20, loop.now); /* row 12 goes out at once */
    answer_claims(false);
    for (int i = 0; i < 60 && api.n < 40; i++) {
        answer_all_ok();
        advance(1);
    }
    bool ordered = api.n == 40;
    for (unsigned i = 0; ordered && i < api.n; i++)
        ordered = api.c[i].id == (i == 0 ? 12 : i == 1 ? 11 : (int64_t)i + 11);
    tap_ok(ordered, "held order: rows claimed after later rows were handed over are held and sent "
           "in id order (%u calls, the 3rd for row %lld)", api.n,
           api.n > 2 ? (long long)api.c[2].id : -1LL);
    answer_all_ok();
    finish();
}

/*
 * While every call allowed is out, a pass stops at its first row and only
 * a whole pass (PASS_FULL_MS apart) reaches the rows behind. Rows 200-399
 * handed over at t0 are held at most 180 ms; from about t0 + 150 a claim
 * brings older rows, 100-199, which go first, one a millisecond, for 100 ms:
 * at t0 + 180 the expired rows are behind them and only a whole pass finds
 * them. Each is released at most PASS_FULL_MS late, and none is sent after
 * its hold.
 */
static void test_saturated_release(void)
{
    tg_sender_options_t o = options();
    o.max_calls = 1;
    o.capacity = 1024;
    o.lease_ms = 400; /* margin 40, call timeout 180: a row is held at most 180 ms */
    uint32_t lease = 0;
    uint64_t t0 = loop.now;
    for (int i = 0; i < 100; i++) {
        add_row(100 + i, 4000 + i, 0);
        ob.rows[ob.nrows - 1].not_before = t0 + 150;
    }
    begin(&o);
    int64_t t = tg_sender_handoff_token(s, &lease);
    static tg_outbox_row_t rows[200];
    for (int i = 0; i < 200; i++)
        rows[i] = handed(200 + i, 5000 + i, 0, t);
    tg_sender_take(s, rows, 200, t0);
    for (int i = 0; i < 400; i++) {
        unsigned out = api.n; /* one call out: answered, the next goes at once */
        for (unsigned c = 0; c < out; c++)
            if (api.c[c].req != NULL)
                answer_ok(c);
        advance(1);
    }
    answer_all_ok();
    unsigned released = 0, late_sent = 0, late_release = 0, old_sent = 0;
    uint64_t held_max = 0;
    for (unsigned i = 0; i < ob.nmarks; i++) {
        const fake_mark_t *m = &ob.marks[i];
        if (m->what != REC_RELEASE || m->id < 200)
            continue;
        released++;
        late_release += m->held < 180 || m->held > 180 + 20 + 1;
        held_max = m->held > held_max ? m->held : held_max;
    }
    /* A call for a handed row after its hold is for one released before it (claimed again). */
    for (unsigned i = 0; i < api.n; i++) {
        old_sent += api.c[i].id < 200 && api.c[i].at < t0 + 180;
        if (api.c[i].id < 200 || api.c[i].at < t0 + 180)
            continue;
        bool again = false;
        for (unsigned k = 0; k < ob.nmarks && !again; k++)
            again = ob.marks[k].what == REC_RELEASE && ob.marks[k].id == api.c[i].id &&
                    ob.marks[k].at <= api.c[i].at;
        late_sent += !again;
    }
    tap_ok(old_sent > 0 && released >= 10 && late_release == 0 && late_sent == 0,
           "saturated: rows behind a full pool are released 180-201 ms after their hand-off "
           "(%u released, the latest at %llu ms; %u released out of time, %u sent after "
           "their hold; %u older rows sent before)", released, (unsigned long long)held_max,
           late_release, late_sent, old_sent);
    finish();
}

static void test_rate(void)
{
    tg_sender_options_t o = options();
    o.rate.global = (tg_rate_spec_t){10, 1000, 1}; /* 10/s, burst 1: 100 ms apart */
    o.capacity = 64;
    o.poll_ms = 5000; /* so that only the sender's own timer wakes it for the rate */
    for (int i = 0; i < 30; i++)
        add_row(i + 1, 1000 + i, 0); /* a chat each: only the global bucket limits */
    begin(&o);
    uint64_t t0 = loop.now;
    run_answering(2000, 10);
    unsigned in_window = 0, in_two = 0;
    uint64_t gap = UINT64_MAX;
    for (unsigned i = 0; i < api.n; i++) {
        in_window += api.c[i].at < t0 + 1000;
        in_two += api.c[i].at < t0 + 2000;
        if (i > 0 && api.c[i].at - api.c[i - 1].at < gap)
            gap = api.c[i].at - api.c[i - 1].at;
    }
    tap_eq_int(in_window, 10, "rate 10/s, burst 1: 10 calls in the first second");
    tap_ok(gap >= 100, "rate 10/s, burst 1: calls at least 100 ms apart (closest %llu ms)",
           (unsigned long long)gap);
    tap_eq_int(in_two, 20, "rate 10/s, burst 1: 20 calls in two seconds");
    finish();
}

static void test_stop(void)
{
    tg_sender_options_t o = options();
    add_row(1, 100, 0);
    add_row(2, 200, 0);
    add_row(3, 300, 0);
    add_row(4, 400, 0);
    add_row(5, 500, 0);
    o.max_calls = 3; /* rows 4 and 5 wait, held */
    begin(&o);
    int c1 = call_of(1, 0), c2 = call_of(2, 0), c3 = call_of(3, 0);
    if (!tap_ok(api.n == 3 && c1 >= 0 && c2 >= 0 && c3 >= 0, "stop: one row per chat in flight"))
        goto out;
    answer_429((unsigned)c2, 2); /* row 2 stays held, paused in memory */
    unsigned claims = ob.claims;
    tg_sender_stop(s, on_idle, NULL);
    /* Row 2's 429 freed a call: row 4 went; rows 2 and 5 are held, not in flight. */
    int c4 = call_of(4, 0);
    tap_ok(ob.nmarks == 2 && count_marks(REC_RELEASE, 2) == 1 && count_marks(REC_RELEASE, 5) == 1 &&
               ob.release_batches == 1 && c4 >= 0,
           "stop: the held rows not in flight are released at once, in one write (%u); the "
           "others are not",
           ob.release_batches);
    settle();
    tap_eq_int(idle_runs, 0, "stop: not idle while calls are out");
    answer_ok((unsigned)c1);
    answer((unsigned)c3, 502, BAD_GATEWAY, -1);
    if (c4 >= 0)
        answer_ok((unsigned)c4);
    tap_ok(last_mark(1) != NULL && last_mark(1)->what == REC_SENT && last_mark(3) != NULL &&
               last_mark(3)->what == REC_RETRY && last_mark(4) != NULL &&
               last_mark(4)->what == REC_SENT,
           "stop: calls in flight finish and are recorded");
    tap_eq_int(idle_runs, 1, "stop: idle once the marks are written");
    advance(10000);
    tap_ok(ob.claims == claims && api.n == 4, "stop: no claim or call after stop");
out:
    finish();
}

/*
 * Marks the store cannot take (down: -EAGAIN; its tries used up:
 * -ECONNRESET) are made again until they are written; nothing is claimed
 * meanwhile, and a stopping sender is idle only once they are written.
 */
static void test_marks_retried(void)
{
    tg_sender_options_t o = options();
    int c1, c2;
    if (!begin_two_chats(&o, "marks retried", &c1, &c2))
        goto out;
    ob.down = true;
    answer_ok((unsigned)c1);
    answer((unsigned)c2, 502, BAD_GATEWAY, -1);
    add_row(3, 300, 0);
    unsigned claims = ob.claims;
    advance(5000);
    tap_ok(ob.nmarks == 0 && ob.claims == claims && api.n == 2,
           "marks retried: none written while the store is down; no claim tried meanwhile");
    tg_sender_stop(s, on_idle, NULL);
    advance(5000);
    tap_eq_int(idle_runs, 0, "marks retried: a stopping sender is not idle while its marks wait");
    ob.down = false;
    ob.reset_marks = 1;
    advance(6000);
    tap_ok(count_marks(REC_SENT, 1) == 1 && count_marks(REC_RETRY, 2) == 1 && ob.lost == 1,
           "marks retried: once it is back each is written, once (one lost on the way and made "
           "again)");
    tap_eq_int(idle_runs, 1, "marks retried: then the stopping sender is idle");
    tap_eq_int(api.n, 2, "marks retried: and no row was sent again");
out:
    ob.down = false;
    finish();
}

/* Only the lock's holder claims and sends; losing it stops both at once. */
static void test_leader(void)
{
    tg_sender_options_t o = options();
    o.lock_conninfo = "postgresql:///fake";
    o.takeover_ms = 1000;
    add_row(1, 100, 0);
    add_row(2, 200, 0);
    add_row(3, 100, 0);
    met_slot_t m0 = *met_self();
    begin(&o);
    tap_ok(lk.exists && lk.key == tg_sender_lock_key(TOKEN),
           "leader: the sender asks for the bot's lock");
    tap_ok(tg_sender_lock_key("123456:another-secret") == lk.key &&
               tg_sender_lock_key("123457:test-token") != lk.key,
           "leader: the key is the bot id's, whatever the secret part");
    advance(5000);
    tap_ok(ob.claims == 0 && api.n == 0 && met_self()->sender_leader == 0,
           "leader: a standby neither claims nor sends");
    lock_set(true);
    uint64_t t0 = loop.now;
    tap_ok(met_self()->sender_leader == 1 &&
               met_self()->sender_takeovers - m0.sender_takeovers == 1,
           "leader: granted, the gauge says 1 and a takeover is counted");
    advance(o.takeover_ms - 1);
    tap_eq_int(ob.claims, 0, "leader: no claim during the takeover wait");
    advance(1);
    int c1 = call_of(1, 0), c2 = call_of(2, 0);
    if (!tap_ok(c1 >= 0 && c2 >= 0 && api.c[c1].at == t0 + o.takeover_ms,
                "leader: then both chats' heads go"))
        goto out;
    answer_ok((unsigned)c1);
    int c3 = call_of(3, 0);
    tap_ok(c3 >= 0 && api.c[c3].at == api.c[c1].at,
           "leader: the chat's next row is claimed and sent as soon as the first is marked");
    answer_429((unsigned)c2, 2); /* row 2 stays held, paused in memory */
    unsigned claims = ob.claims, calls = api.n, marks = ob.nmarks;
    lock_set(false);
    tap_ok(met_self()->sender_leader == 0, "leader: lost, the gauge says 0");
    tap_ok(ob.nmarks == marks + 1 && last_mark(2) != NULL && last_mark(2)->what == REC_RELEASE,
           "leader: lost, the held row is released at once, the one in flight is not");
    answer_ok((unsigned)c3);
    tap_ok(last_mark(3) != NULL && last_mark(3)->what == REC_SENT,
           "leader: the call that was out is still recorded");
    advance(10000);
    tap_ok(ob.claims == claims && api.n == calls, "leader: no claim or call after the loss");
    lock_set(true);
    advance(o.takeover_ms);
    int again = call_of(2, calls);
    tap_ok(again >= 0 && met_self()->sender_takeovers - m0.sender_takeovers == 2,
           "leader: granted again, a second takeover, and the released row goes");
    answer_all_ok();
out:
    finish();
    tap_ok(!lk.exists, "leader: a stopped sender gives its lock up");
}

int main(void)
{
    log_setup(LOG_OFF, LOG_FORMAT_TEXT);
    int r = rx_loop_init(&loop, 8);
    if (r < 0)
        return tap_skip_all("no io_uring: %s", rx_strerror_setup(r));
    loop.now = 1000000; /* the same clock on every run */
    test_call_path();
    test_sent();
    test_final();
    test_bad_method();
    test_refused();
    test_backoff();
    test_transport();
    test_limited_short();
    test_limited_long();
    test_limited_huge();
    test_hold_release();
    test_hold_margin();
    test_limited_global();
    test_migrate();
    test_migrate_merge();
    test_migrate_loops();
    test_sent_batch();
    test_run();
    test_run_put_back();
    test_order();
    test_handoff();
    test_waiting_claims();
    test_claim_gap();
    test_held_order();
    test_saturated_release();
    test_rate();
    test_stop();
    test_marks_retried();
    test_leader();
    rx_loop_dispose(&loop);
    return tap_done();
}
