/* SPDX-License-Identifier: MIT */
/*
 * sender.c - the outbox sender and single Bot API calls.
 *
 * Rows are claimed from the outbox in id order (a lease, shared safely with
 * other processes through SKIP LOCKED) and held in memory, at most
 * `capacity` at a time. A pass over them, in id order, sends the first row of
 * each chat that has none in flight when the rate limiter lets it pass; the
 * answer decides: sent, paused (429), re-targeted (migrate_to_chat_id),
 * retried later with backoff (5xx, transport errors) or failed (other 4xx,
 * attempts used up). Every decision is written back to the row by a mark,
 * made again until it is written when the database cannot take it now (see
 * tg_mark_t), so a crash loses nothing: an unrecorded row's lease expires
 * and it is sent again (at-least-once).
 *
 * A row must never outlive its lease in memory, or another claim (this
 * process's or another's) would take it too and it would go out twice. The
 * lease starts no earlier than the claim is submitted, so a row's time is
 * counted from then: it may wait unsent (its chat is slow or paused) for
 * hold_ms = lease - timeout - margin, then is released; a call started
 * within that ends (answer or deadline) by lease - margin; the margin, a
 * tenth of the lease, is left for the mark to commit and for the loop's
 * clock being a turn late. A timeout that leaves less than a margin of hold
 * is refused at start.
 *
 * Per-chat order rests on the store: a claim returns only a chat's oldest
 * unsent row, so a row put back (retry, release) comes again before any
 * later row of its chat. In memory the held rows stay sorted by id, only the
 * first held row of a chat can go, and a row put back takes its chat's later
 * held rows back with it (there are some only when a retarget moved a row
 * into a chat already held).
 *
 * Only the leader sends (see tg_sender.h): a sender claims only while its
 * lock is held, and gives everything back when the lock goes.
 *
 * Rows this process's processor commits come without a claim when the
 * sender leads (tg_sender_handoff_token(), tg_sender_take()): the commit
 * leased them under one of this outbox's tokens, and each says which open
 * row of its chat precedes it. A row goes when that row is held, or known
 * done (sent or failed for good: a small cache of the ids finished lately),
 * or there is none; otherwise it waits, held, for a claim to bring that row
 * (which then goes first, in id order), or to see it done. So the hand-off
 * keeps the order the claims keep, and saves a reply the claim's two round
 * trips, which under load wait behind the other transactions of their
 * connection.
 */
#include "tg_sender.h"

#include "core.h"
#include "log.h"
#include "met.h"
#include "tg_outbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/*
 * A 429 whose retry_after is at most this is waited out in memory (the row
 * keeps its lease); a longer one puts the row back with a delay.
 */
#define PAUSE_IN_MEMORY_MS 10000
/*
 * Longest pause a 429 imposes, ms. Telegram's retry_after is seconds to
 * minutes; a far larger one (a proxy's mistake, a bogus answer) would stop the
 * chat, or every chat, until a restart. After an hour the row is simply sent
 * again, and a real limit answers with another 429.
 */
#define PAUSE_MAX_MS (3600u * 1000)
/* Ids of rows finished lately, for the hand-off's order check: a direct-mapped cache. */
#define FINISHED_SLOTS 4096
/* Two chats limited within this window mean the limit is the bot's, not a chat's. */
#define GLOBAL_429_WINDOW_MS 1000
/* Sent marks queued that are written at once, without waiting out opt.mark_delay_ms. */
#define MARK_BATCH 64
/*
 * A mark not written for a passing reason (no connection ready, the
 * outbox's queue full, its tries used up, no answer in time) is made again
 * after this wait, doubled with every failure in a row up to the cap.
 */
#define MARK_RETRY_MS 100
#define MARK_RETRY_MAX_MS 2000
/*
 * A claim starts at least CLAIM_GAP_MS after the previous one started, and
 * CLAIM_GAP_LONG_MS after one that found nothing (an answer makes one chat's
 * next row claimable: a claim at every answer walks the outbox for one row;
 * a row held rows wait for may be another process's, or put back with a
 * delay, and no claim brings it before its time). A claim walks up to a
 * thousand open rows: made at every answer, claims ran back to back and
 * mostly found nothing (bench/RESULTS.md). Claims that bring rows keep the
 * short gap, full or not: behind, the sender needs them to bring the rows
 * its handed-over ones wait for.
 */
#define CLAIM_GAP_MS 5
#define CLAIM_GAP_LONG_MS 20

/*
 * A pass over the held rows while every call allowed is out can send
 * nothing: it stops at its first row unless a whole pass is due, at most
 * PASS_FULL_MS after the last one. Behind, thousands of rows are held and
 * an answer comes every fraction of a millisecond: a whole pass per answer
 * was a walk of the whole list for one send. A whole pass releases the rows
 * held as long as they may be (a partial one releases those it visits); the
 * release of a row no pass visits comes at most PASS_FULL_MS late, within
 * the lease's margin, and such a row is never sent late: every row is
 * checked for its release before it is sent.
 */
#define PASS_FULL_MS 20

/* ---- one call ---- */

static void on_call_done(httpc_req_t *req, int err, const httpc_response_t *resp)
{
    tg_call_t *call = container_of(req, tg_call_t, req);
    explicit_bzero(call->path, sizeof(call->path));
    if (err != 0) {
        call->cb(call, err, NULL);
        return;
    }
    tg_api_result_t res;
    tg_api_parse(resp->body, resp->body_len, resp->status, resp->retry_after, &res);
    call->cb(call, 0, &res);
}

int tg_call_start(tg_call_t *call, httpc_pool_t *pool, const char *token, const char *method,
                  const char *json, size_t len, uint32_t timeout_ms, tg_call_cb cb)
{
    int n = snprintf(call->path, sizeof(call->path), "/bot%s/%s", token, method);
    if (n < 0 || (size_t)n >= sizeof(call->path)) {
        explicit_bzero(call->path, sizeof(call->path));
        return -ENAMETOOLONG;
    }
    memset(&call->req, 0, sizeof(call->req));
    call->req.method = "POST";
    call->req.path = call->path;
    call->req.content_type = "application/json";
    call->req.body = json;
    call->req.body_len = len;
    call->req.timeout_ms = timeout_ms;
    call->req.cb = on_call_done;
    /*
     * A Bot API call may send a message: never repeated by the pool behind
     * the rate limiter's back. A stale connection's failure comes back as a
     * transport error, retried through the limiter like any other.
     */
    call->req.once = true;
    call->cb = cb;
    int r = httpc_request(pool, &call->req);
    if (r < 0)
        explicit_bzero(call->path, sizeof(call->path));
    return r;
}

