/* SPDX-License-Identifier: MIT */
/*
 * pg_harness.h - what the PostgreSQL-backed C tests (tests/integration/db
 * and tests/integration/tg) share besides tap.h: a throwaway
 * PostgreSQL 15 cluster (initdb, a Unix socket directory and a free TCP port,
 * fsync on) that can be stopped and started again, blocking queries against
 * it, and running the reactor until a condition holds.
 */
#ifndef TGRING_PG_HARNESS_H
#define TGRING_PG_HARNESS_H

#include "db.h"
#include "reactor.h"
#include "tap.h"

#include <libpq-fe.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PG_BIN "/usr/lib/postgresql/15/bin"

/*
 * Skips the whole program (exit 77) when the PostgreSQL binaries are missing;
 * otherwise sets up logging, metrics and the loop, and starts the cluster.
 */
void harness_start(void);

/* Disposes of the loop. The test then prints the plan with tap_done(). */
void harness_end(void);

/* ---- the throwaway cluster ---- */

extern char pg_dir[64];     /* its directory: data, logs, the socket */
extern int pg_port;         /* its TCP port on 127.0.0.1 */
extern char conninfo[256];  /* user postgres, database postgres */

int free_port(void);
int pg_start(void);
int pg_stop(const char *mode);

/* Runs one statement on a fresh blocking connection; returns the first value as a number. */
long long q(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Like q() on database `ci` (NULL: conninfo), but the first value as text.
 * OUT: out (cap bytes, "" for NULL or no row). Returns false on an error.
 */
bool qs(const char *ci, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Another session, in a transaction that holds `table` in SHARE MODE: every
 * write to it waits until unlock_table(). Bails out when it cannot.
 */
PGconn *lock_table(const char *table);
void unlock_table(PGconn *c);

/* ---- the loop ---- */

extern rx_loop_t loop;

/* Runs the loop until pred() holds or ms pass. Returns pred() (true without one). */
bool run_until(bool (*pred)(void), unsigned ms);

struct db_conn;

/* The db the predicates below look at; a test sets it when it makes one. */
extern db_t *harness_db;
/* Predicate: every connection of harness_db is DB_READY. */
bool all_ready(void);
/* Predicate: no connection of harness_db has anything in its pipeline (prepares included). */
bool pipes_empty(void);
/* Items in c's pipeline that are neither inbox batches nor its setup: clients' transactions. */
unsigned client_items(db_t *db, struct db_conn *c);
void run_for(unsigned ms);
uint64_t mono_ms(void);

/* ---- test updates: a pool of updates and what their callbacks said ---- */

#define TU_MAX 16384

typedef struct tu {
    db_update_t u;
    bool done;  /* the callback ran (or db_store refused it: nothing is owed) */
    int status; /* what the callback said */
    char body[96];
} tu_t;

extern tu_t ups[TU_MAX];
extern unsigned nups;    /* used slots */
extern unsigned ndone;   /* callbacks run */
extern unsigned sync_cb; /* callbacks that ran from inside db_store() */
extern unsigned twice;   /* callbacks that ran twice for one update */

/* The next update from the pool: id, a small message body, a chat and a sender. */
tu_t *mk(int64_t id);

/* db_store() of t, noting callbacks that would run from inside it. Returns its result. */
int store(db_t *db, tu_t *t);

/* Runs the loop until ups[from..to) all have callbacks, or ms pass. */
bool wait_range(unsigned from, unsigned to, unsigned ms);

/* How many of ups[from..to) have callbacks; how many of those said `status`. */
unsigned ndone_in(unsigned from, unsigned to);
unsigned count_status(unsigned from, unsigned to, int status);

#endif
