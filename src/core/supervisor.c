/* SPDX-License-Identifier: MIT */
/*
 * supervisor.c - the parent of N worker processes; see supervisor.h. It only
 * forks, forwards signals and reaps; each worker is a whole reactor of its
 * own, sharing nothing with the others but PostgreSQL.
 */
#include "supervisor.h"

#include "core.h"
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* The children still running: pids[i] is worker i's, 0 once it has ended. */
typedef struct sup {
    pid_t *pids;
    unsigned n;
    unsigned alive;
    bool stopping;
    int status; /* 1 once a child failed */
    int forced; /* a second SIGTERM or SIGINT, which cut the workers' drain short; 0: none */
} sup_t;

/*
 * Asks every worker to stop: SIGTERM to drain, or, once a second stop was
 * asked, SIGUSR1 to stop at once. A signal of its own, because signals of
 * one kind that arrive together merge into one: a SIGTERM from here and one
 * that reached the worker directly (Ctrl-C signals the whole process group,
 * systemd the whole cgroup) can never count as two.
 */
static void sup_stop_all(sup_t *s)
{
    int sig = s->forced != 0 ? SIGUSR1 : SIGTERM;
    s->stopping = true;
    for (unsigned i = 0; i < s->n; i++)
        if (s->pids[i] > 0)
            kill(s->pids[i], sig);
}

/* Records that `pid` ended with wait status `ws`. */
static void sup_reaped(sup_t *s, pid_t pid, int ws)
{
    for (unsigned i = 0; i < s->n; i++) {
        if (s->pids[i] != pid)
            continue;
        s->pids[i] = 0;
        s->alive--;
        if (!(WIFEXITED(ws) && WEXITSTATUS(ws) == 0))
            s->status = 1;
        if (s->stopping)
            return;
        log_error("worker_died", "worker %u (pid %d) ended (%s %d); stopping", i, (int)pid,
                  WIFEXITED(ws) ? "exit" : "signal",
                  WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
        sup_stop_all(s);
        return;
    }
}

int sup_run(unsigned n, sigset_t *sigs, sup_worker_fn fn, void *arg)
{
    sup_t s = {.pids = xcalloc(n, sizeof(pid_t)), .n = n};

    for (unsigned i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            log_error("fork_failed", "fork: %s", strerror(errno));
            s.status = 1;
            sup_stop_all(&s);
            break;
        }
        if (pid == 0) {
            free(s.pids);
            exit(fn(i, arg));
        }
        s.pids[i] = pid;
        s.alive++;
    }

    sigaddset(sigs, SIGCHLD);
    sigprocmask(SIG_BLOCK, sigs, NULL);
    while (s.alive > 0) {
        siginfo_t si;
        int sig = sigwaitinfo(sigs, &si);
        if (sig == SIGTERM || sig == SIGINT) {
            /* The first stop asked drains the workers; a second one stops them at once. */
            if (!s.stopping) {
                log_info("stopping", "stopping %u workers", s.alive);
            } else if (s.forced == 0) {
                log_warn("shutdown_forced", "%s again: stopping %u workers now",
                         sig == SIGINT ? "SIGINT" : "SIGTERM", s.alive);
                s.forced = sig;
            }
            sup_stop_all(&s);
        } else if (sig == SIGCHLD) {
            int ws;
            pid_t pid;
            while ((pid = waitpid(-1, &ws, WNOHANG)) > 0)
                sup_reaped(&s, pid, ws);
        }
    }
    free(s.pids);
    return s.forced != 0 ? 128 + s.forced : s.status;
}
