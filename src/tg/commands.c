/* SPDX-License-Identifier: MIT */
/*
 * commands.c - the Bot API subcommands (set-webhook, delete-webhook,
 * webhook-info) on a blocking call of their own, the connection setup to
 * TELEGRAM_API_URL, and the getMe a worker makes at start.
 */
#include "tg_commands.h"

#include "core.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A Bot API call run to completion on a loop of its own. */
typedef struct sync_call {
    tg_call_t call;
    rx_loop_t *loop;
    int err;
    tg_sync_result_t *out;
} sync_call_t;

int tg_pool_open(rx_loop_t *loop, const cfg_t *cfg, tls_ctx_t **tls, httpc_pool_t **pool)
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

static void on_sync_call(tg_call_t *call, int err, const tg_api_result_t *res)
{
    sync_call_t *sc = container_of(call, sync_call_t, call);
    tg_sync_result_t *out = sc->out;
    sc->err = err;
    if (res != NULL) {
        out->res = *res;
        if (res->result != NULL) {
            out->result = xstrndup(res->result, res->result_len);
            out->result_len = res->result_len;
        }
        out->res.result = out->result;
    }
    rx_stop(sc->loop);
}

static void on_final(rx_loop_t *loop, rx_timer_t *t)
{
    rx_stop(loop);
}

int tg_call_sync(const tg_bot_t *bot, const cfg_t *cfg, const char *cmd, const char *method,
                 const char *json, size_t len, tg_sync_result_t *out)
{
    rx_loop_t loop;
    tls_ctx_t *tls;
    httpc_pool_t *pool;
    sync_call_t sc = {.out = out};
    memset(out, 0, sizeof(*out));
    int r = rx_loop_init(&loop, 64);
    if (r < 0) {
        fprintf(stderr, "tgring: %s\n", rx_strerror_setup(r));
        return 1;
    }
    if (tg_pool_open(&loop, cfg, &tls, &pool) < 0) {
        fprintf(stderr, "tgring: %s: cannot set up the connection to %s (see the log above)\n", cmd,
                cfg->api_url);
        rx_loop_dispose(&loop);
        return 1;
    }
    sc.loop = &loop;
    r = tg_call_start(&sc.call, pool, bot->token, method, json, len, 30000, on_sync_call);
    if (r == 0)
        rx_run(&loop);
    else
        sc.err = r;
    httpc_pool_free(pool);
    /* A short run lets the closes of the pool's connections complete. */
    rx_timer_t t = {0};
    rx_timer_start(&loop, &t, 20, on_final);
    rx_run(&loop);
    tls_ctx_free(tls);
    rx_loop_dispose(&loop);

    if (sc.err != 0) {
        fprintf(stderr, "tgring: %s: no answer from %s: %s\n", cmd, cfg->api_url,
                sc.err == -EKEYREJECTED ? "TLS certificate or handshake failure (see the log)"
                                        : strerror(-sc.err));
        return 1;
    }
    if (!out->res.ok) {
        fprintf(stderr, "tgring: %s: the Bot API answered %d: %s\n", cmd, out->res.error_code,
                out->res.description[0] ? out->res.description : "(no description)");
        if (out->res.error_code == 401 || out->res.error_code == 404)
            fprintf(stderr, "tgring: %s: check TELEGRAM_BOT_TOKEN\n", cmd);
        return 1;
    }
    return 0;
}

int tg_cmd_set_webhook(const tg_bot_t *bot, const cfg_t *cfg, bool drop_pending)
{
    char body[4096];
    tg_jw_t w;
    tg_jw_init(&w, body, sizeof(body));
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "url");
    tg_jw_str(&w, cfg->webhook_url, strlen(cfg->webhook_url));
    tg_jw_key(&w, "secret_token");
    tg_jw_str(&w, bot->webhook_secret, bot->webhook_secret_len);
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
    tg_sync_result_t sc;
    int rc = tg_call_sync(bot, cfg, "set-webhook", "setWebhook", body, (size_t)len, &sc);
    explicit_bzero(body, sizeof(body));
    if (rc == 0)
        printf("webhook set to %s (max_connections %u%s)\n", cfg->webhook_url,
               cfg->webhook_max_connections, drop_pending ? ", pending updates dropped" : "");
    free(sc.result);
    return rc;
}

int tg_cmd_delete_webhook(const tg_bot_t *bot, const cfg_t *cfg, bool drop_pending)
{
    const char *body = drop_pending ? "{\"drop_pending_updates\":true}" : "{}";
    tg_sync_result_t sc;
    int rc = tg_call_sync(bot, cfg, "delete-webhook", "deleteWebhook", body, strlen(body), &sc);
    if (rc == 0)
        printf("webhook deleted%s\n", drop_pending ? ", pending updates dropped" : "");
    free(sc.result);
    return rc;
}

int tg_cmd_webhook_info(const tg_bot_t *bot, const cfg_t *cfg)
{
    tg_sync_result_t sc;
    int rc = tg_call_sync(bot, cfg, "webhook-info", "getWebhookInfo", "{}", 2, &sc);
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
    int n = res->result == NULL
                ? -1
                : tg_api_get_string(res->result, res->result_len, "username", user, sizeof(user));
    if (n < 0) {
        strcpy(user, "(no username)");
    } else if ((size_t)n < TG_USERNAME_MAX) {
        tg_getme_t *g = container_of(call, tg_getme_t, call);
        memcpy(g->username, user, (size_t)n + 1);
    }
    log_info("bot_identified", "the bot is @%s", user);
}

int tg_getme_start(tg_getme_t *g, httpc_pool_t *pool, const char *token)
{
    int r = tg_call_start(&g->call, pool, token, "getMe", "{}", 2, 30000, on_getme);
    if (r < 0)
        log_warn("getme_failed", "getMe could not be queued");
    return r;
}
