/* SPDX-License-Identifier: MIT */
/*
 * db.h - PostgreSQL on the reactor: the inbox (group commit of updates in
 * libpq pipeline mode) and migrations.
 *
 * One nonblocking connection per reactor, in pipeline mode, polled through
 * the ring. Updates submitted during one loop turn go into one transaction,
 * sent at the end of the turn; each submitter's callback runs when that
 * transaction's COMMIT returned (or when it is known that it will not).
 * On a lost connection it reconnects with backoff, re-enters nonblocking and
 * pipeline mode, re-prepares its statements and resends every batch whose
 * commit was not confirmed (the insert is idempotent: ON CONFLICT DO NOTHING).
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

typedef struct db_options {
    const char *conninfo;    /* DATABASE_URL (copied); never logged: it may hold a password */
    unsigned queue_max;      /* updates waiting or in flight, db_store() refuses more (0: 10000) */
    unsigned ack_timeout_ms; /* per-update deadline for a commit, ms (0: 10000) */
    unsigned max_batch;      /* updates per transaction, e.g. 512 (0: 512) */
} db_options_t;

/*
 * Allocates the inbox and starts connecting (nonblocking; returns before the
 * connection is up, though libpq resolves a host name synchronously: use an
 * address or a local resolver). While the database is unreachable or not
 * migrated it keeps trying (50 ms doubling to 500 ms between attempts, the
 * schema every second) and db_ready() stays false.
 * Aborts on allocation failure; never returns NULL.
 */
db_t *db_new(rx_loop_t *loop, const db_options_t *opt);

/*
 * Queues `u` for the batch of this turn. Returns 0 (the callback will run,
 * from the loop, never from inside db_store()), -EAGAIN when the database is
 * not connected and ready, db_drain() was called, or the queue is full (the
 * callback will not run; the caller answers 503 at once).
 * Updates accepted before the connection was lost wait for the reconnect and
 * are sent again; they get -ETIMEDOUT if it does not commit them in time.
 */
int db_store(db_t *db, db_update_t *u);

/* True while connected, in pipeline mode and the schema is migrated. */
bool db_ready(const db_t *db);

/* Updates waiting or in flight. */
unsigned db_pending(const db_t *db);

/*
 * Stops taking updates; the ones in flight complete normally. `on_idle` runs
 * (from the loop, not synchronously) once nothing is pending.
 */
void db_drain(db_t *db, void (*on_idle)(void *arg), void *arg);

/*
 * Cancels what is pending (callbacks run with -ECANCELED, synchronously),
 * closes the connection and frees `db`. Not from inside a db_store_cb.
 * A poll on the connection's socket may still be in the ring: then the
 * memory is released when its cancellation completes, in the loop's next
 * turn. Run the loop once more after db_free() (as before rx_loop_dispose()
 * anyway, which requires nothing in flight); without that turn the small
 * remainder is left to the process exit, which is safe, but shows as a leak.
 */
void db_free(db_t *db);

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
