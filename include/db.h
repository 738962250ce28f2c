/* SPDX-License-Identifier: MIT */
/*
 * db.h - PostgreSQL on the reactor: a generic transaction API that any
 * client uses, the inbox (group commit of updates, the first such client)
 * and migrations.
 *
 * A small fixed set of nonblocking connections per reactor (opt.connections),
 * each in pipeline mode and polled through the ring, shared by every client.
 * A client registers its prepared statements (db_client_new; they are
 * prepared on every connection, and again after every reconnect) and submits
 * transactions: an ordered list of statements with their parameters and a
 * callback that gets each statement's result. Each transaction on a
 * connection ends with its own pipeline sync, so one that fails aborts
 * nothing else: a refused update does not touch a transaction pipelined
 * behind it, nor the reverse.
 *
 * Updates submitted during one loop turn go into one transaction, sent at the
 * end of the turn on a connection that has no inbox transaction in flight
 * (while all have one, the updates wait and the next batch grows), of those
 * the one with the fewest other transactions in its pipeline, so that a batch
 * does not wait in one backend behind a client's long transaction while
 * another backend is idle; each
 * submitter's callback runs when that transaction's COMMIT returned (or when
 * it is known that it will not). Each connection is its own server backend,
 * so batches on different connections commit in parallel and the server's
 * group commit can share one WAL flush among them.
 *
 * How many inbox transactions are in flight follows the commit latency:
 * two as a rule (one per connection; a lone connection pipelines its two),
 * so that a batch leaves as soon as the other commits and batches are as
 * large as the traffic makes them. When every such slot is busy while an
 * update waits, and commits take 1 ms or longer on average (the last ones,
 * weighted 1/8 each) or the oldest one in flight has been out that long, the
 * inbox opens one more slot, on a connection of its own, up to
 * opt.connections: a slow flush (or a stalled commit), not the server's CPU,
 * is then what updates wait for, and more transactions in flight share each
 * flush and cut the wait before a batch leaves. A slot closes again at a
 * commit once commits average under 0.5 ms, or once no update has waited for
 * a slot for a second. So on a fast disk with CPU to spare extra connections
 * stay unused by the inbox (each one more commit per batch of CPU at the
 * server), and on a slow disk they carry its load. A server short of CPU
 * makes commits slow too, and there more commits in flight do not help
 * (measured, bench/RESULTS.md): the default of two connections leaves nothing
 * to open. tgring_db_inbox_slots is the number allowed now,
 * tgring_db_batch_size and tgring_db_queue_seconds what it gives. A
 * connection never carries two inbox transactions when it has company: the
 * second would wait behind the first in the same backend, unable to grow,
 * instead of committing beside it.
 *
 * A lost connection reconnects with backoff, re-enters nonblocking and
 * pipeline mode and re-prepares every client's statements; every transaction
 * whose commit it had not confirmed is sent again, on another connection if
 * one is ready, else after the reconnect. So every statement a client
 * registers must be idempotent: executed twice, because the answer to the
 * first commit was lost, it must leave the same state and give an answer the
 * client can live with (ON CONFLICT DO NOTHING; an UPDATE guarded by the
 * state it changes; a claim that carries a token, see db_query_t.again).
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
#include <stdio.h>

#include "core.h"
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
 * Everything but a commit means the caller answers an error and the sender of
 * the row delivers it again. The callback may call db_store(), not db_free().
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
    /*
     * Set by the db before the callback: a transaction was submitted behind
     * the batch that committed this update (db_txn_submit_behind()), so it
     * runs after that COMMIT and sees the update stored.
     */
    bool followed;
    /* Private to db. */
    core_qlink_t link;    /* in the pending queue, or a chain of them */
    uint64_t enqueued_ms; /* loop time of db_store(), ms: the ack deadline counts from it */
    uint64_t enqueued_ns; /* core_mono_ns() at db_store(): tgring_db_queue_seconds */
    uint32_t batch;       /* id of the batch it was sent in, 0 = not sent */
    uint8_t tries;        /* transactions that failed with it for a retryable reason */
};

