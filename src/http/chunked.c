/* SPDX-License-Identifier: MIT */
/*
 * chunked.c - incremental decoder for the chunked transfer coding of message
 * bodies (RFC 9112 7.1). A byte-at-a-time state machine that decodes in
 * place, so input split anywhere decodes the same. Chunk extensions and
 * trailer fields are checked for syntax, capped in size and discarded; in
 * quoted strings, qdtext and quoted-pair octets are the field-value bytes
 * (HTAB, SP, VCHAR, obs-text). Part of the shared lexer (http1.h): the
 * body reader uses it for requests and responses alike.
 */
#include "core.h"
#include "http1.h"

#include <errno.h>
#include <string.h>

/* Hex digits of a chunk-size: 16 fit in uint64_t, leading zeros included. */
#define CHUNK_MAX_SIZE_DIGITS 16
/* Bytes of chunk extensions on one chunk line (after the size). */
#define CHUNK_MAX_EXT 1024
/* Bytes of the whole trailer section, its final CRLF included. */
#define CHUNK_MAX_TRAILER 8192

enum {
    S_SIZE_START,   /* first hex digit of chunk-size */
    S_SIZE,         /* more hex digits, BWS, ';' or CR */
    S_SIZE_BWS,     /* BWS after the size, before ';' */
    S_EXT_NAME0,    /* BWS, then the first tchar of chunk-ext-name */
    S_EXT_NAME,     /* chunk-ext-name, then BWS, '=', ';' or CR */
    S_EXT_NAME_BWS, /* BWS after the name: '=', ';' or CR */
    S_EXT_VAL0,     /* BWS after '=', then token or quoted-string */
    S_EXT_TOKEN,    /* token value */
    S_EXT_QUOTED,   /* inside a quoted-string */
    S_EXT_QPAIR,    /* after a backslash in a quoted-string */
    S_EXT_AFTER,    /* after a value: BWS, ';' or CR */
    S_SIZE_LF,      /* LF ending the chunk line */
    S_DATA,         /* chunk-data, `remaining` bytes left */
    S_DATA_CR,      /* CR after chunk-data */
    S_DATA_LF,      /* LF after chunk-data */
    S_TRAILER,      /* start of a trailer line: a field name or the final CR */
    S_TR_NAME,      /* field-name, up to ':' */
    S_TR_VALUE,     /* field-value, up to CR */
    S_TR_LF,        /* LF ending a trailer field */
    S_FINAL_LF,     /* LF ending the message */
    S_DONE,         /* the body is complete */
    S_BAD,          /* sticky: malformed */
    S_TOO_BIG,      /* sticky: over max_body */
};

void http_chunked_init(http_chunked_t *d, uint64_t max_body)
{
    d->state = S_SIZE_START;
    d->remaining = 0;
    d->total = 0;
    d->max_body = max_body;
    d->aux = 0;
}

/*
 * One step of the chunk line (size and extensions) on byte c. Returns the next
 * state; S_BAD on a syntax error.
 */
