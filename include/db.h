/* SPDX-License-Identifier: MIT */
/*
 * db.h - PostgreSQL on the reactor: the inbox (group commit of updates), the
 * outbox (the sender's claims and marks) and migrations.
 *
 * A small fixed set of nonblocking connections per reactor (opt.connections),
 * each in pipeline mode and polled through the ring, shared by the inbox and
 * the outbox. Each transaction on one ends with its own pipeline sync, so one
 * that fails aborts nothing else: a refused update does not touch an outbox
 * mark pipelined behind it, nor the reverse. Updates submitted during one
 * loop turn go into one transaction, sent at the end of the turn on a
 * connection that has no inbox transaction in flight (while all have one,
 * the updates wait and the next batch grows); each submitter's callback runs
 * when that transaction's COMMIT returned (or when it is known that it will
 * not). Each connection is its own server backend, so batches on different
 * connections commit in parallel and the server's group commit can share one
 * WAL flush among them. The outbox's operations go on one connection at a
 * time, which keeps them in order.
 * A lost connection reconnects with backoff, re-enters nonblocking and
 * pipeline mode and re-prepares its statements; every transaction whose
 * commit it had not confirmed is sent again (each statement is idempotent),
 * on another connection if one is ready, else after the reconnect.
 * The per-worker gauge tgring_db_connected is 1 while at least one of the
 * connections is up, 0 when none is; tgring_db_reconnects_total counts the
 * losses of each connection.
 *
 * Depends on core and reactor.
 */
#ifndef TGRING_DB_H
#define TGRING_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reactor.h"

typedef struct db db_t;
typedef struct db_update db_update_t;

/* Outcome passed to db_store_cb. */
enum {
    DB_STORED = 0,    /* committed now */
    DB_DUPLICATE = 1, /* already stored earlier (same update_id): committed nothing new */
};

/*
 * Called exactly once per accepted db_store() call, never synchronously from
 * db_store(). status:
 *   DB_STORED, DB_DUPLICATE: committed;
 *   -EBADMSG: the database refused this row for its content (a constraint,
 *     a trigger); its batch-mates were retried without it and are unaffected;
 *   -ETIMEDOUT: no commit confirmed within the ack timeout; it may or may not
 *     be stored (the connection may have broken during the commit);
 *   -ECONNRESET: its transaction failed DB_TRIES_MAX times for a reason not
 *     tied to the row's content (a deadlock, a failed commit); not stored;
 *   -ECANCELED: db_free() was called; it may or may not be stored.
 * Everything but a commit means the caller answers an error and Telegram
 * delivers the update again. The callback may call db_store(), not db_free().
 */
typedef void (*db_store_cb)(db_update_t *u, int status);

/*
 * One update to store. Owned by the caller (embed it in the request), which
 * keeps it and the memory its views point at valid until the callback.
 */
struct db_update {
    int64_t update_id;
    const char *body; /* raw body, stored verbatim as bytea */
    size_t body_len;
    bool has_chat;
    int64_t chat_id;
    const char *type; /* update type name, e.g. "message" */
    size_t type_len;
    bool has_from;
    int64_t from_id;
    db_store_cb cb;
    /* Private to db. */
    db_update_t *next;
    uint64_t enqueued_ms; /* loop time of db_store(), ms: the ack deadline counts from it */
    uint32_t batch;       /* id of the batch it was sent in, 0 = not sent */
    uint8_t tries;        /* transactions that failed with it for a retryable reason */
};

/* Failed transactions an update goes through before its callback gets -ECONNRESET. */
#define DB_TRIES_MAX 3

/* Most connections one db_t opens. */
#define DB_CONNECTIONS_MAX 16

typedef struct db_options {
    const char *conninfo;    /* DATABASE_URL (copied); never logged: it may hold a password */
    unsigned connections;    /* PostgreSQL connections, 1..DB_CONNECTIONS_MAX (0: 2; more: 16) */
    unsigned queue_max;      /* updates waiting or in flight, db_store() refuses more (0: 10000) */
    unsigned ack_timeout_ms; /* per-update deadline for a commit, ms (0: 10000) */
    unsigned max_batch;      /* updates per transaction, e.g. 512 (0: 512) */
    unsigned outbox_max;     /* outbox operations queued or in flight, more get -EAGAIN (0: 1024) */
    unsigned outbox_timeout_ms; /* per-operation deadline for an outbox result, ms (0: 10000) */
} db_options_t;

/*
 * Allocates the inbox and starts connecting every connection (nonblocking;
 * returns before they are up, though libpq resolves a host name
 * synchronously: use an address or a local resolver). While the database is
 * unreachable or not migrated each keeps trying (50 ms doubling to 500 ms
 * between attempts, the schema every second) and db_ready() stays false.
 * Aborts on allocation failure; never returns NULL.
 */
db_t *db_new(rx_loop_t *loop, const db_options_t *opt);

