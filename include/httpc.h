/* SPDX-License-Identifier: MIT */
/*
 * httpc.h - HTTP/1.1 client on the reactor: a bounded pool of kept-alive
 * connections to one origin (https:// through tls, or plain http://), with
 * per-request deadlines and a response size cap.
 *
 * One request at a time per connection (no pipelining). Responses framed by
 * Content-Length, chunked, or (without either) by the end of the connection;
 * "Connection: close" or HTTP/1.0 closes the connection after the response.
 * Idle connections keep a recv armed, so a server's close is seen at once,
 * and are closed after idle_timeout_ms. A request sent on a reused
 * connection that the server closed meanwhile (EOF, reset or a TLS
 * close_notify before any byte of the response) is sent again, once, on a
 * fresh connection: for a POST this can deliver it twice, which callers
 * must accept (the Bot API sender is at-least-once anyway).
 *
 * Memory: a TLS connection holds about 40 KB while open (tls.h) plus a
 * request copy while sending and a response buffer while receiving (freed
 * when idle); a closed connection holds nothing.
 *
 * Metrics: the pool keeps no counters of its own; it counts into this
 * worker's slot (met.h) as each event happens: connections opened and open,
 * TLS handshakes and failures, requests answered, requests ended without an
 * answer (timeouts among them; every error a callback gets, -ECANCELED
 * too) and requests sent again after a stale connection. The slot's names
 * say botapi, the one origin a worker's pool talks to.
 *
 * Depends on core, reactor, tls, and http's lexer and body reader (http1.h);
 * its pure parsers are in httpc_parse.h.
 */
#ifndef TGRING_HTTPC_H
#define TGRING_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "reactor.h"
#include "tls.h"

typedef struct httpc_pool httpc_pool_t;
typedef struct httpc_req httpc_req_t;

/* A response, valid only during the callback. Views are not NUL-terminated. */
typedef struct httpc_response {
    int status;       /* e.g. 200, 429 */
    const char *body; /* decoded (Content-Length or chunked) */
    size_t body_len;
    int64_t retry_after; /* Retry-After header in seconds, -1 when absent */
    const char *content_type;
    size_t content_type_len;
} httpc_response_t;

/*
 * Runs exactly once per accepted httpc_request(), never synchronously from it.
 * err: 0 with `resp` set; or -ETIMEDOUT (deadline passed), -ECONNRESET (the
 * connection failed or closed before a complete response, including TLS
 * truncation), -EPROTO (malformed response), -EMSGSIZE (response over the
 * cap), -ECONNREFUSED / -EHOSTUNREACH (connect failed), -EKEYREJECTED (TLS
 * certificate or handshake failure: never retried on a weaker setting),
 * -ECANCELED (pool freed). resp is NULL unless err == 0.
 * The callback may call httpc_request() and httpc_pool_free().
 */
typedef void (*httpc_cb)(httpc_req_t *req, int err, const httpc_response_t *resp);

/* One request; owned by the caller, valid (with what it points at) until the callback. */
struct httpc_req {
    const char *method;       /* "POST" */
    const char *path;         /* "/bot<token>/sendMessage": never logged */
    const char *content_type; /* NULL for none */
    const char *body;
    size_t body_len;
    uint32_t timeout_ms; /* from httpc_request() to the complete response; 0: 60 s */
    httpc_cb cb;
    void *data; /* for the caller */
    /*
     * Never sent twice. Without it a request on a kept-alive connection that
     * the server closes before any byte of the answer is sent again once on a
     * fresh connection (the server most likely closed it idle, unread). A
     * call that must not be repeated (it sends a message, within rate
     * limits) sets it, and gets -ECONNRESET instead: the server may have
     * acted on it.
     */
    bool once;
    /* Private to httpc. */
    core_qlink_t link; /* in the pool's queue while waiting for a connection */
    uint64_t deadline;
    void *conn;
    httpc_pool_t *pool;
    rx_timer_t timer; /* the deadline */
    bool retried;     /* already sent again after a stale connection */
};

typedef struct httpc_options {
    const char *url; /* origin: "https://host[:port]" or "http://host[:port]" */
    tls_ctx_t *tls;  /* trust anchors, session cache; required for https */
    /* Zero in any of these means its default. */
    unsigned max_conns;          /* kept-alive connections, default 8 */
    unsigned max_queue;          /* requests waiting for a connection; refused past it; 1024 */
    size_t max_response;         /* body bytes (decoded), default 1 MiB */
    uint32_t connect_timeout_ms; /* TCP + TLS handshake, default 10 s */
    uint32_t idle_timeout_ms;    /* close a connection idle this long, default 30 s */
} httpc_options_t;

/*
 * Makes a pool for the origin in opt->url (resolved with getaddrinfo at
 * creation, blocking, once; the first few addresses are tried in turn when
 * a connect fails). The URL has no path (a final "/" is allowed); an IPv6
 * literal goes in brackets. For https the host must be a DNS name, since
 * that is what the certificate is checked against. `opt->tls` is borrowed
 * and must outlive the pool.
 * Returns NULL with *err: -EINVAL (bad URL, https without tls),
 * -EHOSTUNREACH/-ENOENT (name does not resolve).
 */
httpc_pool_t *httpc_pool_new(rx_loop_t *loop, const httpc_options_t *opt, int *err);

/*
 * Sends `req` on an idle connection, a new one (up to max_conns), or queues it.
 * The method, path and content type must be free of CR, LF and other
 * control characters; the request (head and body) is copied before sending.
 * Returns 0 (the callback will run) or, and then the callback won't:
 * -EAGAIN when the queue is full, -EINVAL for a malformed request,
 * -ECANCELED when the pool is being freed.
 */
int httpc_request(httpc_pool_t *p, httpc_req_t *req);

/*
 * Fails every queued and in-flight request with -ECANCELED (synchronously),
 * closes the connections and frees the pool once their I/O has completed
 * (run the loop a turn after it).
 */
void httpc_pool_free(httpc_pool_t *p);

#endif
