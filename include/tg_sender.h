/* SPDX-License-Identifier: MIT */
/*
 * tg_sender.h - Telegram, the sending side on the reactor: one Bot API call
 * (tg_call) and the outbox sender that drains the `outbox` table through the
 * HTTPS pool within Telegram's rate limits.
 *
 * The sender keeps no counters of its own: it counts into this worker's
 * metrics slot (met.h) as it decides, rows claimed, sent, retried, failed
 * and migrated, 429s and those taken as the bot's global limit
 * (tgring_outbox_*). Calls without an answer are counted by httpc.
 *
 * Depends on core, reactor, db, httpc and the pure pieces of tg_api.h.
 */
#ifndef TGRING_TG_SENDER_H
#define TGRING_TG_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "httpc.h"
#include "reactor.h"
#include "tg_api.h"

/* ---- one Bot API call -------------------------------------------------- */

typedef struct tg_call tg_call_t;

/*
 * Runs once per started call, never synchronously. err is 0 with `res` the
 * parsed answer (classify it with tg_api_classify), or a transport error from
 * httpc (-ETIMEDOUT, -ECONNRESET, -EKEYREJECTED, ...) with res NULL.
 */
typedef void (*tg_call_cb)(tg_call_t *call, int err, const tg_api_result_t *res);

#define TG_PATH_MAX 224 /* "/bot" + token + "/" + method */

/* A call in flight. Embed it; it and the body stay valid until the callback. */
struct tg_call {
    httpc_req_t req;
    char path[TG_PATH_MAX]; /* holds the token: never logged */
    tg_call_cb cb;
    void *data; /* for the caller */
};

/*
 * POSTs json[0..len) to `method` (e.g. "sendMessage") with the bot `token`.
 * Returns 0 (the callback will run), -ENAMETOOLONG when token and method do not
 * fit, or -EAGAIN when the pool's queue is full (the callback will not run).
 */
int tg_call_start(tg_call_t *call, httpc_pool_t *pool, const char *token, const char *method,
                  const char *json, size_t len, uint32_t timeout_ms, tg_call_cb cb);

/* ---- outbox sender ----------------------------------------------------- */

typedef struct tg_sender tg_sender_t;

typedef struct tg_sender_options {
    const char *token;       /* bot token (copied) */
    httpc_pool_t *http;      /* the Bot API pool (not owned) */
    db_t *db;                /* the outbox's database (not owned) */
    tg_rate_config_t rate;   /* buckets: global, per chat, per group */
    unsigned max_attempts;   /* sends of one row before it is marked failed; default 8 */
    unsigned lease_ms;       /* how long a claim holds a row; default 30000. A row not sent
                                within half of it is released for the next claim */
    unsigned capacity;       /* rows held in memory at once; default 256 */
    unsigned poll_ms;        /* look for due rows this often when idle; default 200 */
    unsigned backoff_ms;     /* first retry delay after 5xx or transport errors; default 1000 */
    unsigned backoff_max_ms; /* cap on that delay; default 300000 */
    uint32_t timeout_ms;     /* per call; default 30000, at most lease_ms / 2 */
} tg_sender_options_t;

/*
 * Starts draining the outbox: claims due rows, sends them oldest first (one at
 * a time per chat, in id order), marks each sent, retried or failed.
 * Returns NULL with *err = -EINVAL for a bad rate configuration.
 */
tg_sender_t *tg_sender_new(rx_loop_t *loop, const tg_sender_options_t *opt, int *err);

/*
 * Stops claiming. Calls in flight finish and are recorded; rows claimed but
 * not sent are released for the next claim. `on_idle` runs (from the loop)
 * once nothing is in flight or being recorded.
 */
void tg_sender_stop(tg_sender_t *s, void (*on_idle)(void *arg), void *arg);

/* Frees the sender; only after on_idle, or once the loop no longer runs. */
void tg_sender_free(tg_sender_t *s);

#endif
