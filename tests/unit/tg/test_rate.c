/* SPDX-License-Identifier: MIT */
/*
 * test_rate.c - unit tests for the rate limiter: its configuration, and simulated
 * minutes in which chats ask to send as often as they can. Every grant is
 * logged per bucket (global, each chat, each group) and every sliding window
 * is counted against the documented bound b + floor(n * (T - 1) / period);
 * the totals must also reach it, so the limiter is not stricter than asked.
 * Then pauses, the wait it reports, clock steps back, and a full table.
 */
#include "tap.h"
#include "tg_api.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- config -------------------------------------------------------------------------- */

/*
 * The spec syntax (TELEGRAM_RATE_*) is cfg's, tested in tests/unit/core/test_cfg.c;
 * here the limiter's own defaults and the configurations it refuses.
 */
static void test_config(void)
{
    tg_rate_config_t c;
    tg_rate_config_default(&c);
    tap_ok(c.global.n == 30 && c.global.period_ms == 1000 && c.global.burst == 30 &&
               c.chat.n == 1 && c.chat.period_ms == 1000 && c.chat.burst == 3 && c.group.n == 20 &&
               c.group.period_ms == 60000 && c.group.burst == 20 && c.table_size == 65536,
           "defaults: 30/s burst 30, 1/s burst 3, 20/min burst 20, 65536 entries");

    tg_rate_config_t bad_cfg[7];
    const char *why[7] = {"table 100",    "table 32",       "table 2^25",      "global n 0",
                          "chat burst 0", "group period 0", "chat n over 10^6"};
    for (int i = 0; i < 7; i++)
        bad_cfg[i] = c;
    bad_cfg[0].table_size = 100;
    bad_cfg[1].table_size = 32;
    bad_cfg[2].table_size = 1u << 25;
    bad_cfg[3].global.n = 0;
    bad_cfg[4].chat.burst = 0;
    bad_cfg[5].group.period_ms = 0;
    bad_cfg[6].chat.n = 1000001;
    for (int i = 0; i < 7; i++) {
        int err = 0;
        tg_rate_t *r = tg_rate_new(&bad_cfg[i], &err);
        tap_ok(r == NULL && err == -EINVAL, "tg_rate_new refuses %s", why[i]);
        tg_rate_free(r);
    }
    int err = 1;
    tg_rate_t *r = tg_rate_new(&c, &err);
    tap_ok(r != NULL && err == 0, "tg_rate_new with the defaults");
    tg_rate_free(r);
}

/* ---- simulated minutes ---------------------------------------------------------------- */

#define MAX_GRANTS 200000
#define MAX_CHATS 256

typedef struct sim {
    tg_rate_config_t cfg;
    int64_t t[MAX_GRANTS]; /* grant times, in order */
    int64_t chat[MAX_GRANTS];
    size_t n;
} sim_t;

static sim_t sim;

/* Most grants in any window [t, t + T) of the sorted times[0..n). */
static size_t max_in_window(const int64_t *times, size_t n, int64_t T)
{
    size_t best = 0, j = 0;
    for (size_t i = 0; i < n; i++) {
        if (j < i)
            j = i;
        while (j < n && times[j] < times[i] + T)
            j++;
        if (j - i > best)
            best = j - i;
    }
    return best;
}

static uint64_t bound(const tg_rate_spec_t *sp, int64_t T)
{
    return sp->burst + (uint64_t)sp->n * (uint64_t)(T - 1) / sp->period_ms;
}

static const int64_t windows[] = {1,    2,    34,   500,   999,   1000,  1001,
                                  2000, 2999, 3000, 10000, 59999, 60000, 60001};

/*
 * Checks every window of every bucket against its bound. Returns the number of
 * windows over it; *tight gets how many bucket/window pairs reach it exactly.
 */