/* ---- the sender ---- */

typedef struct tg_msg tg_msg_t;
typedef struct tg_mark tg_mark_t;

/* Decisions for a row, each written to it by a mark. */
enum { REC_SENT, REC_RETRY, REC_FAIL, REC_RETARGET, REC_RELEASE };

/*
 * A decision waiting to be written to its row, or being written. Marks are
 * idempotent and name the claim they follow (tg_outbox.h), so one that may
 * not have been written is made again until it is: a row sent is not sent
 * again because a database outage swallowed its mark.
 */
struct tg_mark {
    tg_mark_t *next; /* in its queue, or among the marks written with it */
    tg_sender_t *s;
    int what;          /* REC_* */
    int64_t id;        /* the row */
    int64_t token;     /* of the claim that leased it */
    uint64_t delay_ms; /* retry */
    int64_t new_chat;  /* retarget */
    char *error;       /* retry, fail: a copy, or NULL */
};

typedef struct mark_queue {
    tg_mark_t *head, *tail;
} mark_queue_t;

struct tg_msg {
    tg_call_t call;
    tg_sender_t *s;
    tg_msg_t *prev, *next; /* the sender's list, in id order */
    tg_msg_t *hnext;       /* in its bucket of the sender's id table */
    int64_t id;
    int64_t chat_id;
    char method[TG_METHOD_MAX];
    char *body;
    size_t body_len;
    int attempts;        /* sends before this claim */
    int64_t token;       /* the claim's token: the row's marks name it */
    uint64_t claimed_ms; /* loop time its claim was submitted: the lease started no earlier */
    bool in_flight;      /* a call is out */
    uint64_t held_ns;    /* monotonic, taken; 0 once its first call went (outbox_wait) */
    uint64_t call_ns;    /* monotonic, its call out started (tgring_botapi_call_seconds) */
    int64_t wait_prev;   /* handed over before its chat's previous open row came: that row */
    uint32_t pass;       /* last scheduling pass that saw this chat (chat marks) */
};

struct tg_sender {
    rx_loop_t *loop;
    tg_sender_options_t opt;
    tg_outbox_t outbox; /* the outbox table, through opt.db */
    char *token;
    tg_rate_t *rate;
    tg_msg_t *head, *tail; /* held rows, in id order */
    unsigned held;         /* rows in the list */
    tg_msg_t **by_id;      /* the held rows by id: chained buckets */
    unsigned id_mask;      /* by_id has id_mask + 1 buckets, at least held */
    unsigned waiting;      /* of those, rows with wait_prev set */
    unsigned in_flight;    /* calls out */
    unsigned recording;    /* marks not written yet: queued, or out */
    bool claiming;         /* a claim is out */
    uint64_t claim_ms;     /* loop time the claim out (or the last) was submitted */
    bool claimed;          /* one was: claim_ms is set */
    bool claimed_none;     /* the last claim found nothing (or failed) */
    uint64_t hold_ms;      /* longest a row waits unsent after its claim, ms */
    bool stopping;
    uint32_t pass;
    uint64_t full_pass_ms;  /* the next pass walks every held row from this loop time on */
    int64_t last_429_chat;
    uint64_t last_429_ms;
    rx_defer_t pump_defer;
    rx_timer_t timer;       /* next rate-limit wake-up */
    rx_timer_t poll_timer;  /* next claim after an empty one */
    rx_timer_t gap_timer;   /* next claim after the gap from the previous one */
    uint64_t next_claim_ms; /* no claim before this (loop ms) */
    db_lock_t *lock;        /* the bot's leader lock; NULL without opt.lock_conninfo, or stopped */
    bool leading;           /* the lock is held (or there is none): claims and sends allowed */
    uint64_t lead_ms;       /* no claim before this (loop ms): the takeover wait */
    void (*on_idle)(void *arg);
    void *idle_arg;
    rx_defer_t idle_defer;
    /* Chat marks for one pass: open addressing over 2 * capacity slots. */
    int64_t *mark_chat;
    uint32_t *mark_pass;
    uint32_t mark_mask;
    /*
     * Marks to write, at the end of the turn that made them: the sent ones
     * in one statement, one commit for all, the releases likewise; the
     * others one each.
     */
    mark_queue_t sent_q, release_q, other_q;
    rx_defer_t mark_defer;
    rx_timer_t mark_timer;  /* the next try after a passing failure */
    rx_timer_t batch_timer; /* sent marks wait opt.mark_delay_ms to be written together */
    unsigned nsent_q;       /* marks in sent_q */
    unsigned mark_fails;   /* passing failures in a row */
    bool detached;         /* tg_sender_detach() was called: nothing more is written */
    int64_t *sent_ids;     /* [TG_OUTBOX_SENT_MAX], for one tg_outbox_sent_many() */
    int64_t *sent_tokens;  /* [TG_OUTBOX_SENT_MAX], their claims' tokens */
    int64_t *finished;     /* [FINISHED_SLOTS] rows sent or failed for good, by id % slots */
};

static void pump(tg_sender_t *s);

static void on_pump(rx_loop_t *loop, rx_defer_t *d)
{
    pump(container_of(d, tg_sender_t, pump_defer));
}

static void schedule(tg_sender_t *s)
{
    rx_defer(s->loop, &s->pump_defer, on_pump);
}

/* True while this sender may claim and send: it leads and is not stopping. */
static bool active(const tg_sender_t *s)
{
    return s->leading && !s->stopping;
}

static void on_idle_defer(rx_loop_t *loop, rx_defer_t *d)
{
    tg_sender_t *s = container_of(d, tg_sender_t, idle_defer);
    if (s->on_idle != NULL && s->in_flight == 0 && s->recording == 0 && !s->claiming) {
        void (*cb)(void *) = s->on_idle;
        s->on_idle = NULL;
        cb(s->idle_arg);
    }
}

static void check_idle(tg_sender_t *s)
{
    if (s->stopping && s->on_idle != NULL && s->in_flight == 0 && s->recording == 0 && !s->claiming)
        rx_defer(s->loop, &s->idle_defer, on_idle_defer);
}

static unsigned id_bucket(const tg_sender_t *s, int64_t id)
{
    return (unsigned)(((uint64_t)id * 0x9E3779B97F4A7C15u) >> 32) & s->id_mask;
}

