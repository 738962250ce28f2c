/* SPDX-License-Identifier: MIT */
/*
 * tg_outbox.h - Telegram, the sender's side of the outbox table: claims of
 * due rows with a lease, and the marks that follow (sent, retry later, failed
 * for good, retargeted to a migrated chat, released unsent), written against
 * db.h's transaction API as one ordered client.
 *
 * The outbox table holds one row per Bot API request to make (written by the
 * processor, in the transaction of the update that caused it). The sender
 * claims due rows with a lease, sends them, and marks each.
 *
 * Every call below is one statement in its own transaction, pipelined on one
 * of the db's connections (the client is an ordered lane: the one connection
 * that has operations in flight, else the first ready one), queued until the
 * end of the turn and sent at most 8 at a time; calls are executed in the
 * order made, except that one retried after a passing failure goes ahead of
 * those not sent yet. A claim or mark is answered after a round trip and a
 * commit: a few milliseconds on a local server, more under fsync pressure or
 * behind a large inbox batch.
 * Each returns 0 (the callback will run exactly once, from the loop, never
 * synchronously), or -EAGAIN (the callback will not run): no connection is
 * ready, or opt.max operations are already queued or in flight.
 * An operation whose connection is lost before its result is sent again on
 * a ready connection (the statements are idempotent, see each); one not
 * answered within opt.timeout_ms gets -ETIMEDOUT, and then may or may not
 * have taken effect. db_free() answers the pending ones -ECANCELED.
 * A callback may call any tg_outbox_*() or db_store(), not db_free().
 *
 * Depends on core, reactor and db.
 */
#ifndef TGRING_TG_OUTBOX_H
#define TGRING_TG_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"

/* Bytes of an error text kept in last_error (cut at a UTF-8 character boundary). */
#define TG_OUTBOX_ERROR_MAX 1000
/* Rows one tg_outbox_sent_many() marks at most. */
#define TG_OUTBOX_SENT_MAX 1000
/* Rows one claim can return; a larger `max` is reduced to this. */
#define TG_OUTBOX_CLAIM_MAX 1000
/* Longest retry delay and due window, ms (a year); longer ones are reduced to this. */
#define TG_OUTBOX_DELAY_MAX_MS (366ull * 24 * 3600 * 1000)

typedef struct tg_outbox_options {
    unsigned max;        /* operations queued or in flight, more get -EAGAIN (0: 1024) */
    unsigned timeout_ms; /* per-operation deadline for a result, ms (0: 10000) */
} tg_outbox_options_t;

/* The outbox's store. Caller's storage; nothing to dispose (db_free() frees the client). */
typedef struct tg_outbox {
    db_client_t *cl;
    uint64_t token_base; /* random; claim tokens are token_base + a counter */
    uint64_t next_token; /* counter for the next claim token */
} tg_outbox_t;

/* A claimed row, valid only during the claim callback (copy what you keep). */
typedef struct tg_outbox_row {
    int64_t id;
    int64_t chat_id;
    const char *method; /* e.g. "sendMessage"; NUL-terminated too */
    size_t method_len;
    const char *body; /* the JSON request body; NUL-terminated too */
    size_t body_len;
    int attempts;    /* sends tried before this claim */
    int64_t prev_id; /* the next older open row of its chat when claimed, 0: none */
    int64_t token;   /* the claim's token, stored in the row: pass it to the row's mark */
} tg_outbox_row_t;

/*
 * err 0 with the claimed rows, oldest id first (n may be 0: nothing due), or
 * err < 0 with rows NULL and n 0:
 *   -EAGAIN: the claim failed DB_TRIES_MAX times for a passing reason (a
 *     lock or statement timeout), or was refused: nothing was claimed, try
 *     again later;
 *   -ETIMEDOUT: no answer in time: rows may have been leased, and are
 *     claimed again (by anyone) when the lease ends;
 *   -ECANCELED: db_free() was called; as for -ETIMEDOUT.
 */