static int check_windows(const char *name, int *tight)
{
    static int64_t times[MAX_GRANTS];
    int over = 0;
    *tight = 0;
    int64_t chats[MAX_CHATS];
    size_t nchats = 0;
    for (size_t i = 0; i < sim.n; i++) {
        size_t k = 0;
        while (k < nchats && chats[k] != sim.chat[i])
            k++;
        if (k == nchats && nchats < MAX_CHATS)
            chats[nchats++] = sim.chat[i];
    }
    for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
        int64_t T = windows[w];
        size_t m = max_in_window(sim.t, sim.n, T);
        if (m > bound(&sim.cfg.global, T)) {
            over++;
            printf("# %s: global: %zu grants in %lld ms, bound %llu\n", name, m, (long long)T,
                   (unsigned long long)bound(&sim.cfg.global, T));
        }
        *tight += m == bound(&sim.cfg.global, T);
        for (size_t c = 0; c < nchats; c++) {
            size_t n = 0;
            for (size_t i = 0; i < sim.n; i++)
                if (sim.chat[i] == chats[c])
                    times[n++] = sim.t[i];
            m = max_in_window(times, n, T);
            uint64_t b = bound(&sim.cfg.chat, T);
            if (chats[c] < 0 && bound(&sim.cfg.group, T) < b)
                b = bound(&sim.cfg.group, T);
            if (m > b) {
                over++;
                printf("# %s: chat %lld: %zu grants in %lld ms, bound %llu\n", name,
                       (long long)chats[c], m, (long long)T, (unsigned long long)b);
            }
            *tight += m == b;
        }
    }
    return over;
}

/*
 * Runs a minute: at each ms, each of chats[0..nchats) asks `tries` times with
 * probability 1/every. Checks that a refused chat that is alone is granted
 * exactly when the wait it was told is over. Returns the grants.
 */
static size_t run_minute(const tg_rate_config_t *cfg, const int64_t *chats, size_t nchats,
                         unsigned every, int *wait_errors)
{
    int err;
    tg_rate_t *r = tg_rate_new(cfg, &err);
    sim.cfg = *cfg;
    sim.n = 0;
    uint64_t seed = 12345;
    int64_t due = -1; /* when the single chat was told it may pass */
    *wait_errors = 0;
    for (int64_t t = 0; t < 60000; t++) {
        for (size_t c = 0; c < nchats; c++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            if (every > 1 && (seed >> 33) % every != 0)
                continue;
            int64_t wait = -7;
            bool g = tg_rate_try(r, chats[c], t, &wait);
            if (g) {
                if (nchats == 1 && due >= 0 && t != due)
                    (*wait_errors)++;
                due = -1;
                if (wait != 0 || sim.n == MAX_GRANTS)
                    (*wait_errors)++;
                else {
                    sim.t[sim.n] = t;
                    sim.chat[sim.n++] = chats[c];
                }
            } else {
                if (wait < 1)
                    (*wait_errors)++;
                if (nchats == 1 && due >= 0 && t + wait != due)
                    (*wait_errors)++;
                if (due < 0)
                    due = t + wait;
            }
        }
    }
    tg_rate_stats_t st;
    tg_rate_stats(r, &st);
    if (st.granted != sim.n)
        (*wait_errors)++;
    tg_rate_free(r);
    return sim.n;
}

