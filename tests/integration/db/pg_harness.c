/* SPDX-License-Identifier: MIT */
/*
 * pg_harness.c - the PostgreSQL-backed tests' throwaway cluster and loop helpers (see
 * pg_harness.h).
 */
#include "pg_harness.h"
#include "../../../src/db/db_private.h"
#include "log.h"
#include "met.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the throwaway cluster ---- */

char pg_dir[64];
int pg_port;
char conninfo[256];
static bool as_postgres;

static int sh(const char *fmt, ...)
{
    char cmd[2048], full[2200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (as_postgres)
        snprintf(full, sizeof(full), "runuser -u postgres -- %s", cmd);
    else
        snprintf(full, sizeof(full), "%s", cmd);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        tap_bail("cannot find a free port");
    close(fd);
    return ntohs(a.sin_port);
}

int pg_start(void)
{
    return sh(PG_BIN "/pg_ctl -D %s/data -l %s/server.log -w -t 60 -o \"-k %s -p %d "
                     "-c listen_addresses=127.0.0.1 -c fsync=on\" start >/dev/null",
              pg_dir, pg_dir, pg_dir, pg_port);
}

int pg_stop(const char *mode)
{
    return sh(PG_BIN "/pg_ctl -D %s/data -m %s -w -t 60 stop >/dev/null", pg_dir, mode);
}

static void cluster_cleanup(void)
{
    if (pg_dir[0] == '\0')
        return;
    pg_stop("immediate");
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", pg_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", pg_dir);
}

static void cluster_init(void)
{
    snprintf(pg_dir, sizeof(pg_dir), "/tmp/tgring-db-test-XXXXXX");
    if (mkdtemp(pg_dir) == NULL)
        tap_bail("mkdtemp");
    atexit(cluster_cleanup);
    if (geteuid() == 0) {
        /* initdb refuses to run as root. */
        struct passwd *pw = getpwnam("postgres");
        if (pw == NULL || chown(pg_dir, pw->pw_uid, pw->pw_gid) != 0)
            tap_bail("no postgres user to run the cluster as");
        as_postgres = true;
    }
    pg_port = free_port();
    if (sh(PG_BIN "/initdb -D %s/data -A trust -U postgres -N >%s/initdb.log 2>&1", pg_dir,
           pg_dir) != 0)
        tap_bail("initdb failed");
    if (pg_start() != 0)
        tap_bail("pg_ctl start failed");
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres dbname=postgres",
             pg_port);
}

