/* SPDX-License-Identifier: MIT */
/*
 * toolkit.c - allocation that aborts with a message and the one UTF-8
 * decoder every layer uses; see core.h.
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(const char *what, size_t size)
{
    fprintf(stderr, "tgring: out of memory (%s of %zu bytes)\n", what, size);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size == 0 ? 1 : size);
    if (p == NULL)
        oom("malloc", size);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL)
        oom("calloc", n * size);
    return p;
}

void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size == 0 ? 1 : size);
    if (q == NULL)
        oom("realloc", size);
    return q;
}

char *xstrndup(const char *s, size_t len)
{
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

int core_utf8_decode(const char *str, size_t len, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    /* The first byte fixes the length and the range of the second byte (RFC 3629, 4). */
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        *cp = CORE_UTF8_BAD;
        return -1;
    }
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= len || s[i] < lo || s[i] > hi) {
            /* The bytes so far are the maximal subpart. */
            *cp = CORE_UTF8_BAD;
            return -i;
        }
        v = v << 6 | (s[i] & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = v;
    return need;
}

size_t core_utf8_copy(char *dst, size_t max, const char *s)
{
    size_t len = strlen(s), i = 0, o = 0;

    while (i < len) {
        uint32_t cp;
        int n = core_utf8_decode(s + i, len - i, &cp);
        size_t out = n > 0 ? (size_t)n : 1;
        if (o + out > max)
            break;
        if (n > 0)
            memcpy(dst + o, s + i, out);
        else
            dst[o] = '?';
        o += out;
        i += n > 0 ? (size_t)n : (size_t)-n;
    }
    return o;
}

int core_utf8_valid(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int n = core_utf8_decode(s + i, len - i, &cp);
        if (n < 0)
            return 0;
        i += (size_t)n;
    }
    return 1;
}
