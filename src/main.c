/* SPDX-License-Identifier: MIT */
/*
 * main.c - tgring's entry point: subcommands, worker processes, and the
 * wiring of one reactor: HTTP server, webhook endpoint, health and metrics
 * endpoints, and the PostgreSQL inbox.
 */
#include "cfg.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "met.h"
#include "reactor.h"
#include "tg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

#ifndef TGRING_VERSION
#define TGRING_VERSION "0.1.0"
#endif

#define SECRET_HEADER "X-Telegram-Bot-Api-Secret-Token"
#define JSON_TOKENS 65536 /* tokens one update may have (1 MiB of static scratch) */
#define RING_ENTRIES 1024
#define METRICS_BUF (64 * 1024)
#define DB_MAX_BATCH 512

/* One reactor's state. There is one per process. */
typedef struct worker {
    rx_loop_t loop;
    const cfg_t *cfg;
    http_server_t *http;
    db_t *db;
    int sigfd;
    struct signalfd_siginfo siginfo;
    rx_op_t sig_op;
    rx_timer_t rss_timer;
    rx_timer_t grace_timer;
    bool stopping;
    size_t secret_len;
} worker_t;

/* What a webhook request keeps while its update commits (in the connection's scratch). */
typedef struct webhook_txn {
    db_update_t u;
    http_conn_t *conn;
    worker_t *w;
    struct timespec t0; /* request complete */
} webhook_txn_t;

_Static_assert(sizeof(webhook_txn_t) <= HTTP_SCRATCH_SIZE, "webhook_txn_t fits the scratch");

static jsmntok_t json_tokens[JSON_TOKENS];
static char metrics_buf[METRICS_BUF];

/* ---- endpoints ---- */

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Compares without an early exit, so the time taken says nothing about the secret. */
static bool secret_ok(const worker_t *w, const http_header_t *h)
{
    const char *want = w->cfg->webhook_secret;
    if (h == NULL)
        return false;
    unsigned char diff = (unsigned char)(h->value_len != w->secret_len);
    for (size_t i = 0; i < w->secret_len; i++) {
        unsigned char got = i < h->value_len ? (unsigned char)h->value[i] : 0;
        diff |= got ^ (unsigned char)want[i];
    }
    return diff == 0;
}

static void respond_text(http_conn_t *c, int status, const char *text, const char *extra)
{
    http_respond(c, status, "text/plain; charset=utf-8", extra, text, strlen(text), false);
}

static void on_stored(db_update_t *u, int status)
{
    webhook_txn_t *t = container_of(u, webhook_txn_t, u);
    met_observe_latency(&met_self()->ack_latency, elapsed_s(&t->t0));
    switch (status) {
    case DB_STORED:
    case DB_DUPLICATE:
        http_respond(t->conn, 200, NULL, NULL, NULL, 0, false);
        break;
    case -EBADMSG:
        /* Logged by db with its reason. Telegram retries a 500, so nothing is lost. */
        respond_text(t->conn, 500, "update rejected by the database\n", NULL);
        break;
    default:
        met_self()->updates_unavailable++;
        respond_text(t->conn, 503, "update not stored, retry\n", "Retry-After: 1\r\n");
        break;
    }
}

static void handle_webhook(worker_t *w, http_conn_t *c, const http_request_t *req, char *body,
                           size_t len)
{
    if (!http_token_eq(req->method, req->method_len, "POST")) {
        respond_text(c, 405, "use POST\n", "Allow: POST\r\n");
        return;
    }
    if (!secret_ok(w, http_find_header(req, SECRET_HEADER))) {
        log_debug("webhook_unauthorized", "conn=%llu wrong or missing secret token",
                  (unsigned long long)http_conn_id(c));
        respond_text(c, 401, "wrong or missing secret token\n", NULL);
        return;
    }
    tg_update_info_t info;
    tg_json_scratch_t scratch = {json_tokens, JSON_TOKENS};
    int r = tg_update_parse(body, len, &scratch, &info);
    if (r == -E2BIG) {
        respond_text(c, 413, "update too complex\n", NULL);
        return;
    }
    if (r < 0) {
        log_debug("webhook_bad_update", "conn=%llu malformed JSON or update_id",
                  (unsigned long long)http_conn_id(c));
        respond_text(c, 400, "malformed JSON or missing update_id\n", NULL);
        return;
    }
    webhook_txn_t *t = http_conn_scratch(c);
    memset(t, 0, sizeof(*t));
    clock_gettime(CLOCK_MONOTONIC, &t->t0);
    t->conn = c;
    t->w = w;
    t->u.update_id = info.update_id;
    t->u.body = body;
    t->u.body_len = len;
    t->u.has_chat = info.has_chat;
    t->u.chat_id = info.chat_id;
    t->u.type = info.type_name;
    t->u.type_len = info.type_name_len;
    t->u.has_from = info.has_from;
    t->u.from_id = info.from_id;
    t->u.cb = on_stored;
    if (w->stopping || db_store(w->db, &t->u) < 0) {
        met_self()->updates_unavailable++;
        respond_text(c, 503, "database unavailable, retry\n", "Retry-After: 1\r\n");
    }
}