static void test_minutes(void)
{
    tg_rate_config_t c;
    tg_rate_config_default(&c);
    int tight = 0, werr = 0;

    int64_t one[] = {5};
    size_t n = run_minute(&c, one, 1, 1, &werr);
    tap_ok(n == 62, "one private chat asking every ms: 3 at once then 1/s, 62 in the minute (%zu)",
           n);
    tap_ok(check_windows("private", &tight) == 0 && tight > 0,
           "private chat: no window over the bound, some at it (%d)", tight);
    tap_ok(werr == 0, "private chat: granted exactly when the wait said (%d errors)", werr);

    int64_t grp[] = {-7};
    n = run_minute(&c, grp, 1, 1, &werr);
    tap_ok(n == 39, "one group asking every ms: %zu in the minute (bound 39)", n);
    tap_ok(check_windows("group", &tight) == 0 && tight > 0,
           "group: no window over the chat or group bound (%d at it)", tight);
    tap_ok(werr == 0, "group: granted exactly when the wait said (%d errors)", werr);

    int64_t many[100];
    for (int i = 0; i < 100; i++)
        many[i] = i + 1;
    n = run_minute(&c, many, 100, 1, &werr);
    tap_ok(n == 1829, "100 chats asking every ms: the global bucket, 30 + 1799 (%zu)", n);
    tap_ok(check_windows("global", &tight) == 0 && tight > 0, "global: no window over the bound");
    tap_ok(werr == 0, "global: every refusal has a wait >= 1 (%d errors)", werr);

    int64_t mixed[120];
    for (int i = 0; i < 60; i++) {
        mixed[2 * i] = 1000 + i;
        mixed[2 * i + 1] = -1001234567000 - i;
    }
    n = run_minute(&c, mixed, 120, 50, &werr);
    tap_ok(check_windows("mixed", &tight) == 0, "60 chats and 60 groups at random: no window over");
    tap_ok(n > 1000 && werr == 0, "mixed: %zu grants, waits sane", n);

    /* Tighter and looser configurations hold their bounds too. */
    tg_rate_config_t t2 = c;
    t2.global = (tg_rate_spec_t){5, 1000, 1};
    t2.chat = (tg_rate_spec_t){2, 1000, 2};
    t2.group = (tg_rate_spec_t){20, 60000, 1};
    int64_t few[] = {1, -2, 3, -4, 5, 6};
    n = run_minute(&t2, few, 6, 1, &werr);
    tap_ok(check_windows("tight", &tight) == 0 && n == 1 + 299 && werr == 0,
           "global 5/s burst 1: 300 in the minute, no window over (%zu)", n);
    n = run_minute(&t2, grp, 1, 1, &werr);
    tap_ok(check_windows("group burst 1", &tight) == 0 && n == 20 && werr == 0,
           "group 20/min burst 1: 20 in the minute, one every 3 s (%zu)", n);
}

/* ---- pauses, waits, clock ------------------------------------------------------------- */

static void test_pauses(void)
{
    tg_rate_config_t c;
    tg_rate_config_default(&c);
    int err;
    tg_rate_t *r = tg_rate_new(&c, &err);
    int64_t w = -1;

    tap_ok(tg_rate_try(r, 7, 0, &w) && w == 0, "chat 7 passes");
    tap_ok(tg_rate_pause_chat(r, 7, 5000) == 0, "pause chat 7 until 5000");
    tap_ok(!tg_rate_try(r, 7, 100, &w) && w == 4900, "chat 7 waits 4900 (%lld)", (long long)w);
    tap_ok(tg_rate_try(r, 8, 100, &w), "chat 8 is not paused");
    tap_ok(!tg_rate_try(r, 7, 4999, &w) && w == 1, "chat 7 at 4999 waits 1");
    tap_ok(tg_rate_try(r, 7, 5000, &w), "chat 7 passes at 5000");
    tg_rate_pause_chat(r, 7, 10000);
    tg_rate_pause_chat(r, 7, 8000);
    tap_ok(!tg_rate_try(r, 7, 9000, &w) && w == 1000, "a shorter pause does not shorten one");
    tap_ok(tg_rate_pause_chat(r, 0, 1) == -EINVAL, "pausing chat 0 is -EINVAL");

    /* A new chat that is paused before it ever sent. */
    tap_ok(tg_rate_pause_chat(r, 77, 12000) == 0 && !tg_rate_try(r, 77, 11000, &w) && w == 1000,
           "a chat paused before its first message waits");

    tg_rate_pause_all(r, 20000);
    tg_rate_pause_all(r, 15000);
    tap_ok(!tg_rate_try(r, 9, 15000, &w) && w == 5000, "pause_all holds every chat (%lld)",
           (long long)w);
    tap_ok(!tg_rate_try(r, 0, 15000, &w) && w == 5000, "and chat 0");
    tap_ok(tg_rate_try(r, 9, 20000, &w) && tg_rate_try(r, 0, 20000, &w), "both pass at 20000");

    /* The wait is the longest of what holds the chat back. */
    tap_ok(tg_rate_try(r, 11, 30000, &w) && tg_rate_try(r, 11, 30000, &w) &&
               tg_rate_try(r, 11, 30000, &w),
           "chat 11 spends its burst");
    tg_rate_pause_chat(r, 11, 30500);
    tap_ok(!tg_rate_try(r, 11, 30000, &w) && w == 1000, "bucket wait 1000 beats pause 500");
    tg_rate_pause_chat(r, 11, 32000);
    tap_ok(!tg_rate_try(r, 11, 30000, &w) && w == 2000, "pause 2000 beats bucket wait 1000");
    for (int i = 0; i < 5; i++)
        tg_rate_try(r, 11, 30000, &w);
    tap_ok(w == 2000, "refusals take nothing");

    /* The clock stepping back counts as the latest time seen. */
    tap_ok(tg_rate_try(r, 12, 40000, &w) && tg_rate_try(r, 12, 40000, &w) &&
               tg_rate_try(r, 12, 40000, &w) && !tg_rate_try(r, 12, 39000, &w) && w == 1000,
           "a time before the last counts as the last (%lld)", (long long)w);
    tap_ok(!tg_rate_try(r, 12, 40999, &w) && tg_rate_try(r, 12, 41000, &w),
           "and the refill goes on from there");

    /* Chat 0 uses the global bucket only: 30 at once, then one per 34 ms. */
    int g = 0;
    while (tg_rate_try(r, 0, 50000, &w))
        g++;
    tap_ok(g == 30 && w == 34, "chat 0: 30 at once, then wait 34 ms (%d, %lld)", g, (long long)w);

    /* Extreme clocks: no overflow (UBSan watches), sane answers. */
    tap_ok(tg_rate_try(r, 13, INT64_MAX - 10, &w), "a clock near INT64_MAX");
    tg_rate_pause_all(r, INT64_MAX);
    tap_ok(!tg_rate_try(r, 13, INT64_MAX - 5, &w) && w == 5, "a pause until INT64_MAX");
    tg_rate_free(r);

    r = tg_rate_new(&c, &err);
    tg_rate_pause_chat(r, 5, INT64_MAX);
    tap_ok(!tg_rate_try(r, 5, INT64_MIN, &w) && w == INT64_MAX, "INT64_MIN to INT64_MAX saturates");
    tap_ok(tg_rate_try(r, -5, -1000000, &w), "negative clocks work");
    tg_rate_free(r);
}

