/* SPDX-License-Identifier: MIT */
/*
 * fuzz_api_response.c - libFuzzer target for tg_api_parse, tg_api_classify and
 * the tg_api_get_* helpers, over any bytes as a Bot API answer.
 *
 * Aborts when an invariant breaks, for a few HTTP statuses and Retry-After
 * values: the result is 0, -EBADMSG or -E2BIG, and -E2BIG only
 * when the body can hold more tokens than TG_API_MAX_TOKENS; -EBADMSG leaves
 * only what the status and header say; the result view lies inside the body;
 * the description is NUL-free well-formed UTF-8 of the length given; the class
 * follows the documented order; parsing twice, or with whitespace around,
 * gives the same answer; the helpers agree with the parse about "ok".
 *
 * Built by hand with -DTG_FUZZ_JANSSON and -ljansson, it also checks the
 * reading of every body that jansson accepts as an object with a boolean
 * "ok", no duplicate keys, no escapes and no NUL byte, against jansson's.
 */
#include "fuzz.h"
#include "tg_api.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TG_FUZZ_JANSSON
#include <jansson.h>
#endif

static void check(bool cond)
{
    if (!cond)
        abort();
}

static bool inside(const char *v, size_t vlen, const char *base, size_t len)
{
    return v >= base && vlen <= len && (size_t)(v - base) <= len - vlen;
}

static bool same(const tg_api_result_t *a, const char *abase, const tg_api_result_t *b,
                 const char *bbase)
{
    ptrdiff_t ao = a->result ? a->result - abase : -1;
    ptrdiff_t bo = b->result ? b->result - bbase : -1;
    return a->json == b->json && a->ok == b->ok && a->http_status == b->http_status &&
           a->error_code == b->error_code && a->retry_after == b->retry_after &&
           a->has_migrate == b->has_migrate && a->migrate_to_chat_id == b->migrate_to_chat_id &&
           (ao < 0) == (bo < 0) && a->result_len == b->result_len &&
           a->description_len == b->description_len &&
           memcmp(a->description, b->description, sizeof(a->description)) == 0 &&
           a->description_cut == b->description_cut;
}

static bool utf8_ok(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = tg_utf8_decode(s + i, len - i, &cp);
        if (cp == 0xFFFD && !(n == 3 && memcmp(s + i, "\xEF\xBF\xBD", 3) == 0))
            return false;
        i += n;
    }
    return true;
}

static void check_result(int rc, const tg_api_result_t *r, const char *body, size_t size,
                         int status, int64_t hdr)
{
    check(rc == 0 || rc == -EBADMSG || rc == -E2BIG);
    /* jsmn makes at most one token per byte. */
    check(rc != -E2BIG || size > TG_API_MAX_TOKENS);
    check(r->http_status == status);
    check(r->retry_after >= -1 && r->retry_after <= INT32_MAX);
    if (!r->json) {
        check(r->error_code == status && r->retry_after == hdr);
        check(r->result == NULL && r->result_len == 0 && !r->has_migrate);
        check(r->description_len == 0 && r->description[0] == '\0');
        check(r->ok == (rc == -E2BIG && status >= 200 && status <= 299));
    }
    check(rc != 0 || r->json);
    if (r->result != NULL)
        check(rc == 0 && inside(r->result, r->result_len, body, size) && r->result_len > 0);
    else
        check(r->result_len == 0);
    check(r->description_len < TG_API_DESC_MAX && r->description[r->description_len] == '\0');
    check(strlen(r->description) == r->description_len);
    check(utf8_ok(r->description, r->description_len));
    check(!r->description_cut || r->description_len + 4 >= TG_API_DESC_MAX - 1);
    check(r->has_migrate ? r->migrate_to_chat_id != 0 : r->migrate_to_chat_id == 0);
    check(r->error_code == status || (r->error_code >= 100 && r->error_code <= 599));

    tg_api_class_t c = tg_api_classify(r);
    if (r->ok)
        check(c == TG_API_OK);
    else if (r->error_code == 429)
        check(c == TG_API_RETRY_AFTER);
    else if (r->has_migrate)
        check(c == TG_API_MIGRATE);
    else if (!r->json || r->error_code < 400 || r->error_code > 499)
        check(c == TG_API_RETRY);
    else
        check(c == TG_API_FINAL);
}

