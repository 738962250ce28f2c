/* SPDX-License-Identifier: MIT */
/*
 * api.c - reading Bot API answers: {"ok":true,"result":...} or
 * {"ok":false,"error_code":N,"description":...,"parameters":{...}}, and what
 * the sender should do about each.
 *
 * jsmn tokenizes into a fixed array on the stack; members are found through
 * the parent links, so nothing recurses and the work is linear in the input.
 * Answers are small (a sent Message, getWebhookInfo), and when one is not, the
 * members before the cut are still read: Telegram writes "ok" and the error
 * fields before "result".
 */
#include "json_private.h"
#include "tg.h"
#include "tg_api.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* A tokenized text: count tokens filled; partial when jsmn ran out of them. */
typedef struct toks {
    const char *s;
    jsmntok_t *t;
    int count;
    bool partial;
} toks_t;

/*
 * Tokenizes s[0..len), which must be one JSON object and nothing but
 * whitespace after it. Returns 0 (complete), -E2BIG (tokens ran out: the
 * tokens filled are the text's first ones, in order, containers still open
 * having end == -1) or -EBADMSG.
 */
static int tokenize(toks_t *k, const char *s, size_t len, jsmntok_t *tok, unsigned ntok)
{
    k->s = s;
    k->t = tok;
    k->count = 0;
    k->partial = false;
    /* jsmn keeps offsets in int. */
    if (len >= INT_MAX)
        return -E2BIG;
    jsmn_parser p;
    jsmn_init(&p);
    int rc = jsmn_parse(&p, s, len, tok, ntok);
    if (rc == JSMN_ERROR_NOMEM) {
        k->count = (int)p.toknext;
        k->partial = true;
        if (k->count < 1 || tok[0].type != JSMN_OBJECT)
            return -EBADMSG;
        return -E2BIG;
    }
    if (rc < 1 || tok[0].type != JSMN_OBJECT || tok[0].end < 0)
        return -EBADMSG;
    /* jsmn stops at a NUL byte and takes further top-level values: allow only whitespace. */
    for (size_t i = (size_t)tok[0].end; i < len; i++)
        if (!tg_json_is_ws((unsigned char)s[i]))
            return -EBADMSG;
    k->count = rc;
    return 0;
}

static bool complete(const jsmntok_t *t)
{
    return t->start >= 0 && t->end >= t->start;
}

static bool tok_is(const toks_t *k, int i, const char *lit)
{
    return tg_json_tok_eq(k->s, &k->t[i], lit);
}

/*
 * The value token of the first member `key` of object token obj, or -1 when
 * there is none among the tokens filled (or its value was not filled).
 */
static int member(const toks_t *k, int obj, const char *key)
{
    return tg_json_member(k->s, k->t, k->count, obj, key);
}

/* An integer token: -?(0|[1-9][0-9]*) within int64_t; no fraction or exponent. */
static bool int_of(const toks_t *k, int i, int64_t *out)
{
    return tg_json_int(k->s, &k->t[i], out);
}

/* Appends code point cp as UTF-8 while it fits (with a NUL); counts it either way. */
typedef struct sink {
    char *buf;
    size_t cap;
    size_t len;   /* bytes written */
    size_t total; /* bytes the whole string takes */
    bool full;    /* a character did not fit: write nothing more */
} sink_t;

static void emit(sink_t *o, uint32_t cp)
{
    char u[4];
    size_t n;
    /* A NUL would end the C string early: callers print these. */
    if (cp == 0)
        cp = 0xFFFD;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    o->total += n;
    if (o->full || o->cap == 0 || n > o->cap - 1 - o->len) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->len, u, n);
    o->len += n;
}

/*
 * Unescapes the contents of string token i into buf (see tg_api_get_string).
 * Returns the full length; *written gets the bytes kept.
 */
