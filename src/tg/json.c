/* SPDX-License-Identifier: MIT */
/*
 * json.c - the JSON helpers that the webhook body check (update.c) and the
 * Bot API answer parser (api.c) share: see json_private.h. Pure functions over bytes and jsmn
 * tokens.
 */
#include "core.h"
#include "json_private.h"

#include <string.h>

long tg_json_u_escape(const unsigned char *p, size_t n)
{
    if (n < 6 || p[0] != '\\' || p[1] != 'u')
        return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        int h = core_hex_value(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

bool tg_json_tok_eq(const char *s, const jsmntok_t *t, const char *lit)
{
    size_t n = strlen(lit);
    return t->start >= 0 && t->end >= t->start && (size_t)(t->end - t->start) == n &&
           memcmp(s + t->start, lit, n) == 0;
}

bool tg_json_int(const char *s, const jsmntok_t *t, int64_t *out)
{
    if (t->type != JSMN_PRIMITIVE || t->start < 0 || t->end < t->start)
        return false;
    const unsigned char *p = (const unsigned char *)s + t->start;
    size_t n = (size_t)(t->end - t->start), i = 0;
    bool neg = false;
    if (i < n && p[i] == '-') {
        neg = true;
        i++;
    }
    if (i >= n || (p[i] == '0' && n - i > 1))
        return false;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (!tg_json_is_digit(p[i]))
            return false;
        unsigned d = p[i] - '0';
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (!neg)
        *out = (int64_t)v;
    else
        *out = v == limit ? INT64_MIN : -(int64_t)v;
    return true;
}

int tg_json_member(const char *s, const jsmntok_t *tok, int count, int obj, const char *key)
{
    if (obj < 0 || tok[obj].type != JSMN_OBJECT)
        return -1;
    const jsmntok_t *o = &tok[obj];
    for (int j = obj + 1; j < count; j++) {
        const jsmntok_t *t = &tok[j];
        /* Tokens come in text order: past the object's end nothing is inside it. */
        if (o->end >= 0 && t->start >= o->end)
            break;
        if (t->parent != obj || t->type != JSMN_STRING || !tg_json_tok_eq(s, t, key))
            continue;
        /* A key's value is the token right after it, when it was filled. */
        if (j + 1 < count && tok[j + 1].parent == j)
            return j + 1;
    }
    return -1;
}
