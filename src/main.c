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
#include "tg_api.h"
#include "tg_sender.h"
#include "tls.h"

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
    bool http_drained;
    bool sender_idle;
    size_t secret_len;
    tls_ctx_t *tls;      /* Bot API trust anchors; NULL without a token or for http:// */
    httpc_pool_t *api;   /* Bot API connections; NULL without a token */
    tg_sender_t *sender; /* the outbox sender (worker 0 only) */
    tg_call_t getme;     /* the getMe call made at start */
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
    http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, metrics_buf, (size_t)n,
                 false);
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

/* ---- the Bot API ---- */

/*
 * Makes the trust anchors (for https) and the connection pool to
 * TELEGRAM_API_URL. Returns 0, or -1 with the reason logged.
 */
static int api_open(rx_loop_t *loop, const cfg_t *cfg, tls_ctx_t **tls, httpc_pool_t **pool)
{
    int err = 0;
    *tls = NULL;
    if (strncmp(cfg->api_url, "https://", 8) == 0) {
        *tls = tls_ctx_new(cfg->ca_file ? cfg->ca_file : TLS_DEFAULT_CA_FILE, &err);
        if (*tls == NULL) {
            log_error("ca_file_unusable", "cannot load trust anchors from %s: %s",
                      cfg->ca_file ? cfg->ca_file : TLS_DEFAULT_CA_FILE, strerror(-err));
            return -1;
        }
    }
    httpc_options_t ho = {
        .url = cfg->api_url,
        .tls = *tls,
        .max_conns = cfg->api_connections,
    };
    *pool = httpc_pool_new(loop, &ho, &err);
    if (*pool == NULL) {
        log_error("api_url_unusable", "cannot use TELEGRAM_API_URL %s: %s", cfg->api_url,
                  strerror(-err));
        tls_ctx_free(*tls);
        *tls = NULL;
        return -1;
    }
    return 0;
}

/* Parses the TELEGRAM_RATE_* values; reports each bad one like cfg_load does. */
static int rate_config(const cfg_t *cfg, tg_rate_config_t *rc, FILE *err)
{
    int problems = 0;
    tg_rate_config_default(rc);
    const struct {
        const char *name;
        const char *value;
        tg_rate_spec_t *spec;
    } specs[] = {
        {"TELEGRAM_RATE_GLOBAL", cfg->rate_global, &rc->global},
        {"TELEGRAM_RATE_CHAT", cfg->rate_chat, &rc->chat},
        {"TELEGRAM_RATE_GROUP", cfg->rate_group, &rc->group},
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        if (tg_rate_spec_parse(specs[i].value, specs[i].spec) < 0) {
            fprintf(err,
                    "tgring: config: %s: expected <n>/s or <n>/min, optionally ,burst=<b>, "
                    "got \"%s\"\n",
                    specs[i].name, specs[i].value);
            problems++;
        }
    }
    return problems;
}

/* A Bot API call run to completion on a loop of its own (for the subcommands). */
typedef struct sync_call {
    tg_call_t call;
    rx_loop_t *loop;
    int err;
    tg_api_result_t res;
    char *result; /* copy of the "result" JSON */
    size_t result_len;
} sync_call_t;

static void on_sync_call(tg_call_t *call, int err, const tg_api_result_t *res)
{
    sync_call_t *sc = container_of(call, sync_call_t, call);
    sc->err = err;
    if (res != NULL) {
        sc->res = *res;
        if (res->result != NULL) {
            sc->result = malloc(res->result_len + 1);
            if (sc->result == NULL)
                abort();
            memcpy(sc->result, res->result, res->result_len);
            sc->result[res->result_len] = '\0';
            sc->result_len = res->result_len;
        }
        sc->res.result = sc->result;
    }
    rx_stop(sc->loop);
}

static void on_final(rx_loop_t *loop, rx_timer_t *t);

/*
 * Calls `method` with json[0..len) and waits for the answer. Prints one line
 * on stderr and returns 1 when there is none or it is not ok; 0 otherwise,
 * with sc->res (and sc->result, to be freed) set.
 */
