/* SPDX-License-Identifier: MIT */
/*
 * worker.h - one reactor's lifecycle: the ring, the listening socket, the
 * signalfd, the database, the HTTP server with the bot's webhook endpoints,
 * the processor running the application's handlers, the Bot API pool and
 * (on worker 0) the outbox sender; then the drain on
 * SIGTERM/SIGINT and the teardown; and the probe of a running worker's
 * readiness. Sits above tg, below main.c.
 */
#ifndef TGRING_WORKER_H
#define TGRING_WORKER_H

#include <signal.h>

#include "bot.h"
#include "cfg.h"
#include "tg.h"

/* How much memory a worker's request buffers may take, decided once by worker_plan(). */
typedef struct worker_plan {
    uint64_t limit;         /* bytes the whole server may use (TGRING_MEMORY_LIMIT or the
                               cgroup's), 0 when nothing limits it */
    uint64_t buffer_budget; /* bytes of request buffers per worker (503 past it) */
} worker_plan_t;

/*
 * Sizes each worker's request buffers to the memory limit: TGRING_MEMORY_LIMIT when set, else
 * the cgroup's (core_memory_limit). Of the limit, a quarter is left as headroom (the kernel's
 * socket buffers and page cache charged to the group, the supervisor, allocator slack); each
 * worker's share of the rest, less its fixed cost (WORKER_BASE_BYTES, WORKER_CONN_BYTES per
 * TGRING_MAX_CONNECTIONS, WORKER_QUEUE_BYTES per TGRING_QUEUE_MAX), is its budget, at most
 * the default 64 x TGRING_MAX_BODY + 64 MiB. The queued updates' bodies are the request
 * buffers', so the budget bounds them too. Logs one memory_budget line (info) and returns 0;
 * when the budget would be below 4 x TGRING_MAX_BODY, logs one memory_too_small line naming
 * the limit that would fit and returns -1. OUT: out.
 */
int worker_plan(const cfg_t *cfg, worker_plan_t *out);

/*
 * Runs worker `index` (its metrics slot; worker 0 also runs the sender and
 * the processor's housekeeping) for `bot` with `cfg` and the memory `plan` (worker_plan), handling
 * updates with `app`, until SIGTERM or SIGINT arrives, then finishes the requests in flight within
 * TGRING_SHUTDOWN_TIMEOUT_MS and frees everything. A second SIGTERM or SIGINT during that drain
 * (with cfg->workers > 1: the supervisor's SIGUSR1, see sup_run) cuts it short: what still waits is
 * answered 503 and closed at once, as when the grace period ends. `sigs` holds SIGTERM, SIGINT and
 * SIGUSR1, blocked by the caller; met_init() has run. Every failure at start is logged and frees
 * what was set up. Returns the process exit status: 0 after a clean stop (the grace period ending
 * included), 128 + the signal's number (143 for SIGTERM, 130 for SIGINT) when a second signal cut
 * the drain short, 1 on failure.
 */
int worker_run(const cfg_t *cfg, const worker_plan_t *plan, const tg_bot_t *bot, bot_app_t *app,
               unsigned index, const sigset_t *sigs);

/*
 * Asks the worker listening on TGRING_LISTEN (the unspecified address means
 * loopback) for GET /health/ready, waiting up to 2 s to connect and 2 s for
 * the answer. Returns 0 when it answers 200; otherwise prints one line on
 * stderr and returns 1. For `tgring healthcheck` (Docker's HEALTHCHECK).
 */
int worker_healthcheck(const cfg_t *cfg);

#endif