static size_t unescape(const toks_t *k, int i, char *buf, size_t cap, size_t *written)
{
    const jsmntok_t *t = &k->t[i];
    const unsigned char *p = (const unsigned char *)k->s + t->start;
    size_t n = (size_t)(t->end - t->start), j = 0;
    sink_t o = {buf, cap, 0, 0, false};
    while (j < n) {
        unsigned char c = p[j];
        if (c == '\\' && j + 1 < n) {
            long u = tg_json_u_escape(p + j, n - j);
            if (u >= 0) {
                j += 6;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    long lo = tg_json_u_escape(p + j, n - j);
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        j += 6;
                        emit(&o,
                             0x10000 + (((uint32_t)u - 0xD800) << 10) + ((uint32_t)lo - 0xDC00));
                        continue;
                    }
                    emit(&o, 0xFFFD);
                    continue;
                }
                emit(&o, (u >= 0xDC00 && u <= 0xDFFF) ? 0xFFFD : (uint32_t)u);
                continue;
            }
            uint32_t e;
            switch (p[j + 1]) {
            case 'n':
                e = '\n';
                break;
            case 'r':
                e = '\r';
                break;
            case 't':
                e = '\t';
                break;
            case 'b':
                e = '\b';
                break;
            case 'f':
                e = '\f';
                break;
            case '"':
            case '\\':
            case '/':
                e = p[j + 1];
                break;
            default:
                /* Not an escape JSON knows (jsmn refuses these; stay safe anyway). */
                e = 0xFFFD;
                break;
            }
            emit(&o, e);
            j += 2;
            continue;
        }
        uint32_t cp;
        j += tg_utf8_decode((const char *)p + j, n - j, &cp);
        emit(&o, cp);
    }
    if (cap > 0)
        buf[o.len] = '\0';
    *written = o.len;
    return o.total;
}

static void reset(tg_api_result_t *out, int http_status, int64_t retry_after_header)
{
    memset(out, 0, sizeof(*out));
    out->http_status = http_status;
    out->error_code = http_status;
    out->retry_after =
        retry_after_header >= 0 && retry_after_header <= INT32_MAX ? retry_after_header : -1;
}

int tg_api_parse(const char *body, size_t len, int http_status, int64_t retry_after_header,
                 tg_api_result_t *out)
{
    jsmntok_t tok[TG_API_MAX_TOKENS];
    toks_t k;
    reset(out, http_status, retry_after_header);

    int rc = body == NULL ? -EBADMSG : tokenize(&k, body, len, tok, TG_API_MAX_TOKENS);
    if (rc == -EBADMSG)
        return -EBADMSG;
    int v = rc == -E2BIG && k.count == 0 ? -1 : member(&k, 0, "ok");
    if (v < 0 || !(tok_is(&k, v, "true") || tok_is(&k, v, "false")) ||
        k.t[v].type != JSMN_PRIMITIVE) {
        if (rc == 0)
            return -EBADMSG;
        out->ok = http_status >= 200 && http_status <= 299;
        return -E2BIG;
    }
    out->json = true;
    out->ok = tok_is(&k, v, "true");

    int64_t n;
    v = member(&k, 0, "error_code");
    if (v >= 0 && int_of(&k, v, &n) && n >= 100 && n <= 599)
        out->error_code = (int)n;

    v = member(&k, 0, "description");
    if (v >= 0 && k.t[v].type == JSMN_STRING) {
        size_t full =
            unescape(&k, v, out->description, sizeof(out->description), &out->description_len);
        out->description_cut = full > out->description_len;
    }

    v = member(&k, 0, "parameters");
    if (v >= 0 && k.t[v].type == JSMN_OBJECT) {
        int p = member(&k, v, "retry_after");
        if (p >= 0 && int_of(&k, p, &n) && n >= 0 && n <= INT32_MAX)
            out->retry_after = n;
        p = member(&k, v, "migrate_to_chat_id");
        if (p >= 0 && int_of(&k, p, &n) && n != 0) {
            out->has_migrate = true;
            out->migrate_to_chat_id = n;
        }
    }

    if (rc == 0) {
        v = member(&k, 0, "result");
        if (v >= 0 && complete(&k.t[v])) {
            const jsmntok_t *t = &k.t[v];
            /* A string's token excludes its quotes; the view is the JSON text. */
            size_t q = t->type == JSMN_STRING ? 1 : 0;
            out->result = body + t->start - q;
            out->result_len = (size_t)(t->end - t->start) + 2 * q;
        }
    }
    return rc;
}

tg_api_class_t tg_api_classify(const tg_api_result_t *r)
{
    if (r->ok)
        return TG_API_OK;
    if (r->error_code == 429)
        return TG_API_RETRY_AFTER;
    if (r->has_migrate)
        return TG_API_MIGRATE;
    if (!r->json)
        return TG_API_RETRY;
    if (r->error_code >= 400 && r->error_code <= 499)
        return TG_API_FINAL;
    return TG_API_RETRY;
}

