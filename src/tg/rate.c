/* SPDX-License-Identifier: MIT */
/*
 * rate.c - the sender's rate limiter: token buckets for all messages, per chat
 * and per group, and the pauses a 429 asks for.
 *
 * Buckets count in integer units so that refilling never drifts: a bucket of
 * n tokens per period_ms holds burst * period_ms units, gains n units per ms
 * and a message costs period_ms units. Per-chat buckets live in a fixed
 * open-addressing table; a chat whose buckets have refilled and whose pause is
 * over is indistinguishable from a chat never seen, so its slot is simply
 * reused, and the table needs neither deletion nor growth.
 */
#include "core.h"
#include "tg_api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Slots a chat may sit from its home slot: bounds every lookup. */
#define PROBE 32

#define MAX_TOKENS 1000000u
#define MAX_PERIOD_MS 86400000u

typedef struct entry {
    int64_t chat;    /* 0: never used */
    int64_t last;    /* ms: when level and glevel were last refilled */
    int64_t pause;   /* ms: refuse until then */
    uint64_t level;  /* chat bucket, units */
    uint64_t glevel; /* group bucket, units (stays full for chats >= 0) */
} entry_t;

typedef struct bucket {
    uint64_t cap;  /* burst * period_ms units */
    uint64_t cost; /* period_ms units per message */
    uint64_t fill; /* n units per ms */
} bucket_t;

struct tg_rate {
    bucket_t gb, cb, grb; /* global, chat, group */
    uint64_t glevel;      /* the global bucket, units */
    int64_t glast;        /* ms, its last refill */
    int64_t pause_all;    /* ms */
    int64_t now;          /* ms, the latest time seen */
    entry_t *tab;
    uint32_t mask; /* table_size - 1 */
    tg_rate_stats_t st;
};

void tg_rate_config_default(tg_rate_config_t *c)
{
    c->global = (tg_rate_spec_t){30, 1000, 30};
    c->chat = (tg_rate_spec_t){1, 1000, 3};
    c->group = (tg_rate_spec_t){20, 60000, 20};
    c->table_size = 65536;
}

static bool spec_ok(const tg_rate_spec_t *sp)
{
    return sp->n >= 1 && sp->n <= MAX_TOKENS && sp->burst >= 1 && sp->burst <= MAX_TOKENS &&
           sp->period_ms >= 1 && sp->period_ms <= MAX_PERIOD_MS;
}

static bucket_t bucket_of(const tg_rate_spec_t *sp)
{
    return (bucket_t){(uint64_t)sp->burst * sp->period_ms, sp->period_ms, sp->n};
}

tg_rate_t *tg_rate_new(const tg_rate_config_t *cfg, int *err)
{
    uint32_t ts = cfg->table_size;
    if (!spec_ok(&cfg->global) || !spec_ok(&cfg->chat) || !spec_ok(&cfg->group) || ts < 64 ||
        ts > (1u << 24) || (ts & (ts - 1)) != 0) {
        if (err != NULL)
            *err = -EINVAL;
        return NULL;
    }
    tg_rate_t *r = xcalloc(1, sizeof(*r));
    entry_t *tab = xcalloc(ts, sizeof(*tab));
    r->gb = bucket_of(&cfg->global);
    r->cb = bucket_of(&cfg->chat);
    r->grb = bucket_of(&cfg->group);
    r->glevel = r->gb.cap;
    r->glast = INT64_MIN;
    r->pause_all = INT64_MIN;
    r->now = INT64_MIN;
    r->tab = tab;
    r->mask = ts - 1;
    if (err != NULL)
        *err = 0;
    return r;
}

void tg_rate_free(tg_rate_t *r)
{
    if (r == NULL)
        return;
    free(r->tab);
    free(r);
}

/* The level of a bucket that held `level` at `last`, at `now` (>= last). */
static uint64_t refilled(const bucket_t *b, uint64_t level, int64_t last, int64_t now)
{
    if (now <= last || level >= b->cap)
        return level >= b->cap ? b->cap : level;
    /* Compared before multiplying, so that a long idle time cannot overflow. */
    uint64_t dt = (uint64_t)now - (uint64_t)last;
    if (dt >= (b->cap - level + b->fill - 1) / b->fill)
        return b->cap;
    return level + dt * b->fill;
}

/* ms until the bucket holds `units`, 0 if it does. */
static int64_t until_has(const bucket_t *b, uint64_t level, uint64_t units)
{
    if (level >= units)
        return 0;
    return (int64_t)((units - level + b->fill - 1) / b->fill);
}

/* ms from now until t, 0 when t has passed; saturates instead of overflowing. */
static int64_t ms_until(int64_t t, int64_t now)
{
    if (t <= now)
        return 0;
    uint64_t d = (uint64_t)t - (uint64_t)now;
    return d > INT64_MAX ? INT64_MAX : (int64_t)d;
}