static int call_sync(const cfg_t *cfg, const char *cmd, const char *method, const char *json,
                     size_t len, sync_call_t *sc)
{
    rx_loop_t loop;
    tls_ctx_t *tls;
    httpc_pool_t *pool;
    memset(sc, 0, sizeof(*sc));
    int r = rx_loop_init(&loop, 64);
    if (r < 0) {
        fprintf(stderr, "tgring: %s\n", rx_strerror_setup(r));
        return 1;
    }
    if (api_open(&loop, cfg, &tls, &pool) < 0) {
        fprintf(stderr, "tgring: %s: cannot set up the connection to %s (see the log above)\n", cmd,
                cfg->api_url);
        rx_loop_dispose(&loop);
        return 1;
    }
    sc->loop = &loop;
    r = tg_call_start(&sc->call, pool, cfg->bot_token, method, json, len, 30000, on_sync_call);
    if (r == 0)
        rx_run(&loop);
    else
        sc->err = r;
    httpc_pool_free(pool);
    rx_timer_t t = {0};
    rx_timer_start(&loop, &t, 20, on_final);
    rx_run(&loop);
    tls_ctx_free(tls);
    rx_loop_dispose(&loop);

    if (sc->err != 0) {
        fprintf(stderr, "tgring: %s: no answer from %s: %s\n", cmd, cfg->api_url,
                sc->err == -EKEYREJECTED ? "TLS certificate or handshake failure (see the log)"
                                         : strerror(-sc->err));
        return 1;
    }
    if (!sc->res.ok) {
        fprintf(stderr, "tgring: %s: the Bot API answered %d: %s\n", cmd, sc->res.error_code,
                sc->res.description[0] ? sc->res.description : "(no description)");
        if (sc->res.error_code == 401 || sc->res.error_code == 404)
            fprintf(stderr, "tgring: %s: check TELEGRAM_BOT_TOKEN\n", cmd);
        return 1;
    }
    return 0;
}

static int cmd_set_webhook(const cfg_t *cfg, bool drop_pending)
{
    char body[4096];
    tg_jw_t w;
    tg_jw_init(&w, body, sizeof(body));
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "url");
    tg_jw_str(&w, cfg->webhook_url, strlen(cfg->webhook_url));
    tg_jw_key(&w, "secret_token");
    tg_jw_str(&w, cfg->webhook_secret, strlen(cfg->webhook_secret));
    tg_jw_key(&w, "max_connections");
    tg_jw_int(&w, cfg->webhook_max_connections);
    if (cfg->allowed_updates != NULL) {
        tg_jw_key(&w, "allowed_updates");
        tg_jw_arr_begin(&w);
        for (const char *p = cfg->allowed_updates; *p != '\0';) {
            size_t n = strcspn(p, ",");
            tg_jw_str(&w, p, n);
            p += n + (p[n] == ',');
        }
        tg_jw_arr_end(&w);
    }
    if (drop_pending) {
        tg_jw_key(&w, "drop_pending_updates");
        tg_jw_bool(&w, true);
    }
    tg_jw_obj_end(&w);
    int len = tg_jw_finish(&w);
    if (len < 0) {
        fprintf(stderr, "tgring: set-webhook: request too large\n");
        return 1;
    }
    sync_call_t sc;
    int rc = call_sync(cfg, "set-webhook", "setWebhook", body, (size_t)len, &sc);
    explicit_bzero(body, sizeof(body));
    if (rc == 0)
        printf("webhook set to %s (max_connections %u%s)\n", cfg->webhook_url,
               cfg->webhook_max_connections, drop_pending ? ", pending updates dropped" : "");
    free(sc.result);
    return rc;
}

static int cmd_delete_webhook(const cfg_t *cfg, bool drop_pending)
{
    const char *body = drop_pending ? "{\"drop_pending_updates\":true}" : "{}";
    sync_call_t sc;
    int rc = call_sync(cfg, "delete-webhook", "deleteWebhook", body, strlen(body), &sc);
    if (rc == 0)
        printf("webhook deleted%s\n", drop_pending ? ", pending updates dropped" : "");
    free(sc.result);
    return rc;
}

static int cmd_webhook_info(const cfg_t *cfg)
{
    sync_call_t sc;
    int rc = call_sync(cfg, "webhook-info", "getWebhookInfo", "{}", 2, &sc);
    if (rc != 0) {
        free(sc.result);
        return rc;
    }
    const char *r = sc.result ? sc.result : "{}";
    size_t rl = sc.result ? sc.result_len : 2;
    char text[1024];
    int64_t n;
    printf("url: %s\n",
           tg_api_get_string(r, rl, "url", text, sizeof(text)) >= 0 && text[0] ? text : "(none)");
    printf("pending_update_count: %lld\n",
           tg_api_get_int(r, rl, "pending_update_count", &n) == 0 ? (long long)n : 0LL);
    if (tg_api_get_int(r, rl, "max_connections", &n) == 0)
        printf("max_connections: %lld\n", (long long)n);
    const char *raw;
    size_t raw_len;
    if (tg_api_get_raw(r, rl, "allowed_updates", &raw, &raw_len) == 0)
        printf("allowed_updates: %.*s\n", (int)raw_len, raw);
    if (tg_api_get_int(r, rl, "last_error_date", &n) == 0) {
        time_t t = (time_t)n;
        struct tm tm;
        char when[32];
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("last_error_date: %s\n", when);
    }
    if (tg_api_get_string(r, rl, "last_error_message", text, sizeof(text)) >= 0)
        printf("last_error_message: %s\n", text);
    else
        printf("last_error_message: (none)\n");
    free(sc.result);
    return 0;
}

