/* SPDX-License-Identifier: MIT */
/*
 * webhook.c - the HTTP endpoints of one bot server: the webhook POST (secret,
 * update check, store, answer on commit), the health endpoints and metrics.
 * tg_webhook_decide() is the pure part; the rest is the thin glue that stores
 * and answers on the http server's connections.
 */
#include "tg_webhook.h"

#include "core.h"
#include "log.h"
#include "met.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What a webhook request keeps while its update commits (in the connection's scratch). */
typedef struct webhook_txn {
    db_update_t u;
    http_conn_t *conn;
    tg_proc_t *proc;    /* to kick once it is stored */
    struct timespec t0; /* request complete */
} webhook_txn_t;

_Static_assert(sizeof(webhook_txn_t) <= HTTP_SCRATCH_SIZE, "webhook_txn_t fits the scratch");

/* ---- the decisions ---- */

bool tg_webhook_secret_ok(const tg_bot_t *bot, const http_header_t *got)
{
    const char *want = bot->webhook_secret;
    size_t want_len = bot->webhook_secret_len;
    if (got == NULL || want == NULL)
        return false;
    /* No early exit: the time taken says nothing about how much matched. */
    unsigned char diff = (unsigned char)(got->value_len != want_len);
    for (size_t i = 0; i < want_len; i++) {
        unsigned char g = i < got->value_len ? (unsigned char)got->value[i] : 0;
        diff |= g ^ (unsigned char)want[i];
    }
    return diff == 0;
}

static void respond(tg_webhook_verdict_t *v, int status, const char *text, const char *extra)
{
    v->what = TG_WEBHOOK_RESPOND;
    v->status = status;
    v->text = text;
    v->extra = extra;
}

/*
 * Exact, case-sensitive comparison of a view with s[0..len). Paths and methods
 * are both case-sensitive (RFC 9110 4.2.3, 9.1): "post" is another, unknown
 * method, answered 405 like any other.
 */
static bool view_is(const char *v, size_t v_len, const char *s, size_t len)
{
    return v_len == len && memcmp(v, s, len) == 0;
}

static bool path_is(const http_request_t *req, const char *path, size_t len)
{
    return view_is(req->path, req->path_len, path, len);
}

static bool method_is(const http_request_t *req, const char *method)
{
    return view_is(req->method, req->method_len, method, strlen(method));
}

static void decide_update(const tg_bot_t *bot, const tg_webhook_state_t *st,
                          const http_request_t *req, const char *body, size_t len,
                          tg_json_scratch_t *scratch, tg_webhook_verdict_t *v)
{
    if (!method_is(req, "POST")) {
        respond(v, 405, "use POST\n", "Allow: POST\r\n");
        return;
    }
    if (!tg_webhook_secret_ok(bot, http_find_header(req, TG_WEBHOOK_SECRET_HEADER))) {
        v->event = "webhook_unauthorized";
        v->why = "wrong or missing secret token";
        respond(v, 401, "wrong or missing secret token\n", NULL);
        return;
    }
    int r = tg_update_parse(body, len, scratch, &v->info);
    if (r == -E2BIG) {
        respond(v, 413, "update too complex\n", NULL);
        return;
    }
    if (r < 0) {
        v->event = "webhook_bad_update";
        v->why = "malformed JSON or update_id";
        respond(v, 400, "malformed JSON or missing update_id\n", NULL);
        return;
    }
    if (st->stopping) {
        v->unavailable = true;
        respond(v, 503, "database unavailable, retry\n", "Retry-After: 1\r\n");
        return;
    }
    v->what = TG_WEBHOOK_STORE;
}

void tg_webhook_decide(const tg_bot_t *bot, const tg_webhook_state_t *st, const http_request_t *req,
                       const char *body, size_t len, tg_json_scratch_t *scratch,
                       tg_webhook_verdict_t *v)
{
    static const char *const known[] = {"/health/live", "/health/ready", "/metrics"};
    memset(v, 0, sizeof(*v));
    if (path_is(req, bot->webhook_path, bot->webhook_path_len)) {
        decide_update(bot, st, req, body, len, scratch, v);
        return;
    }
    for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
        if (!path_is(req, known[i], strlen(known[i])))
            continue;
        if (!method_is(req, "GET"))
            respond(v, 405, "use GET\n", "Allow: GET\r\n");
        else if (i == 0)
            respond(v, 200, "ok\n", NULL);
        else if (i == 1 && st->db_ready && !st->stopping)
            respond(v, 200, "ready\n", NULL);
        else if (i == 1)
            respond(v, 503, st->stopping ? "stopping\n" : "database not ready\n",
                    "Retry-After: 1\r\n");
        else
            v->what = TG_WEBHOOK_METRICS;
        return;
    }
    respond(v, 404, "not found\n", NULL);
}