static void handle_metrics(http_conn_t *c)
{
    met_sample_rss();
    int n = met_render(metrics_buf, sizeof(metrics_buf));
    if (n < 0) {
        respond_text(c, 500, "metrics do not fit\n", NULL);
        return;
    }
    http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, metrics_buf,
                 (size_t)n, false);
}

static void on_request(http_server_t *s, http_conn_t *c, const http_request_t *req, char *body,
                       size_t len)
{
    worker_t *w = http_server_data(s);
    const char *p = req->path;
    size_t pl = req->path_len;
    const cfg_t *cfg = w->cfg;

    if (pl == strlen(cfg->webhook_path) && memcmp(p, cfg->webhook_path, pl) == 0) {
        handle_webhook(w, c, req, body, len);
        return;
    }
    bool get = http_token_eq(req->method, req->method_len, "GET");
    const char *known[] = {"/health/live", "/health/ready", "/metrics"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (pl != strlen(known[i]) || memcmp(p, known[i], pl) != 0)
            continue;
        if (!get) {
            respond_text(c, 405, "use GET\n", "Allow: GET\r\n");
            return;
        }
        if (i == 0)
            respond_text(c, 200, "ok\n", NULL);
        else if (i == 1) {
            if (db_ready(w->db) && !w->stopping)
                respond_text(c, 200, "ready\n", NULL);
            else
                respond_text(c, 503, w->stopping ? "stopping\n" : "database not ready\n",
                             "Retry-After: 1\r\n");
        } else
            handle_metrics(c);
        return;
    }
    respond_text(c, 404, "not found\n", NULL);
}

/* ---- lifecycle ---- */

static void on_rss_timer(rx_loop_t *loop, rx_timer_t *t)
{
    met_sample_rss();
    rx_timer_start(loop, t, 1000, on_rss_timer);
}

static void on_http_drained(void *arg)
{
    worker_t *w = arg;
    log_info("stopped", "all connections closed");
    rx_stop(&w->loop);
}

static void on_grace(rx_loop_t *loop, rx_timer_t *t)
{
    worker_t *w = container_of(t, worker_t, grace_timer);
    log_warn("shutdown_timeout", "grace period over with %u connections open; closing them",
             http_server_connections(w->http));
    http_server_close_all(w->http);
    rx_stop(loop);
}

static void on_final(rx_loop_t *loop, rx_timer_t *t)
{
    rx_stop(loop);
}

static void begin_shutdown(worker_t *w, const char *why)
{
    if (w->stopping)
        return;
    w->stopping = true;
    log_info("stopping", "%s: no new connections; finishing requests in flight (up to %u ms)",
             why, w->cfg->shutdown_timeout_ms);
    rx_timer_stop(&w->loop, &w->rss_timer);
    rx_timer_start(&w->loop, &w->grace_timer, w->cfg->shutdown_timeout_ms, on_grace);
    http_server_drain(w->http, on_http_drained, w);
}

static void arm_signal(worker_t *w)
{
    struct io_uring_sqe *sqe = rx_sqe(&w->loop, &w->sig_op);
    io_uring_prep_read(sqe, w->sigfd, &w->siginfo, sizeof(w->siginfo), 0);
}

