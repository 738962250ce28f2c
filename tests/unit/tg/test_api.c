/* SPDX-License-Identifier: MIT */
/*
 * test_api.c - unit tests for tg_api_parse, tg_api_classify and the
 * tg_api_get_* helpers: real Bot API answers (getMe, sendMessage,
 * getWebhookInfo, each error Telegram sends), proxies' pages, malformed and
 * oversized bodies, and description unescaping. Every body is parsed from
 * right after and right before a PROT_NONE page, so a stray read crashes.
 */
#include "tap.h"
#include "tg_api.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bodies are copied read-only, right after or right before a PROT_NONE page. */
static tap_guard_t guard;

static int placement_mismatches;

/*
 * Parses body[0..len) in both guard placements; they must agree. The result
 * view in *out points into the last placement, valid until the next call.
 */
static int parse_len(const char *body, size_t len, int status, int64_t hdr, tg_api_result_t *out)
{
    tg_api_result_t a;
    const char *p = tap_guard_copy(&guard, body, len, TAP_GUARD_START | TAP_GUARD_RO);
    int ra = tg_api_parse(p, len, status, hdr, &a);
    ptrdiff_t aoff = a.result ? a.result - p : -1;
    const char *q = tap_guard_copy(&guard, body, len, TAP_GUARD_END | TAP_GUARD_RO);
    int rb = tg_api_parse(q, len, status, hdr, out);
    ptrdiff_t boff = out->result ? out->result - q : -1;
    if (ra != rb || a.ok != out->ok || a.json != out->json || a.error_code != out->error_code ||
        a.retry_after != out->retry_after || a.has_migrate != out->has_migrate ||
        a.migrate_to_chat_id != out->migrate_to_chat_id || aoff != boff ||
        a.result_len != out->result_len || strcmp(a.description, out->description) != 0 ||
        a.description_len != out->description_len) {
        placement_mismatches++;
        printf("# placement changes the result of %.60s\n", body);
    }
    return rb;
}

static int parse(const char *body, int status, int64_t hdr, tg_api_result_t *out)
{
    return parse_len(body, strlen(body), status, hdr, out);
}

static bool view_is(const char *v, size_t vlen, const char *want)
{
    if (want == NULL)
        return v == NULL && vlen == 0;
    return v != NULL && vlen == strlen(want) && memcmp(v, want, vlen) == 0;
}

static const char *cls(const tg_api_result_t *r)
{
    return tg_api_class_name(tg_api_classify(r));
}

/* ---- successful answers -------------------------------------------------------------- */

static const char get_me_result[] =
    "{\"id\":123456,\"is_bot\":true,\"first_name\":\"Quit Smoking\","
    "\"username\":\"quit_smoking_test_bot\",\"can_join_groups\":true,"
    "\"can_read_all_group_messages\":false,\"supports_inline_queries\":false}";

static void test_get_me(void)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"ok\":true,\"result\":%s}", get_me_result);
    tg_api_result_t r;
    int rc = parse(body, 200, -1, &r);
    tap_ok(rc == 0 && r.json && r.ok && r.error_code == 200 && r.http_status == 200,
           "getMe: parsed, ok, error_code is the status");
    tap_ok(tg_api_classify(&r) == TG_API_OK, "getMe: class ok");
    tap_ok(view_is(r.result, r.result_len, get_me_result), "getMe: result view is the raw object");
    tap_ok(r.retry_after == -1 && !r.has_migrate && r.description_len == 0 &&
               r.description[0] == '\0',
           "getMe: no retry_after, migrate or description");

    char name[64];
    int n = tg_api_get_string(r.result, r.result_len, "username", name, sizeof(name));
    tap_ok(n == 21 && strcmp(name, "quit_smoking_test_bot") == 0, "getMe: username read (%d)", n);
    int64_t id = 0;
    tap_ok(tg_api_get_int(r.result, r.result_len, "id", &id) == 0 && id == 123456,
           "getMe: id read");
    bool b = false;
    tap_ok(tg_api_get_bool(r.result, r.result_len, "is_bot", &b) == 0 && b, "getMe: is_bot read");
    tap_ok(tg_api_get_bool(r.result, r.result_len, "can_read_all_group_messages", &b) == 0 && !b,
           "getMe: a false bool read");
    tap_ok(tg_api_get_string(r.result, r.result_len, "last_name", name, sizeof(name)) == -ENOENT,
           "getMe: absent member is -ENOENT");
    tap_ok(tg_api_get_string(r.result, r.result_len, "id", name, sizeof(name)) == -EINVAL,
           "get_string on a number is -EINVAL");
    tap_ok(tg_api_get_int(r.result, r.result_len, "username", &id) == -EINVAL && id == 123456,
           "get_int on a string is -EINVAL and leaves *out");
    tap_ok(tg_api_get_bool(r.result, r.result_len, "id", &b) == -EINVAL,
           "get_bool on a number is -EINVAL");
}