/* ---- the glue ---- */

void tg_webhook_init(tg_webhook_t *wh, const tg_bot_t *bot, db_t *db)
{
    memset(wh, 0, sizeof(*wh));
    wh->bot = bot;
    wh->db = db;
    wh->tokens = xcalloc(TG_WEBHOOK_JSON_TOKENS, sizeof(*wh->tokens));
    wh->metrics_buf = xmalloc(TG_WEBHOOK_METRICS_BUF);
}

void tg_webhook_dispose(tg_webhook_t *wh)
{
    free(wh->tokens);
    free(wh->metrics_buf);
    memset(wh, 0, sizeof(*wh));
}

void tg_webhook_stop(tg_webhook_t *wh)
{
    wh->stopping = true;
}

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void respond_text(http_conn_t *c, int status, const char *text, const char *extra)
{
    http_respond(c, status, "text/plain; charset=utf-8", extra, text, strlen(text), false);
}

static void respond_unavailable(http_conn_t *c, const char *text)
{
    met_self()->updates_unavailable++;
    respond_text(c, 503, text, "Retry-After: 1\r\n");
}

static void on_stored(db_update_t *u, int status)
{
    webhook_txn_t *t = container_of(u, webhook_txn_t, u);
    met_observe_latency(&met_self()->ack_latency, elapsed_s(&t->t0));
    switch (status) {
    case DB_STORED:
        /* A claim that went behind its batch (tg_processor.h) has found it already. */
        if (!u->followed)
            tg_proc_kick(t->proc, u->update_id);
        http_respond(t->conn, 200, NULL, NULL, NULL, 0, false);
        break;
    case DB_DUPLICATE:
        http_respond(t->conn, 200, NULL, NULL, NULL, 0, false);
        break;
    case -EBADMSG:
        /* Logged by db with its reason. Telegram retries a 500, so nothing is lost. */
        respond_text(t->conn, 500, "update rejected by the database\n", NULL);
        break;
    default:
        respond_unavailable(t->conn, "update not stored, retry\n");
        break;
    }
}

static void store(tg_webhook_t *wh, http_conn_t *c, const tg_update_info_t *info, char *body,
                  size_t len)
{
    webhook_txn_t *t = http_conn_scratch(c);
    memset(t, 0, sizeof(*t));
    clock_gettime(CLOCK_MONOTONIC, &t->t0);
    t->conn = c;
    t->proc = wh->proc;
    t->u.update_id = info->update_id;
    t->u.body = body;
    t->u.body_len = len;
    t->u.has_chat = info->has_chat;
    t->u.chat_id = info->chat_id;
    t->u.type = info->type_name;
    t->u.type_len = info->type_name_len;
    t->u.has_from = info->has_from;
    t->u.from_id = info->from_id;
    t->u.cb = on_stored;
#ifdef TGRING_BENCH_NODB
    /* meson -Dbench_nodb=true: what the server costs without the database. Stores nothing. */
    http_respond(c, 200, NULL, NULL, NULL, 0, false);
    return;
#endif
    if (db_store(wh->db, &t->u) < 0)
        respond_unavailable(c, "database unavailable, retry\n");
}

static void respond_metrics(tg_webhook_t *wh, http_conn_t *c)
{
    met_sample_rss();
    int n = met_render(wh->metrics_buf, TG_WEBHOOK_METRICS_BUF);
    if (n < 0) {
        respond_text(c, 500, "metrics do not fit\n", NULL);
        return;
    }
    http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, wh->metrics_buf,
                 (size_t)n, false);
}

void tg_webhook_on_request(http_server_t *s, http_conn_t *c, const http_request_t *req, char *body,
                           size_t len)
{
    tg_webhook_t *wh = http_server_data(s);
    tg_webhook_state_t st = {.db_ready = db_ready(wh->db), .stopping = wh->stopping};
    tg_json_scratch_t scratch = {wh->tokens, TG_WEBHOOK_JSON_TOKENS};
    tg_webhook_verdict_t v;
    tg_webhook_decide(wh->bot, &st, req, body, len, &scratch, &v);
    switch (v.what) {
    case TG_WEBHOOK_STORE:
        store(wh, c, &v.info, body, len);
        return;
    case TG_WEBHOOK_METRICS:
        respond_metrics(wh, c);
        return;
    case TG_WEBHOOK_RESPOND:
        break;
    }
    if (v.event != NULL)
        log_debug(v.event, "conn=%llu %s", (unsigned long long)http_conn_id(c), v.why);
    if (v.unavailable)
        met_self()->updates_unavailable++;
    respond_text(c, v.status, v.text, v.extra);
}
