/* SPDX-License-Identifier: MIT */
/*
 * test_webhook.c - unit tests for the webhook endpoint's decisions
 * (tg_webhook_decide): routing, methods, the secret check, the update check,
 * and the answers that depend on the database and on shutdown. Requests are
 * real HTTP heads run through the request parser.
 */
#include "tap.h"
#include "tg_webhook.h"

#include <stdio.h>
#include <string.h>

#define SECRET "Wh-secret_0123456789"

static jsmntok_t tokens[TG_WEBHOOK_JSON_TOKENS];
static char head[4096];
static http_request_t req;

static tg_bot_t bot = {
    .webhook_secret = SECRET,
    .webhook_secret_len = sizeof(SECRET) - 1,
    .webhook_path = "/webhook/telegram",
    .webhook_path_len = sizeof("/webhook/telegram") - 1,
};

/*
 * Decides `method path` with optional secret header `secret` and `body`,
 * with `ntok` JSON tokens of scratch. Returns the verdict.
 */
static tg_webhook_verdict_t decide_n(const char *method, const char *path, const char *secret,
                                     const char *body, const tg_webhook_state_t *st, unsigned ntok)
{
    int n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: x\r\n", method, path);
    if (secret != NULL)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "%s: %s\r\n", TG_WEBHOOK_SECRET_HEADER,
                      secret);
    snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n\r\n",
             body ? strlen(body) : 0);
    http_limits_t lim = HTTP_LIMITS_DEFAULT;
    if (http_parse_request(head, strlen(head), &lim, &req) <= 0)
        tap_diag("request head did not parse: %s", head);
    tg_json_scratch_t scratch = {tokens, ntok};
    tg_webhook_verdict_t v;
    tg_webhook_decide(&bot, st, &req, body ? body : "", body ? strlen(body) : 0, &scratch, &v);
    return v;
}

static const tg_webhook_state_t up = {.db_ready = true, .stopping = false};
static const tg_webhook_state_t down = {.db_ready = false, .stopping = false};
static const tg_webhook_state_t stopping = {.db_ready = true, .stopping = true};

static tg_webhook_verdict_t decide(const char *method, const char *path, const char *secret,
                                   const char *body, const tg_webhook_state_t *st)
{
    return decide_n(method, path, secret, body, st, TG_WEBHOOK_JSON_TOKENS);
}

static bool answers(tg_webhook_verdict_t v, int status, const char *text)
{
    return v.what == TG_WEBHOOK_RESPOND && v.status == status && strcmp(v.text, text) == 0;
}

#define UPDATE "{\"update_id\":7,\"message\":{\"chat\":{\"id\":-42,\"type\":\"group\"}," \
               "\"from\":{\"id\":9}}}"

