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
 * attempts used up). Every decision is written back to the row, so a crash
 * loses nothing: an unrecorded row's lease expires and it is sent again
 * (at-least-once).
 *
 * A row must never outlive its lease in memory, or another claim (this
 * process's or another's) would take it too and it would go out twice. So a
 * row that has waited half the lease without being sent (its chat is slow or
 * paused) is released, and a call's deadline is at most half the lease: a row
 * is sent, recorded or released before its lease ends.
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
/* Two chats limited within this window mean the limit is the bot's, not a chat's. */
#define GLOBAL_429_WINDOW_MS 1000

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
    call->cb = cb;
    int r = httpc_request(pool, &call->req);
    if (r < 0)
        explicit_bzero(call->path, sizeof(call->path));
    return r;
}

/* ---- the sender ---- */

typedef struct tg_msg tg_msg_t;

struct tg_msg {
    tg_call_t call;
    tg_sender_t *s;
    tg_msg_t *prev, *next; /* the sender's list, in id order */
    int64_t id;
    int64_t chat_id;
    char method[TG_METHOD_MAX];
    char *body;
    size_t body_len;
    int attempts;        /* sends before this claim */
    uint64_t claimed_ms; /* loop time of the claim */
    bool in_flight;      /* a call is out */
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
    unsigned in_flight;    /* calls out */
    unsigned recording;    /* db writes whose callbacks are pending */
    bool claiming;         /* a claim is out */
    bool stopping;
    uint32_t pass;
    int64_t last_429_chat;
    uint64_t last_429_ms;
    rx_defer_t pump_defer;
    rx_timer_t timer;       /* next rate-limit wake-up */
    rx_timer_t poll_timer;  /* next claim after an empty one */
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
    /* Rows sent in this turn: marked together at its end, one commit for all. */
    int64_t *sent_ids; /* [TG_OUTBOX_SENT_MAX] */
    unsigned nsent;
    rx_defer_t sent_defer;
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

static void msg_unlink(tg_sender_t *s, tg_msg_t *m)
{
    if (m->prev != NULL)
        m->prev->next = m->next;
    else
        s->head = m->next;
    if (m->next != NULL)
        m->next->prev = m->prev;
    else
        s->tail = m->prev;
    s->held--;
    free(m->body);
    free(m);
}

static void on_recorded(void *arg, int err)
{
    tg_sender_t *s = arg;
    s->recording--;
    /* A lost write leaves the row leased; it is claimed again when the lease ends. */
    if (err != 0)
        log_warn("outbox_record_failed", "could not record a send result: %s", strerror(-err));
    check_idle(s);
}

/* Records a decision for row m, then forgets m. */
enum { REC_SENT, REC_RETRY, REC_FAIL, REC_RETARGET, REC_RELEASE };

/*
 * Writes the sent marks of the turn, ahead of anything submitted after (the
 * outbox's lane runs in order: a claim then sees those rows sent).
 */
static void flush_sent(tg_sender_t *s)
{
    if (s->nsent == 0)
        return;
    unsigned n = s->nsent;
    s->nsent = 0;
    if (tg_outbox_sent_many(&s->outbox, s->sent_ids, n, on_recorded, s) != 0) {
        log_warn("outbox_record_failed", "%u sent rows: database not ready; their leases will expire",
                 n);
        s->recording--;
        check_idle(s);
    }
}

static void on_sent_defer(rx_loop_t *loop, rx_defer_t *d)
{
    flush_sent(container_of(d, tg_sender_t, sent_defer));
}

static void record(tg_sender_t *s, tg_msg_t *m, int what, uint64_t delay_ms, const char *error,
                   int64_t new_chat)
{
    int r;
    switch (what) {
    case REC_SENT:
        /* The batch counts as one write while it waits and while it is out. */
        if (s->nsent == 0) {
            s->recording++;
            rx_defer(s->loop, &s->sent_defer, on_sent_defer);
        }
        s->sent_ids[s->nsent++] = m->id;
        msg_unlink(s, m);
        if (s->nsent == TG_OUTBOX_SENT_MAX)
            flush_sent(s);
        return;
    case REC_RETRY:
        r = tg_outbox_retry(&s->outbox, m->id, delay_ms, error, on_recorded, s);
        break;
    case REC_FAIL:
        r = tg_outbox_fail(&s->outbox, m->id, error, on_recorded, s);
        break;
    case REC_RETARGET:
        r = tg_outbox_retarget(&s->outbox, m->id, new_chat, on_recorded, s);
        break;
    default:
        r = tg_outbox_release(&s->outbox, m->id, on_recorded, s);
        break;
    }
    if (r == 0)
        s->recording++;
    else
        log_warn("outbox_record_failed", "row %lld: database not ready; its lease will expire",
                 (long long)m->id);
    msg_unlink(s, m);
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

static void on_answer(tg_call_t *call, int err, const tg_api_result_t *res)
{
    tg_msg_t *m = container_of(call, tg_msg_t, call);
    tg_sender_t *s = m->s;
    char why[TG_API_DESC_MAX + 32];

    m->in_flight = false;
    s->in_flight--;
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
        log_info("outbox_migrated", "row %lld: chat %lld is now %lld; re-targeted",
                 (long long)m->id, (long long)m->chat_id, (long long)res->migrate_to_chat_id);
        met_self()->outbox_migrated++;
        put_back(s, m, REC_RETARGET, 0, NULL, res->migrate_to_chat_id);
        return;
    case TG_API_FINAL:
        log_warn("outbox_rejected", "row %lld to chat %lld: %s (final, not retried)",
                 (long long)m->id, (long long)m->chat_id, why);
        met_self()->outbox_failed++;
        record(s, m, REC_FAIL, 0, why, 0);
        return;
    case TG_API_RETRY:
    default:
        retry_or_fail(s, m, why);
        return;
    }
}

static void send_msg(tg_sender_t *s, tg_msg_t *m)
{
    int r = tg_call_start(&m->call, s->opt.http, s->token, m->method, m->body, m->body_len,
                          s->opt.timeout_ms, on_answer);
    if (r == -ENAMETOOLONG) {
        met_self()->outbox_failed++;
        record(s, m, REC_FAIL, 0, "method name too long", 0);
        return;
    }
    if (r < 0)
        return; /* the pool's queue is full: the next pass tries again */
    m->in_flight = true;
    s->in_flight++;
}

/* True when row `id` is already held. */
static bool held_id(const tg_sender_t *s, int64_t id)
{
    for (const tg_msg_t *m = s->head; m != NULL; m = m->next)
        if (m->id == id)
            return true;
    return false;
}

static void on_poll_timer(rx_loop_t *loop, rx_timer_t *t)
{
    pump(container_of(t, tg_sender_t, poll_timer));
}

static void on_claimed(void *arg, int err, const tg_outbox_row_t *rows, unsigned n)
{
    tg_sender_t *s = arg;
    s->claiming = false;
    if (err == 0) {
        for (unsigned i = 0; i < n; i++) {
            if (held_id(s, rows[i].id))
                continue; /* still ours: never hold (and send) a row twice */
            tg_msg_t *m = xcalloc(1, sizeof(*m));
            m->s = s;
            m->id = rows[i].id;
            m->chat_id = rows[i].chat_id;
            m->attempts = rows[i].attempts;
            m->claimed_ms = rx_now(s->loop);
            size_t ml =
                rows[i].method_len < TG_METHOD_MAX - 1 ? rows[i].method_len : TG_METHOD_MAX - 1;
            memcpy(m->method, rows[i].method, ml);
            m->body = xstrndup(rows[i].body, rows[i].body_len);
            m->body_len = rows[i].body_len;
            /* Kept in id order: claims come in id order, and mostly after what is held. */
            tg_msg_t *after = s->tail;
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
            met_self()->outbox_claimed++;
            if (!active(s))
                record(s, m, REC_RELEASE, 0, NULL, 0);
        }
    }
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

    if (++s->pass == 0)
        s->pass = 1; /* 0 marks an empty slot */
    uint64_t hold_max = s->opt.lease_ms / 2;
    for (tg_msg_t *m = s->head, *next; m != NULL; m = next) {
        next = m->next;
        if (!m->in_flight && now - m->claimed_ms >= hold_max && active(s)) {
            /* Waited half its lease: give it back before anyone else can take it. */
            mark(s, m->chat_id); /* its chat's later rows keep waiting behind it */
            /* put_back() releases the chat's later rows: step over those that follow at once. */
            while (next != NULL && next->chat_id == m->chat_id && !next->in_flight)
                next = next->next;
            put_back(s, m, REC_RELEASE, 0, NULL, 0);
            continue;
        }
        /* One row per chat at a time, in id order: later rows of a chat wait. */
        if (mark(s, m->chat_id) || m->in_flight)
            continue;
        if (!active(s))
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
    /* Claim more when there is room and no claim is out. */
    if (!s->claiming && s->held <= s->opt.capacity / 2 && now >= s->next_claim_ms &&
        now >= s->lead_ms) {
        flush_sent(s);
        int r =
            tg_outbox_claim(&s->outbox, s->opt.capacity - s->held, s->opt.lease_ms, on_claimed, s);
        if (r == 0) {
            s->claiming = true;
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
    if (s->opt.backoff_max_ms == 0)
        s->opt.backoff_max_ms = 300000;
    if (s->opt.timeout_ms == 0)
        s->opt.timeout_ms = 30000;
    if (s->opt.lock_retry_ms == 0)
        s->opt.lock_retry_ms = 1000;
    if (s->opt.takeover_ms == 0)
        s->opt.takeover_ms = 1000;
    /* A call must end (answer or deadline) before its row's lease does. */
    if (s->opt.timeout_ms > s->opt.lease_ms / 2)
        s->opt.timeout_ms = s->opt.lease_ms / 2;
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
    /* A standby can take over now: this one claims nothing more. */
    db_lock_free(s->lock);
    s->lock = NULL;
    if (s->leading)
        met_self()->sender_leader = 0;
    s->leading = false;
    /* Rows not in flight go back now, for this or another process to claim. */
    release_all(s);
    check_idle(s);
}

void tg_sender_free(tg_sender_t *s)
{
    if (s->lock != NULL)
        db_lock_free(s->lock);
    if (s->leading)
        met_self()->sender_leader = 0;
    rx_timer_stop(s->loop, &s->timer);
    rx_timer_stop(s->loop, &s->poll_timer);
    while (s->head != NULL)
        msg_unlink(s, s->head);
    tg_rate_free(s->rate);
    explicit_bzero(s->token, strlen(s->token));
    free(s->token);
    free(s->mark_chat);
    free(s->mark_pass);
    free(s->sent_ids);
    free(s);
}
