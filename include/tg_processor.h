/* SPDX-License-Identifier: MIT */
/*
 * tg_processor.h - Telegram, the processor: turns stored updates into the
 * application's effects, exactly once and in update_id order per chat, with
 * any number of workers and replicas on one database. A client of db.h's
 * transaction API; the application sits above it (bot.h) and is reached
 * through one handler entry.
 *
 * Claims. One statement claims up to N updates, at most one per chat: the
 * oldest unprocessed update of each chat (the head: no older unprocessed
 * update of its chat exists), and only if that head's lease is null or past.
 * The unprocessed updates are walked in update_id order from a lower bound
 * and the walk stops after N free heads, so a claim's cost grows with the
 * busy chats' backlog, not with all of it, nor with the index entries of
 * updates processed since the table was last vacuumed. The bound is a hint,
 * not a condition of safety (a head below it waits for a later claim): every
 * TG_PROC_FROM_MS it moves to the lowest unprocessed update from it on
 * (tgring_pending_low), tg_proc_kick() lowers it at once to what this
 * process stores, and every half lease it is computed without a bound, so
 * that what another process stored below it and never claimed (it died) is
 * claimed within half a lease. It
 * locks the heads FOR UPDATE OF u SKIP LOCKED with the lease condition on the
 * locked row itself, so that a head another claim leased and committed
 * meanwhile is re-checked on its newest version (READ COMMITTED's
 * EvalPlanQual) and skipped; then it sets claimed_until = now() + lease and
 * claim_token = a random token of this claim. A chat's next update becomes a
 * head only once the previous one is committed processed, so one chat's
 * updates are handled one at a time in update_id order, whoever claims them.
 * Updates without a chat (inline queries, polls, pre-checkout queries) are
 * each a head of their own: they have no order among themselves.
 *
 * Leases, not advisory locks: a lease outlives the claim's transaction, so
 * the claim and the commit are two short transactions on a shared pipelined
 * connection (a session lock would pin a connection, or a transaction would
 * stay open, for as long as a handler runs), and the leases of a process that
 * died simply expire: its updates are claimed again after TGRING_PROCESS_LEASE_MS.
 * A claim resent after a lost connection returns the updates leased under its
 * token as well (db_query_t.again).
 *
 * Running. Each claimed update is parsed (tg_update_parse, tokens owned by
 * its context) and given to the handler with a context. The handler finishes
 * asynchronously with tg_proc_done() or tg_proc_fail(). Its reads
 * (tg_proc_query) run at once, each its own short transaction, pipelined; its
 * writes (tg_proc_exec) and Bot API calls (tg_proc_send: outbox rows) are kept
 * in the context and committed with the processed mark in one transaction.
 * The mark goes first in it and RAISEs when this claim no longer holds the
 * update (a commit resent after it committed, or a lease that ran out and an
 * update another process took), which rolls back all of that update's
 * effects: they happen exactly once across crashes, resends and replicas.
 * Reads are not in that transaction: within a chat, serial processing makes
 * read-then-write safe; rows shared across chats need statements that are
 * correct under concurrency (UPDATE ... SET n = n + 1).
 *
 * Commits are batched across chats like the inbox: the updates finished in
 * one loop turn go into one transaction (mark, writes and outbox rows of
 * each, split at DB_TXN_MAX statements). A refused statement k (-EBADMSG):
 * the update owning k is taken out; if k was its mark, it is done already or
 * elsewhere and is dropped (tgring_updates_lost_total); if k was one of its
 * writes, it is marked failed. The rest is submitted again. A handler that
 * fails, does not finish within TGRING_HANDLER_TIMEOUT_MS, or exceeds the
 * limits below is marked failed (processed_at and failed_at, last_error, no
 * effects); its chat goes on with the next update. So is an update claimed
 * more than TG_PROC_ATTEMPTS_MAX times (its processing keeps killing the
 * process).
 *
 * Wake-ups: the inbox's batch hook (db_set_batch_hook()): when the inbox
 * sends a group commit and no claim is in flight, the claim goes on the same
 * connection right behind it (db_txn_submit_behind()), so its backend runs
 * it as soon as the batch has committed, and the batch's updates are claimed
 * without a round trip back here between the COMMIT and the claim;
 * tg_proc_kick() (the webhook endpoint calls it when the inbox committed an
 * update that no claim went behind: db_update_t.followed), every commit (a
 * chat's next update may wait), and a poll every opt.poll_ms for updates
 * stored by another worker or replica.
 * One claim is in flight at a time, and a claim starts at least 2 ms after
 * the previous one started: a claim costs the database about the same
 * however few updates it takes, so under load each takes what arrived in
 * those 2 ms rather than the one or two updates of the latest group commit;
 * after a quiet spell the first claim goes at once
 * (tgring_processor_claims_total counts them).
 * At most opt.capacity updates are in progress at once.
 *
 * Housekeeping (opt.housekeeping, one worker per process group): every
 * retention_every_ms, processed updates received more than
 * opt.retention_hours ago are deleted in update_id order, from where the
 * previous round stopped up to the first update not due yet,
 * TG_PROC_PRUNE_BATCH read per statement, again while a batch was all
 * deleted (migrations/0012_prune_by_id.sql); every second the gauges
 * tgring_processor_lag_seconds (age of the unprocessed update with the
 * lowest update_id; Telegram's ids grow with time) and
 * tgring_outbox_depth (due unsent outbox rows) are sampled.
 *
 * Depends on core, reactor, db and tg.h.
 */
