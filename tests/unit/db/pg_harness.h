/* SPDX-License-Identifier: MIT */
/*
 * pg_harness.h - what the db tests share besides tap.h: a throwaway
 * PostgreSQL 15 cluster (initdb, a Unix socket directory and a free TCP port,
 * fsync on) that can be stopped and started again, blocking queries against
 * it, and running the reactor until a condition holds.
 */
#ifndef TGRING_PG_HARNESS_H
#define TGRING_PG_HARNESS_H

#include "reactor.h"
#include "tap.h"

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

/* ---- the loop ---- */

extern rx_loop_t loop;

/* Runs the loop until pred() holds or ms pass. Returns pred() (true without one). */
bool run_until(bool (*pred)(void), unsigned ms);
void run_for(unsigned ms);
uint64_t mono_ms(void);

#endif
