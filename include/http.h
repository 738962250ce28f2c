/* SPDX-License-Identifier: MIT */
/*
 * http.h - the HTTP/1.1 server on the reactor: accepts connections, feeds
 * the bytes to the request parser (http_parse.h) and the body reader
 * (http1.h), hands complete requests to the application and writes its
 * responses. The pure parts are declared in those two headers, included
 * here so that an application needs only this one.
 *
 * Depends on core and reactor.
 */
#ifndef TGRING_HTTP_H
#define TGRING_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_parse.h"
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
    unsigned send_timeout_ms;   /* with a response in flight, how long the client may take none
                                   of what it was sent (counted across pipelined responses):
                                   past it the connection is closed; 0: 10 s */
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

/* Closes everything at once (the grace period ran out), also dropping responses
 * still being sent. */
void http_server_close_all(http_server_t *s);

/* Frees the server. Only once the loop no longer runs, after rx_run returned. */
void http_server_free(http_server_t *s);

/* Open connections. */
unsigned http_server_connections(const http_server_t *s);

/* Bytes allocated for request buffers across the server's connections now. */
uint64_t http_server_buffered(const http_server_t *s);

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