static void on_signal(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    worker_t *w = container_of(op, worker_t, sig_op);
    if (res == (int)sizeof(w->siginfo)) {
        int sig = (int)w->siginfo.ssi_signo;
        begin_shutdown(w, sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    if (!w->stopping)
        arm_signal(w);
}

static int listen_socket(const cfg_t *cfg)
{
    int fd = socket(cfg->listen_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Several workers listen on one port; the kernel spreads connections. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&cfg->listen_addr, cfg->listen_addr_len) != 0 ||
        listen(fd, 4096) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Runs one reactor until it is told to stop. Returns the process exit status. */
static int run_worker(const cfg_t *cfg, unsigned index, sigset_t *sigs)
{
    worker_t w;
    memset(&w, 0, sizeof(w));
    w.cfg = cfg;
    w.secret_len = strlen(cfg->webhook_secret);
    met_select(index);

    int r = rx_loop_init(&w.loop, RING_ENTRIES);
    if (r < 0) {
        fprintf(stderr, "tgring: %s\n", rx_strerror_setup(r));
        log_error("io_uring_unavailable", "%s", rx_strerror_setup(r));
        return 1;
    }
    int lfd = listen_socket(cfg);
    if (lfd < 0) {
        log_error("listen_failed", "cannot listen on %s: %s", cfg->listen, strerror(-lfd));
        rx_loop_dispose(&w.loop);
        return 1;
    }
    w.sigfd = signalfd(-1, sigs, SFD_CLOEXEC);
    if (w.sigfd < 0) {
        log_error("signalfd_failed", "signalfd: %s", strerror(errno));
        return 1;
    }
    db_options_t dbo = {
        .conninfo = cfg->database_url,
        .queue_max = cfg->queue_max,
        .ack_timeout_ms = cfg->ack_timeout_ms,
        .max_batch = DB_MAX_BATCH,
    };
    w.db = db_new(&w.loop, &dbo);
    http_server_options_t ho = {
        .limits = HTTP_LIMITS_DEFAULT,
        .max_connections = cfg->max_connections,
        .buffer_budget = 64 * cfg->max_body + (64u << 20),
        .header_timeout_ms = cfg->header_timeout_ms,
        .body_timeout_ms = cfg->body_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .on_request = on_request,
        .data = &w,
    };
    ho.limits.max_body = cfg->max_body;
    w.http = http_server_new(&w.loop, lfd, &ho, &r);
    if (w.http == NULL) {
        log_error("http_failed", "cannot set up the receive buffer ring: %s", strerror(-r));
        return 1;
    }
    w.sig_op.cb = on_signal;
    arm_signal(&w);
    met_sample_rss();
    rx_timer_start(&w.loop, &w.rss_timer, 1000, on_rss_timer);
    log_info("listening", "worker %u serving http://%s%s", index, cfg->listen,
             cfg->webhook_path);

    r = rx_run(&w.loop);
    if (r < 0) {
        log_error("ring_failed", "io_uring_enter: %s", strerror(-r));
        return 1;
    }
    /*
     * Requests still waiting on the database when the grace period ran out
     * are answered 503 by db_free (their updates may or may not be stored;
     * Telegram retries them and the inbox dedupes). Run the loop once more so
     * that their connections close.
     */
    db_free(w.db);
    w.db = NULL;
    /*
     * One more short run lets the cancelled database poll and the closes of
     * any remaining connections complete, so that nothing is in flight when
     * the ring goes away.
     */
    http_server_close_all(w.http);
    rx_timer_start(&w.loop, &w.grace_timer, http_server_connections(w.http) ? 1000 : 50,
                   on_final);
    rx_run(&w.loop);
    rx_timer_stop(&w.loop, &w.grace_timer);
    http_server_free(w.http);
    close(w.sigfd);
    rx_loop_dispose(&w.loop);
    log_info("exit", "worker %u done", index);
    return 0;
}

/* Parent of TGRING_WORKERS > 1 processes: starts them, restarts crashed ones, stops them. */
static int run_supervisor(const cfg_t *cfg, sigset_t *sigs)
{
    pid_t *pids = calloc(cfg->workers, sizeof(*pids));
    if (pids == NULL)
        abort();
    bool stopping = false;
    int status = 0;
    unsigned alive = 0;

    for (unsigned i = 0; i < cfg->workers; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            log_error("fork_failed", "fork: %s", strerror(errno));
            stopping = true;
            status = 1;
            break;
        }
        if (pid == 0) {
            free(pids);
            exit(run_worker(cfg, i, sigs));
        }
        pids[i] = pid;
        alive++;
    }
    if (stopping)
        for (unsigned i = 0; i < cfg->workers; i++)
            if (pids[i] > 0)
                kill(pids[i], SIGTERM);

    sigaddset(sigs, SIGCHLD);
    sigprocmask(SIG_BLOCK, sigs, NULL);
    while (alive > 0) {
        siginfo_t si;
        int sig = sigwaitinfo(sigs, &si);
        if (sig < 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping)
                log_info("stopping", "stopping %u workers", alive);
            stopping = true;
            for (unsigned i = 0; i < cfg->workers; i++)
                if (pids[i] > 0)
                    kill(pids[i], SIGTERM);
            continue;
        }
        if (sig != SIGCHLD)
            continue;
        int ws;
        pid_t pid;
        while ((pid = waitpid(-1, &ws, WNOHANG)) > 0) {
            for (unsigned i = 0; i < cfg->workers; i++) {
                if (pids[i] != pid)
                    continue;
                pids[i] = 0;
                alive--;
                bool clean = WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
                if (!clean)
                    status = 1;
                if (stopping)
                    break;
                /*
                 * A worker that fails at start (port taken, io_uring blocked)
                 * would fail again: stop everything rather than loop.
                 */
                log_error("worker_died", "worker %u (pid %d) ended (%s %d); stopping", i,
                          (int)pid, WIFEXITED(ws) ? "exit" : "signal",
                          WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
                stopping = true;
                for (unsigned j = 0; j < cfg->workers; j++)
                    if (pids[j] > 0)
                        kill(pids[j], SIGTERM);
                break;
            }
        }
    }
    free(pids);
    return status;
}

static int cmd_serve(cfg_t *cfg)
{
    int s = db_check_schema(cfg->database_url);
    if (s == 0) {
        fprintf(stderr, "tgring: the database schema is not migrated: run `tgring migrate` "
                        "first\n");
        return 1;
    }
    if (s < 0)
        log_warn("database_unreachable", "cannot check the schema now; serving 503 until the "
                                         "database is reachable and migrated");

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (met_init(cfg->workers) < 0) {
        log_error("metrics_failed", "cannot map the metrics area");
        return 1;
    }
    if (cfg->workers == 1)
        return run_worker(cfg, 0, &sigs);
    return run_supervisor(cfg, &sigs);
}

/* GET /health/ready on TGRING_LISTEN (the unspecified address means loopback). */
static int cmd_healthcheck(const cfg_t *cfg)
{
    struct sockaddr_storage a = cfg->listen_addr;
    if (a.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&a;
        if (in->sin_addr.s_addr == htonl(INADDR_ANY))
            in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (a.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
            in6->sin6_addr = in6addr_loopback;
    }
    int fd = socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 1;
    struct pollfd p = {fd, POLLOUT, 0};
    if (connect(fd, (struct sockaddr *)&a, cfg->listen_addr_len) != 0 && errno != EINPROGRESS)
        goto fail;
    if (poll(&p, 1, 2000) != 1)
        goto fail;
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0)
        goto fail;
    static const char req[] = "GET /health/ready HTTP/1.1\r\nHost: localhost\r\n"
                              "Connection: close\r\n\r\n";
    if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1))
        goto fail;
    char buf[64];
    size_t got = 0;
    p.events = POLLIN;
    while (got < 12) {
        if (poll(&p, 1, 2000) != 1)
            goto fail;
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            goto fail;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    if (strncmp(buf, "HTTP/1.1 200", 12) == 0)
        return 0;
    fprintf(stderr, "tgring: healthcheck: not ready\n");
    return 1;
fail:
    fprintf(stderr, "tgring: healthcheck: cannot reach %s\n", cfg->listen);
    close(fd);
    return 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tgring [COMMAND]\n"
            "\n"
            "A Telegram bot server: takes webhook updates, commits each to PostgreSQL\n"
            "before answering 200, and serves health and metrics endpoints.\n"
            "\n"
            "Commands:\n"
            "  serve         run the server (the default)\n"
            "  migrate       apply pending database migrations, then exit\n"
            "  healthcheck   exit 0 if GET /health/ready on TGRING_LISTEN answers 200, else 1\n"
            "  version       print the version\n"
            "  help          print this help (also -h, --help)\n"
            "\n"
            "Endpoints: POST TGRING_WEBHOOK_PATH (200 committed, 401 secret, 400 malformed,\n"
            "413 too big, 503 not stored + Retry-After), GET /health/live, GET /health/ready,\n"
            "GET /metrics (Prometheus text).\n"
            "\n"
            "Environment (secrets also as NAME_FILE):\n");
    cfg_print_help(out);
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "serve";
    if (argc > 2) {
        fprintf(stderr, "tgring: too many arguments; see `tgring --help`\n");
        return 2;
    }
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("tgring %s\n", TGRING_VERSION);
        return 0;
    }
    unsigned need;
    if (!strcmp(cmd, "serve"))
        need = CFG_NEED_DB | CFG_NEED_SECRET;
    else if (!strcmp(cmd, "migrate"))
        need = CFG_NEED_DB;
    else if (!strcmp(cmd, "healthcheck"))
        need = 0;
    else {
        fprintf(stderr, "tgring: unknown command \"%s\"; see `tgring --help`\n", cmd);
        return 2;
    }

    cfg_t cfg;
    int problems = cfg_load(&cfg, need, stderr);
    if (problems > 0) {
        fprintf(stderr, "tgring: %d configuration problem%s; not starting\n", problems,
                problems == 1 ? "" : "s");
        cfg_dispose(&cfg);
        return 1;
    }
    log_setup(cfg.log_level, cfg.log_format);

    int rc;
    if (!strcmp(cmd, "serve"))
        rc = cmd_serve(&cfg);
    else if (!strcmp(cmd, "migrate"))
        rc = db_migrate(cfg.database_url) < 0 ? 1 : 0;
    else
        rc = cmd_healthcheck(&cfg);
    cfg_dispose(&cfg);
    return rc;
}