static void on_getme(tg_call_t *call, int err, const tg_api_result_t *res)
{
    char user[128];
    if (err != 0) {
        log_error("getme_failed", "getMe: no answer from the Bot API: %s%s", strerror(-err),
                  err == -EKEYREJECTED ? " (TLS certificate or handshake failure)" : "");
        return;
    }
    if (!res->ok) {
        log_error("getme_failed", "getMe: the Bot API answered %d %s%s", res->error_code,
                  res->description,
                  res->error_code == 401 || res->error_code == 404
                      ? ": TELEGRAM_BOT_TOKEN is not a valid token"
                      : "");
        return;
    }
    if (res->result == NULL ||
        tg_api_get_string(res->result, res->result_len, "username", user, sizeof(user)) < 0)
        strcpy(user, "(no username)");
    log_info("bot_identified", "the bot is @%s", user);
}

/* ---- lifecycle ---- */

static void on_rss_timer(rx_loop_t *loop, rx_timer_t *t)
{
    met_sample_rss();
    rx_timer_start(loop, t, 1000, on_rss_timer);
}

static void maybe_stop(worker_t *w)
{
    if (w->http_drained && w->sender_idle) {
        log_info("stopped", "all connections closed and sends recorded");
        rx_stop(&w->loop);
    }
}

static void on_http_drained(void *arg)
{
    worker_t *w = arg;
    w->http_drained = true;
    maybe_stop(w);
}

static void on_sender_idle(void *arg)
{
    worker_t *w = arg;
    w->sender_idle = true;
    maybe_stop(w);
}

static void on_grace(rx_loop_t *loop, rx_timer_t *t)
{
    worker_t *w = container_of(t, worker_t, grace_timer);
    /*
     * Requests still waiting for a commit are answered 503 by the teardown
     * after the loop (db_free cancels them), then their connections close.
     */
    log_warn("shutdown_timeout", "grace period over with %u connections open; closing them",
             http_server_connections(w->http));
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
    log_info("stopping", "%s: no new connections; finishing requests in flight (up to %u ms)", why,
             w->cfg->shutdown_timeout_ms);
    rx_timer_stop(&w->loop, &w->rss_timer);
    rx_timer_start(&w->loop, &w->grace_timer, w->cfg->shutdown_timeout_ms, on_grace);
    http_server_drain(w->http, on_http_drained, w);
    if (w->sender != NULL)
        tg_sender_stop(w->sender, on_sender_idle, w);
    else
        w->sender_idle = true;
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
        .connections = cfg->db_connections,
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
    if (cfg->bot_token == NULL) {
        log_info("sending_disabled", "TELEGRAM_BOT_TOKEN is not set: the outbox is not sent");
    } else if (api_open(&w.loop, cfg, &w.tls, &w.api) == 0) {
        if (tg_call_start(&w.getme, w.api, cfg->bot_token, "getMe", "{}", 2, 30000, on_getme) < 0)
            log_warn("getme_failed", "getMe could not be queued");
        /* One sender per process group: the rate limits are the bot's, not a worker's. */
        if (index == 0) {
            tg_sender_options_t so = {
                .token = cfg->bot_token,
                .http = w.api,
                .db = w.db,
                .max_attempts = cfg->send_attempts,
                .lease_ms = cfg->outbox_lease_ms,
            };
            rate_config(cfg, &so.rate, stderr);
            w.sender = tg_sender_new(&w.loop, &so, &r);
            if (w.sender == NULL)
                log_error("sender_failed", "cannot start the outbox sender: %s", strerror(-r));
        }
    }
    w.sig_op.cb = on_signal;
    arm_signal(&w);
    met_sample_rss();
    rx_timer_start(&w.loop, &w.rss_timer, 1000, on_rss_timer);
    log_info("listening", "worker %u serving http://%s%s", index, cfg->listen, cfg->webhook_path);

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
    /*
     * Teardown order: the sender releases the rows it holds and the pool
     * fails what is still in flight (the sender records those) while the
     * database is still there to take the writes; then the database answers
     * whatever is left with -ECANCELED.
     */
    if (w.sender != NULL)
        tg_sender_stop(w.sender, NULL, NULL);
    if (w.api != NULL)
        httpc_pool_free(w.api);
    db_free(w.db);
    w.db = NULL;
    /*
     * One more short run lets the cancelled database poll and the closes of
     * any remaining connections complete, so that nothing is in flight when
     * the ring goes away.
     */
    http_server_close_all(w.http);
    rx_timer_start(&w.loop, &w.grace_timer, http_server_connections(w.http) ? 1000 : 50, on_final);
    rx_run(&w.loop);
    if (w.sender != NULL)
        tg_sender_free(w.sender);
    rx_timer_stop(&w.loop, &w.grace_timer);
    tls_ctx_free(w.tls);
    http_server_free(w.http);
    close(w.sigfd);
    rx_loop_dispose(&w.loop);
    log_info("exit", "worker %u done", index);
    return 0;
}

