/* SPDX-License-Identifier: MIT */
/*
 * supervisor.h - the parent of N worker processes (TGRING_WORKERS > 1): forks
 * them, forwards SIGTERM/SIGINT as SIGTERM, and stops them all when one ends.
 * Part of core: it knows nothing of what a worker does.
 */
#ifndef TGRING_SUPERVISOR_H
#define TGRING_SUPERVISOR_H

#include <signal.h>

/* Runs worker `index` (0..n-1) in its child process; returns the child's exit status. */
typedef int (*sup_worker_fn)(unsigned index, void *arg);

/*
 * Forks `n` children, each running fn(index, arg) and exiting with its
 * result, then waits for them all. SIGTERM or SIGINT sends SIGTERM to every
 * child still running (drain); a second one sends SIGUSR1, which a worker
 * takes from its parent only, as "stop now" (a signal of its own: a SIGTERM
 * that reached the whole process group or cgroup merges with this one's and
 * can never count as a second). A child that ends while no stop was asked for is
 * logged ("worker_died") and the others are stopped too: a worker that fails
 * at start (port taken, io_uring blocked) would fail again, and an
 * orchestrator restarts the whole server. A failed fork stops those already
 * started. `sigs` holds SIGTERM and SIGINT, blocked by the caller (children
 * start with them blocked, as given; SIGUSR1 too); the parent adds SIGCHLD to it and
 * blocks that too. Returns 128 + the signal's number after a second SIGTERM
 * or SIGINT (143, 130), else 0 when every child exited with status 0, else 1.
 */
int sup_run(unsigned n, sigset_t *sigs, sup_worker_fn fn, void *arg);

#endif