/*
 * Queues `u` for the batch of this turn. Returns 0 (the callback will run,
 * from the loop, never from inside db_store()), -EAGAIN when no connection is
 * ready (db_ready() false), db_drain() was called, or the queue is full (the
 * callback will not run; the caller answers 503 at once).
 * Updates in a transaction whose connection was lost are sent again on
 * another ready connection, or wait for a reconnect; they get -ETIMEDOUT if
 * no commit of theirs is confirmed in time.
 */
int db_store(db_t *db, db_update_t *u);

/*
 * True while at least one connection is connected, in pipeline mode, has
 * found the schema migrated and prepared its statements.
 */
bool db_ready(const db_t *db);

/* Updates waiting or in flight. */
unsigned db_pending(const db_t *db);

/*
 * Stops taking updates and outbox claims (outbox marks are still taken, so
 * that rows in hand can be marked); what is in flight completes normally.
 * `on_idle` runs (from the loop, not synchronously) once no update and no
 * outbox operation is pending.
 */
void db_drain(db_t *db, void (*on_idle)(void *arg), void *arg);

/*
 * Cancels what is pending, updates and outbox operations (callbacks run
 * with -ECANCELED, synchronously), closes the connections and frees `db`.
 * Not from inside a db callback.
 * A poll on a connection's socket may still be in the ring: then the
 * memory is released when its cancellation completes, in the loop's next
 * turn. Run the loop once more after db_free() (as before rx_loop_dispose()
 * anyway, which requires nothing in flight); without that turn the small
 * remainder is left to the process exit, which is safe, but shows as a leak.
 */
void db_free(db_t *db);

/* ---- outbox: the sender's side ------------------------------------------ */

/*
 * The outbox table holds one row per Bot API request to make (written by the
 * processor, in the transaction of the update that caused it). The sender
 * claims due rows with a lease, sends them, and marks each: sent, retry
 * later, failed for good, retargeted to a migrated chat, or released unsent.
 *
 * Every call below is one statement in its own transaction, pipelined on one
 * of the inbox's connections (the one that has operations in flight, else the
 * first ready one), queued until the end of the turn and sent at most 8 at a
 * time; calls are executed in the order made,
 * except that one retried after a passing failure goes ahead of later ones.
 * A claim or mark is answered after a round trip and a commit: a few
 * milliseconds on a local server (the tests measure it), more under fsync
 * pressure or behind a large inbox batch.
 * Each returns 0 (the callback will run exactly once, from the loop, never
 * synchronously), or -EAGAIN (the callback will not run): no connection is
 * ready, or opt.outbox_max operations are already queued or in flight.
 * An operation whose connection is lost before its result is sent again on
 * a ready connection (the statements are idempotent, see each); one not
 * answered within opt.outbox_timeout_ms gets -ETIMEDOUT, and then may or
 * may not have taken effect. db_free() answers the pending ones -ECANCELED.
 * A callback may call any db_outbox_*() or db_store(), not db_free().
 */

/* Bytes of an error text kept in last_error (cut at a UTF-8 character boundary). */
#define DB_OUTBOX_ERROR_MAX 1000
/* Rows one claim can return; a larger `max` is reduced to this. */
#define DB_OUTBOX_CLAIM_MAX 1000
/* Longest retry delay and due window, ms (a year); longer ones are reduced to this. */
#define DB_OUTBOX_DELAY_MAX_MS (366ull * 24 * 3600 * 1000)

/* A claimed row, valid only during the claim callback (copy what you keep). */
typedef struct db_outbox_row {
    int64_t id;
    int64_t chat_id;
    const char *method; /* e.g. "sendMessage"; NUL-terminated too */
    size_t method_len;
    const char *body; /* the JSON request body; NUL-terminated too */
    size_t body_len;
    int attempts; /* sends tried before this claim */
} db_outbox_row_t;

/*
 * err 0 with the claimed rows, oldest id first (n may be 0: nothing due), or
 * err < 0 with rows NULL and n 0:
 *   -EAGAIN: the claim failed DB_TRIES_MAX times for a passing reason (a
 *     lock or statement timeout): nothing was claimed, try again later;
 *   -ETIMEDOUT: no answer in time: rows may have been leased, and are
 *     claimed again (by anyone) when the lease ends;
 *   -ECANCELED: db_free() was called; as for -ETIMEDOUT.
 */
typedef void (*db_outbox_claim_cb)(void *arg, int err, const db_outbox_row_t *rows, unsigned n);

/*
 * err 0: done, or the row was not in a state the mark applies to (see each
 * mark; a mark sent again after a lost connection finds its own effect so);
 *   -EBADMSG: the database refused it for the row's content (retarget of a
 *     body that is not valid JSON for jsonb); the row is unchanged;
 *   -ECONNRESET: it failed DB_TRIES_MAX times for a passing reason; unchanged;
 *   -ETIMEDOUT, -ECANCELED: as for claims; it may or may not have happened.
 */