typedef void (*tg_outbox_claim_cb)(void *arg, int err, const tg_outbox_row_t *rows, unsigned n);

/*
 * err 0: done, or the row was not in a state the mark applies to (see each
 * mark; a mark sent again after a lost connection finds its own effect so);
 *   -EBADMSG: the database refused it for the row's content (retarget of a
 *     body that is not valid JSON for jsonb); the row is unchanged;
 *   -ECONNRESET: it failed DB_TRIES_MAX times for a passing reason; unchanged;
 *   -ETIMEDOUT, -ECANCELED: as for claims; it may or may not have happened.
 */
typedef void (*tg_outbox_done_cb)(void *arg, int err);

/* err 0 and the count, or err < 0 (as for a claim) and 0. */
typedef void (*tg_outbox_count_cb)(void *arg, int err, int64_t count);

/*
 * Registers the outbox's statements with `db` (db_client_new) and seeds the
 * claim tokens. At most one per db: the statement names are fixed. `opt` may
 * be NULL (the defaults). Aborts on allocation failure.
 */
void tg_outbox_init(tg_outbox_t *ob, db_t *db, const tg_outbox_options_t *opt);

/*
 * Claims up to `max` (>= 1) due rows, each chat's as a run: rows with
 * sent_at and failed_at null, not_before <= now() and claimed_until null or
 * past, oldest id first, with FOR UPDATE SKIP LOCKED so that several
 * processes share one outbox without blocking each other; sets claimed_until
 * = now() + lease_ms. A row is taken only if no older open row of its chat
 * holds it back: each older one is either leased by an earlier claim of this
 * tg_outbox_t (its lease running) or taken in this same claim. So a row put
 * back (retry, release, a lease run out) comes again before any later row of
 * its chat, and one not due yet, or leased by another process, holds them
 * back. Each row carries prev_id, the next older open row of its chat when
 * the claim ran (0: none): the caller sends a chat's rows one after the
 * other in id order, and keeps a row only while its prev_id is held or done
 * (one put back while the claim was on its way makes the caller give the
 * row back). (Id order is the order of the inserts' commits only for rows of
 * a chat written one transaction after another, as the processor writes a
 * chat's replies.) A row is not claimed
 * again while its lease runs, by this or any process; once it has run out
 * (the process died, or its send took longer than the lease) it is claimed
 * again: delivery is at-least-once. So lease_ms must exceed the longest send
 * (e.g. 60000 with a 30 s HTTP timeout). Each claim carries a token stored
 * in the rows it leases (column claim_token, also in each row returned): a
 * claim sent again after a lost connection also returns the rows its first
 * attempt leased, if it committed; and every mark names the token of the
 * claim it follows, so that a row re-claimed by another claim (its lease ran
 * out) is left to that claim's marks.
 * `cb` (not NULL) runs once, see tg_outbox_claim_cb.
 * Returns 0, or -EAGAIN when not ready, after db_drain(), or at the cap.
 */
int tg_outbox_claim(tg_outbox_t *ob, unsigned max, unsigned lease_ms, tg_outbox_claim_cb cb,
                    void *arg);

/*
 * A new claim token for rows leased elsewhere on this outbox's behalf (the
 * processor's hand-off, tg_sender.h): claims treat the rows it leases as
 * their own, as they do rows of their earlier claims.
 */
int64_t tg_outbox_token(tg_outbox_t *ob);

/*
 * The marks below change row `id` only while its claim_token is `token`, the
 * token of the claim that returned it (tg_outbox_row_t.token): a mark made
 * after the row's lease ran out and another claim took it does nothing (err
 * 0), and that claim's own marks decide. A mark made after the lease ran out
 * but before any other claim still applies: the row is not re-sent.
 */

/*
 * Marks row `id` sent: sent_at = now(), claimed_until = null; only while
 * sent_at is null (the first time stays) and under `token`. cb may be NULL.
 * Returns 0 or -EAGAIN.
 */
int tg_outbox_sent(tg_outbox_t *ob, int64_t id, int64_t token, tg_outbox_done_cb cb, void *arg);