/* Adds m to the id table, which grows to keep a bucket per held row. */
static void id_add(tg_sender_t *s, tg_msg_t *m)
{
    if (s->held > s->id_mask + 1) {
        unsigned slots = 2 * (s->id_mask + 1);
        tg_msg_t **old = s->by_id;
        unsigned old_slots = s->id_mask + 1;
        s->by_id = xcalloc(slots, sizeof(*s->by_id));
        s->id_mask = slots - 1;
        for (unsigned i = 0; i < old_slots; i++)
            for (tg_msg_t *e = old[i], *n; e != NULL; e = n) {
                n = e->hnext;
                unsigned b = id_bucket(s, e->id);
                e->hnext = s->by_id[b];
                s->by_id[b] = e;
            }
        free(old);
    }
    unsigned b = id_bucket(s, m->id);
    m->hnext = s->by_id[b];
    s->by_id[b] = m;
}

static void id_remove(tg_sender_t *s, tg_msg_t *m)
{
    for (tg_msg_t **at = &s->by_id[id_bucket(s, m->id)]; *at != NULL; at = &(*at)->hnext)
        if (*at == m) {
            *at = m->hnext;
            return;
        }
}

static void msg_unlink(tg_sender_t *s, tg_msg_t *m)
{
    id_remove(s, m);
    if (m->prev != NULL)
        m->prev->next = m->next;
    else
        s->head = m->next;
    if (m->next != NULL)
        m->next->prev = m->prev;
    else
        s->tail = m->prev;
    s->held--;
    if (m->wait_prev != 0)
        s->waiting--;
    free(m->body);
    free(m);
}

/* ---- marks ---- */

static void mq_push(mark_queue_t *q, tg_mark_t *k)
{
    k->next = NULL;
    if (q->tail != NULL)
        q->tail->next = k;
    else
        q->head = k;
    q->tail = k;
}

/* Puts the chain k (linked by next, NULL-ended) back at the front of q. */
static void mq_unshift(mark_queue_t *q, tg_mark_t *k)
{
    tg_mark_t *last = k;
    while (last->next != NULL)
        last = last->next;
    last->next = q->head;
    q->head = k;
    if (q->tail == NULL)
        q->tail = last;
}

/* Takes up to max marks off the front of q (not empty) as a chain. OUT: *n, how many. */
static tg_mark_t *mq_take(mark_queue_t *q, unsigned max, unsigned *n)
{
    tg_mark_t *k = q->head, *last = k;
    *n = 1;
    while (*n < max && last->next != NULL) {
        last = last->next;
        (*n)++;
    }
    q->head = last->next;
    if (q->head == NULL)
        q->tail = NULL;
    last->next = NULL;
    return k;
}

/* The queue of a decision's marks: sent and release marks are written many to a statement. */
static mark_queue_t *mark_queue(tg_sender_t *s, int what)
{
    return what == REC_SENT ? &s->sent_q : what == REC_RELEASE ? &s->release_q : &s->other_q;
}

/* Frees the chain k. Returns how many marks it had. */
static unsigned marks_free(tg_mark_t *k)
{
    unsigned n = 0;
    for (tg_mark_t *next; k != NULL; k = next, n++) {
        next = k->next;
        free(k->error);
        free(k);
    }
    return n;
}

static void flush_marks(tg_sender_t *s);
static void on_mark_defer(rx_loop_t *loop, rx_defer_t *d);
static void on_batch_timer(rx_loop_t *loop, rx_timer_t *t);

static void on_mark_timer(rx_loop_t *loop, rx_timer_t *t)
{
    tg_sender_t *s = container_of(t, tg_sender_t, mark_timer);
    flush_marks(s);
    schedule(s); /* claims wait for the queued marks */
}

/* A passing failure: the queued marks are made again after a wait that grows while they fail. */
static void mark_backoff(tg_sender_t *s, int err)
{
    uint64_t d = MARK_RETRY_MS;
    for (unsigned i = 0; i < s->mark_fails && d < MARK_RETRY_MAX_MS; i++)
        d *= 2;
    if (d > MARK_RETRY_MAX_MS)
        d = MARK_RETRY_MAX_MS;
    if (s->mark_fails++ == 0)
        log_warn("outbox_record_retry",
                 "%u marks not written yet: %s; made again until they are, no claim meanwhile",
                 s->recording, strerror(-err));
    if (!rx_timer_active(&s->mark_timer))
        rx_timer_start(s->loop, &s->mark_timer, d, on_mark_timer);
}

static void on_marked(void *arg, int err)
{
    tg_mark_t *k = arg;
    tg_sender_t *s = k->s;

    if (err == -EBADMSG && k->what == REC_RETARGET && !s->detached) {
        /*
         * Refused for the row's body (not a JSON object): left as it is, the
         * row would be sent, migrated and refused again at every lease. It is
         * unchanged and still claimed: a fail mark takes this one's place.
         */
        char why[160];
        snprintf(why, sizeof(why),
                 "migrate_to_chat_id %lld: the database refused to re-target the row (its body "
                 "is not a JSON object)",
                 (long long)k->new_chat);
        log_warn("outbox_rejected", "row %lld: %s (final, not retried)", (long long)k->id, why);
        met_self()->outbox_failed++;
        k->what = REC_FAIL;
        free(k->error);
        k->error = xstrdup(why);
        mq_push(&s->other_q, k);
        rx_defer(s->loop, &s->mark_defer, on_mark_defer);
        return;
    }
    /* Written or not, it can be made again: only its effect counts, once. */
    if ((err == -EAGAIN || err == -ECONNRESET || err == -ETIMEDOUT) && !s->detached) {
        mq_unshift(mark_queue(s, k->what), k);
        mark_backoff(s, err);
        return;
    }
    if (err != 0)
        log_warn("outbox_record_failed",
                 "row %lld%s: not recorded: %s; the row is claimed again when its lease ends",
                 (long long)k->id, k->next != NULL ? " and others" : "", strerror(-err));
    else if (s->mark_fails > 0)
        log_info("outbox_record_resumed", "marks are written again");
    if (err == 0)
        s->mark_fails = 0;
    s->recording -= marks_free(k);
    check_idle(s);
    if (active(s))
        schedule(s);
}

/*
 * Submits the queued marks of q (sent or release), at most
 * TG_OUTBOX_SENT_MAX, in one statement. Returns 0 or < 0.
 */