#ifndef TGRING_TG_PROCESSOR_H
#define TGRING_TG_PROCESSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "reactor.h"
#include "tg.h"
#include "tg_outbox.h"

/* Effects (writes plus outbox rows) one update may commit: the mark takes one statement. */
#define TG_PROC_EFFECTS_MAX (DB_TXN_MAX - 1)
/* Claims of one update after which it is marked failed instead of handled again. */
#define TG_PROC_ATTEMPTS_MAX 5
/* Updates one retention statement deletes at most. */
#define TG_PROC_PRUNE_BATCH 1000
/* Bytes of an error text kept in last_error. */
#define TG_PROC_ERROR_MAX 500
/* Tokens an update may have (as the webhook accepts). */
#define TG_PROC_JSON_TOKENS 65536

typedef struct tg_proc tg_proc_t;
typedef struct tg_proc_ctx tg_proc_ctx_t;

/* The update a handler gets; valid until its context is finished. */
typedef struct tg_proc_update {
    int64_t update_id;
    const char *body;     /* the stored body, NUL-terminated too */
    size_t len;           /* bytes */
    const jsmntok_t *tok; /* its tokens (tg_update_parse), tok[0] the update object */
    int ntok;
    tg_update_info_t info; /* type, chat, sender: views into body */
} tg_proc_update_t;

/*
 * The application's entry: called once per claimed update, from the loop.
 * It must end the update with tg_proc_done() or tg_proc_fail(), now or later
 * (from a query callback).
 */
typedef void (*tg_proc_handler_cb)(void *app, tg_proc_ctx_t *ctx, const tg_proc_update_t *u);

/*
 * A read's result, exactly once: err 0 and res (valid during the call);
 * -EBADMSG refused for its content, res the error (db_res_sqlstate);
 * -ECONNRESET, -ETIMEDOUT with res NULL (as db_txn_cb); -ECANCELED with res
 * NULL when the update finished meanwhile (done, failed, past its deadline) or
 * the processor is going away: then the context may be used for nothing but
 * tg_proc_ctx_data() (the result is dropped).
 */
typedef void (*tg_proc_query_cb)(tg_proc_ctx_t *ctx, int err, const db_result_t *res, void *arg);

typedef struct tg_proc_options {
    db_t *db;
    /* The application's statements, registered with the processor's client (not copied). */
    const db_stmt_t *stmts;
    unsigned nstmts;
    tg_proc_handler_cb handler; /* NULL: every update is marked processed, with no effect */
    /* Called (unless NULL) when the context of an update given to handler is freed. */
    void (*release)(void *app, tg_proc_ctx_t *ctx);
    void *app;                   /* passed to handler and release */
    size_t ctx_size;             /* bytes per update for the application (tg_proc_ctx_data) */
    unsigned capacity;           /* updates in progress at most (0: 256) */
    unsigned poll_ms;            /* poll for others' updates, ms (0: 250) */
    unsigned lease_ms;           /* how long a claim holds an update, ms (0: 30000) */
    unsigned handler_timeout_ms; /* a handler's deadline, ms (0: 10000); below lease_ms */
    bool housekeeping;           /* prune and sample the gauges on this processor */
    unsigned retention_hours;    /* keep processed updates this long (0: never prune) */
    unsigned retention_every_ms; /* between pruning rounds, ms (0: 60000); the first at start */
    const char *username;        /* the bot's username, filled in when known ("" until then) */
    /* Wall clock for tg_proc_now(), ms since the epoch (NULL: CLOCK_REALTIME). */
    int64_t (*clock)(void *arg);
    void *clock_arg;
    /*
     * Called (unless NULL) after a commit that queued Bot API calls into the
     * outbox, so that a sender in this process claims them at once instead of
     * at its next poll.
     */
    void (*on_outbox)(void *arg);
    void *outbox_arg;
    /*
     * The hand-off to a sender in this process (both NULL: none; both get
     * outbox_arg). handoff_token runs as each commit is formed: a token (0:
     * none) under which the commit leases the Bot API calls it queues, for
     * *lease_ms; once that commit is through, on_handoff gets those rows
     * (token and prev_id set, see tg_sender_take()) and leased_ms, the loop
     * time the commit was submitted. on_outbox still runs for commits whose
     * rows were not all leased so.
     */
    int64_t (*handoff_token)(void *arg, uint32_t *lease_ms);
    void (*on_handoff)(void *arg, const tg_outbox_row_t *rows, unsigned n, uint64_t leased_ms);
} tg_proc_options_t;