static void test_send_message(void)
{
    const char *body =
        "{\"ok\":true,\"result\":{\"message_id\":42,\"from\":{\"id\":123456,\"is_bot\":true,"
        "\"first_name\":\"Quit Smoking\",\"username\":\"quit_smoking_test_bot\"},"
        "\"chat\":{\"id\":5,\"first_name\":\"A\",\"type\":\"private\"},\"date\":1700000000,"
        "\"text\":\"hello \\\"you\\\"\"}}";
    tg_api_result_t r;
    tap_ok(parse(body, 200, -1, &r) == 0 && tg_api_classify(&r) == TG_API_OK, "sendMessage: ok");
    int64_t mid = 0;
    tap_ok(tg_api_get_int(r.result, r.result_len, "message_id", &mid) == 0 && mid == 42,
           "sendMessage: message_id read from the result");
    /* Only top-level members: "id" lives inside "from" and "chat". */
    tap_ok(tg_api_get_int(r.result, r.result_len, "id", &mid) == -ENOENT,
           "get_int does not descend into nested objects");
    const char *v;
    size_t vlen;
    tap_ok(tg_api_get_raw(r.result, r.result_len, "chat", &v, &vlen) == 0 &&
               view_is(v, vlen, "{\"id\":5,\"first_name\":\"A\",\"type\":\"private\"}"),
           "get_raw gives a nested object's text");
    int64_t cid = 0;
    tap_ok(tg_api_get_int(v, vlen, "id", &cid) == 0 && cid == 5, "and get_int reads into it");
    tap_ok(tg_api_get_raw(r.result, r.result_len, "text", &v, &vlen) == 0 &&
               view_is(v, vlen, "\"hello \\\"you\\\"\""),
           "get_raw keeps a string's quotes and escapes");
    char text[32];
    tap_ok(tg_api_get_string(r.result, r.result_len, "text", text, sizeof(text)) == 11 &&
               strcmp(text, "hello \"you\"") == 0,
           "get_string unescapes");
}