const char *tg_api_class_name(tg_api_class_t c)
{
    switch (c) {
    case TG_API_OK:
        return "ok";
    case TG_API_RETRY_AFTER:
        return "retry_after";
    case TG_API_MIGRATE:
        return "migrate";
    case TG_API_RETRY:
        return "retry";
    case TG_API_FINAL:
        return "final";
    }
    return "unknown";
}

/* Finds member key of the object obj[0..len); tok must hold TG_API_MAX_TOKENS. */
static int lookup(toks_t *k, jsmntok_t *tok, const char *obj, size_t len, const char *key)
{
    if (obj == NULL)
        return -EINVAL;
    int rc = tokenize(k, obj, len, tok, TG_API_MAX_TOKENS);
    if (rc == -EBADMSG)
        return -EINVAL;
    int v = k->count > 0 ? member(k, 0, key) : -1;
    if (v < 0)
        return rc == 0 ? -ENOENT : -EINVAL;
    if (!complete(&tok[v]))
        return -EINVAL;
    return v;
}

int tg_api_get_raw(const char *obj, size_t len, const char *key, const char **val, size_t *val_len)
{
    jsmntok_t tok[TG_API_MAX_TOKENS];
    toks_t k;
    int v = lookup(&k, tok, obj, len, key);
    if (v < 0)
        return v;
    size_t q = tok[v].type == JSMN_STRING ? 1 : 0;
    *val = obj + tok[v].start - q;
    *val_len = (size_t)(tok[v].end - tok[v].start) + 2 * q;
    return 0;
}

int tg_api_get_string(const char *obj, size_t len, const char *key, char *buf, size_t cap)
{
    jsmntok_t tok[TG_API_MAX_TOKENS];
    toks_t k;
    int v = lookup(&k, tok, obj, len, key);
    if (v < 0)
        return v;
    if (tok[v].type == JSMN_PRIMITIVE && tok_is(&k, v, "null"))
        return -ENOENT;
    if (tok[v].type != JSMN_STRING)
        return -EINVAL;
    size_t written;
    size_t full = unescape(&k, v, buf, cap, &written);
    return full > INT_MAX ? INT_MAX : (int)full;
}

int tg_api_get_int(const char *obj, size_t len, const char *key, int64_t *out)
{
    jsmntok_t tok[TG_API_MAX_TOKENS];
    toks_t k;
    int v = lookup(&k, tok, obj, len, key);
    if (v < 0)
        return v;
    if (tok_is(&k, v, "null") && tok[v].type == JSMN_PRIMITIVE)
        return -ENOENT;
    int64_t n;
    if (!int_of(&k, v, &n))
        return -EINVAL;
    *out = n;
    return 0;
}

int tg_api_get_bool(const char *obj, size_t len, const char *key, bool *out)
{
    jsmntok_t tok[TG_API_MAX_TOKENS];
    toks_t k;
    int v = lookup(&k, tok, obj, len, key);
    if (v < 0)
        return v;
    if (tok[v].type != JSMN_PRIMITIVE)
        return -EINVAL;
    if (tok_is(&k, v, "null"))
        return -ENOENT;
    if (tok_is(&k, v, "true"))
        *out = true;
    else if (tok_is(&k, v, "false"))
        *out = false;
    else
        return -EINVAL;
    return 0;
}

/* ---- readers over an update's tokens (tg.h) ---- */

int tg_json_find(const char *s, const jsmntok_t *tok, int count, int obj, const char *key)
{
    return tg_json_member(s, tok, count, obj, key);
}

bool tg_json_tok_int(const char *s, const jsmntok_t *tok, int i, int64_t *out)
{
    return tg_json_int(s, &tok[i], out);
}

int tg_json_tok_string(const char *s, const jsmntok_t *tok, int i, char *buf, size_t cap)
{
    toks_t k = {.s = s, .t = (jsmntok_t *)tok, .count = i + 1, .partial = false};
    size_t written;
    if (tok[i].type != JSMN_STRING || !complete(&tok[i]))
        return -EINVAL;
    size_t full = unescape(&k, i, buf, cap, &written);
    return full > INT_MAX ? INT_MAX : (int)full;
}