/* Runs the formatted statement on a fresh connection to ci (NULL: conninfo); diagnoses errors. */
static PGresult *exec_once(const char *ci, const char *fmt, va_list ap)
{
    char sql[4096];
    vsnprintf(sql, sizeof(sql), fmt, ap);
    PGconn *c = PQconnectdb(ci != NULL ? ci : conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        tap_diag("connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        tap_diag("%s: %s", sql, PQresultErrorMessage(r));
    PQfinish(c);
    return r;
}

/* True when r has a first value that is not NULL. */
static bool has_value(const PGresult *r)
{
    return PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0);
}

static bool succeeded(const PGresult *r)
{
    return PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK;
}

long long q(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGresult *r = exec_once(NULL, fmt, ap);
    va_end(ap);
    long long v = has_value(r) ? atoll(PQgetvalue(r, 0, 0)) : succeeded(r) ? 0 : -1;
    PQclear(r);
    return v;
}

bool qs(const char *ci, char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PGresult *r = exec_once(ci, fmt, ap);
    va_end(ap);
    snprintf(out, cap, "%s", has_value(r) ? PQgetvalue(r, 0, 0) : "");
    bool good = succeeded(r);
    PQclear(r);
    return good;
}

PGconn *lock_table(const char *table)
{
    char sql[128];
    PGconn *c = PQconnectdb(conninfo);
    PQclear(PQexec(c, "BEGIN"));
    snprintf(sql, sizeof(sql), "LOCK TABLE %s IN SHARE MODE", table);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        tap_bail("cannot lock the table");
    PQclear(r);
    return c;
}

void unlock_table(PGconn *c)
{
    PQclear(PQexec(c, "COMMIT"));
    PQfinish(c);
}

/* ---- the loop ---- */

rx_loop_t loop;
static rx_timer_t poll_timer;
static bool (*want)(void);
static uint64_t deadline;

static void on_poll_timer(rx_loop_t *l, rx_timer_t *t)
{
    if ((want != NULL && want()) || rx_now(l) >= deadline) {
        rx_stop(l);
        return;
    }
    rx_timer_start(l, t, 2, on_poll_timer);
}

bool run_until(bool (*pred)(void), unsigned ms)
{
    want = pred;
    deadline = rx_update_time(&loop) + ms;
    rx_timer_start(&loop, &poll_timer, 0, on_poll_timer);
    if (rx_run(&loop) < 0)
        tap_bail("rx_run failed");
    rx_timer_stop(&loop, &poll_timer);
    return pred != NULL ? pred() : true;
}

void run_for(unsigned ms) { run_until(NULL, ms); }

uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- start and end ---- */

void harness_start(void)
{
    if (access(PG_BIN "/initdb", X_OK) != 0 || access(PG_BIN "/pg_ctl", X_OK) != 0) {
        exit(tap_skip_all("PostgreSQL 15 binaries not in " PG_BIN));
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    log_setup(LOG_WARN, LOG_FORMAT_TEXT);
    if (met_init(1) < 0)
        tap_bail("met_init");
    if (rx_loop_init(&loop, 256) < 0)
        tap_bail("rx_loop_init");
    cluster_init();
}

void harness_end(void) { rx_loop_dispose(&loop); }

/* ---- test updates ---- */

tu_t ups[TU_MAX];
unsigned nups, ndone, sync_cb, twice;
static bool in_store; /* inside db_store(): a callback now would be synchronous */

static void on_stored(db_update_t *u, int status)
{
    tu_t *t = (tu_t *)((char *)u - offsetof(tu_t, u));
    if (in_store)
        sync_cb++;
    if (t->done)
        twice++;
    t->done = true;
    t->status = status;
    ndone++;
}

tu_t *mk(int64_t id)
{
    if (nups == TU_MAX)
        tap_bail("out of test updates");
    tu_t *t = &ups[nups++];
    memset(t, 0, sizeof(*t));
    int n =
        snprintf(t->body, sizeof(t->body), "{\"update_id\":%lld,\"message\":{}}", (long long)id);
    t->u.update_id = id;
    t->u.body = t->body;
    t->u.body_len = (size_t)n;
    t->u.type = "message";
    t->u.type_len = 7;
    t->u.has_chat = true;
    t->u.chat_id = 1000 + id % 7;
    t->u.has_from = true;
    t->u.from_id = 42;
    t->u.cb = on_stored;
    return t;
}

int store(db_t *db, tu_t *t)
{
    in_store = true;
    int r = db_store(db, &t->u);
    in_store = false;
    return r;
}

static unsigned wait_from, wait_to;
static bool range_done(void)
{
    for (unsigned i = wait_from; i < wait_to; i++)
        if (!ups[i].done)
            return false;
    return true;
}

bool wait_range(unsigned from, unsigned to, unsigned ms)
{
    wait_from = from;
    wait_to = to;
    return run_until(range_done, ms);
}

unsigned ndone_in(unsigned from, unsigned to)
{
    unsigned n = 0;
    for (unsigned i = from; i < to; i++)
        n += ups[i].done;
    return n;
}

unsigned count_status(unsigned from, unsigned to, int status)
{
    unsigned n = 0;
    for (unsigned i = from; i < to; i++)
        n += ups[i].done && ups[i].status == status;
    return n;
}

/* ---- db state predicates ---- */

db_t *harness_db;

bool all_ready(void)
{
    for (unsigned i = 0; i < harness_db->opt.connections; i++)
        if (harness_db->conns[i].state != DB_READY)
            return false;
    return true;
}

bool pipes_empty(void)
{
    for (unsigned i = 0; i < harness_db->opt.connections; i++)
        if (!core_queue_empty(&harness_db->conns[i].pipe))
            return false;
    return true;
}

unsigned client_items(db_t *db, db_conn_t *c)
{
    unsigned n = 0;
    for (db_item_t *it = db_pipe_item(c->pipe.head); it != NULL; it = db_pipe_item(it->link.next))
        n += it->ops != db->in->batch[0].item.ops && it != &c->setup;
    return n;
}