static int chunk_line_step(http_chunked_t *d, unsigned char c)
{
    int s = d->state;
    if (s >= S_SIZE_BWS && ++d->aux > CHUNK_MAX_EXT)
        return S_BAD;
    switch (s) {
    case S_SIZE_START:
    case S_SIZE: {
        int v = core_hex_value(c);
        if (v >= 0) {
            if (++d->aux > CHUNK_MAX_SIZE_DIGITS)
                return S_BAD;
            d->remaining = d->remaining << 4 | (uint64_t)v;
            if (d->remaining > d->max_body - d->total)
                return S_TOO_BIG;
            return S_SIZE;
        }
        if (s == S_SIZE_START)
            return S_BAD;
        d->aux = 0;
        if (c == '\r')
            return S_SIZE_LF;
        if (c == ';')
            return S_EXT_NAME0;
        return http_is_ows(c) ? S_SIZE_BWS : S_BAD;
    }
    case S_SIZE_BWS:
        if (http_is_ows(c))
            return s;
        return c == ';' ? S_EXT_NAME0 : S_BAD;
    case S_EXT_NAME0:
        if (http_is_ows(c))
            return s;
        return http_is_tchar(c) ? S_EXT_NAME : S_BAD;
    case S_EXT_NAME:
    case S_EXT_NAME_BWS:
        if (s == S_EXT_NAME && http_is_tchar(c))
            return s;
        if (http_is_ows(c))
            return S_EXT_NAME_BWS;
        if (c == '=')
            return S_EXT_VAL0;
        if (c == ';')
            return S_EXT_NAME0;
        return c == '\r' ? S_SIZE_LF : S_BAD;
    case S_EXT_VAL0:
        if (http_is_ows(c))
            return s;
        if (c == '"')
            return S_EXT_QUOTED;
        return http_is_tchar(c) ? S_EXT_TOKEN : S_BAD;
    case S_EXT_TOKEN:
    case S_EXT_AFTER:
        if (s == S_EXT_TOKEN && http_is_tchar(c))
            return s;
        if (http_is_ows(c))
            return S_EXT_AFTER;
        if (c == ';')
            return S_EXT_NAME0;
        return c == '\r' ? S_SIZE_LF : S_BAD;
    case S_EXT_QUOTED:
        if (c == '"')
            return S_EXT_AFTER;
        if (c == '\\')
            return S_EXT_QPAIR;
        return http_is_field_char(c) ? s : S_BAD;
    case S_EXT_QPAIR:
        return http_is_field_char(c) ? S_EXT_QUOTED : S_BAD;
    default:
        return S_BAD;
    }
}

/* One step of the trailer section on byte c; the same field rules as the head. */
static int trailer_step(http_chunked_t *d, unsigned char c)
{
    if (++d->aux > CHUNK_MAX_TRAILER)
        return S_BAD;
    switch (d->state) {
    case S_TRAILER:
        if (c == '\r')
            return S_FINAL_LF;
        return http_is_tchar(c) ? S_TR_NAME : S_BAD;
    case S_TR_NAME:
        if (http_is_tchar(c))
            return S_TR_NAME;
        return c == ':' ? S_TR_VALUE : S_BAD;
    case S_TR_VALUE:
        if (c == '\r')
            return S_TR_LF;
        return http_is_field_char(c) ? S_TR_VALUE : S_BAD;
    case S_TR_LF:
        return c == '\n' ? S_TRAILER : S_BAD;
    case S_FINAL_LF:
        return c == '\n' ? S_DONE : S_BAD;
    default:
        return S_BAD;
    }
}

long http_chunked_decode(http_chunked_t *d, char *buf, size_t *len)
{
    const char *r = buf, *end = buf + *len;
    char *w = buf;

    while (r < end && d->state < S_DONE) {
        unsigned char c = (unsigned char)*r;
        switch (d->state) {
        case S_DATA: {
            size_t n = (size_t)(end - r);
            if (n > d->remaining)
                n = (size_t)d->remaining;
            memmove(w, r, n);
            w += n;
            r += n;
            d->remaining -= n;
            d->total += n;
            if (d->remaining == 0)
                d->state = S_DATA_CR;
            continue;
        }
        case S_DATA_CR:
            d->state = c == '\r' ? S_DATA_LF : S_BAD;
            break;
        case S_DATA_LF:
            d->state = c == '\n' ? S_SIZE_START : S_BAD;
            break;
        case S_SIZE_LF:
            /* aux counted this line's size digits or extension bytes. */
            d->aux = 0;
            if (c != '\n') {
                d->state = S_BAD;
            } else if (d->remaining == 0) {
                /* last-chunk: the trailer section follows */
                d->state = S_TRAILER;
            } else {
                d->state = S_DATA;
            }
            break;
        case S_TRAILER:
        case S_TR_NAME:
        case S_TR_VALUE:
        case S_TR_LF:
        case S_FINAL_LF:
            d->state = trailer_step(d, c);
            break;
        default:
            d->state = chunk_line_step(d, c);
            break;
        }
        r++;
    }

    *len = (size_t)(w - buf);
    switch (d->state) {
    case S_BAD:
        return -EBADMSG;
    case S_TOO_BIG:
        return -EMSGSIZE;
    case S_DONE: {
        size_t rest = (size_t)(end - r);
        memmove(w, r, rest);
        return (long)rest;
    }
    default:
        return -EAGAIN;
    }
}