static void test_full_table(void)
{
    tg_rate_config_t c;
    tg_rate_config_default(&c);
    c.table_size = 64;
    c.global = (tg_rate_spec_t){1000000, 1000, 1000000};
    int err;
    tg_rate_t *r = tg_rate_new(&c, &err);
    int64_t w;

    bool burst = tg_rate_try(r, 1, 0, &w) && tg_rate_try(r, 1, 0, &w) && tg_rate_try(r, 1, 0, &w);
    tap_ok(burst, "chat 1 spends its burst at 0");
    int granted = 0, full = 0, bad_wait = 0;
    for (int64_t chat = 2; chat < 400; chat++) {
        if (tg_rate_try(r, chat, 0, &w))
            granted++;
        else if (w != 1000)
            bad_wait++;
        else
            full++;
    }
    tg_rate_stats_t st;
    tg_rate_stats(r, &st);
    tap_ok(st.entries == 64 && granted == 63 && full == 398 - 63,
           "a 64-entry table holds 64 busy chats, refuses the rest (%u, %d, %d)", st.entries,
           granted, full);
    tap_ok(bad_wait == 0 && st.refused_full == (uint64_t)full,
           "refused with the wait until a slot frees: 1000 ms");
    tap_ok(!tg_rate_try(r, 1, 1, &w) && w == 999, "a busy chat is never forgotten (%lld)",
           (long long)w);
    tap_ok(tg_rate_pause_chat(r, 100000, 5000) == -ENOSPC, "pausing a new chat in a full table");

    tap_ok(!tg_rate_try(r, 100001, 999, &w) && w == 1,
           "1 ms before the busy chats refill, still no slot (wait %lld)", (long long)w);
    granted = 0;
    for (int64_t chat = 1000; chat < 1100; chat++)
        granted += tg_rate_try(r, chat, 1000, &w);
    tg_rate_stats(r, &st);
    tap_ok(granted == 63 && st.reclaimed == 63 && st.entries == 64,
           "at 1000 the idle chats' slots are reused (%d granted, %llu reclaimed)", granted,
           (unsigned long long)st.reclaimed);
    tap_ok(tg_rate_try(r, 1, 1000, &w), "chat 1 kept its slot and has one token at 1000");
    tap_ok(!tg_rate_try(r, 1, 1000, &w) && w == 1000, "and only one");
    tg_rate_free(r);
}

int main(void)
{
    test_config();
    test_minutes();
    test_pauses();
    test_full_table();
    return tap_done();
}