static void entry_refill(const tg_rate_t *r, entry_t *e)
{
    if (r->now <= e->last)
        return;
    e->level = refilled(&r->cb, e->level, e->last, r->now);
    e->glevel = refilled(&r->grb, e->glevel, e->last, r->now);
    e->last = r->now;
}

/* ms until e holds nothing worth keeping; e refilled to r->now. */
static int64_t until_idle(const tg_rate_t *r, const entry_t *e)
{
    int64_t w = ms_until(e->pause, r->now);
    int64_t a = until_has(&r->cb, e->level, r->cb.cap);
    int64_t b = until_has(&r->grb, e->glevel, r->grb.cap);
    if (a > w)
        w = a;
    return b > w ? b : w;
}

static uint32_t home(const tg_rate_t *r, int64_t chat)
{
    /* splitmix64's finalizer: consecutive ids land far apart. */
    uint64_t x = (uint64_t)chat;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    x ^= x >> 31;
    return (uint32_t)x & r->mask;
}

/*
 * Finds chat's entry, refilled to r->now, or NULL. *slot gets a slot a new
 * entry may take (an unused one or an idle chat's), or NULL when every slot in
 * reach is busy; *idle_in then is the least time until one is not.
 */
static entry_t *find(tg_rate_t *r, int64_t chat, entry_t **slot, int64_t *idle_in)
{
    uint32_t h = home(r, chat);
    *slot = NULL;
    *idle_in = INT64_MAX;
    for (uint32_t i = 0; i < PROBE && i <= r->mask; i++) {
        entry_t *e = &r->tab[(h + i) & r->mask];
        if (e->chat == 0) {
            /* Slots are never emptied, so the chat cannot sit past an unused one. */
            if (*slot == NULL)
                *slot = e;
            return NULL;
        }
        entry_refill(r, e);
        if (e->chat == chat)
            return e;
        if (*slot == NULL) {
            int64_t w = until_idle(r, e);
            if (w == 0)
                *slot = e;
            else if (w < *idle_in)
                *idle_in = w;
        }
    }
    return NULL;
}

/* Makes a fresh entry (full buckets, no pause) in slot. */
static entry_t *take(tg_rate_t *r, entry_t *slot, int64_t chat)
{
    if (slot->chat == 0)
        r->st.entries++;
    else
        r->st.reclaimed++;
    slot->chat = chat;
    slot->last = r->now;
    slot->pause = INT64_MIN;
    slot->level = r->cb.cap;
    slot->glevel = r->grb.cap;
    return slot;
}

static void see(tg_rate_t *r, int64_t now)
{
    if (now > r->now)
        r->now = now;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

bool tg_rate_try(tg_rate_t *r, int64_t chat_id, int64_t now_ms, int64_t *wait_ms)
{
    see(r, now_ms);
    int64_t now = r->now;
    r->glevel = refilled(&r->gb, r->glevel, r->glast, now);
    r->glast = now;

    int64_t w = ms_until(r->pause_all, now);
    w = max64(w, until_has(&r->gb, r->glevel, r->gb.cost));

    entry_t *e = NULL, *slot = NULL;
    int64_t idle_in = 0;
    if (chat_id != 0) {
        e = find(r, chat_id, &slot, &idle_in);
        if (e != NULL) {
            w = max64(w, ms_until(e->pause, now));
            w = max64(w, until_has(&r->cb, e->level, r->cb.cost));
            if (chat_id < 0)
                w = max64(w, until_has(&r->grb, e->glevel, r->grb.cost));
        }
        /* A chat not in the table has full buckets: it adds no wait. */
    }
    if (w == 0 && chat_id != 0 && e == NULL) {
        if (slot == NULL) {
            r->st.refused++;
            r->st.refused_full++;
            if (wait_ms != NULL)
                *wait_ms = idle_in > 0 ? idle_in : 1;
            return false;
        }
        e = take(r, slot, chat_id);
    }
    if (w > 0) {
        r->st.refused++;
        if (wait_ms != NULL)
            *wait_ms = w;
        return false;
    }
    r->glevel -= r->gb.cost;
    if (e != NULL) {
        e->level -= r->cb.cost;
        if (chat_id < 0)
            e->glevel -= r->grb.cost;
    }
    r->st.granted++;
    if (wait_ms != NULL)
        *wait_ms = 0;
    return true;
}

int tg_rate_pause_chat(tg_rate_t *r, int64_t chat_id, int64_t until_ms)
{
    if (chat_id == 0)
        return -EINVAL;
    entry_t *slot;
    int64_t idle_in;
    entry_t *e = find(r, chat_id, &slot, &idle_in);
    if (e == NULL) {
        if (slot == NULL)
            return -ENOSPC;
        e = take(r, slot, chat_id);
    }
    if (until_ms > e->pause)
        e->pause = until_ms;
    return 0;
}

void tg_rate_pause_all(tg_rate_t *r, int64_t until_ms)
{
    if (until_ms > r->pause_all)
        r->pause_all = until_ms;
}

void tg_rate_stats(const tg_rate_t *r, tg_rate_stats_t *st)
{
    *st = r->st;
}