static void test_webhook_info(void)
{
    const char *body =
        "{\"ok\":true,\"result\":{\"url\":\"https://example.com/webhook/telegram\","
        "\"has_custom_certificate\":false,\"pending_update_count\":17,"
        "\"last_error_date\":1700000000,\"last_error_message\":\"Wrong response from the "
        "webhook: 503 Service Unavailable\",\"max_connections\":40,"
        "\"ip_address\":\"1.2.3.4\",\"allowed_updates\":[\"message\",\"callback_query\"],"
        "\"last_synchronization_error_date\":null}}";
    tg_api_result_t r;
    tap_ok(parse(body, 200, -1, &r) == 0 && r.ok, "getWebhookInfo: ok");
    int64_t n = -1;
    tap_ok(tg_api_get_int(r.result, r.result_len, "pending_update_count", &n) == 0 && n == 17,
           "getWebhookInfo: pending_update_count");
    char msg[128];
    int len = tg_api_get_string(r.result, r.result_len, "last_error_message", msg, sizeof(msg));
    tap_ok(len == 56 &&
               strcmp(msg, "Wrong response from the webhook: 503 Service Unavailable") == 0,
           "getWebhookInfo: last_error_message (%d)", len);
    const char *v;
    size_t vlen;
    tap_ok(tg_api_get_raw(r.result, r.result_len, "allowed_updates", &v, &vlen) == 0 &&
               view_is(v, vlen, "[\"message\",\"callback_query\"]"),
           "getWebhookInfo: allowed_updates raw");
    tap_ok(tg_api_get_int(r.result, r.result_len, "last_synchronization_error_date", &n) == -ENOENT,
           "get_int on null is -ENOENT");
    tap_ok(tg_api_get_string(r.result, r.result_len, "last_synchronization_error_date", msg,
                             sizeof(msg)) == -ENOENT,
           "get_string on null is -ENOENT");

    /* A cut string: snprintf's contract, at a character boundary. */
    char small[10];
    len = tg_api_get_string(r.result, r.result_len, "url", small, sizeof(small));
    tap_ok(len == 36 && strcmp(small, "https://e") == 0,
           "get_string cuts and returns the full length");
    const char *utf = "{\"s\":\"\xc3\xa9\xc3\xa9\xc3\xa9\"}";
    char four[4];
    len = tg_api_get_string(utf, strlen(utf), "s", four, sizeof(four));
    tap_ok(len == 6 && strcmp(four, "\xc3\xa9") == 0, "get_string cuts between characters");
    tap_ok(tg_api_get_string(utf, strlen(utf), "s", NULL, 0) == 6,
           "get_string with cap 0 measures");

    tap_ok(tg_api_get_int("[1]", 3, "a", &n) == -EINVAL, "get_int on an array is -EINVAL");
    tap_ok(tg_api_get_int("{\"a\":1", 6, "a", &n) == -EINVAL, "get_int on a truncated object");
    tap_ok(tg_api_get_int(NULL, 0, "a", &n) == -EINVAL, "get_int on NULL");
    tap_ok(tg_api_get_int("{\"a\":1.5}", 9, "a", &n) == -EINVAL, "get_int on a fraction");
    tap_ok(tg_api_get_int("{\"a\":1e3}", 9, "a", &n) == -EINVAL, "get_int on an exponent");
    tap_ok(tg_api_get_int("{\"a\":01}", 8, "a", &n) == -EINVAL, "get_int on a leading zero");
    tap_ok(tg_api_get_int("{\"a\":9223372036854775807}", 25, "a", &n) == 0 && n == INT64_MAX,
           "get_int at INT64_MAX");
    tap_ok(tg_api_get_int("{\"a\":-9223372036854775808}", 26, "a", &n) == 0 && n == INT64_MIN,
           "get_int at INT64_MIN");
    tap_ok(tg_api_get_int("{\"a\":9223372036854775808}", 25, "a", &n) == -EINVAL,
           "get_int past INT64_MAX");
    tap_ok(tg_api_get_bool("{\"a\":tru}", 9, "a", &(bool){0}) == -EINVAL, "get_bool on tru");
}

static void test_result_kinds(void)
{
    tg_api_result_t r;
    tap_ok(parse("{\"ok\":true,\"result\":true}", 200, -1, &r) == 0 &&
               view_is(r.result, r.result_len, "true"),
           "setWebhook: result true");
    tap_ok(parse("{\"ok\":true,\"result\":\"x\\\"y\"}", 200, -1, &r) == 0 &&
               view_is(r.result, r.result_len, "\"x\\\"y\""),
           "a string result keeps its quotes");
    tap_ok(parse("{\"ok\":true,\"result\":[]}", 200, -1, &r) == 0 &&
               view_is(r.result, r.result_len, "[]"),
           "an array result");
    tap_ok(parse("{\"ok\":true}", 200, -1, &r) == 0 && r.ok && r.result == NULL,
           "no result: NULL view");
    tap_ok(parse(" \r\n{\"result\":1,\"ok\":true} \n", 200, -1, &r) == 0 && r.ok &&
               view_is(r.result, r.result_len, "1"),
           "whitespace around and ok after result");
    tap_ok(parse("{\"ok\":true,\"ok\":false}", 200, -1, &r) == 0 && r.ok, "the first key wins");
}

