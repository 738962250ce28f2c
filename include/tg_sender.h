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

#include "cfg.h"
#include "db.h"
#include "httpc.h"
#include "reactor.h"
#include "tg_api.h"
#include "tg_outbox.h"

/* ---- one Bot API call -------------------------------------------------- */

typedef struct tg_call tg_call_t;

/*
 * Runs once per started call, never synchronously. err is 0 with `res` the
 * parsed answer (classify it with tg_api_classify), or a transport error from
 * httpc (-ETIMEDOUT, -ECONNRESET, -EKEYREJECTED, ...) with res NULL.
 */
typedef void (*tg_call_cb)(tg_call_t *call, int err, const tg_api_result_t *res);

/* Bytes for a Bot API method name, NUL included; the longest are about 35 characters. */
#define TG_METHOD_MAX 64
/* Bytes for a call's path, "/bot" + token + "/" + method + NUL; cfg refuses longer tokens. */
#define TG_PATH_MAX (4 + CFG_TOKEN_MAX + 1 + TG_METHOD_MAX)

/* A call in flight. Embed it; it and the body stay valid until the callback. */
struct tg_call {
    httpc_req_t req;
    char path[TG_PATH_MAX]; /* holds the token: never logged, wiped when the call ends */
    tg_call_cb cb;
    void *data; /* for the caller */
};

/*
 * POSTs json[0..len) to `method` (e.g. "sendMessage") with the bot `token`.
 * Returns 0 (the callback will run), -ENAMETOOLONG when token and method do not
 * fit, or -EAGAIN when the pool's queue is full (the callback will not run).
 * call->path, which holds the token, is wiped before the callback runs and
 * when the call fails to start.
 */
int tg_call_start(tg_call_t *call, httpc_pool_t *pool, const char *token, const char *method,
                  const char *json, size_t len, uint32_t timeout_ms, tg_call_cb cb);

/* ---- outbox sender ----------------------------------------------------- */

/*
 * One sender per bot is active at a time, across every worker of every
 * process on one database: Telegram's limits (30 messages/s, 1/s per chat,
 * 20/min per group) are the bot's, so N senders each within them would be N
 * times over. Every worker with a token runs a sender; the one whose
 * db_lock_t (db.h: a PostgreSQL session advisory lock on a connection of its
 * own, key tg_sender_lock_key()) is granted claims and sends, the others
 * stand by and try the lock every lock_retry_ms. When the leader dies its
 * session ends, the server releases the lock, and a standby takes over
 * within about lock_retry_ms. The lock lives on its own session, not on the
 * db's shared pipelined connections, because those reconnect and resend
 * transparently: a lock taken there would vanish with a reconnect that the
 * sender never hears of.
 *
 * A sender that becomes the leader waits takeover_ms before its first claim,
 * so that its first burst does not share a second with the last sends of
 * the leader it replaces. One that loses its lock session stops at once:
 * no claim, no new call; held rows are released, calls already out finish
 * and are recorded. What the lock cannot rule out: a session that the server
 * ends while the leader does not see it end (a network partition) is noticed
 * only at the next failed check, up to db_lock's check + timeout (3 s) late;
 * in that window two senders may send together and the bot's rate may be
 * exceeded (Telegram then answers 429, which is honoured). Nothing else is at
 * stake: rows are leased, so none is sent by both (delivery is at-least-once
 * anyway), and chats stay in order because the store only lets a chat's
 * oldest unsent row be claimed (tg_outbox_claim()).
 *
 * Gauge tgring_sender_leader is 1 in the worker that sends;
 * tgring_sender_takeovers_total counts the times a worker became the leader.
 */

/*
 * The advisory lock key of the bot whose token is `token`: FNV-1a 64 of
 * "tgring.sender." followed by the bot id (the token up to its ':'; the
 * secret part never goes in), as a signed 64-bit integer. Shown in pg_locks
 * (objid and classid are its low and high halves) by the leader's session.
 */
int64_t tg_sender_lock_key(const char *token);

typedef struct tg_sender tg_sender_t;