static int submit_many(tg_sender_t *s, mark_queue_t *q)
{
    unsigned n, i = 0;
    tg_mark_t *k = mq_take(q, TG_OUTBOX_SENT_MAX, &n);
    for (tg_mark_t *p = k; p != NULL; p = p->next, i++) {
        s->sent_ids[i] = p->id;
        s->sent_tokens[i] = p->token;
    }
    int r = q == &s->sent_q
                ? tg_outbox_sent_many(&s->outbox, s->sent_ids, s->sent_tokens, n, on_marked, k)
                : tg_outbox_release_many(&s->outbox, s->sent_ids, s->sent_tokens, n, on_marked, k);
    if (r < 0)
        mq_unshift(q, k);
    return r;
}

/* Submits the first queued mark other than sent. Returns 0 or < 0. */
static int submit_other(tg_sender_t *s)
{
    unsigned n;
    tg_mark_t *k = mq_take(&s->other_q, 1, &n);
    int r;
    switch (k->what) {
    case REC_RETRY:
        r = tg_outbox_retry(&s->outbox, k->id, k->token, k->delay_ms, k->error, on_marked, k);
        break;
    case REC_FAIL:
        r = tg_outbox_fail(&s->outbox, k->id, k->token, k->error, on_marked, k);
        break;
    case REC_RETARGET:
        r = tg_outbox_retarget(&s->outbox, k->id, k->token, k->new_chat, on_marked, k);
        break;
    default:
        r = tg_outbox_release(&s->outbox, k->id, k->token, on_marked, k);
        break;
    }
    if (r < 0)
        mq_unshift(&s->other_q, k);
    return r;
}

/* True while marks wait to be submitted: claims wait for them (see pump()). */
static bool marks_queued(const tg_sender_t *s)
{
    return s->sent_q.head != NULL || s->release_q.head != NULL || s->other_q.head != NULL;
}

/* Submits every queued mark, unless a wait after a failure runs or the sender is detached. */
static void flush_marks(tg_sender_t *s)
{
    if (s->detached || rx_timer_active(&s->mark_timer))
        return;
    rx_timer_stop(s->loop, &s->batch_timer);
    s->nsent_q = 0;
    while (marks_queued(s)) {
        int r = s->sent_q.head != NULL      ? submit_many(s, &s->sent_q)
                : s->release_q.head != NULL ? submit_many(s, &s->release_q)
                                            : submit_other(s);
        if (r < 0) {
            mark_backoff(s, r);
            return;
        }
    }
}

static void on_mark_defer(rx_loop_t *loop, rx_defer_t *d)
{
    flush_marks(container_of(d, tg_sender_t, mark_defer));
}

static void on_batch_timer(rx_loop_t *loop, rx_timer_t *t)
{
    tg_sender_t *s = container_of(t, tg_sender_t, batch_timer);
    flush_marks(s);
    schedule(s); /* claims wait for the queued marks */
}


/* Records a decision for row m, then forgets m: its mark is written at the end of the turn. */
static void record(tg_sender_t *s, tg_msg_t *m, int what, uint64_t delay_ms, const char *error,
                   int64_t new_chat)
{
    if (what == REC_SENT || what == REC_FAIL)
        s->finished[(uint64_t)m->id % FINISHED_SLOTS] = m->id;
    tg_mark_t *k = xcalloc(1, sizeof(*k));
    k->s = s;
    k->what = what;
    k->id = m->id;
    k->token = m->token;
    k->delay_ms = delay_ms;
    k->new_chat = new_chat;
    k->error = error != NULL ? xstrndup(error, strnlen(error, TG_OUTBOX_ERROR_MAX)) : NULL;
    mq_push(mark_queue(s, what), k);
    s->recording++;
    msg_unlink(s, m);
    if (what == REC_SENT && s->opt.mark_delay_ms > 0 && !s->stopping &&
        ++s->nsent_q < MARK_BATCH) {
        /* Written together a moment later: fewer transactions on the outbox's lane. */
        if (!rx_timer_active(&s->batch_timer))
            rx_timer_start(s->loop, &s->batch_timer, s->opt.mark_delay_ms, on_batch_timer);
        return;
    }
    rx_defer(s->loop, &s->mark_defer, on_mark_defer);
}

/*
 * Records a decision that puts row m back in the store (retry, retarget,
 * release): the later held rows of its chat go back with it, so that none of
 * them can leave before it.
 */
static void put_back(tg_sender_t *s, tg_msg_t *m, int what, uint64_t delay_ms, const char *error,
                     int64_t new_chat)
{
    int64_t chat = m->chat_id, id = m->id;
    tg_msg_t *next = m->next;
    record(s, m, what, delay_ms, error, new_chat);
    for (tg_msg_t *n; next != NULL; next = n) {
        n = next->next;
        if (next->chat_id == chat && next->id > id && !next->in_flight)
            record(s, next, REC_RELEASE, 0, NULL, 0);
    }
}

/* Gives back every held row not in flight (stop, or the lock lost). */
static void release_all(tg_sender_t *s)
{
    for (tg_msg_t *m = s->head, *next; m != NULL; m = next) {
        next = m->next;
        if (!m->in_flight)
            record(s, m, REC_RELEASE, 0, NULL, 0);
    }
}

static uint64_t backoff_ms(const tg_sender_t *s, int attempts)
{
    uint64_t d = s->opt.backoff_ms;
    for (int i = 0; i < attempts && d < s->opt.backoff_max_ms; i++)
        d *= 2;
    if (d > s->opt.backoff_max_ms)
        d = s->opt.backoff_max_ms;
    /* Jitter in [d/2, d], so that rows failing together do not come back together. */
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = (uint32_t)s->loop->now * 2654435761u;
    return d / 2 + (d / 2) * (rnd % 1024) / 1024;
}

/* A transient failure: again later, or failed when the attempts are used up. */
static void retry_or_fail(tg_sender_t *s, tg_msg_t *m, const char *why)
{
    if (m->attempts + 1 >= (int)s->opt.max_attempts) {
        log_warn("outbox_failed", "row %lld to chat %lld: giving up after %d attempts: %s",
                 (long long)m->id, (long long)m->chat_id, m->attempts + 1, why);
        met_self()->outbox_failed++;
        record(s, m, REC_FAIL, 0, why, 0);
        return;
    }
    uint64_t d = backoff_ms(s, m->attempts);
    log_info("outbox_retry", "row %lld to chat %lld: %s; again in %llu ms", (long long)m->id,
             (long long)m->chat_id, why, (unsigned long long)d);
    met_self()->outbox_retried++;
    put_back(s, m, REC_RETRY, d, why, 0);
}

