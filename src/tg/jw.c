/* SPDX-License-Identifier: MIT */
/*
 * jw.c - the JSON writer for Bot API request bodies, and tg_utf8_decode(),
 * core's UTF-8 decoder in the form the writer and the answer parser use.
 *
 * The writer appends into a caller buffer and keeps the first error, so a
 * body is built with straight-line calls and checked once by tg_jw_finish().
 * Strings are made valid JSON whatever the bytes: Telegram refuses a body
 * with ill-formed UTF-8 as a whole, and a user's text reaches here unchecked.
 */
#include "core.h"
#include "tg_api.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

size_t tg_utf8_decode(const char *s, size_t len, uint32_t *cp)
{
    /* An ill-formed sequence comes back as minus its maximal subpart, *cp U+FFFD. */
    int n = core_utf8_decode(s, len, cp);
    return (size_t)(n < 0 ? -n : n);
}

/* Records the first error; later ones are consequences of it. */
static void fail(tg_jw_t *w, int err)
{
    if (w->err == 0)
        w->err = err;
}

/* Appends n bytes, keeping one byte for the NUL that tg_jw_finish() writes. */
static void put(tg_jw_t *w, const void *p, size_t n)
{
    if (w->err != 0)
        return;
    if (w->cap == 0 || n > w->cap - 1 - w->len) {
        fail(w, -ENOSPC);
        return;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void putc1(tg_jw_t *w, char c)
{
    put(w, &c, 1);
}

static bool in_obj(const tg_jw_t *w)
{
    return w->depth > 0 && (w->is_obj >> w->depth & 1u);
}

/* Before a value: the comma in an array, nothing after a key, a misuse elsewhere. */
static bool value_start(tg_jw_t *w)
{
    if (w->err != 0)
        return false;
    if (w->depth == 0) {
        if (w->done) {
            fail(w, -EINVAL);
            return false;
        }
        return true;
    }
    if (in_obj(w)) {
        if (!w->want_value) {
            fail(w, -EINVAL);
            return false;
        }
        w->want_value = false;
        return true;
    }
    if (w->has_item >> w->depth & 1u)
        putc1(w, ',');
    w->has_item |= 1u << w->depth;
    return w->err == 0;
}

/* After a scalar value: at the top level it completes the text. */
static void value_end(tg_jw_t *w)
{
    if (w->depth == 0)
        w->done = true;
}

void tg_jw_init(tg_jw_t *w, char *buf, size_t cap)
{
    memset(w, 0, sizeof(*w));
    w->buf = buf;
    w->cap = cap;
}

static void begin(tg_jw_t *w, bool obj)
{
    if (!value_start(w))
        return;
    /* Bit 0 is the top level; containers use bits 1..TG_JW_MAX_DEPTH of a 32-bit word. */
    if (w->depth >= TG_JW_MAX_DEPTH) {
        fail(w, -EINVAL);
        return;
    }
    putc1(w, obj ? '{' : '[');
    w->depth++;
    if (obj)
        w->is_obj |= 1u << w->depth;
    else
        w->is_obj &= ~(1u << w->depth);
    w->has_item &= ~(1u << w->depth);
}

static void end(tg_jw_t *w, bool obj)
{
    if (w->err != 0)
        return;
    if (w->depth == 0 || in_obj(w) != obj || w->want_value) {
        fail(w, -EINVAL);
        return;
    }
    putc1(w, obj ? '}' : ']');
    w->depth--;
    value_end(w);
}

void tg_jw_obj_begin(tg_jw_t *w)
{
    begin(w, true);
}

void tg_jw_obj_end(tg_jw_t *w)
{
    end(w, true);
}

void tg_jw_arr_begin(tg_jw_t *w)
{
    begin(w, false);
}

void tg_jw_arr_end(tg_jw_t *w)
{
    end(w, false);
}

/* The quoted, escaped string s[0..len). */
static void put_string(tg_jw_t *w, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    putc1(w, '"');
    size_t i = 0;
    while (i < len && w->err == 0) {
        /* Copy the longest run that needs no escaping in one go. */
        size_t run = i;
        while (run < len) {
            unsigned char c = (unsigned char)s[run];
            if (c < 0x20 || c == '"' || c == '\\')
                break;
            if (c < 0x80) {
                run++;
                continue;
            }
            uint32_t cp;
            size_t n = tg_utf8_decode(s + run, len - run, &cp);
            if (cp == 0xFFFD && !(n == 3 && memcmp(s + run, "\xEF\xBF\xBD", 3) == 0))
                break;
            run += n;
        }
        put(w, s + i, run - i);
        i = run;
        if (i >= len)
            break;
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        switch (c) {
        case '"':
            put(w, "\\\"", 2);
            i++;
            continue;
        case '\\':
            put(w, "\\\\", 2);
            i++;
            continue;
        case '\n':
            put(w, "\\n", 2);
            i++;
            continue;
        case '\r':
            put(w, "\\r", 2);
            i++;
            continue;
        case '\t':
            put(w, "\\t", 2);
            i++;
            continue;
        case '\b':
            put(w, "\\b", 2);
            i++;
            continue;
        case '\f':
            put(w, "\\f", 2);
            i++;
            continue;
        }
        if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            put(w, esc, 6);
            i++;
            continue;
        }
        /* An ill-formed subpart. */
        uint32_t cp;
        i += tg_utf8_decode(s + i, len - i, &cp);
        put(w, "\xEF\xBF\xBD", 3);
    }
    putc1(w, '"');
}

void tg_jw_key(tg_jw_t *w, const char *key)
{
    if (w->err != 0)
        return;
    if (!in_obj(w) || w->want_value) {
        fail(w, -EINVAL);
        return;
    }
    if (w->has_item >> w->depth & 1u)
        putc1(w, ',');
    w->has_item |= 1u << w->depth;
    put_string(w, key, strlen(key));
    putc1(w, ':');
    w->want_value = true;
}

void tg_jw_str(tg_jw_t *w, const char *s, size_t len)
{
    if (!value_start(w))
        return;
    put_string(w, s, len);
    value_end(w);
}

void tg_jw_int(tg_jw_t *w, int64_t v)
{
    if (!value_start(w))
        return;
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
    put(w, tmp, (size_t)n);
    value_end(w);
}

void tg_jw_bool(tg_jw_t *w, bool v)
{
    if (!value_start(w))
        return;
    if (v)
        put(w, "true", 4);
    else
        put(w, "false", 5);
    value_end(w);
}

void tg_jw_null(tg_jw_t *w)
{
    if (!value_start(w))
        return;
    put(w, "null", 4);
    value_end(w);
}

void tg_jw_raw(tg_jw_t *w, const char *json, size_t len)
{
    if (!value_start(w))
        return;
    put(w, json, len);
    value_end(w);
}

int tg_jw_finish(tg_jw_t *w)
{
    if (w->err == 0 && (w->depth != 0 || !w->done))
        fail(w, -EINVAL);
    if (w->err == 0 && w->len > INT_MAX)
        fail(w, -ENOSPC);
    if (w->err != 0) {
        if (w->cap > 0)
            w->buf[0] = '\0';
        return w->err;
    }
    w->buf[w->len] = '\0';
    return (int)w->len;
}