/* ---- errors -------------------------------------------------------------------------- */

static void test_errors(void)
{
    tg_api_result_t r;
    int rc = parse("{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: retry "
                   "after 5\",\"parameters\":{\"retry_after\":5}}",
                   429, 7, &r);
    tap_ok(rc == 0 && r.json && !r.ok && r.error_code == 429 && r.retry_after == 5,
           "429: parameters.retry_after wins over the header");
    tap_ok(strcmp(r.description, "Too Many Requests: retry after 5") == 0 &&
               r.description_len == 32 && !r.description_cut,
           "429: description");
    tap_ok(tg_api_classify(&r) == TG_API_RETRY_AFTER && strcmp(cls(&r), "retry_after") == 0,
           "429: class retry_after");

    parse("{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests\"}", 429, 3, &r);
    tap_ok(r.retry_after == 3 && tg_api_classify(&r) == TG_API_RETRY_AFTER,
           "429 without parameters: the header's value");
    parse("{\"ok\":false,\"error_code\":429}", 429, -1, &r);
    tap_ok(r.retry_after == -1 && tg_api_classify(&r) == TG_API_RETRY_AFTER,
           "429 with neither: -1, still retry_after");
    rc = parse("<html>429 Too Many Requests</html>", 429, 2, &r);
    tap_ok(rc == -EBADMSG && !r.json && r.error_code == 429 && r.retry_after == 2 &&
               tg_api_classify(&r) == TG_API_RETRY_AFTER,
           "429 from a proxy (HTML): retry_after from the header");

    rc = parse("{\"ok\":false,\"error_code\":400,\"description\":\"Bad Request: group chat was "
               "upgraded to a supergroup chat\",\"parameters\":{\"migrate_to_chat_id\":"
               "-1001234567890}}",
               400, -1, &r);
    tap_ok(rc == 0 && r.has_migrate && r.migrate_to_chat_id == -1001234567890 &&
               tg_api_classify(&r) == TG_API_MIGRATE,
           "400 with migrate_to_chat_id: migrate");

    struct {
        int status;
        const char *desc;
        tg_api_class_t want;
    } cases[] = {
        {400, "Bad Request: chat not found", TG_API_FINAL},
        {400, "Bad Request: message text is empty", TG_API_FINAL},
        {401, "Unauthorized", TG_API_FINAL},
        {403, "Forbidden: bot was blocked by the user", TG_API_FINAL},
        {404, "Not Found", TG_API_FINAL},
        {409, "Conflict: can't use getUpdates method while webhook is active", TG_API_FINAL},
        {500, "Internal Server Error", TG_API_RETRY},
        {502, "Bad Gateway", TG_API_RETRY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256];
        snprintf(body, sizeof(body), "{\"ok\":false,\"error_code\":%d,\"description\":\"%s\"}",
                 cases[i].status, cases[i].desc);
        rc = parse(body, cases[i].status, -1, &r);
        tap_ok(rc == 0 && !r.ok && r.error_code == cases[i].status &&
                   strcmp(r.description, cases[i].desc) == 0 &&
                   tg_api_classify(&r) == cases[i].want,
               "%d %s: %s", cases[i].status, cases[i].desc, cls(&r));
    }

    /* The body's error_code wins over the status; a bad one falls back to the status. */
    parse("{\"ok\":false,\"error_code\":403}", 400, -1, &r);
    tap_ok(r.error_code == 403, "error_code from the body");
    const char *bad_codes[] = {"\"400\"", "4e2", "400.0", "-400", "99", "600", "null", "true"};
    for (size_t i = 0; i < sizeof(bad_codes) / sizeof(bad_codes[0]); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"ok\":false,\"error_code\":%s}", bad_codes[i]);
        parse(body, 502, -1, &r);
        tap_ok(r.json && r.error_code == 502 && tg_api_classify(&r) == TG_API_RETRY,
               "error_code %s: the status instead", bad_codes[i]);
    }
    const char *bad_ra[] = {"-1", "2.5", "\"5\"", "2147483648", "null"};
    for (size_t i = 0; i < sizeof(bad_ra) / sizeof(bad_ra[0]); i++) {
        char body[128];
        snprintf(body, sizeof(body),
                 "{\"ok\":false,\"error_code\":429,\"parameters\":{\"retry_after\":%s}}",
                 bad_ra[i]);
        parse(body, 429, 9, &r);
        tap_ok(r.retry_after == 9, "retry_after %s: ignored, the header instead", bad_ra[i]);
    }
    parse("{\"ok\":false,\"error_code\":429,\"parameters\":{\"retry_after\":2147483647}}", 429, -1,
          &r);
    tap_ok(r.retry_after == INT32_MAX, "retry_after at INT32_MAX is taken");
    parse("{\"ok\":false,\"error_code\":429}", 429, (int64_t)INT32_MAX + 1, &r);
    tap_ok(r.retry_after == -1, "a header past INT32_MAX is ignored");
    parse("{\"ok\":false,\"error_code\":400,\"parameters\":{\"migrate_to_chat_id\":0}}", 400, -1,
          &r);
    tap_ok(!r.has_migrate && tg_api_classify(&r) == TG_API_FINAL,
           "migrate_to_chat_id 0 is no chat");
    parse("{\"ok\":false,\"error_code\":400,\"parameters\":[{\"migrate_to_chat_id\":-5}]}", 400, -1,
          &r);
    tap_ok(!r.has_migrate, "parameters that are not an object are ignored");
    parse("{\"ok\":false,\"error_code\":400,\"migrate_to_chat_id\":-5}", 400, -1, &r);
    tap_ok(!r.has_migrate, "migrate_to_chat_id outside parameters is ignored");

    /* Odd combinations. */
    parse("{\"ok\":false}", 200, -1, &r);
    tap_ok(tg_api_classify(&r) == TG_API_RETRY, "ok:false with 200 and no code: retry");
    parse("{\"ok\":true,\"error_code\":400}", 400, -1, &r);
    tap_ok(tg_api_classify(&r) == TG_API_OK, "ok:true wins");
}

