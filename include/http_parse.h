/* SPDX-License-Identifier: MIT */
/*
 * http_parse.h - the strict HTTP/1.1 request head parser of the server
 * (RFC 9112): a pure function over bytes, unit-tested, fuzzed and checked
 * against llhttp. The server (http.h) runs it on the reactor; it links
 * alone (with the lexer) for tests and fuzzing.
 *
 * Depends on http1.h only.
 */
#ifndef TGRING_HTTP_PARSE_H
#define TGRING_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http1.h"

typedef struct http_limits {
    size_t max_head;   /* request line + headers + final CRLF, bytes (431 past it) */
    size_t max_target; /* request-target bytes (414 past it) */
    uint64_t max_body; /* Content-Length or decoded chunked bytes (413 past it) */
} http_limits_t;

/* The defaults: 8 KiB head, 2 KiB target, 1 MiB body. */
#define HTTP_LIMITS_DEFAULT                                                                        \
    {                                                                                              \
        8192, 2048, 1048576                                                                        \
    }

typedef struct http_request {
    const char *method; /* token, e.g. "POST" */
    size_t method_len;
    const char *target; /* origin-form or asterisk-form as sent */
    size_t target_len;
    const char *path; /* target up to '?'; for absolute-form, after the authority (may be empty) */
    size_t path_len;
    int minor_version; /* 0 or 1 (HTTP/1.x only) */
    http_header_t headers[HTTP_MAX_HEADERS];
    size_t num_headers;
    /* Derived from the headers by the parser. */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding ends in chunked */
    bool keep_alive;        /* 1.1 unless "Connection: close"; 1.0 only with keep-alive */
    bool expect_continue;   /* "Expect: 100-continue", HTTP/1.1 only */
    /* On -EBADMSG: the status to answer (400, 413, 414, 431, 501, 505) and why. */
    int status;
    const char *error; /* static string, e.g. "duplicate Content-Length" */
} http_request_t;

/*
 * Parses the request head at the start of buf[0..len).
 *
 * Stateless: call it again with the whole accumulated buffer when more bytes
 * arrive (the head is capped by lim->max_head, so this stays cheap).
 * Returns the head's length in bytes (> 0) when the head is complete and
 * valid, with `req` filled in and its views pointing into `buf`;
 * -EAGAIN when the bytes so far are a valid prefix within limits;
 * -EBADMSG when the request must be refused: req->status and req->error say
 * how. The caller answers req->status and closes the connection.
 *
 * Refused (400): Content-Length with Transfer-Encoding; duplicate, signed,
 * spaced, non-digit or overflowing Content-Length; obs-fold; bare CR or LF;
 * whitespace between a field name and its colon; NUL or other control bytes;
 * missing or duplicate Host in 1.1 (duplicate in 1.0); Transfer-Encoding in
 * 1.0; an invalid Host value; a bad absolute-form authority (userinfo, a
 * non-digit port); an authority-form target; chunked not last or applied
 * twice (also across several Transfer-Encoding fields); malformed request
 * line. 501 for a transfer coding other than chunked;
 * 505 for a version other than HTTP/1.0 or 1.1; 413 for a Content-Length over
 * lim->max_body; 414 for a target over lim->max_target; 431 for a head over
 * lim->max_head or more than HTTP_MAX_HEADERS fields.
 */
int http_parse_request(const char *buf, size_t len, const http_limits_t *lim, http_request_t *req);

/* The reason phrase for `status`, e.g. "Not Found"; "Unknown" if none. */
const char *http_reason(int status);

/* The first header of `req` named `name` (case-insensitive); NULL when absent. */
const http_header_t *http_find_header(const http_request_t *req, const char *name);

#endif