/* A row that can never be sent as it is: failed for good, so that its chat's next rows can go. */
static void refuse(tg_sender_t *s, tg_msg_t *m, const char *why)
{
    log_warn("outbox_rejected", "row %lld to chat %lld: %s (final, not retried)", (long long)m->id,
             (long long)m->chat_id, why);
    met_self()->outbox_failed++;
    record(s, m, REC_FAIL, 0, why, 0);
}

/*
 * Follows a migrate_to_chat_id answer, unless that would never end: a
 * migration to the row's own chat is refused at once. A retarget counts as an
 * attempt (tg_outbox_retarget()), so a chain that comes back to a chat it
 * left (A to B to A) fails the row once its attempts are used up, as any
 * other repeated failure does; this bound is the guard against such cycles.
 */
static void migrate(tg_sender_t *s, tg_msg_t *m, int64_t to)
{
    char why[128];
    if (to == m->chat_id) {
        snprintf(why, sizeof(why), "migrate_to_chat_id %lld is the row's own chat", (long long)to);
        refuse(s, m, why);
        return;
    }
    if (m->attempts + 1 >= (int)s->opt.max_attempts) {
        snprintf(why, sizeof(why),
                 "migrate_to_chat_id %lld: giving up after %d attempts (a migration cycle?)",
                 (long long)to, m->attempts + 1);
        refuse(s, m, why);
        return;
    }
    log_info("outbox_migrated", "row %lld: chat %lld is now %lld; re-targeted", (long long)m->id,
             (long long)m->chat_id, (long long)to);
    met_self()->outbox_migrated++;
    put_back(s, m, REC_RETARGET, 0, NULL, to);
}

static void on_answer(tg_call_t *call, int err, const tg_api_result_t *res)
{
    tg_msg_t *m = container_of(call, tg_msg_t, call);
    tg_sender_t *s = m->s;
    char why[TG_API_DESC_MAX + 32];

    m->in_flight = false;
    s->in_flight--;
    if (err != -ECANCELED)
        met_observe_latency(&met_self()->botapi_call, (double)(core_mono_ns() - m->call_ns) / 1e9);
    schedule(s);
    if (err != 0) {
        snprintf(why, sizeof(why), "transport: %s", strerror(-err));
        retry_or_fail(s, m, why);
        return;
    }
    if (res->json)
        snprintf(why, sizeof(why), "%d %s", res->error_code, res->description);
    else
        snprintf(why, sizeof(why), "%d (not a Bot API answer)", res->error_code);
    switch (tg_api_classify(res)) {
    case TG_API_OK:
        met_self()->outbox_sent++;
        record(s, m, REC_SENT, 0, NULL, 0);
        /*
         * Its chat's next row is claimable once the mark commits: claim at
         * once (the outbox's lane runs the claim after the mark).
         */
        s->next_claim_ms = 0;
        return;
    case TG_API_RETRY_AFTER: {
        uint64_t now = rx_now(s->loop);
        uint64_t wait = (uint64_t)(res->retry_after >= 0 ? res->retry_after : 1) * 1000;
        met_self()->outbox_limited++;
        if (wait > PAUSE_MAX_MS) {
            log_warn("outbox_pause_clamped",
                     "row %lld: retry_after %lld s from the Bot API; pausing %u s instead",
                     (long long)m->id, (long long)res->retry_after, PAUSE_MAX_MS / 1000);
            wait = PAUSE_MAX_MS;
        }
        /*
         * Telegram does not say whether a 429 is about the chat or the bot
         * as a whole. One chat limited is taken as that chat's limit; a
         * second chat limited within a second means the bot's.
         */
        bool global = m->chat_id == 0 ||
                      (s->last_429_ms != 0 && now - s->last_429_ms <= GLOBAL_429_WINDOW_MS &&
                       s->last_429_chat != m->chat_id);
        s->last_429_chat = m->chat_id;
        s->last_429_ms = now;
        if (!global && tg_rate_pause_chat(s->rate, m->chat_id, (int64_t)(now + wait)) < 0)
            global = true;
        if (global) {
            met_self()->outbox_global_pauses++;
            tg_rate_pause_all(s->rate, (int64_t)(now + wait));
        }
        log_warn("outbox_limited", "row %lld: 429 from the Bot API; pausing %s for %llu ms",
                 (long long)m->id, global ? "all chats" : "this chat", (unsigned long long)wait);
        if (wait > PAUSE_IN_MEMORY_MS || wait * 2 > s->opt.lease_ms || !active(s)) {
            met_self()->outbox_retried++;
            put_back(s, m, REC_RETRY, wait, why, 0);
        }
        return; /* otherwise it stays and goes again when the pause ends */
    }
    case TG_API_MIGRATE:
        migrate(s, m, res->migrate_to_chat_id);
        return;
    case TG_API_FINAL:
        refuse(s, m, why);
        return;
    case TG_API_RETRY:
    default:
        retry_or_fail(s, m, why);
        return;
    }
}

/*
 * True when method[0..len) is a Bot API method name: 1 to TG_METHOD_MAX - 1
 * ASCII letters and digits. The name goes into the request path, so nothing
 * else may pass: not a space or a control character (the HTTP client refuses
 * those), nor '/', '?', '#' or ".." (they would reach another path).
 */