static void test_webhook_post(void)
{
    tg_webhook_verdict_t v = decide("POST", "/webhook/telegram", SECRET, UPDATE, &up);
    tap_ok(v.what == TG_WEBHOOK_STORE && v.info.update_id == 7 && v.info.has_chat &&
               v.info.chat_id == -42 && v.info.has_from && v.info.from_id == 9 &&
               v.info.type_name_len == 7 && memcmp(v.info.type_name, "message", 7) == 0,
           "a valid update with the right secret is stored, with what the inbox needs");
    v = decide("POST", "/webhook/telegram", SECRET, UPDATE, &down);
    tap_ok(v.what == TG_WEBHOOK_STORE,
           "a valid update is handed to the inbox even while the database is not ready");

    v = decide("POST", "/webhook/telegram", NULL, UPDATE, &up);
    tap_ok(answers(v, 401, "wrong or missing secret token\n") && v.event != NULL,
           "no secret header: 401, logged");
    v = decide("POST", "/webhook/telegram", SECRET "x", UPDATE, &up);
    tap_ok(answers(v, 401, "wrong or missing secret token\n"), "a longer secret: 401");
    v = decide("POST", "/webhook/telegram", "Wh-secret_012345678", UPDATE, &up);
    tap_ok(answers(v, 401, "wrong or missing secret token\n"), "a prefix of the secret: 401");
    v = decide("POST", "/webhook/telegram", "Wh-secret_0123456780", UPDATE, &up);
    tap_ok(answers(v, 401, "wrong or missing secret token\n"),
           "same length, last byte differs: 401");
    v = decide("POST", "/webhook/telegram", SECRET, "{\"update_id\":", &stopping);
    tap_ok(answers(v, 400, "malformed JSON or missing update_id\n") && v.event != NULL,
           "the secret is checked before the body; a malformed body is 400");
    v = decide("POST", "/webhook/telegram", "nope", "{\"update_id\":", &up);
    tap_ok(v.status == 401, "a wrong secret wins over a malformed body");

    v = decide("POST", "/webhook/telegram", SECRET, "{\"message\":{}}", &up);
    tap_ok(answers(v, 400, "malformed JSON or missing update_id\n"), "no update_id: 400");
    v = decide("POST", "/webhook/telegram", SECRET, "", &up);
    tap_ok(answers(v, 400, "malformed JSON or missing update_id\n"), "an empty body: 400");
    v = decide_n("POST", "/webhook/telegram", SECRET, UPDATE, &up, 4);
    tap_ok(answers(v, 413, "update too complex\n"), "more JSON tokens than the scratch: 413");

    v = decide("POST", "/webhook/telegram", SECRET, UPDATE, &stopping);
    tap_ok(answers(v, 503, "database unavailable, retry\n") && v.unavailable &&
               strcmp(v.extra, "Retry-After: 1\r\n") == 0,
           "while stopping a valid update is 503 + Retry-After, counted as unavailable");

    v = decide("GET", "/webhook/telegram", SECRET, NULL, &up);
    tap_ok(answers(v, 405, "use POST\n") && strcmp(v.extra, "Allow: POST\r\n") == 0,
           "GET on the webhook path: 405 with Allow: POST");
    v = decide("PUT", "/webhook/telegram", NULL, UPDATE, &up);
    tap_ok(v.status == 405, "the method is checked before the secret");
    v = decide("post", "/webhook/telegram", SECRET, UPDATE, &up);
    tap_ok(answers(v, 405, "use POST\n") && strcmp(v.extra, "Allow: POST\r\n") == 0,
           "methods are case-sensitive: \"post\" with a valid update is 405, not stored");
    v = decide("Post", "/webhook/telegram", SECRET, UPDATE, &up);
    tap_ok(v.status == 405 && v.what != TG_WEBHOOK_STORE, "\"Post\": 405");
    v = decide("POST", "/webhook/telegram?x=1", SECRET, UPDATE, &up);
    tap_ok(v.what == TG_WEBHOOK_STORE, "a query string does not change the route");
    v = decide("POST", "/webhook/telegra", SECRET, UPDATE, &up);
    tap_ok(answers(v, 404, "not found\n"), "a prefix of the path: 404");
    v = decide("POST", "/webhook/telegram/", SECRET, UPDATE, &up);
    tap_ok(answers(v, 404, "not found\n"), "a longer path: 404");

    tg_bot_t nosecret = bot;
    nosecret.webhook_secret = NULL;
    nosecret.webhook_secret_len = 0;
    http_header_t empty = {.name = TG_WEBHOOK_SECRET_HEADER, .value = "", .value_len = 0};
    tap_ok(!tg_webhook_secret_ok(&nosecret, &empty) && !tg_webhook_secret_ok(&bot, NULL) &&
               !tg_webhook_secret_ok(&bot, &empty),
           "no configured secret or an empty header never matches");
}

static void test_other_routes(void)
{
    tg_webhook_verdict_t v = decide("GET", "/health/live", NULL, NULL, &down);
    tap_ok(answers(v, 200, "ok\n"), "/health/live: 200 whatever the database");
    v = decide("GET", "/health/ready", NULL, NULL, &up);
    tap_ok(answers(v, 200, "ready\n"), "/health/ready: 200 when the database is ready");
    v = decide("GET", "/health/ready", NULL, NULL, &down);
    tap_ok(answers(v, 503, "database not ready\n") && strcmp(v.extra, "Retry-After: 1\r\n") == 0,
           "/health/ready: 503 + Retry-After while the database is not ready");
    v = decide("GET", "/health/ready", NULL, NULL, &stopping);
    tap_ok(answers(v, 503, "stopping\n"), "/health/ready: 503 stopping during shutdown");
    v = decide("GET", "/metrics", NULL, NULL, &down);
    tap_ok(v.what == TG_WEBHOOK_METRICS, "/metrics is rendered");
    v = decide("POST", "/metrics", NULL, NULL, &up);
    tap_ok(answers(v, 405, "use GET\n") && strcmp(v.extra, "Allow: GET\r\n") == 0,
           "POST /metrics: 405 with Allow: GET");
    v = decide("HEAD", "/health/live", NULL, NULL, &up);
    tap_ok(v.status == 405, "HEAD /health/live: 405");
    v = decide("get", "/metrics", NULL, NULL, &up);
    tap_ok(answers(v, 405, "use GET\n"), "get /metrics (lower case): 405");
    v = decide("GET", "/", NULL, NULL, &up);
    tap_ok(answers(v, 404, "not found\n"), "GET /: 404");
    v = decide("GET", "/health", NULL, NULL, &up);
    tap_ok(answers(v, 404, "not found\n"), "GET /health: 404");
}

int main(void)
{
    test_webhook_post();
    test_other_routes();
    return tap_done();
}