/* The helpers over the body itself must agree with the parse about "ok". */
static void check_helpers(int rc, const tg_api_result_t *r, const char *body, size_t size)
{
    bool b = false;
    int hb = tg_api_get_bool(body, size, "ok", &b);
    check(hb == 0 || hb == -ENOENT || hb == -EINVAL);
    if (rc == 0 || (rc == -E2BIG && r->json))
        check(hb == 0 && b == r->ok);
    if (hb == 0 && rc != -E2BIG)
        check(rc == 0 && b == r->ok);

    if (r->result == NULL)
        return;
    static const char *const keys[] = {"id", "text", "username", "pending_update_count", "ok"};
    char buf[64];
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        int64_t n = 0;
        int g = tg_api_get_int(r->result, r->result_len, keys[i], &n);
        check(g == 0 || g == -ENOENT || g == -EINVAL);
        int s = tg_api_get_string(r->result, r->result_len, keys[i], buf, sizeof(buf));
        check(s >= 0 || s == -ENOENT || s == -EINVAL);
        if (s >= 0)
            check(strlen(buf) <= (size_t)s && strlen(buf) < sizeof(buf) &&
                  utf8_ok(buf, strlen(buf)) && (s >= (int)sizeof(buf) || strlen(buf) == (size_t)s));
        const char *v;
        size_t vlen;
        int w = tg_api_get_raw(r->result, r->result_len, keys[i], &v, &vlen);
        check(w == 0 || w == -ENOENT || w == -EINVAL);
        if (w == 0)
            check(inside(v, vlen, r->result, r->result_len) && vlen > 0);
        /* Whether a member exists does not depend on what is asked of it. */
        check((g == -ENOENT) == (w == -ENOENT) || (w == 0 && vlen == 4 && !memcmp(v, "null", 4)));
    }
}

#ifdef TG_FUZZ_JANSSON
static void check_jansson(int rc, const tg_api_result_t *r, const char *body, size_t size)
{
    /* jansson reads a NUL byte in a buffer as its end, so it would judge another text. */
    if (memchr(body, '\\', size) != NULL || memchr(body, 0, size) != NULL)
        return;
    json_error_t err;
    json_t *j = json_loadb(body, size, JSON_REJECT_DUPLICATES, &err);
    if (j == NULL)
        return;
    json_t *okv = json_object_get(j, "ok");
    if (json_is_object(j) && json_is_boolean(okv) && rc != -E2BIG) {
        check(rc == 0 && r->json && r->ok == json_is_true(okv));
        json_t *ec = json_object_get(j, "error_code");
        if (json_is_integer(ec) && json_integer_value(ec) >= 100 && json_integer_value(ec) <= 599)
            check(r->error_code == json_integer_value(ec));
        json_t *d = json_object_get(j, "description");
        if (json_is_string(d)) {
            size_t dl = json_string_length(d);
            /* No escapes: what is kept is a prefix of the text, unless it held a NUL. */
            if (memchr(json_string_value(d), 0, dl) == NULL)
                check(r->description_len <= dl &&
                      memcmp(r->description, json_string_value(d), r->description_len) == 0 &&
                      (r->description_len == dl) == !r->description_cut);
        }
        json_t *p = json_object_get(j, "parameters");
        json_t *ra = json_object_get(p, "retry_after");
        if (json_is_integer(ra) && json_integer_value(ra) >= 0 &&
            json_integer_value(ra) <= INT32_MAX)
            check(r->retry_after == json_integer_value(ra));
        json_t *m = json_object_get(p, "migrate_to_chat_id");
        if (json_is_integer(m) && json_integer_value(m) != 0)
            check(r->has_migrate && r->migrate_to_chat_id == json_integer_value(m));
        check((json_object_get(j, "result") != NULL) == (r->result != NULL));
    }
    json_decref(j);
}
#endif

/*
 * The verdict on the input as the body of a 200 answer: accepted when it says
 * ok:true, an error when it is a JSON answer that says ok:false, too big past
 * the token limit, refused when it is no JSON answer at all.
 */
fuzz_verdict_t fuzz_verdict(const uint8_t *data, size_t size)
{
    tg_api_result_t r;
    int rc = tg_api_parse((const char *)data, size, 200, -1, &r);
    if (rc == -E2BIG)
        return FUZZ_TOO_BIG;
    if (rc != 0)
        return FUZZ_REFUSED;
    return r.ok ? FUZZ_ACCEPTED : FUZZ_ERROR;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The status and header change no tokenizing, only what the fields default to. */
    static const struct {
        int status;
        int64_t header;
    } calls[] = {{200, -1}, {429, 3}, {502, -1}};
    const char *body = (const char *)data;

    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        tg_api_result_t a, b;
        int rc = tg_api_parse(body, size, calls[i].status, calls[i].header, &a);
        check_result(rc, &a, body, size, calls[i].status, calls[i].header);
        if (i > 0)
            continue;
        check(tg_api_parse(body, size, calls[i].status, calls[i].header, &b) == rc &&
              same(&a, body, &b, body) && a.result == b.result);

        /* Whitespace around adds no tokens and changes nothing but the offsets. */
        char *wrapped = malloc(size + 4);
        check(wrapped != NULL);
        memcpy(wrapped, " \n", 2);
        memcpy(wrapped + 2, body, size);
        memcpy(wrapped + 2 + size, "\r\t", 2);
        int rw = tg_api_parse(wrapped, size + 4, calls[i].status, calls[i].header, &b);
        check(rw == rc && same(&a, body, &b, wrapped));
        if (a.result != NULL)
            check(b.result - wrapped == a.result - body + 2);
        free(wrapped);

        check_helpers(rc, &a, body, size);
#ifdef TG_FUZZ_JANSSON
        check_jansson(rc, &a, body, size);
#endif
    }
    return 0;
}