/*
 * Failed transactions an update, or a submitted transaction, goes through
 * before its callback gets -ECONNRESET.
 */
#define DB_TRIES_MAX 3

/* Most connections one db_t opens. */
#define DB_CONNECTIONS_MAX 16

typedef struct db_options {
    const char *conninfo;    /* DATABASE_URL (copied); never logged: it may hold a password */
    unsigned connections;    /* PostgreSQL connections, 1..DB_CONNECTIONS_MAX (0: 2; more: 16) */
    unsigned queue_max;      /* updates waiting or in flight, db_store() refuses more (0: 10000) */
    unsigned ack_timeout_ms; /* per-update deadline for a commit, ms (0: 10000) */
    unsigned max_batch;      /* updates per transaction, e.g. 512 (0: 512) */
} db_options_t;

/*
 * Allocates the db and its inbox and starts connecting every connection
 * (nonblocking; returns before they are up, though libpq resolves a host name
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
 * found the schema migrated and prepared every client's statements.
 */
bool db_ready(const db_t *db);

/* Updates waiting or in flight. */
unsigned db_pending(const db_t *db);

/*
 * Stops taking updates (db_store() gives -EAGAIN); transactions are still
 * taken, so that clients can finish what they hold (a client that should not
 * start new work checks db_draining()). What is in flight completes
 * normally. `on_idle` runs (from the loop, not synchronously) once no update
 * and no transaction of any client is pending.
 */
void db_drain(db_t *db, void (*on_idle)(void *arg), void *arg);

/* True once db_drain() was called. */
bool db_draining(const db_t *db);

/*
 * Cancels what is pending, updates and every client's transactions
 * (callbacks run with -ECANCELED, synchronously), closes the connections and
 * frees `db` and its clients. Not from inside a db callback.
 * A poll on a connection's socket may still be in the ring: then the
 * memory is released when its cancellation completes, in the loop's next
 * turn. Run the loop once more after db_free() (as before rx_loop_dispose()
 * anyway, which requires nothing in flight); without that turn the small
 * remainder is left to the process exit, which is safe, but shows as a leak.
 */
void db_free(db_t *db);

/* ---- transactions: the generic client API -------------------------------- */

/* Type OIDs for db_stmt_t.types (PostgreSQL's pg_type.dat). */
#define DB_OID_INT4 23u
#define DB_OID_INT8 20u
#define DB_OID_TEXT 25u
#define DB_OID_BYTEA 17u

/* A statement prepared on every (re)connection. */
typedef struct db_stmt {
    const char *name;      /* unique across every client, e.g. "tgring_store_update" */
    const char *sql;       /* $1..$n parameters; must be idempotent, see the top of this file */
    int nparams;           /* 0..DB_PARAMS_MAX */
    const uint32_t *types; /* nparams type OIDs (DB_OID_*), or NULL: the server infers them */
} db_stmt_t;

/* Parameters one statement of a transaction takes at most. */
#define DB_PARAMS_MAX 8
/* Statements one transaction holds at most. */
#define DB_TXN_MAX 64

/* How a parameter is sent. */
enum {
    DB_PARAM_NULL = 0, /* SQL NULL */
    DB_PARAM_TEXT,     /* ptr[0..len): text (no NUL inside); the server parses it */
    DB_PARAM_BINARY,   /* ptr[0..len): the value in its type's binary format */
    DB_PARAM_INT8,     /* i: an int8, sent in binary */
};

typedef struct db_param {
    int kind;        /* DB_PARAM_* */
    int64_t i;       /* DB_PARAM_INT8 */
    const char *ptr; /* DB_PARAM_TEXT, DB_PARAM_BINARY: need not be NUL-terminated */
    size_t len;      /* bytes at ptr */
} db_param_t;

