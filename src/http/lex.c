/* SPDX-License-Identifier: MIT */
/*
 * lex.c - the HTTP/1 lexer shared by the request parser, the response
 * parser, the server and the client: character classes, header lookup,
 * comma lists, decimal digits and the body reader (http1.h).
 * Pure functions over bytes: no I/O, no allocation.
 */
#include "http1.h"

#include <errno.h>

/* Row by row, 16 bytes each: tchar (T), other VCHAR (V), other field bytes (F), none (Z). */
#define Z 0
#define F HTTP_CT_FIELD
#define V (HTTP_CT_FIELD | HTTP_CT_VCHAR)
#define T (HTTP_CT_FIELD | HTTP_CT_VCHAR | HTTP_CT_TCHAR)
const uint8_t http_ctype[256] = {
    Z, Z, Z, Z, Z, Z, Z, Z, Z, F, Z, Z, Z, Z, Z, Z, /* 0x00: HTAB */
    Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, Z, /* 0x10 */
    F, T, V, T, T, T, T, T, V, V, T, T, V, T, T, V, /* 0x20: SP ! " # $ % & ' ( ) * + , - . / */
    T, T, T, T, T, T, T, T, T, T, V, V, V, V, V, V, /* 0x30: 0-9 : ; < = > ? */
    V, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, /* 0x40: @ A-O */
    T, T, T, T, T, T, T, T, T, T, T, V, V, V, T, T, /* 0x50: P-Z [ \ ] ^ _ */
    T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, /* 0x60: ` a-o */
    T, T, T, T, T, T, T, T, T, T, T, V, T, V, T, Z, /* 0x70: p-z { | } ~ DEL */
    F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, /* 0x80..0xff: obs-text */
    F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, /* */
    F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, /* */
    F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, /* */
    F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, /* */
    F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, /* */
    F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, /* */
    F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, /* */
};
#undef Z
#undef F
#undef V
#undef T

static inline char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

bool http_token_eq(const char *s, size_t len, const char *lit)
{
    for (size_t i = 0; i < len; i++) {
        if (lit[i] == '\0' || lower(s[i]) != lower(lit[i]))
            return false;
    }
    return lit[len] == '\0';
}

const http_header_t *http_header_find(const http_header_t *headers, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (http_token_eq(headers[i].name, headers[i].name_len, name))
            return &headers[i];
    }
    return NULL;
}

bool http_list_next(const char **pp, const char *end, http_list_item_t *item)
{
    const char *p = *pp;
    while (p < end && (http_is_ows(*p) || *p == ','))
        p++;
    if (p == end) {
        *pp = p;
        return false;
    }
    item->token = p;
    while (p < end && http_is_tchar(*p))
        p++;
    item->token_len = (size_t)(p - item->token);
    while (p < end && http_is_ows(*p))
        p++;
    if (p == end || *p == ',')
        item->rest = HTTP_LIST_BARE;
    else
        item->rest = *p == ';' ? HTTP_LIST_PARAMS : HTTP_LIST_OTHER;
    while (p < end && *p != ',')
        p++;
    *pp = p;
    return true;
}

bool http_list_has(const char *s, size_t len, const char *tok)
{
    const char *p = s, *end = s + len;
    http_list_item_t it;
    while (http_list_next(&p, end, &it)) {
        if (it.rest == HTTP_LIST_BARE && it.token_len > 0 &&
            http_token_eq(it.token, it.token_len, tok))
            return true;
    }
    return false;
}

int64_t http_parse_digits(const char *s, size_t len)
{
    if (len == 0 || len > HTTP_MAX_DIGITS)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!http_is_digit(s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

void http_body_init(http_body_t *b, http_body_mode_t mode, uint64_t length, uint64_t max)
{
    b->mode = mode;
    b->length = length;
    b->max = max;
    b->len = 0;
    if (mode == HTTP_BODY_CHUNKED)
        http_chunked_init(&b->chunked, max);
}

long http_body_read(http_body_t *b, char *buf, size_t *len)
{
    switch (b->mode) {
    case HTTP_BODY_NONE:
        b->len = 0;
        return (long)*len;
    case HTTP_BODY_LENGTH:
        if (b->length > b->max)
            return -EMSGSIZE;
        if (*len < b->length) {
            b->len = *len;
            return -EAGAIN;
        }
        b->len = (size_t)b->length;
        return (long)(*len - b->len);
    case HTTP_BODY_EOF:
        b->len = *len;
        return *len > b->max ? -EMSGSIZE : -EAGAIN;
    case HTTP_BODY_CHUNKED:
    default: {
        /* Earlier calls left the decoded body first and consumed all their input. */
        size_t n = *len - b->len;
        long r = http_chunked_decode(&b->chunked, buf + b->len, &n);
        if (r == -EBADMSG || r == -EMSGSIZE)
            return r;
        b->len += n;
        *len = b->len + (r > 0 ? (size_t)r : 0);
        return r;
    }
    }
}