static void test_not_json(void)
{
    tg_api_result_t r;
    struct {
        const char *body;
        int status;
        const char *why;
    } cases[] = {
        {"", 502, "empty"},
        {"<html><body>502 Bad Gateway</body></html>", 502, "HTML 502"},
        {"<html>ok</html>", 200, "HTML 200 (captive portal)"},
        {"{\"ok\":true", 200, "truncated"},
        {"{\"ok\":true,\"result\":{\"a\":", 200, "truncated in result"},
        {"{\"ok\":\"true\"}", 200, "ok as a string"},
        {"{\"ok\":1}", 200, "ok as a number"},
        {"{\"ok\":tru}", 200, "ok as tru"},
        {"{\"result\":{\"ok\":true}}", 200, "ok only nested"},
        {"{\"o\\u006b\":true}", 200, "ok spelt with an escape"},
        {"[{\"ok\":true}]", 200, "an array"},
        {"\"ok\"", 200, "a string"},
        {"{\"ok\":true} {\"ok\":false}", 200, "two values"},
        {"{\"ok\":true}x", 200, "trailing garbage"},
        {"{\"ok\":true}}", 200, "extra brace"},
        {"{}", 200, "empty object"},
        {"   ", 200, "whitespace"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = parse(cases[i].body, cases[i].status, 4, &r);
        tap_ok(rc == -EBADMSG && !r.json && !r.ok && r.error_code == cases[i].status &&
                   r.retry_after == 4 && r.result == NULL && tg_api_classify(&r) == TG_API_RETRY,
               "not an answer: %s", cases[i].why);
    }
    /* A NUL byte stops jsmn; the text after it must not be ignored. */
    static const char nul[] = "{\"ok\":true}\0{";
    tap_ok(parse_len(nul, sizeof(nul) - 1, 200, -1, &r) == -EBADMSG, "NUL after the object");
    static const char nul2[] = "{\"ok\":true,\0\"x\":1}";
    tap_ok(parse_len(nul2, sizeof(nul2) - 1, 200, -1, &r) == -EBADMSG, "NUL inside the object");
    tap_ok(tg_api_parse(NULL, 0, 503, -1, &r) == -EBADMSG && r.error_code == 503 &&
               tg_api_classify(&r) == TG_API_RETRY,
           "NULL body");
}

/* ---- descriptions -------------------------------------------------------------------- */

static void test_description(void)
{
    tg_api_result_t r;
    parse("{\"ok\":false,\"error_code\":400,\"description\":"
          "\"a\\nb\\t\\\"q\\\"\\\\\\/ \\u00e9 \\ud83d\\ude00 \\ud800x \\udc00 \\u0000 "
          "\xc3\xa9 \xff z\"}",
          400, -1, &r);
    const char *want = "a\nb\t\"q\"\\/ \xc3\xa9 \xf0\x9f\x98\x80 \xef\xbf\xbdx \xef\xbf\xbd "
                       "\xef\xbf\xbd \xc3\xa9 \xef\xbf\xbd z";
    tap_ok(strcmp(r.description, want) == 0 && r.description_len == strlen(want),
           "description: escapes, surrogate pairs, lone surrogates, NUL and bad UTF-8");

    /* 200 two-byte characters: kept up to 255 bytes means 127 characters. */
    char body[1024];
    int n = snprintf(body, sizeof(body), "{\"ok\":false,\"error_code\":400,\"description\":\"");
    for (int i = 0; i < 200; i++)
        n += snprintf(body + n, sizeof(body) - (size_t)n, "\xc3\xa9");
    snprintf(body + n, sizeof(body) - (size_t)n, "\"}");
    parse(body, 400, -1, &r);
    tap_ok(r.description_cut && r.description_len == 254 && strlen(r.description) == 254,
           "a long description is cut at a character boundary (%zu)", r.description_len);

    n = snprintf(body, sizeof(body), "{\"ok\":false,\"error_code\":400,\"description\":\"");
    for (int i = 0; i < 255; i++)
        body[n++] = 'x';
    snprintf(body + n, sizeof(body) - (size_t)n, "\"}");
    parse(body, 400, -1, &r);
    tap_ok(!r.description_cut && r.description_len == 255, "255 bytes fit exactly");
    body[n] = 'y';
    snprintf(body + n + 1, sizeof(body) - (size_t)n - 1, "\"}");
    parse(body, 400, -1, &r);
    tap_ok(r.description_cut && r.description_len == 255, "256 bytes are cut");

    parse("{\"ok\":false,\"error_code\":400,\"description\":5}", 400, -1, &r);
    tap_ok(r.description_len == 0 && r.description[0] == '\0',
           "a non-string description is ignored");
}

/* ---- oversized answers --------------------------------------------------------------- */

/* {"ok":<ok>,<pre>"result":[0,0,...]} with `elems` elements, in a static buffer. */
static const char *big_body(const char *head, unsigned elems, const char *tail, size_t *len)
{
    static char buf[1 << 16];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", head);
    for (unsigned i = 0; i < elems; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, i ? ",0" : "0");
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s", tail);
    *len = n;
    return buf;
}

static void test_too_big(void)
{
    tg_api_result_t r;
    size_t len;
    const char *b = big_body("{\"ok\":true,\"result\":[", 2000, "]}", &len);
    int rc = parse_len(b, len, 200, -1, &r);
    tap_ok(rc == -E2BIG && r.json && r.ok && r.result == NULL && tg_api_classify(&r) == TG_API_OK,
           "a huge result: ok read before the cut");

    b = big_body("{\"ok\":false,\"error_code\":429,\"parameters\":{\"retry_after\":8},\"x\":[",
                 2000, "]}", &len);
    rc = parse_len(b, len, 429, -1, &r);
    tap_ok(rc == -E2BIG && r.json && !r.ok && r.retry_after == 8 &&
               tg_api_classify(&r) == TG_API_RETRY_AFTER,
           "error fields read before the cut");

    b = big_body("{\"x\":[", 2000, "],\"ok\":true}", &len);
    rc = parse_len(b, len, 200, -1, &r);
    tap_ok(rc == -E2BIG && !r.json && r.ok && tg_api_classify(&r) == TG_API_OK,
           "ok after the cut, 200: ok from the status");
    rc = parse_len(b, len, 500, -1, &r);
    tap_ok(rc == -E2BIG && !r.json && !r.ok && tg_api_classify(&r) == TG_API_RETRY,
           "ok after the cut, 500: retry");

    b = big_body("{\"ok\":true,\"result\":[", TG_API_MAX_TOKENS - 5, "]}", &len);
    rc = parse_len(b, len, 200, -1, &r);
    tap_ok(rc == 0 && r.result != NULL && r.result_len == len - 21, "exactly the token limit fits");
    b = big_body("{\"ok\":true,\"result\":[", TG_API_MAX_TOKENS - 4, "]}", &len);
    rc = parse_len(b, len, 200, -1, &r);
    tap_ok(rc == -E2BIG && r.ok && r.result == NULL, "one token more is cut");

    b = big_body("[", 2000, "]", &len);
    tap_ok(parse_len(b, len, 200, -1, &r) == -EBADMSG, "a huge array is not an answer");

    b = big_body("{\"a\":[", 2000, "],\"b\":1}", &len);
    int64_t v;
    tap_ok(tg_api_get_int(b, len, "b", &v) == -EINVAL, "get_int past the token limit: -EINVAL");
    b = big_body("{\"b\":1,\"a\":[", 2000, "]}", &len);
    tap_ok(tg_api_get_int(b, len, "b", &v) == 0 && v == 1, "get_int before the token limit");

    /* Deep nesting: bounded by the token array, nothing recurses. */
    static char deep[200000];
    size_t d = 0;
    d += (size_t)snprintf(deep, sizeof(deep), "{\"ok\":true,\"result\":");
    for (int i = 0; i < 50000; i++)
        deep[d++] = '[';
    for (int i = 0; i < 50000; i++)
        deep[d++] = ']';
    deep[d++] = '}';
    rc = parse_len(deep, d, 200, -1, &r);
    tap_ok(rc == -E2BIG && r.ok, "50000 levels deep: cut, ok still read");
}

int main(void)
{
    test_get_me();
    test_send_message();
    test_webhook_info();
    test_result_kinds();
    test_errors();
    test_not_json();
    test_description();
    test_too_big();
    tap_ok(placement_mismatches == 0, "both guard placements agree (%d mismatches)",
           placement_mismatches);
    tap_ok(strcmp(tg_api_class_name(TG_API_FINAL), "final") == 0 &&
               strcmp(tg_api_class_name(TG_API_MIGRATE), "migrate") == 0 &&
               strcmp(tg_api_class_name(TG_API_RETRY), "retry") == 0 &&
               strcmp(tg_api_class_name(TG_API_OK), "ok") == 0 &&
               strcmp(tg_api_class_name((tg_api_class_t)99), "unknown") == 0,
           "class names");
    return tap_done();
}