static inline db_param_t db_param_int8(int64_t v)
{
    return (db_param_t){.kind = DB_PARAM_INT8, .i = v};
}

/* Text s[0..len); NULL s is SQL NULL. */
static inline db_param_t db_param_text(const char *s, size_t len)
{
    return (db_param_t){.kind = s != NULL ? DB_PARAM_TEXT : DB_PARAM_NULL, .ptr = s, .len = len};
}

/* Array types, for array parameters (db_array_t). */
#define DB_OID_INT8_ARRAY 1016u
#define DB_OID_TEXT_ARRAY 1009u
#define DB_OID_BYTEA_ARRAY 1001u

/*
 * A one-dimensional array parameter in PostgreSQL's binary layout, built
 * element by element: one statement then carries any number of rows (e.g.
 * INSERT ... SELECT * FROM unnest($1::int8[], $2::text[])). Zero it, begin
 * it, add elements of the type begun (int8, or the bytes of a text or bytea),
 * then db_array_param() gives the parameter, valid until the array changes;
 * begin it again to reuse its memory, free it at the end. Aborts on
 * allocation failure.
 */
typedef struct db_array {
    char *buf;
    size_t len, cap;
    uint32_t n; /* elements */
    bool nulls;
} db_array_t;

void db_array_begin(db_array_t *a, uint32_t elem_oid);
void db_array_int8(db_array_t *a, int64_t v);
void db_array_bytes(db_array_t *a, const void *p, size_t len);
void db_array_null(db_array_t *a);
db_param_t db_array_param(db_array_t *a);
void db_array_free(db_array_t *a);

/*
 * One statement of a transaction. The caller's storage: db_txn_submit()
 * copies what it needs (parameters included), except the statement names,
 * which are those of a registered db_stmt_t and must outlive the db.
 */
typedef struct db_query {
    const char *stmt; /* a registered statement's name */
    /*
     * The statement used instead when the transaction is sent again after its
     * connection was lost (NULL: stmt again): for a statement whose repeat has
     * to find what its first execution may have done, e.g. a claim that also
     * returns the rows leased under its token.
     */
    const char *again;
    unsigned nparams;                 /* as registered */
    db_param_t params[DB_PARAMS_MAX]; /* [nparams] */
    bool binary;                      /* results in binary format (else text) */
} db_query_t;

/* One statement's result; valid only during the callback. */
typedef struct db_result db_result_t;

/* Rows a statement returned (0 for a command). */
unsigned db_res_rows(const db_result_t *r);
/* Columns of its rows. */
unsigned db_res_cols(const db_result_t *r);
/* True when the value at row, col is SQL NULL (or out of range). */
bool db_res_null(const db_result_t *r, unsigned row, unsigned col);
/*
 * The value at row, col (text, or the binary format when the query asked for
 * it), NUL-terminated too; "" for NULL or out of range. OUT: len (may be NULL).
 */
const char *db_res_value(const db_result_t *r, unsigned row, unsigned col, size_t *len);
/*
 * The value at row, col as an integer: a binary int2, int4 or int8, or text
 * digits. Returns false (and *v 0) when it is NULL or not one of those.
 */
bool db_res_int(const db_result_t *r, unsigned row, unsigned col, int64_t *v);
/* Rows a command affected (INSERT, UPDATE, DELETE), or rows selected. */
uint64_t db_res_affected(const db_result_t *r);
/* The SQLSTATE of a failed statement, NULL for one that succeeded. */
const char *db_res_sqlstate(const db_result_t *r);
/*
 * Severity and primary message of a failed statement, without DETAIL (which
 * holds the row's values, which have no place in logs); "" for success.
 * OUT: buf (cap bytes). Returns buf.
 */
const char *db_res_message(const db_result_t *r, char *buf, size_t cap);