/*
 * Marks rows ids[0..n), each under its tokens[i] (1 <= n <=
 * TG_OUTBOX_SENT_MAX), sent as tg_outbox_sent does, in one statement and one
 * commit: the sender marks what it sent in a turn at once, not one commit
 * per reply. cb runs once for all of them. Returns 0 or -EAGAIN.
 */
int tg_outbox_sent_many(tg_outbox_t *ob, const int64_t *ids, const int64_t *tokens, unsigned n,
                        tg_outbox_done_cb cb, void *arg);

/*
 * Sending failed for now: attempts = attempts + 1, last_error = error (NULL:
 * null; cut to TG_OUTBOX_ERROR_MAX bytes, each ill-formed UTF-8 sequence
 * becomes '?'), not_before = now() + delay_ms, claimed_until = null. Only
 * while the row is claimed (claimed_until not null) under `token` and
 * neither sent nor failed, which makes it count once. cb may be NULL.
 * Returns 0 or -EAGAIN.
 */
int tg_outbox_retry(tg_outbox_t *ob, int64_t id, int64_t token, uint64_t delay_ms,
                    const char *error, tg_outbox_done_cb cb, void *arg);

/*
 * Final failure: attempts = attempts + 1, last_error = error (as for retry),
 * failed_at = now(), claimed_until = null; the row is kept, not deleted.
 * Only while claimed under `token` and neither sent nor failed. cb may be
 * NULL. Returns 0 or -EAGAIN.
 */
int tg_outbox_fail(tg_outbox_t *ob, int64_t id, int64_t token, const char *error,
                   tg_outbox_done_cb cb, void *arg);

/*
 * Re-targets the row to `chat_id` (migrate_to_chat_id): chat_id = new, the
 * body's "chat_id" member replaced (jsonb_set(body::jsonb, '{chat_id}',
 * to_jsonb(new))::text, which also normalises the body's JSON layout),
 * attempts = attempts + 1 (the send that was answered so counts, which
 * bounds a chain of migrations that loops), claimed_until = null,
 * not_before = now(): the row is due again at once,
 * to be claimed and sent anew (do not mark it sent or retry it afterwards).
 * Only while claimed under `token` and neither sent nor failed. cb may be
 * NULL. Returns 0 or -EAGAIN.
 */
int tg_outbox_retarget(tg_outbox_t *ob, int64_t id, int64_t token, int64_t chat_id,
                       tg_outbox_done_cb cb, void *arg);

/*
 * Gives a claimed row back unsent (the sender stops, or will not send it
 * now): claimed_until = null, attempts unchanged, so that it can be claimed
 * again at once, by this or another process. Only while the row is claimed
 * under `token` and neither sent nor failed. cb may be NULL.
 * Returns 0 or -EAGAIN.
 */
int tg_outbox_release(tg_outbox_t *ob, int64_t id, int64_t token, tg_outbox_done_cb cb, void *arg);

/*
 * Releases rows ids[0..n), each under its tokens[i] (1 <= n <=
 * TG_OUTBOX_SENT_MAX), as tg_outbox_release does, in one statement and one
 * commit: a sender that gives its rows back (it stops, or no longer leads)
 * does not make one commit per row. cb runs once for all. Returns 0 or
 * -EAGAIN.
 */
int tg_outbox_release_many(tg_outbox_t *ob, const int64_t *ids, const int64_t *tokens, unsigned n,
                           tg_outbox_done_cb cb, void *arg);

/*
 * Counts rows that are due or will be due within `within_ms` (sent_at and
 * failed_at null, not_before <= now() + within_ms; claimed ones included): a
 * cheap count for metrics. cb may be NULL. Returns 0 or -EAGAIN.
 */
int tg_outbox_due(tg_outbox_t *ob, uint64_t within_ms, tg_outbox_count_cb cb, void *arg);

/* Outbox operations whose callback is owed: queued or in flight. */
unsigned tg_outbox_pending(const tg_outbox_t *ob);

#endif