typedef void (*db_outbox_done_cb)(void *arg, int err);

/* err 0 and the count, or err < 0 (as for a claim) and 0. */
typedef void (*db_outbox_count_cb)(void *arg, int err, int64_t count);

/*
 * Claims up to `max` (>= 1) due rows: sent_at and failed_at null, not_before
 * <= now(), claimed_until null or past; oldest id first, with FOR UPDATE SKIP
 * LOCKED so that several processes share one outbox without blocking each
 * other, and sets claimed_until = now() + lease_ms. A row is not claimed
 * again while its lease runs, by this or any process; once it has run out
 * (the process died, or its send took longer than the lease) it is claimed
 * again: delivery is at-least-once. So lease_ms must exceed the longest send
 * (e.g. 60000 with a 30 s HTTP timeout). Each claim carries a token stored
 * in the rows it leases (column claim_token): a claim sent again after a lost
 * connection also returns the rows its first attempt leased, if it committed.
 * `cb` (not NULL) runs once, see db_outbox_claim_cb.
 * Returns 0, or -EAGAIN when not ready, after db_drain(), or at the cap.
 */
int db_outbox_claim(db_t *db, unsigned max, unsigned lease_ms, db_outbox_claim_cb cb, void *arg);

/*
 * Marks row `id` sent: sent_at = now(), claimed_until = null; only while
 * sent_at is null (the first time stays). cb may be NULL.
 * Returns 0 or -EAGAIN.
 */
int db_outbox_sent(db_t *db, int64_t id, db_outbox_done_cb cb, void *arg);

/*
 * Sending failed for now: attempts = attempts + 1, last_error = error (NULL:
 * null; cut to DB_OUTBOX_ERROR_MAX bytes, invalid UTF-8 bytes become '?'),
 * not_before = now() + delay_ms, claimed_until = null. Only while the row is
 * claimed (claimed_until not null) and neither sent nor failed, which makes
 * it count once. cb may be NULL. Returns 0 or -EAGAIN.
 */
int db_outbox_retry(db_t *db, int64_t id, uint64_t delay_ms, const char *error,
                    db_outbox_done_cb cb, void *arg);

/*
 * Final failure: attempts = attempts + 1, last_error = error (as for retry),
 * failed_at = now(), claimed_until = null; the row is kept, not deleted.
 * Only while claimed and neither sent nor failed. cb may be NULL.
 * Returns 0 or -EAGAIN.
 */
int db_outbox_fail(db_t *db, int64_t id, const char *error, db_outbox_done_cb cb, void *arg);

/*
 * Re-targets the row to `chat_id` (migrate_to_chat_id): chat_id = new, the
 * body's "chat_id" member replaced (jsonb_set(body::jsonb, '{chat_id}',
 * to_jsonb(new))::text, which also normalises the body's JSON layout),
 * claimed_until = null, not_before = now(): the row is due again at once,
 * to be claimed and sent anew (do not mark it sent or retry it afterwards).
 * Only while neither sent nor failed. cb may be NULL. Returns 0 or -EAGAIN.
 */
int db_outbox_retarget(db_t *db, int64_t id, int64_t chat_id, db_outbox_done_cb cb, void *arg);

/*
 * Gives a claimed row back unsent (the sender stops, or will not send it
 * now): claimed_until = null, attempts unchanged, so that it can be claimed
 * again at once, by this or another process. Only while the row is claimed
 * and neither sent nor failed. cb may be NULL. Returns 0 or -EAGAIN.
 */
int db_outbox_release(db_t *db, int64_t id, db_outbox_done_cb cb, void *arg);

/*
 * Counts rows that are due or will be due within `within_ms` (sent_at and
 * failed_at null, not_before <= now() + within_ms; claimed ones included): a
 * cheap count for metrics. cb may be NULL. Returns 0 or -EAGAIN.
 */
int db_outbox_due(db_t *db, uint64_t within_ms, db_outbox_count_cb cb, void *arg);

/* Outbox operations whose callback is owed: queued or in flight. */
unsigned db_outbox_pending(const db_t *db);

/* ---- migrations (blocking; used by `tgring migrate` and at start) ------- */

/* The migrations compiled into the binary, from migrations/NNNN_name.sql. */
typedef struct db_migration {
    int version;      /* NNNN */
    const char *name; /* "0001_init" */
    const char *sql;
} db_migration_t;

extern const db_migration_t db_migrations[];
extern const unsigned db_migrations_count;

/*
 * Applies pending migrations in order, each in its own transaction, with an
 * advisory lock so that concurrent runs apply each migration once. Logs each
 * one applied. Returns the number applied (>= 0) or -1 with a logged error.
 */
int db_migrate(const char *conninfo);

/*
 * Checks that every compiled-in migration is applied. Returns 1 when it is,
 * 0 when some are pending (with the versions logged), -1 when the database
 * cannot be reached (logged).
 */
int db_check_schema(const char *conninfo);

#endif