static bool method_ok(const char *method, size_t len)
{
    if (len == 0 || len >= TG_METHOD_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = method[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

static void send_msg(tg_sender_t *s, tg_msg_t *m)
{
    int r = tg_call_start(&m->call, s->opt.http, s->token, m->method, m->body, m->body_len,
                          s->opt.timeout_ms, on_answer);
    /* The pool's queue is full, or the pool is going away: the next pass tries again. */
    if (r == -EAGAIN || r == -ECANCELED)
        return;
    if (r < 0) {
        /* Refused for what the row holds (path too long, a request the client finds malformed). */
        char why[96];
        snprintf(why, sizeof(why), "the HTTP client refused the request: %s", strerror(-r));
        refuse(s, m, why);
        return;
    }
    m->in_flight = true;
    s->in_flight++;
    m->call_ns = core_mono_ns();
    if (m->held_ns != 0) {
        met_observe_latency(&met_self()->outbox_wait, (double)(m->call_ns - m->held_ns) / 1e9);
        m->held_ns = 0;
    }
}

/* The held row `id`, or NULL. */
static tg_msg_t *held_id(const tg_sender_t *s, int64_t id)
{
    for (tg_msg_t *m = s->by_id[id_bucket(s, id)]; m != NULL; m = m->hnext)
        if (m->id == id)
            return m;
    return NULL;
}

/* True when row id was sent or failed for good lately (false: not known). */
static bool finished_id(const tg_sender_t *s, int64_t id)
{
    return s->finished[(uint64_t)id % FINISHED_SLOTS] == id;
}

/*
 * True when nothing holds back a row whose chat's previous open row was
 * prev (0: none) when it was read: that row is held here (it goes first, in
 * id order) or known done. A row finished so long ago that the cache lost it
 * only costs the later row a wait, or a release, never the order.
 */
static bool prev_clear(const tg_sender_t *s, int64_t prev)
{
    return prev == 0 || held_id(s, prev) != NULL || finished_id(s, prev);
}

static void on_poll_timer(rx_loop_t *loop, rx_timer_t *t)
{
    pump(container_of(t, tg_sender_t, poll_timer));
}

static void on_gap_timer(rx_loop_t *loop, rx_timer_t *t)
{
    pump(container_of(t, tg_sender_t, gap_timer));
}

/*
 * Holds row r, leased from claimed_ms, in id order. Returns the new message.
 * hint (or NULL) is the message held just before, from the same batch: a
 * batch comes in id order, so r goes after it, and the list is walked from
 * there, not from the tail (a claim's rows are older than the rows handed
 * over since: a walk back from the tail per row was quadratic).
 */
static tg_msg_t *hold(tg_sender_t *s, const tg_outbox_row_t *r, uint64_t claimed_ms,
                      tg_msg_t *hint)
{
    tg_msg_t *m = xcalloc(1, sizeof(*m));
    m->s = s;
    m->id = r->id;
    m->chat_id = r->chat_id;
    m->attempts = r->attempts;
    m->token = r->token;
    m->claimed_ms = claimed_ms;
    m->held_ns = core_mono_ns();
    size_t ml = r->method_len < TG_METHOD_MAX - 1 ? r->method_len : TG_METHOD_MAX - 1;
    memcpy(m->method, r->method, ml);
    m->body = xstrndup(r->body, r->body_len);
    m->body_len = r->body_len;
    /* Kept in id order: rows come in id order, and mostly after what is held. */
    tg_msg_t *after = s->tail;
    if (hint != NULL && hint->id < m->id) {
        after = hint;
        while (after->next != NULL && after->next->id < m->id)
            after = after->next;
    }
    while (after != NULL && after->id > m->id)
        after = after->prev;
    m->prev = after;
    m->next = after != NULL ? after->next : s->head;
    if (m->next != NULL)
        m->next->prev = m;
    else
        s->tail = m;
    if (after != NULL)
        after->next = m;
    else
        s->head = m;
    s->held++;
    id_add(s, m);
    return m;
}

static void on_claimed(void *arg, int err, const tg_outbox_row_t *rows, unsigned n)
{
    tg_sender_t *s = arg;
    if (err == 0) {
        tg_msg_t *last = NULL;
        for (unsigned i = 0; i < n; i++) {
            tg_msg_t *m = held_id(s, rows[i].id);
            if (m != NULL) {
                /*
                 * Still held, its lease ran out and this claim took it: never
                 * hold (and send) a row twice; its marks go under the new claim.
                 */
                m->token = rows[i].token;
                m->claimed_ms = s->claim_ms;
                continue;
            }
            m = hold(s, &rows[i], s->claim_ms, last);
            met_self()->outbox_claimed++;
            if (!active(s)) {
                record(s, m, REC_RELEASE, 0, NULL, 0);
            } else if (!prev_clear(s, rows[i].prev_id)) {
                /*
                 * The chat's previous row is neither held nor done: it was
                 * put back while the claim was on its way (or another
                 * process held it). This one must not leave before it.
                 */
                put_back(s, m, REC_RELEASE, 0, NULL, 0);
            } else if (!method_ok(rows[i].method, rows[i].method_len)) {
                refuse(s, m,
                       "the method is not a Bot API method name (letters and digits, at "
                       "most 63)");
            }
            last = held_id(s, rows[i].id); /* the next one's hint, if this one stays */
        }
    }
    s->claiming = false;
    s->claimed_none = err != 0 || n == 0;
    if (!active(s)) {
        check_idle(s);
        return;
    }
    /* Rows found: claim again as soon as there is room; none: wait a poll period. */
    if (err != 0 || n == 0) {
        s->next_claim_ms = rx_now(s->loop) + s->opt.poll_ms;
        rx_timer_start(s->loop, &s->poll_timer, s->opt.poll_ms, on_poll_timer);
    }
    schedule(s);
}

static void on_timer(rx_loop_t *loop, rx_timer_t *t)
{
    pump(container_of(t, tg_sender_t, timer));
}

/* ---- the processor's hand-off ---- */

int64_t tg_sender_handoff_token(tg_sender_t *s, uint32_t *lease_ms)
{
    /*
     * Rows held may pass the capacity by what the processor's commits in
     * flight bring (its own capacity bounds them): taken, they are sent
     * sooner and cost less than given back for a claim.
     */
    if (!active(s) || rx_now(s->loop) < s->lead_ms || s->held >= 2 * s->opt.capacity)
        return 0;
    *lease_ms = s->opt.lease_ms;
    return tg_outbox_token(&s->outbox);
}

void tg_sender_take(tg_sender_t *s, const tg_outbox_row_t *rows, unsigned n, uint64_t leased_ms)
{
    if (s->detached)
        return; /* nothing can be written any more: the leases run out */
    tg_msg_t *last = NULL;
    for (unsigned i = 0; i < n; i++) {
        const tg_outbox_row_t *r = &rows[i];
        if (held_id(s, r->id) != NULL)
            continue; /* a claim was quicker: it holds the row under its own token */
        tg_msg_t *m = hold(s, r, leased_ms, last);
        if (!active(s)) {
            record(s, m, REC_RELEASE, 0, NULL, 0);
        } else if (!prev_clear(s, r->prev_id)) {
            /*
             * An earlier row of its chat is elsewhere (put back, or another
             * process's): this one waits, held, until a claim brings that
             * one (it comes first in id order) or it is known done.
             */
            m->wait_prev = r->prev_id;
            s->waiting++;
            met_self()->outbox_handed++;
        } else if (!method_ok(r->method, r->method_len)) {
            refuse(s, m, "the method is not a Bot API method name (letters and digits, at most 63)");
        } else {
            met_self()->outbox_handed++;
        }
        last = held_id(s, r->id); /* the next one's hint, if this one stays */
    }
    if (active(s))
        schedule(s);
    else
        check_idle(s);
}

/* Marks chat for this pass; true when it was already marked (an earlier row holds it). */
static bool mark(tg_sender_t *s, int64_t chat)
{
    uint32_t i = (uint32_t)((uint64_t)chat * 0x9E3779B97F4A7C15u >> 40) & s->mark_mask;
    for (;;) {
        if (s->mark_pass[i] != s->pass) {
            s->mark_pass[i] = s->pass;
            s->mark_chat[i] = chat;
            return false;
        }
        if (s->mark_chat[i] == chat)
            return true;
        i = (i + 1) & s->mark_mask;
    }
}

static void pump(tg_sender_t *s)
{
    uint64_t now = rx_now(s->loop);
    int64_t min_wait = -1;

    if (2 * s->held > s->mark_mask + 1) {
        /* Hand-offs brought more rows than the capacity: room for a chat per row, twice. */
        uint32_t slots = s->mark_mask + 1;
        while (slots < 2 * s->held)
            slots *= 2;
        free(s->mark_chat);
        free(s->mark_pass);
        s->mark_mask = slots - 1;
        s->mark_chat = xcalloc(slots, sizeof(*s->mark_chat));
        s->mark_pass = xcalloc(slots, sizeof(*s->mark_pass));
        s->pass = 0;
    }
    if (++s->pass == 0)
        s->pass = 1; /* 0 marks an empty slot */
    uint64_t hold_max = s->hold_ms;
    bool full = now >= s->full_pass_ms;
    if (full)
        s->full_pass_ms = now + PASS_FULL_MS;
    for (tg_msg_t *m = s->head, *next; m != NULL; m = next) {
        if (!full && active(s) && s->in_flight >= s->opt.max_calls)
            break; /* nothing more can go: the rest waits for an answer or a whole pass */
        next = m->next;
        if (!m->in_flight && now - m->claimed_ms >= hold_max && active(s)) {
            /* Held as long as it may: give it back before anyone else can take it. */
            mark(s, m->chat_id); /* its chat's later rows keep waiting behind it */
            /* put_back() releases the chat's later rows: step over those that follow at once. */
            while (next != NULL && next->chat_id == m->chat_id && !next->in_flight)
                next = next->next;
            put_back(s, m, REC_RELEASE, 0, NULL, 0);
            continue;
        }
        if (m->wait_prev != 0) {
            if (prev_clear(s, m->wait_prev)) {
                m->wait_prev = 0; /* held: it goes first, in id order; done: nothing holds m */
                s->waiting--;
            } else {
                mark(s, m->chat_id); /* nor its chat's later rows */
                continue;
            }
        }
        /* One row per chat at a time, in id order: later rows of a chat wait. */
        if (mark(s, m->chat_id) || m->in_flight)
            continue;
        /*
         * No more calls out than the pool has connections: a call it queued
         * would reach the Bot API later than the limiter let it, together
         * with the others queued. An answer runs the pass again.
         */
        if (!active(s) || s->in_flight >= s->opt.max_calls)
            continue;
        int64_t wait = 0;
        if (!tg_rate_try(s->rate, m->chat_id, (int64_t)now, &wait)) {
            /* Wake up for the rate, or to release the row, whichever comes first. */
            int64_t release_in = (int64_t)(m->claimed_ms + hold_max - now);
            if (release_in < wait)
                wait = release_in > 0 ? release_in : 1;
            if (min_wait < 0 || wait < min_wait)
                min_wait = wait;
            continue;
        }
        send_msg(s, m);
    }
    if (!active(s)) {
        check_idle(s);
        return;
    }
    /*
     * Claim more when there is room and no claim is out. Marks go first:
     * the outbox's lane runs in order, so the claim sees those rows marked.
     * While marks cannot be submitted, or as many as the capacity are not
     * written yet, nothing is claimed: held rows and unwritten marks stay
     * under twice the capacity, and no claim can take back a row whose sent
     * mark waits.
     */
    /* Rows waiting for an earlier row of their chat need a claim to bring it, full or not. */
    bool room = !s->claiming && (s->held <= s->opt.capacity / 2 || s->waiting > 0) &&
                now >= s->next_claim_ms && now >= s->lead_ms &&
                !rx_timer_active(&s->batch_timer); /* it runs the claim once they are out */
    uint64_t gap = s->claimed_none ? CLAIM_GAP_LONG_MS : CLAIM_GAP_MS;
    if (room && s->claimed && now < s->claim_ms + gap) {
        if (!rx_timer_active(&s->gap_timer))
            rx_timer_start(s->loop, &s->gap_timer, s->claim_ms + gap - now, on_gap_timer);
        room = false;
    }
    if (room)
        flush_marks(s);
    if (room && !marks_queued(s) && s->recording < s->opt.capacity) {
        unsigned want = s->held < s->opt.capacity / 2 ? s->opt.capacity - s->held
                                                      : s->opt.capacity / 2 + 1;
        int r = tg_outbox_claim(&s->outbox, want, s->opt.lease_ms, on_claimed, s);
        if (r == 0) {
            s->claiming = true;
            s->claimed = true;
            s->claim_ms = now;
        } else {
            /* The database is not ready: look again a poll period later. */
            s->next_claim_ms = now + s->opt.poll_ms;
            rx_timer_start(s->loop, &s->poll_timer, s->opt.poll_ms, on_poll_timer);
        }
    }
    if (min_wait >= 0) {
        uint64_t at = now + (uint64_t)min_wait;
        if (!rx_timer_active(&s->timer) || s->timer.deadline > at)
            rx_timer_start(s->loop, &s->timer, (uint64_t)min_wait, on_timer);
    }
}

/* ---- leadership ---- */

int64_t tg_sender_lock_key(const char *token)
{
    static const char ns[] = "tgring.sender.";
    uint64_t h = 0xcbf29ce484222325u;
    for (const char *p = ns; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3u;
    for (const char *p = token; *p != '\0' && *p != ':'; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3u;
    return (int64_t)h;
}

static void lead(tg_sender_t *s, uint64_t wait_ms)
{
    s->leading = true;
    met_self()->sender_leader = 1;
    met_self()->sender_takeovers++;
    s->lead_ms = rx_now(s->loop) + wait_ms;
    if (wait_ms > 0)
        rx_timer_start(s->loop, &s->poll_timer, wait_ms, on_poll_timer);
    schedule(s);
}

static void on_lock(void *arg, bool held)
{
    tg_sender_t *s = arg;
    if (s->stopping)
        return;
    if (held) {
        log_info("sender_leading", "this worker is the bot's sender now; first claim in %u ms",
                 s->opt.takeover_ms);
        lead(s, s->opt.takeover_ms);
        return;
    }
    /* Someone else may hold the lock any moment now: nothing more goes out from here. */
    s->leading = false;
    met_self()->sender_leader = 0;
    log_warn("sender_standby",
             "lost the bot's sender lock: no more claims or calls; %u rows released, %u calls "
             "out finish and are recorded",
             s->held - s->in_flight, s->in_flight);
    rx_timer_stop(s->loop, &s->timer);
    rx_timer_stop(s->loop, &s->poll_timer);
    rx_timer_stop(s->loop, &s->gap_timer);
    release_all(s);
    check_idle(s);
}

tg_sender_t *tg_sender_new(rx_loop_t *loop, const tg_sender_options_t *opt, int *err)
{
    tg_sender_t *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->opt = *opt;
    if (s->opt.max_attempts == 0)
        s->opt.max_attempts = 8;
    if (s->opt.lease_ms == 0)
        s->opt.lease_ms = 30000;
    if (s->opt.capacity == 0)
        s->opt.capacity = 256;
    if (s->opt.poll_ms == 0)
        s->opt.poll_ms = 200;
    if (s->opt.backoff_ms == 0)
        s->opt.backoff_ms = 1000;
    if (s->opt.max_calls == 0)
        s->opt.max_calls = 8;
    if (s->opt.backoff_max_ms == 0)
        s->opt.backoff_max_ms = 300000;
    if (s->opt.lock_retry_ms == 0)
        s->opt.lock_retry_ms = 1000;
    if (s->opt.takeover_ms == 0)
        s->opt.takeover_ms = 1000;
    /* Held, then sent: hold + call end a margin before the lease does. */
    unsigned margin = s->opt.lease_ms / 10, room = s->opt.lease_ms - margin;
    if (s->opt.timeout_ms == 0)
        s->opt.timeout_ms = room / 2 < 30000 ? room / 2 : 30000;
    if (s->opt.timeout_ms == 0 || s->opt.timeout_ms > room - margin) {
        log_error("sender_options",
                  "a call timeout of %u ms does not fit a lease of %u ms: at most %u ms, so that "
                  "a row can wait %u ms and its call still ends %u ms before the lease does",
                  s->opt.timeout_ms, s->opt.lease_ms, room - margin, margin, margin);
        *err = -EINVAL;
        free(s);
        return NULL;
    }
    s->hold_ms = room - s->opt.timeout_ms;
    s->rate = tg_rate_new(&s->opt.rate, err);
    if (s->rate == NULL) {
        free(s);
        return NULL;
    }
    s->token = xstrdup(opt->token);
    uint32_t slots = 64;
    while (slots < 2 * s->opt.capacity)
        slots *= 2;
    s->mark_mask = slots - 1;
    s->mark_chat = xcalloc(slots, sizeof(*s->mark_chat));
    s->mark_pass = xcalloc(slots, sizeof(*s->mark_pass));
    s->sent_ids = xcalloc(TG_OUTBOX_SENT_MAX, sizeof(*s->sent_ids));
    s->sent_tokens = xcalloc(TG_OUTBOX_SENT_MAX, sizeof(*s->sent_tokens));
    s->finished = xcalloc(FINISHED_SLOTS, sizeof(*s->finished));
    s->id_mask = 255;
    s->by_id = xcalloc(s->id_mask + 1, sizeof(*s->by_id));
    tg_outbox_init(&s->outbox, s->opt.db, NULL);
    if (opt->lock_conninfo == NULL) {
        lead(s, 0);
        return s;
    }
    db_lock_options_t lo = {
        .conninfo = opt->lock_conninfo,
        .name = "outbox sender",
        .key = tg_sender_lock_key(opt->token),
        .retry_ms = s->opt.lock_retry_ms,
    };
    s->opt.lock_conninfo = NULL; /* the lock keeps its own copy */
    s->lock = db_lock_new(loop, &lo, on_lock, s);
    return s;
}

void tg_sender_kick(tg_sender_t *s)
{
    if (!active(s))
        return;
    uint64_t now = rx_now(s->loop);
    if (s->next_claim_ms > now) {
        s->next_claim_ms = now;
        rx_timer_stop(s->loop, &s->poll_timer);
    }
    schedule(s);
}

void tg_sender_stop(tg_sender_t *s, void (*on_idle)(void *arg), void *arg)
{
    s->stopping = true;
    s->on_idle = on_idle;
    s->idle_arg = arg;
    rx_timer_stop(s->loop, &s->timer);
    rx_timer_stop(s->loop, &s->poll_timer);
    rx_timer_stop(s->loop, &s->gap_timer);
    /* A standby can take over now: this one claims nothing more. */
    db_lock_free(s->lock);
    s->lock = NULL;
    if (s->leading)
        met_self()->sender_leader = 0;
    s->leading = false;
    /* Rows not in flight go back now, for this or another process to claim. */
    release_all(s);
    flush_marks(s);
    check_idle(s);
}

void tg_sender_detach(tg_sender_t *s)
{
    rx_timer_stop(s->loop, &s->mark_timer);
    rx_timer_stop(s->loop, &s->batch_timer);
    flush_marks(s);
    rx_timer_stop(s->loop, &s->mark_timer);
    s->detached = true;
    unsigned lost = marks_free(s->sent_q.head) + marks_free(s->release_q.head) +
                    marks_free(s->other_q.head);
    s->sent_q = s->release_q = s->other_q = (mark_queue_t){NULL, NULL};
    s->recording -= lost;
    if (lost > 0)
        log_warn("outbox_record_lost",
                 "%u marks not written: the database is going away; their rows are claimed "
                 "again when their leases end",
                 lost);
}

void tg_sender_free(tg_sender_t *s)
{
    if (s->lock != NULL)
        db_lock_free(s->lock);
    if (s->leading)
        met_self()->sender_leader = 0;
    rx_timer_stop(s->loop, &s->timer);
    rx_timer_stop(s->loop, &s->poll_timer);
    rx_timer_stop(s->loop, &s->gap_timer);
    rx_timer_stop(s->loop, &s->mark_timer);
    rx_timer_stop(s->loop, &s->batch_timer);
    marks_free(s->sent_q.head);
    marks_free(s->release_q.head);
    marks_free(s->other_q.head);
    while (s->head != NULL)
        msg_unlink(s, s->head);
    tg_rate_free(s->rate);
    explicit_bzero(s->token, strlen(s->token));
    free(s->token);
    free(s->mark_chat);
    free(s->mark_pass);
    free(s->sent_ids);
    free(s->sent_tokens);
    free(s->finished);
    free(s->by_id);
    free(s);
}
