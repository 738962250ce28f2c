/* SPDX-License-Identifier: MIT */
/*
 * http.h - HTTP/1.1 server side: a strict request parser (RFC 9112) that is a
 * pure function over bytes, a chunked body decoder, and the connection
 * handling on the reactor that feeds them and writes responses.
 *
 * Depends on core and reactor.
 */
#ifndef TGRING_HTTP_H
#define TGRING_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- parser ----------------------------------------------------------- */

#define HTTP_MAX_HEADERS 64

/* A view into the caller's buffer; never NUL-terminated. */
typedef struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing OWS stripped */
    size_t value_len;
} http_header_t;

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

/* Incremental decoder for a chunked request body; keep one per request. */
typedef struct http_chunked {
    int state;          /* internal */
    uint64_t remaining; /* bytes left in the current chunk */
    uint64_t total;     /* decoded bytes so far */
    uint64_t max_body;  /* cap on total (413 past it) */
    size_t aux;         /* internal: bytes of size line/extension/trailer seen */
} http_chunked_t;

void http_chunked_init(http_chunked_t *d, uint64_t max_body);

/*
 * Decodes chunked data in place. On entry buf[0..*len) holds raw bytes that
 * follow what earlier calls consumed. On return the decoded bytes of this
 * call are at buf[0..*len) (the caller appends them to the body).
 * Returns >= 0 when the body is complete: the number of bytes after the
 * terminating CRLF, which are left at buf + *len .. buf + *len + ret (the next
 * pipelined request, moved down); -EAGAIN when more input is needed (all input
 * was consumed); -EBADMSG on malformed input (400); -EMSGSIZE when the body
 * exceeds max_body (413); on an error *len is what this call decoded, to be
 * discarded. Chunk extensions and trailer fields are accepted and discarded,
 * each capped in size. Once the body is complete, a further call leaves all
 * its input as following bytes.
 */
long http_chunked_decode(http_chunked_t *d, char *buf, size_t *len);

/* The reason phrase for `status`, e.g. "Not Found"; "Unknown" if none. */
const char *http_reason(int status);

/* Case-insensitive comparison of a (ptr, len) view with a NUL-terminated literal. */
bool http_token_eq(const char *s, size_t len, const char *lit);

/* Finds header `name` (case-insensitive); NULL when absent. */
const http_header_t *http_find_header(const http_request_t *req, const char *name);

/* ---- server ----------------------------------------------------------- */

#include "reactor.h"

typedef struct http_server http_server_t;
typedef struct http_conn http_conn_t;

/*
 * Called once per complete request. `req` and body[0..body_len) stay valid
 * until the application calls http_respond() on `c`, which it must do exactly
 * once, now or later (e.g. after a database commit). Until then the server
 * reads no further request from the connection (pipelined bytes wait in the
 * buffer) and does not free it, even if the peer goes away.
 */
typedef void (*http_request_cb)(http_server_t *s, http_conn_t *c, const http_request_t *req,
                                char *body, size_t body_len);

typedef struct http_server_options {
    http_limits_t limits;
    unsigned max_connections;   /* accepted connections past it are closed at once */
    uint64_t buffer_budget;     /* bytes of request buffers across connections (503 past it) */
    unsigned header_timeout_ms; /* from a request's first byte to the end of its head (408) */
    unsigned body_timeout_ms;   /* from the end of the head to the end of the body (408) */
    unsigned idle_timeout_ms;   /* keep-alive connection with no request in progress */
    http_request_cb on_request;
    void *data; /* for the application: http_server_data() */
} http_server_options_t;

/*
 * Allocates a server on `loop` that accepts on the bound, listening socket
 * `fd` (multishot accept) and reads with multishot recv into a provided-buffer
 * ring. Returns NULL with *err set (-errno) when the buffer ring cannot be
 * registered.
 */
http_server_t *http_server_new(rx_loop_t *loop, int fd, const http_server_options_t *opt, int *err);

/* The options' `data`. */
void *http_server_data(const http_server_t *s);

/*
 * Stops accepting and closes the listening socket; idle connections are
 * closed, and every other connection is closed after its current response.
 * `on_drained` runs (from the loop) once no connection is left.
 */
void http_server_drain(http_server_t *s, void (*on_drained)(void *arg), void *arg);

/* Closes everything at once (the grace period ran out). */
void http_server_close_all(http_server_t *s);

/* Frees the server. Only once the loop no longer runs, after rx_run returned. */
void http_server_free(http_server_t *s);

/* Open connections. */
unsigned http_server_connections(const http_server_t *s);

/*
 * Answers the current request of `c`: status line, Content-Length,
 * `content_type` (NULL for none), `extra_headers` (NULL, or complete
 * "Name: value\r\n" lines) and body[0..len) (copied). If the peer has gone
 * away, it only releases the request. After an error status that leaves the
 * stream unusable the caller sets `close`.
 */
void http_respond(http_conn_t *c, int status, const char *content_type, const char *extra_headers,
                  const char *body, size_t len, bool close);

/* A small id for log lines: the connection's accept sequence number. */
uint64_t http_conn_id(const http_conn_t *c);

/* Per-request storage for the application, 256 bytes, aligned for any type;
 * valid from on_request to http_respond. */
void *http_conn_scratch(http_conn_t *c);
#define HTTP_SCRATCH_SIZE 256

#endif