/*
 * Registers the processor's client (its statements and opt.stmts) with
 * opt.db and starts polling. Aborts on allocation failure.
 */
tg_proc_t *tg_proc_new(rx_loop_t *loop, const tg_proc_options_t *opt);

/*
 * update_id was stored (committed) by this process: claim at the end of this
 * turn (when there is room), from it on if it lies below the claims' bound.
 */
void tg_proc_kick(tg_proc_t *p, int64_t update_id);

/*
 * Stops claiming; updates in progress finish and commit. `on_idle` (may be
 * NULL) runs from the loop once nothing is in progress or in flight.
 */
void tg_proc_stop(tg_proc_t *p, void (*on_idle)(void *arg), void *arg);

/*
 * Stops every timer and submit: call right before db_free(), whose
 * cancellations the processor then takes without submitting anything.
 */
void tg_proc_detach(tg_proc_t *p);

/* Frees the processor and whatever it holds (leases run out). After db_free(). */
void tg_proc_free(tg_proc_t *p);

/* Updates in progress: claimed and not yet committed or dropped. */
unsigned tg_proc_in_progress(const tg_proc_t *p);

/* ---- for handlers: the context of one update ---- */

/* opt.ctx_size bytes for the application, zeroed, aligned for any type. */
void *tg_proc_ctx_data(tg_proc_ctx_t *ctx);

/* The context whose data `data` is. */
tg_proc_ctx_t *tg_proc_ctx_of(void *data);

/* The update. */
const tg_proc_update_t *tg_proc_ctx_update(const tg_proc_ctx_t *ctx);

/* The time taken when the update was claimed, ms since the epoch (opt.clock). */
int64_t tg_proc_now(const tg_proc_ctx_t *ctx);

/* The bot's username without '@', "" while unknown. */
const char *tg_proc_username(const tg_proc_ctx_t *ctx);

/*
 * Runs registered statement `stmt` with params[0..n) as a transaction of its
 * own, now (pipelined with the others). cb runs once, from the loop, unless
 * the update is finished first. Returns 0; -ENOENT (not a statement of the
 * application), -EINVAL (wrong parameter count), -EPIPE (the update is
 * finished), -EAGAIN (the database is not ready or the client is full).
 */
int tg_proc_query(tg_proc_ctx_t *ctx, const char *stmt, const db_param_t *params, unsigned n,
                  tg_proc_query_cb cb, void *arg);

/*
 * Keeps statement `stmt` with params[0..n) (copied) for the update's commit.
 * Returns 0; -ENOENT, -EINVAL, -EPIPE as above; -E2BIG past
 * TG_PROC_EFFECTS_MAX effects (the update will then be marked failed).
 */
int tg_proc_exec(tg_proc_ctx_t *ctx, const char *stmt, const db_param_t *params, unsigned n);

/*
 * Keeps an outbox row for the commit: `method` with JSON body json[0..len)
 * (copied), to chat_id (the sender's per-chat order and limits). Returns as
 * tg_proc_exec().
 */
int tg_proc_send(tg_proc_ctx_t *ctx, int64_t chat_id, const char *method, const char *json,
                 size_t len);

/* The update is handled: commit its effects with the mark. Later calls are ignored. */
void tg_proc_done(tg_proc_ctx_t *ctx);

/* The update failed: mark it failed with `why` (copied; NULL: "failed"), no effects. */
void tg_proc_fail(tg_proc_ctx_t *ctx, const char *why);

#endif