/*
 * Runs once per accepted transaction, from the loop, never from inside
 * db_txn_submit(). err:
 *   0: committed; res[0..n) the result of each statement (n = nq);
 *   -EBADMSG: statement k was refused for its content (SQLSTATE class 22, 23
 *     or P0: a data exception, a constraint, a trigger): the transaction was
 *     rolled back and is not retried; res[0..n) holds the results of the
 *     statements before k, res[k] the error (db_res_sqlstate), NULL after it;
 *   -ECONNRESET: it failed DB_TRIES_MAX times for a passing reason (a
 *     deadlock, a lock or statement timeout, a missing table, a failed
 *     commit): nothing of it stayed; res NULL, n 0;
 *   -ETIMEDOUT: not answered within the client's timeout_ms: it may or may
 *     not have committed; res NULL, n 0;
 *   -ECANCELED: db_free() was called (synchronously from it); as -ETIMEDOUT.
 * The callback may submit more and call db_store(), not db_free().
 */
typedef void (*db_txn_cb)(void *arg, int err, const db_result_t *const *res, unsigned n);

typedef struct db_client db_client_t;

typedef struct db_client_options {
    const char *name;       /* for log lines, e.g. "jobs" (not copied: a literal) */
    const db_stmt_t *stmts; /* its statements (not copied: must outlive the db) */
    unsigned nstmts;
    unsigned max_pending;  /* transactions queued or in flight; more get -EAGAIN (0: 1024) */
    unsigned timeout_ms;   /* per-transaction deadline from the submit, ms (0: 10000) */
    unsigned max_inflight; /* transactions sent and not answered at most (0: 8) */
    /*
     * The ordered lane: the client's transactions execute in the order
     * submitted, all on one connection at a time (the one that has some in
     * flight, else the ready one with the fewest transactions in its
     * pipeline), except that one retried after a passing failure is sent
     * again ahead of those not sent yet. Without it each goes to the ready
     * connection with the fewest transactions in its pipeline (round robin
     * among equals) and two may run at the same time in different backends.
     */
    bool ordered;
} db_client_options_t;

/*
 * Registers a client: its statements are prepared on every connection that
 * is up now (a connection whose prepares fail is reconnected) and on every
 * later (re)connection; db_ready() counts them. The client lives until
 * db_free(), which frees it. Aborts on allocation failure; never returns
 * NULL. Statement names must not clash with another client's.
 */
db_client_t *db_client_new(db_t *db, const db_client_options_t *opt);

/*
 * Submits a transaction of q[0..nq) (1..DB_TXN_MAX statements), executed in
 * order and committed together at its own sync. Copies what it needs of q.
 * Returns 0 (cb, if not NULL, runs exactly once, never synchronously), or
 * -EAGAIN (cb will not run): no connection is ready, or max_pending
 * transactions of this client are queued or in flight.
 * A transaction whose connection is lost before its answer is sent again
 * (each statement must be idempotent); one that failed for a passing reason
 * is retried up to DB_TRIES_MAX times in all.
 */
int db_txn_submit(db_client_t *cl, const db_query_t *q, unsigned nq, db_txn_cb cb, void *arg);

/*
 * The inbox's batch hook: fn runs each time the inbox has sent a batch, with
 * the lowest update_id in it, from inside the db's end-of-turn send (it may
 * call db_txn_submit_behind() and db_txn_submit(), nothing that frees). One
 * hook per db; fn NULL removes it.
 */
void db_set_batch_hook(db_t *db, void (*fn)(void *arg, int64_t low_id), void *arg);

/*
 * db_txn_submit() from a batch hook, for a transaction that should run as
 * soon as that batch has committed: it is put in the same connection's
 * pipeline right behind the batch, so that its backend runs it after the
 * COMMIT without a round trip back here first (the processor's claim of what
 * the batch stored). When it cannot go there (not called from a hook, the
 * connection is not ready, the client is ordered or has max_inflight in
 * flight) it is queued as by db_txn_submit(). Returns 1 when it went behind
 * the batch, else as db_txn_submit().
 */