/*
 * Parent of TGRING_WORKERS > 1 processes: starts them and stops them all on
 * SIGTERM or SIGINT, or when one of them ends (a worker that dies would most
 * likely die again, and an orchestrator restarts the whole server).
 */
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
                log_error("worker_died", "worker %u (pid %d) ended (%s %d); stopping", i, (int)pid,
                          WIFEXITED(ws) ? "exit" : "signal",
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
            "before answering 200, sends the outbox to the Bot API within Telegram's\n"
            "rate limits, and serves health and metrics endpoints.\n"
            "\n"
            "Commands:\n"
            "  serve         run the server (the default)\n"
            "  migrate       apply pending database migrations, then exit\n"
            "  healthcheck   exit 0 if GET /health/ready on TGRING_LISTEN answers 200, else 1\n"
            "  set-webhook [--drop-pending-updates]\n"
            "                point Telegram at TELEGRAM_WEBHOOK_URL with the secret,\n"
            "                TELEGRAM_WEBHOOK_MAX_CONNECTIONS and TELEGRAM_ALLOWED_UPDATES\n"
            "  delete-webhook [--drop-pending-updates]\n"
            "                stop webhook delivery\n"
            "  webhook-info  print the webhook's URL, pending update count and last error\n"
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
    bool drop_pending = false;
    bool webhook_cmd = !strcmp(cmd, "set-webhook") || !strcmp(cmd, "delete-webhook");
    for (int i = 2; i < argc; i++) {
        if (webhook_cmd && !strcmp(argv[i], "--drop-pending-updates")) {
            drop_pending = true;
            continue;
        }
        fprintf(stderr, "tgring: unexpected argument \"%s\"; see `tgring --help`\n", argv[i]);
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
    else if (!strcmp(cmd, "set-webhook"))
        need = CFG_NEED_TOKEN | CFG_NEED_SECRET | CFG_NEED_WEBHOOK_URL;
    else if (!strcmp(cmd, "delete-webhook") || !strcmp(cmd, "webhook-info"))
        need = CFG_NEED_TOKEN;
    else {
        fprintf(stderr, "tgring: unknown command \"%s\"; see `tgring --help`\n", cmd);
        return 2;
    }

    cfg_t cfg;
    int problems = cfg_load(&cfg, need, stderr);
    tg_rate_config_t rc;
    if (!strcmp(cmd, "serve"))
        problems += rate_config(&cfg, &rc, stderr);
    if (problems > 0) {
        fprintf(stderr, "tgring: %d configuration problem%s; not starting\n", problems,
                problems == 1 ? "" : "s");
        cfg_dispose(&cfg);
        return 1;
    }
    log_setup(cfg.log_level, cfg.log_format);

    int rc_exit;
    if (!strcmp(cmd, "serve"))
        rc_exit = cmd_serve(&cfg);
    else if (!strcmp(cmd, "migrate"))
        rc_exit = db_migrate(cfg.database_url) < 0 ? 1 : 0;
    else if (!strcmp(cmd, "set-webhook"))
        rc_exit = cmd_set_webhook(&cfg, drop_pending);
    else if (!strcmp(cmd, "delete-webhook"))
        rc_exit = cmd_delete_webhook(&cfg, drop_pending);
    else if (!strcmp(cmd, "webhook-info"))
        rc_exit = cmd_webhook_info(&cfg);
    else
        rc_exit = cmd_healthcheck(&cfg);
    cfg_dispose(&cfg);
    return rc_exit;
}
