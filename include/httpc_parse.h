/* SPDX-License-Identifier: MIT */
/*
 * httpc_parse.h - the pure parts of the HTTP/1.1 client: the strict response
 * head parser and the origin URL parser. Functions over bytes, without I/O
 * or allocation: unit-tested and fuzzed alone. The pool (httpc.h) runs them
 * on the reactor; header lookup, lists and the body reader are the shared
 * lexer's (http1.h).
 *
 * Depends on http1.h only.
 */
#ifndef TGRING_HTTPC_PARSE_H
#define TGRING_HTTPC_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http1.h"

/* ---- response head ------------------------------------------------------ */

#define HTTPC_MAX_HEADERS HTTP_MAX_HEADERS /* fields a response head may have */
#define HTTPC_MAX_HEAD 16384 /* bytes of status line + fields + CRLF a response may have */

typedef struct httpc_head {
    int minor_version;  /* 0 or 1 */
    int status;         /* 100..599 */
    const char *reason; /* reason phrase, possibly empty */
    size_t reason_len;
    http_header_t headers[HTTPC_MAX_HEADERS];
    size_t num_headers;
    int64_t content_length;   /* -1 when absent */
    bool chunked;             /* Transfer-Encoding: chunked */
    bool keep_alive;          /* HTTP/1.1 without "Connection: close" */
    int64_t retry_after;      /* Retry-After in seconds (capped at 10^9); -1 absent or a date */
    const char *content_type; /* NULL when absent */
    size_t content_type_len;
    const char *error; /* on -EBADMSG: static text saying why */
} httpc_head_t;

/*
 * Parses the response head at the start of buf[0..len): status line
 * ("HTTP/1.0" or "HTTP/1.1", SP, three digits 100..599, then SP and a reason
 * phrase, which may be empty or left out) and header fields, each line
 * ended by CRLF, then CRLF.
 * Stateless: call it again with the whole buffer when more bytes arrive.
 * Returns the head's length (> 0) with `head` filled in (views into buf);
 * -EAGAIN when the bytes so far may still become a valid head; -EMSGSIZE
 * when no complete head fits in max_head bytes; -EBADMSG (head->error says
 * why) for: another protocol or version, a bad status code, bare CR or LF,
 * control characters, obs-fold, whitespace before a colon, an empty or
 * non-token field name, more than HTTPC_MAX_HEADERS fields, a Content-Length
 * that is repeated, signed, not all digits or over 10^18, a
 * Transfer-Encoding other than exactly "chunked" (or any in HTTP/1.0), or
 * both Transfer-Encoding and Content-Length.
 */
int httpc_parse_response(const char *buf, size_t len, size_t max_head, httpc_head_t *head);

/* ---- origin URL --------------------------------------------------------- */

#define HTTPC_MAX_HOST 253 /* bytes of a host name (a DNS name's limit) */

/* An origin, split for connecting, SNI, the Host header and log lines. */
typedef struct httpc_url {
    bool tls;                             /* https */
    bool ipv6;                            /* the host is a bracketed IPv6 literal */
    uint16_t port;                        /* given, or 443 / 80 */
    char host[HTTPC_MAX_HOST + 1];        /* without brackets: for DNS, SNI, certificates */
    char host_hdr[HTTPC_MAX_HOST + 10];   /* the Host header value: port only if not default */
    char origin[HTTPC_MAX_HOST + 20];     /* "https://host:port", for log lines */
} httpc_url_t;

/*
 * Parses the origin URL s[0..len) (not NUL-terminated; a NUL byte is just
 * refused): "https://" or "http://" (lower case), a host, an optional
 * ":port" and at most a final "/". The host is a name of letters, digits,
 * '-', '.' and '_' (IPv4 addresses are written so), 1..HTTPC_MAX_HOST
 * bytes, or for http only an IPv6 literal in brackets (hex digits, ':'
 * and '.'). The port is 1..65535 in at most six digits (leading zeros
 * allowed); without it, 443 or 80. For https the host must be a DNS name,
 * not all digits and dots: BearSSL checks certificates against names
 * only, so an address could never verify. Nothing else is allowed (no
 * userinfo, path, query or fragment).
 * Returns 0 with *out filled in, or -EINVAL (then *out is unspecified).
 */
int httpc_parse_url(const char *s, size_t len, httpc_url_t *out);

#endif