int db_txn_submit_behind(db_client_t *cl, const db_query_t *q, unsigned nq, db_txn_cb cb,
                         void *arg);

/* The client's transactions whose callback is owed: queued or in flight. */
unsigned db_client_pending(const db_client_t *cl);

/* The db the client belongs to. */
db_t *db_client_db(const db_client_t *cl);

/* ---- a session advisory lock on a connection of its own ------------------- */

/*
 * db_lock_t holds a PostgreSQL session advisory lock (pg_try_advisory_lock)
 * for as long as its own session lives: leader election among processes that
 * share one database, e.g. one sender per bot. It does not use the shared
 * connections above on purpose: those are pipelined, shared by every client,
 * and a lost one is reconnected and its transactions sent again on another,
 * so a session lock taken on one would be released by any reconnect without
 * its taker knowing. Here one nonblocking connection (libpq, polled through
 * the ring, never in pipeline mode) belongs to the lock alone, so that "the
 * session is up" and "the lock is held" are the same fact.
 *
 * While not held it tries the lock every opt.retry_ms (connecting first, and
 * again after a loss). While held it sends a one-row query every
 * opt.check_ms; a check not answered within opt.timeout_ms, or the socket
 * closing, ends the session and the lock is lost (the callback says so)
 * before anyone else can be granted it, with one exception: a session the
 * server ends without the client seeing it (a network partition while the
 * server's TCP keepalive or a pg_terminate_backend() ends the backend) is
 * noticed here at most check_ms + timeout_ms after the last answered check.
 * Callers that must never overlap keep that window in mind.
 */
typedef struct db_lock db_lock_t;

/* The lock was granted (held true) or lost (false). Never synchronous from db_lock_*(). */
typedef void (*db_lock_cb)(void *arg, bool held);

typedef struct db_lock_options {
    const char *conninfo; /* DATABASE_URL (copied); never logged */
    const char *name;     /* for log lines, e.g. "outbox sender" (not copied: a literal) */
    int64_t key;          /* the pg_try_advisory_lock(bigint) key */
    unsigned retry_ms;    /* tries while not held, ms (0: 1000) */
    unsigned check_ms;    /* liveness checks while held, ms (0: 1000) */
    unsigned timeout_ms;  /* an attempt, check or connect unanswered this long ends the session,
                             ms (0: 2000) */
} db_lock_options_t;

/*
 * Starts trying to take the lock (connecting in the background). `cb` (not
 * NULL) runs from the loop on every change. Aborts on allocation failure;
 * never returns NULL.
 */
db_lock_t *db_lock_new(rx_loop_t *loop, const db_lock_options_t *opt, db_lock_cb cb, void *arg);

/* True while the lock is held (between the callbacks saying true and false). */
bool db_lock_held(const db_lock_t *l);

/*
 * Closes the session, which releases the lock at the server at once, and
 * frees `l`; the callback does not run again. A poll still in the ring is
 * released when its cancellation completes in the loop's next turn (as for
 * db_free()).
 */
void db_lock_free(db_lock_t *l);

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

/*
 * Checks DATABASE_URL before anything connects, and registers its password
 * with log_redact(), as libpq reads it and, in a URI, as it is written, so
 * that no log line quotes it (libpq's connection errors quote parts of the
 * conninfo: a host, a port, a token it could not parse). Refuses a conninfo
 * that libpq cannot parse, without its message (it quotes the text, which
 * may be the password), and a URI whose password libpq reads differently
 * from how it is written (an unencoded '%', '@' or '/'), since libpq's errors
 * would then quote pieces of it as a host or a port. Writes one line per
 * problem to `err` (NULL: none), never any part of the conninfo.
 * Returns the number of problems (0 or 1).
 */
int db_conninfo_check(const char *conninfo, FILE *err);

#endif