typedef struct tg_sender_options {
    const char *token;       /* bot token (copied) */
    httpc_pool_t *http;      /* the Bot API pool (not owned) */
    db_t *db;                /* the outbox's database (not owned) */
    tg_rate_config_t rate;   /* buckets: global, per chat, per group */
    unsigned max_attempts;   /* sends of one row before it is marked failed; default 8. A send
                                answered with migrate_to_chat_id counts: this bounds a chain
                                of migrations that loops (A to B to A) */
    unsigned lease_ms;       /* how long a claim holds a row; default 30000. A row not sent
                                within lease - timeout - lease / 10 of the claim's
                                submission is released for the next claim */
    unsigned capacity;       /* rows held in memory at once; default 256. Marks not written
                                yet count too: with capacity of them waiting (the database
                                is down), nothing more is claimed, so rows held and marks
                                kept stay below 2 * capacity; no mark is dropped. Rows
                                handed over by this process's commits come on top, until
                                twice the capacity is held */
    unsigned poll_ms;        /* look for due rows this often when idle; default 200 */
    unsigned max_calls;      /* calls out at once; default 8. At most the pool's connections:
                                a call the pool queues would go out later than the rate
                                limiter let it, in a burst with others */
    unsigned backoff_ms;     /* first retry delay after 5xx or transport errors; default 1000 */
    unsigned backoff_max_ms; /* cap on that delay; default 300000 */
    uint32_t timeout_ms;     /* per call; default (lease_ms - lease_ms / 10) / 2, at most
                                30000; at most lease_ms - 2 * (lease_ms / 10) */
    const char *lock_conninfo; /* database of the leader lock (copied), normally the outbox's;
                                  NULL: no lock, this sender leads at once (one process only) */
    unsigned mark_delay_ms;    /* sent marks wait this long to be written together, one
                                  statement and one commit, unless MARK_BATCH (64) are queued
                                  or a claim is to go; 0: at the end of the turn */
    unsigned lock_retry_ms;    /* a standby tries the lock this often; default 1000 */
    unsigned takeover_ms;      /* a new leader's wait before its first claim; default 1000 */
} tg_sender_options_t;

/*
 * Starts the sender: it tries the leader lock, and while it holds it drains
 * the outbox: claims due rows, sends them oldest first (one at a time per
 * chat, in id order), marks each sent, retried or failed. A mark that cannot
 * be written (no connection ready, the database down or slow) is kept and
 * made again, 100 ms later doubling up to 2 s, until it is: a row sent is
 * not sent again because its mark was lost, as long as the mark lands before
 * the row's lease ends or no other claim took the row meanwhile (this
 * sender claims nothing while marks wait).
 * Returns NULL with *err = -EINVAL for a bad rate configuration, or a
 * timeout_ms that does not fit lease_ms (logged).
 */
tg_sender_t *tg_sender_new(rx_loop_t *loop, const tg_sender_options_t *opt, int *err);

/*
 * New rows may be due now (the processor committed some): a leading sender
 * claims at the end of this loop turn instead of at its next poll, when it
 * has room and no claim is out. Does nothing on a standby or a stopping
 * sender. Never calls anything back synchronously.
 */
void tg_sender_kick(tg_sender_t *s);

/*
 * The hand-off of rows this process commits (the processor's replies): a
 * commit that inserts outbox rows asks for a token first. 0: none (the
 * sender does not lead, or is full): the rows are inserted free, for the
 * claims. Otherwise the rows are inserted leased under the token for
 * *lease_ms from the transaction's start, and once the commit is through
 * they go to tg_sender_take(); a commit that failed simply asks again.
 */
int64_t tg_sender_handoff_token(tg_sender_t *s, uint32_t *lease_ms);

/*
 * Rows leased under a hand-off token, their commit through, with prev_id
 * (the previous open row of each one's chat when it was inserted, 0: none)
 * and token set, attempts 0; leased_ms is the loop time the commit was
 * submitted (the lease started no earlier). Each is sent like a claimed row
 * once its chat's previous row is held (it goes first) or known done; until
 * then it waits, held, and the sender claims to bring that row. When the
 * sender no longer leads they are released for the claims. Copies what it
 * keeps; never calls anything back synchronously.
 */
void tg_sender_take(tg_sender_t *s, const tg_outbox_row_t *rows, unsigned n, uint64_t leased_ms);

/*
 * Stops claiming and gives the leader lock up at once (a standby elsewhere
 * takes over). Calls in flight finish and are recorded; rows claimed but not
 * sent are released for the next claim. `on_idle` runs (from the loop) once
 * nothing is in flight or being recorded: while the database is down that
 * waits for it (marks are made again until written), so bound the wait.
 */
void tg_sender_stop(tg_sender_t *s, void (*on_idle)(void *arg), void *arg);

/*
 * The database is about to be freed (db_free()): submits the marks that
 * wait (db_free() then cancels them), drops those it cannot submit, with a
 * warning (their rows are claimed again when their leases end), and writes
 * nothing more. After tg_sender_stop() and once no call is in flight.
 */
void tg_sender_detach(tg_sender_t *s);

/* Frees the sender; only after on_idle, or once the loop no longer runs. */
void tg_sender_free(tg_sender_t *s);

#endif
