/* SPDX-License-Identifier: MIT */
/*
 * client.c - the HTTP/1.1 client pool on the reactor.
 *
 * Every request goes into the pool's queue; an end-of-turn callback hands
 * queued requests to idle connections or opens new ones (up to max_conns),
 * so a callback never runs from inside httpc_request(). A new connection is
 * opened for one request (it fails with that connection's error) and later
 * serves whatever is queued.
 *
 * I/O per connection: IORING_OP_CONNECT on a nonblocking socket, then at
 * most one recv and one send in flight. Over TLS the recv lands straight in
 * the engine's record buffer and the send goes straight from it; the
 * request and response cross the engine through its plaintext windows. Over
 * plain TCP the recv lands in the response buffer and the send goes from
 * the request copy. A connection is freed only when it is closed, nothing
 * of it is in flight and no handler of it is on the stack (refs).
 */
#include "httpc.h"
#include "core.h"
#include "httpc_parse.h"
#include "log.h"
#include "met.h"
#include "tls.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEF_MAX_CONNS 8
#define DEF_MAX_QUEUE 1024
#define DEF_MAX_RESPONSE (1u << 20)
#define DEF_CONNECT_TIMEOUT_MS 10000
#define DEF_IDLE_TIMEOUT_MS 30000
#define DEF_REQUEST_TIMEOUT_MS 60000
#define MAX_ADDRS 4    /* resolved addresses kept and tried in turn */
#define INBUF_MIN 4096 /* first response buffer */
#define RECV_MIN 4096  /* free bytes a plain recv is given at least */

enum conn_state {
    CS_CONNECTING, /* TCP connect in flight */
    CS_HANDSHAKE,  /* TLS handshake */
    CS_IDLE,       /* kept alive, no request */
    CS_BUSY,       /* a request is being sent or its response read */
    CS_CLOSING,    /* waiting for its I/O to finish before it is freed */
};

typedef struct httpc_conn httpc_conn_t;

struct httpc_conn {
    httpc_pool_t *pool;
    core_qlink_t link; /* in the pool's conns, closing ones too */
    uint64_t id;               /* for log lines */
    int fd;                    /* -1 when none */
    enum conn_state state;
    unsigned addr_idx;   /* pool address being connected to */
    unsigned addr_tries; /* addresses tried for this connection */
    rx_op_t connect_op;
    rx_op_t recv_op;
    rx_op_t send_op;
    rx_timer_t timer; /* connect deadline, then idle deadline */
    unsigned refs;    /* handlers of this connection on the stack */
    bool closing;
    bool peer_eof;           /* the transport reached EOF or failed */
    tls_conn_t *tls;         /* https only, from connect to free */
    unsigned char *recv_win; /* TLS: the record window the recv in flight fills */
    httpc_req_t *req;        /* the request being served, NULL when none */
    uint64_t served;         /* responses completed on this connection */
    /* The request being sent: head and body, copied. NULL once all handed off. */
    char *out;
    size_t out_len; /* bytes */
    size_t out_off; /* bytes sent (plain) or given to the TLS engine */
    /* The response: head, decoded body, then undecoded bytes. */
    char *in;
    size_t in_len;   /* bytes in `in` */
    size_t in_cap;   /* bytes allocated */
    size_t recv_off; /* plain: where the recv in flight writes */
    httpc_head_t head;
    size_t head_len;  /* 0 until the head is parsed */
    http_body_t body; /* framing and progress; body.len bytes at in + head_len */
    bool head_done;
    bool is_head;   /* the request was a HEAD: no body follows */
    bool got_bytes; /* some byte of the response arrived */
};

struct httpc_pool {
    rx_loop_t *loop;
    httpc_options_t opt; /* with defaults filled in; url not kept */
    httpc_url_t url;     /* the origin, parsed */
    struct sockaddr_storage addrs[MAX_ADDRS];
    socklen_t addr_lens[MAX_ADDRS];
    unsigned naddrs;
    unsigned addr_cur; /* where new connections start: the last one that worked */
    /*
     * All connections, newest first. At most max_conns live ones (plus a
     * few closing), so unlinking by a walk costs nothing worth a second
     * pointer per connection.
     */
    core_queue_t conns;
    unsigned nconns; /* allocated, closing ones included */
    unsigned nlive;  /* not closing: counted against max_conns */
    core_queue_t queue; /* of httpc_req_t, by link: waiting for a connection */
    unsigned qlen;
    rx_defer_t defer; /* dispatches the queue; frees the pool when freeing */
    uint64_t next_id;
    bool freeing;
};

static void conn_close(httpc_conn_t *c);
static void conn_maybe_free(httpc_conn_t *c);
static void conn_hold(httpc_conn_t *c);
static void conn_release(httpc_conn_t *c);
static void conn_fail(httpc_conn_t *c, int err);
static void conn_io(httpc_conn_t *c);
static void tls_pump(httpc_conn_t *c);
static void on_defer(rx_loop_t *loop, rx_defer_t *d);

/* ---- requests and the queue ---- */

static void kick(httpc_pool_t *p)
{
    rx_defer(p->loop, &p->defer, on_defer);
}

static void q_push_back(httpc_pool_t *p, httpc_req_t *req)
{
    core_queue_push(&p->queue, &req->link);
    p->qlen++;
}

static void q_push_front(httpc_pool_t *p, httpc_req_t *req)
{
    core_queue_push_head(&p->queue, &req->link);
    p->qlen++;
}

static httpc_req_t *q_pop(httpc_pool_t *p)
{
    core_qlink_t *l = core_queue_pop(&p->queue);
    if (l == NULL)
        return NULL;
    p->qlen--;
    return container_of(l, httpc_req_t, link);
}

/* Unlinks `l` from `q` by a walk; false when it is not there. */
static bool queue_unlink(core_queue_t *q, core_qlink_t *l)
{
    for (core_qlink_t *prev = NULL, *at = q->head; at != NULL; prev = at, at = at->next) {
        if (at == l) {
            core_queue_remove_after(q, prev, l);
            return true;
        }
    }
    return false;
}

static void q_remove(httpc_pool_t *p, httpc_req_t *req)
{
    if (queue_unlink(&p->queue, &req->link))
        p->qlen--;
}

/* The connection at link `l` of the pool's list; NULL for NULL. */
static httpc_conn_t *conn_at(core_qlink_t *l)
{
    return l != NULL ? container_of(l, httpc_conn_t, link) : NULL;
}

/*
 * Completes a request: the callback runs last; `req` is the caller's again
 * afterwards. Every request ends here exactly once, so this is where an
 * answered call or a call without an answer is counted.
 */
static void req_finish(httpc_pool_t *p, httpc_req_t *req, int err, const httpc_response_t *resp)
{
    rx_timer_stop(p->loop, &req->timer);
    req->conn = NULL;
    if (err == 0) {
        met_self()->botapi_requests++;
    } else {
        met_self()->botapi_transport_errors++;
        if (err == -ETIMEDOUT)
            met_self()->botapi_timeouts++;
    }
    req->cb(req, err, resp);
}

static void on_req_timer(rx_loop_t *loop, rx_timer_t *t)
{
    httpc_req_t *req = container_of(t, httpc_req_t, timer);
    httpc_pool_t *p = req->pool;
    httpc_conn_t *c = req->conn;
    uint32_t ms = req->timeout_ms ? req->timeout_ms : DEF_REQUEST_TIMEOUT_MS;
    if (c == NULL) {
        q_remove(p, req);
        log_warn("httpc_timeout", "%s: no connection within %u ms", p->url.origin, ms);
        req_finish(p, req, -ETIMEDOUT, NULL);
        return;
    }
    /* The response may still come; the connection cannot be reused for another. */
    conn_hold(c);
    c->req = NULL;
    req->conn = NULL;
    log_warn("httpc_timeout", "%s conn=%llu: no complete response within %u ms", p->url.origin,
             (unsigned long long)c->id, ms);
    conn_close(c);
    req_finish(p, req, -ETIMEDOUT, NULL);
    conn_release(c);
}

/* ---- connection lifetime ---- */

static void conn_hold(httpc_conn_t *c)
{
    c->refs++;
}

static void conn_release(httpc_conn_t *c)
{
    assert(c->refs > 0);
    if (--c->refs == 0)
        conn_maybe_free(c);
}

/*
 * Frees the serialized request, wiped first: its request line holds the path,
 * and a Bot API path holds the bot token.
 */
static void out_free(httpc_conn_t *c)
{
    if (c->out != NULL)
        explicit_bzero(c->out, c->out_len);
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
}

static void conn_maybe_free(httpc_conn_t *c)
{
    httpc_pool_t *p = c->pool;
    if (!c->closing || c->refs > 0 || c->connect_op.armed || c->recv_op.armed || c->send_op.armed)
        return;
    if (c->fd >= 0)
        close(c->fd);
    tls_conn_free(c->tls);
    free(c->in);
    out_free(c);
    queue_unlink(&p->conns, &c->link);
    p->nconns--;
    free(c);
    if (p->freeing && p->nconns == 0)
        kick(p);
}

/* Stops using the connection: cancels its I/O; it is freed once that has finished. */
static void conn_close(httpc_conn_t *c)
{
    httpc_pool_t *p = c->pool;
    if (c->closing)
        return;
    assert(c->req == NULL);
    c->closing = true;
    c->state = CS_CLOSING;
    p->nlive--;
    met_self()->botapi_connections_open--;
    rx_timer_stop(p->loop, &c->timer);
    rx_cancel(p->loop, &c->connect_op);
    rx_cancel(p->loop, &c->recv_op);
    rx_cancel(p->loop, &c->send_op);
    kick(p); /* a slot is free for a queued request */
    conn_maybe_free(c);
}

/*
 * The connection failed with `err`: close it and fail its request, or send
 * the request again once on a fresh connection when a reused connection
 * turned out to be closed by the server before any byte of the response
 * (unless the request is sent once only: req->once).
 */
static void conn_fail(httpc_conn_t *c, int err)
{
    httpc_pool_t *p = c->pool;
    httpc_req_t *req = c->req;
    c->req = NULL;
    if (req != NULL)
        req->conn = NULL;
    bool retry = req != NULL && err == -ECONNRESET && c->served > 0 && !c->got_bytes &&
                 !req->retried && !req->once && !p->freeing;
    conn_close(c);
    if (req == NULL)
        return;
    if (retry) {
        log_debug("httpc_retry", "%s conn=%llu: closed by the server, sending again", p->url.origin,
                  (unsigned long long)c->id);
        req->retried = true;
        met_self()->botapi_stale_retries++;
        q_push_front(p, req);
        kick(p);
        return;
    }
    req_finish(p, req, err, NULL);
}

static void on_conn_timer(rx_loop_t *loop, rx_timer_t *t)
{
    httpc_conn_t *c = container_of(t, httpc_conn_t, timer);
    httpc_pool_t *p = c->pool;
    conn_hold(c);
    if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE) {
        log_warn("httpc_connect_timeout", "%s conn=%llu: %s not done within %u ms", p->url.origin,
                 (unsigned long long)c->id,
                 c->state == CS_CONNECTING ? "TCP connect" : "TLS handshake",
                 p->opt.connect_timeout_ms);
        conn_fail(c, -ETIMEDOUT);
    } else if (c->state == CS_IDLE) {
        log_debug("httpc_idle_close", "%s conn=%llu: idle", p->url.origin, (unsigned long long)c->id);
        conn_close(c);
    }
    conn_release(c);
}

/* Frees what an idle connection does not need and waits for the next request. */
static void conn_idle(httpc_conn_t *c)
{
    httpc_pool_t *p = c->pool;
    c->state = CS_IDLE;
    c->head_done = false;
    c->head_len = 0;
    c->body.len = 0;
    c->in_len = 0;
    if (c->tls != NULL) {
        /* Plaintext is copied in, never received into: the buffer can go. */
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    rx_timer_start(p->loop, &c->timer, p->opt.idle_timeout_ms, on_conn_timer);
    kick(p);
}

/* Prepares c->req for sending: the request copy and a fresh response state. */
static void conn_begin(httpc_conn_t *c)
{
    httpc_pool_t *p = c->pool;
    httpc_req_t *req = c->req;
    rx_timer_stop(p->loop, &c->timer);
    c->state = CS_BUSY;
    c->head_done = false;
    c->head_len = 0;
    c->body.len = 0;
    c->in_len = 0;
    c->got_bytes = false;
    c->is_head = strcmp(req->method, "HEAD") == 0;

    bool send_len = req->body_len > 0 || strcmp(req->method, "POST") == 0 ||
                    strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0;
    size_t cap = strlen(req->method) + strlen(req->path) + strlen(p->url.host_hdr) +
                 (req->content_type ? strlen(req->content_type) : 0) + 128 + req->body_len;
    out_free(c);
    c->out = xmalloc(cap);
    char clen[48] = "";
    if (send_len)
        snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", req->body_len);
    int n =
        snprintf(c->out, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s\r\n", req->method, req->path,
                 p->url.host_hdr, req->content_type ? "Content-Type: " : "",
                 req->content_type ? req->content_type : "", req->content_type ? "\r\n" : "", clen);
    assert(n > 0 && (size_t)n + req->body_len <= cap);
    if (req->body_len > 0)
        memcpy(c->out + n, req->body, req->body_len);
    c->out_len = (size_t)n + req->body_len;
    c->out_off = 0;
}

/* The connection is usable: serve its request, or wait idle. */
static void conn_ready(httpc_conn_t *c)
{
    rx_timer_stop(c->pool->loop, &c->timer);
    if (c->req != NULL)
        conn_begin(c);
    else
        conn_idle(c);
}

/* ---- plain TCP I/O ---- */

/* Makes room for at least `more` bytes after in_len; false past the response cap. */
static bool in_reserve(httpc_conn_t *c, size_t more)
{
    httpc_pool_t *p = c->pool;
    size_t limit = HTTPC_MAX_HEAD + p->opt.max_response + 2 * RECV_MIN;
    if (more > limit - c->in_len)
        return false;
    if (c->in_len + more <= c->in_cap)
        return true;
    size_t cap = http_buf_grow(c->in_cap, c->in_len + more, INBUF_MIN);
    if (cap > limit)
        cap = limit;
    char *q = xrealloc(c->in, cap);
    c->in = q;
    c->in_cap = cap;
    return true;
}

static void plain_send(httpc_conn_t *c)
{
    struct io_uring_sqe *sqe = rx_sqe(c->pool->loop, &c->send_op);
    io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
}

static void plain_arm_recv(httpc_conn_t *c)
{
    if (c->recv_op.armed || c->closing || c->peer_eof)
        return;
    if (c->in_cap - c->in_len < RECV_MIN && !in_reserve(c, RECV_MIN)) {
        /* Only reachable with a response already over the cap. */
        conn_fail(c, -EMSGSIZE);
        return;
    }
    c->recv_off = c->in_len;
    struct io_uring_sqe *sqe = rx_sqe(c->pool->loop, &c->recv_op);
    io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
}

/* Starts or continues the I/O of a connection that has a request or waits idle. */
static void conn_io(httpc_conn_t *c)
{
    if (c->closing)
        return;
    if (c->tls != NULL) {
        tls_pump(c);
        return;
    }
    if (c->out != NULL && !c->send_op.armed)
        plain_send(c);
    plain_arm_recv(c);
}

/* ---- responses ---- */

static void response_done(httpc_conn_t *c, bool extra)
{
    httpc_pool_t *p = c->pool;
    httpc_req_t *req = c->req;
    /*
     * The head's views were taken before the buffer grew for the body and
     * may point into its old place: parse the (unchanged) head bytes again.
     */
    int r = httpc_parse_response(c->in, c->head_len, HTTPC_MAX_HEAD, &c->head);
    assert(r == (int)c->head_len);
    (void)r;
    httpc_response_t resp = {
        .status = c->head.status,
        .body = c->in + c->head_len,
        .body_len = c->body.len,
        .retry_after = c->head.retry_after,
        .content_type = c->head.content_type,
        .content_type_len = c->head.content_type_len,
    };
    if (c->body.len == 0)
        resp.body = "";
    /*
     * Reuse only a connection whose stream is in a known state: the whole
     * request was handed off, the body had a length, nothing followed it.
     */
    bool reuse = c->head.keep_alive && c->body.mode != HTTP_BODY_EOF && !extra && c->out == NULL &&
                 !c->peer_eof && !p->freeing;
    if (extra)
        log_debug("httpc_extra_bytes", "%s conn=%llu: bytes after the response, closing", p->url.origin,
                  (unsigned long long)c->id);
    c->req = NULL;
    c->served++;
    req_finish(p, req, 0, &resp);
    if (c->closing)
        return; /* the callback freed the pool */
    if (reuse)
        conn_idle(c);
    else
        conn_close(c);
}

static void protocol_error(httpc_conn_t *c, const char *why)
{
    log_warn("httpc_bad_response", "%s conn=%llu: %s", c->pool->url.origin, (unsigned long long)c->id,
             why);
    conn_fail(c, -EPROTO);
}

static void too_big(httpc_conn_t *c)
{
    log_warn("httpc_response_too_big", "%s conn=%llu: response over %zu bytes", c->pool->url.origin,
             (unsigned long long)c->id, c->pool->opt.max_response);
    conn_fail(c, -EMSGSIZE);
}

/* Parses what has arrived in c->in; completes or fails the request when it can. */
static void process_input(httpc_conn_t *c)
{
    httpc_pool_t *p = c->pool;
    if (!c->head_done) {
        int r;
        for (;;) {
            r = httpc_parse_response(c->in, c->in_len, HTTPC_MAX_HEAD, &c->head);
            if (r == -EAGAIN)
                return;
            if (r == -EMSGSIZE) {
                too_big(c);
                return;
            }
            if (r < 0) {
                protocol_error(c, c->head.error);
                return;
            }
            if (c->head.status >= 200)
                break;
            if (c->head.status == 101) {
                protocol_error(c, "101 Switching Protocols without an upgrade request");
                return;
            }
            /* An interim response (100, 103): skip it, the real one follows. */
            memmove(c->in, c->in + r, c->in_len - (size_t)r);
            c->in_len -= (size_t)r;
        }
        c->head_done = true;
        c->head_len = (size_t)r;
        http_body_mode_t mode = HTTP_BODY_EOF;
        if (c->is_head || c->head.status == 204 || c->head.status == 304)
            mode = HTTP_BODY_NONE;
        else if (c->head.chunked)
            mode = HTTP_BODY_CHUNKED;
        else if (c->head.content_length >= 0)
            mode = HTTP_BODY_LENGTH;
        uint64_t length = c->head.content_length > 0 ? (uint64_t)c->head.content_length : 0;
        http_body_init(&c->body, mode, length, p->opt.max_response);
    }

    size_t avail = c->in_len - c->head_len;
    long rest = http_body_read(&c->body, c->in + c->head_len, &avail);
    if (rest == -EBADMSG) {
        protocol_error(c, "malformed chunked body");
        return;
    }
    if (rest == -EMSGSIZE) {
        too_big(c);
        return;
    }
    /* Chunked framing removed shrinks the input. */
    c->in_len = c->head_len + avail;
    if (rest >= 0)
        response_done(c, rest > 0);
}

/* The transport reached EOF (res == 0) or failed (res < 0). */
static void transport_eof(httpc_conn_t *c, int res)
{
    httpc_pool_t *p = c->pool;
    c->peer_eof = true;
    if (c->req == NULL) {
        /* An idle connection the server closed: expected, and now noticed early. */
        log_debug("httpc_peer_closed", "%s conn=%llu: closed while idle", p->url.origin,
                  (unsigned long long)c->id);
        conn_close(c);
        return;
    }
    if (c->state == CS_HANDSHAKE) {
        log_warn("tls_handshake_eof", "%s conn=%llu: connection %s during the TLS handshake",
                 p->url.origin, (unsigned long long)c->id, res == 0 ? "closed" : strerror(-res));
        conn_fail(c, -ECONNRESET);
        return;
    }
    if (c->head_done && c->body.mode == HTTP_BODY_EOF && res == 0) {
        if (c->tls == NULL) {
            response_done(c, false);
            return;
        }
        /* Over TLS only close_notify ends such a body; a bare EOF may be an attack. */
        log_warn("tls_truncated",
                 "%s conn=%llu: EOF without close_notify before the end of "
                 "the response",
                 p->url.origin, (unsigned long long)c->id);
    } else if (c->got_bytes) {
        log_warn("httpc_truncated", "%s conn=%llu: connection %s before the end of the response",
                 p->url.origin, (unsigned long long)c->id, res == 0 ? "closed" : strerror(-res));
    }
    conn_fail(c, -ECONNRESET);
}

/* ---- TLS ---- */

static void tls_closed(httpc_conn_t *c)
{
    httpc_pool_t *p = c->pool;
    int err = tls_conn_error(c->tls);
    if (err == 0) {
        /* close_notify from the server. */
        if (c->req != NULL && c->state == CS_BUSY && c->head_done && c->body.mode == HTTP_BODY_EOF) {
            c->peer_eof = true;
            response_done(c, false);
        } else if (c->req != NULL) {
            conn_fail(c, -ECONNRESET);
        } else {
            conn_close(c);
        }
        return;
    }
    char msg[200];
    tls_strerror(err, msg, sizeof(msg));
    if (!tls_conn_ready(c->tls)) {
        met_self()->tls_failures++;
        log_error("tls_handshake_failed", "%s conn=%llu host=%s: %s", p->url.origin,
                  (unsigned long long)c->id, p->url.host, msg);
        conn_fail(c, -EKEYREJECTED);
    } else {
        log_warn("tls_failed", "%s conn=%llu: %s", p->url.origin, (unsigned long long)c->id, msg);
        conn_fail(c, -ECONNRESET);
    }
}

/*
 * Moves plaintext through the engine until nothing more can happen without
 * I/O, then arms the send and the recv the engine asks for.
 */
static void tls_pump(httpc_conn_t *c)
{
    httpc_pool_t *p = c->pool;
    unsigned st;
    for (;;) {
        if (c->closing)
            return;
        st = tls_conn_state(c->tls);
        if (st & TLS_CLOSED) {
            tls_closed(c);
            return;
        }
        if (c->state == CS_HANDSHAKE && tls_conn_ready(c->tls)) {
            if (tls_conn_resumed(c->tls))
                met_self()->tls_handshakes_resumed++;
            else
                met_self()->tls_handshakes_full++;
            log_debug("tls_handshake_done", "%s conn=%llu: %s handshake", p->url.origin,
                      (unsigned long long)c->id, tls_conn_resumed(c->tls) ? "resumed" : "full");
            conn_ready(c);
            continue;
        }
        if ((st & TLS_SENDAPP) && c->out != NULL) {
            size_t len;
            unsigned char *w = tls_conn_sendapp_buf(c->tls, &len);
            size_t n = c->out_len - c->out_off;
            if (n > len)
                n = len;
            memcpy(w, c->out + c->out_off, n);
            tls_conn_sendapp_ack(c->tls, n);
            c->out_off += n;
            if (c->out_off == c->out_len) {
                tls_conn_flush(c->tls);
                out_free(c);
            }
            continue;
        }
        if (st & TLS_RECVAPP) {
            size_t len;
            unsigned char *w = tls_conn_recvapp_buf(c->tls, &len);
            if (c->req == NULL) {
                log_debug("httpc_unsolicited", "%s conn=%llu: data without a request", p->url.origin,
                          (unsigned long long)c->id);
                conn_close(c);
                return;
            }
            if (!in_reserve(c, len)) {
                too_big(c);
                return;
            }
            memcpy(c->in + c->in_len, w, len);
            c->in_len += len;
            tls_conn_recvapp_ack(c->tls, len);
            c->got_bytes = true;
            process_input(c);
            continue;
        }
        break;
    }
    if ((st & TLS_SENDREC) && !c->send_op.armed) {
        size_t len;
        unsigned char *w = tls_conn_sendrec_buf(c->tls, &len);
        struct io_uring_sqe *sqe = rx_sqe(p->loop, &c->send_op);
        io_uring_prep_send(sqe, c->fd, w, len, MSG_NOSIGNAL);
    }
    if ((st & TLS_RECVREC) && !c->recv_op.armed && !c->peer_eof) {
        size_t len;
        c->recv_win = tls_conn_recvrec_buf(c->tls, &len);
        struct io_uring_sqe *sqe = rx_sqe(p->loop, &c->recv_op);
        io_uring_prep_recv(sqe, c->fd, c->recv_win, len, 0);
    }
}

/* ---- completions ---- */

static void on_recv(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    httpc_conn_t *c = container_of(op, httpc_conn_t, recv_op);
    conn_hold(c);
    if (c->closing)
        goto out;
    if (res <= 0) {
        transport_eof(c, res);
        goto out;
    }
    if (c->tls != NULL) {
        size_t len;
        unsigned char *w = tls_conn_recvrec_buf(c->tls, &len);
        /* If the engine failed meanwhile its window is gone: the bytes are moot. */
        if (w == c->recv_win && (size_t)res <= len)
            tls_conn_recvrec_ack(c->tls, (size_t)res);
        tls_pump(c);
        goto out;
    }
    if (c->recv_off != c->in_len)
        memmove(c->in + c->in_len, c->in + c->recv_off, (size_t)res);
    c->in_len += (size_t)res;
    if (c->req == NULL) {
        log_debug("httpc_unsolicited", "%s conn=%llu: data without a request", c->pool->url.origin,
                  (unsigned long long)c->id);
        conn_close(c);
        goto out;
    }
    c->got_bytes = true;
    process_input(c);
    conn_io(c);
out:
    conn_release(c);
}

static void on_send(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    httpc_conn_t *c = container_of(op, httpc_conn_t, send_op);
    conn_hold(c);
    if (c->closing)
        goto out;
    if (res <= 0) {
        log_debug("httpc_send_failed", "%s conn=%llu: %s", c->pool->url.origin,
                  (unsigned long long)c->id, res == 0 ? "nothing sent" : strerror(-res));
        c->peer_eof = true;
        conn_fail(c, -ECONNRESET);
        goto out;
    }
    if (c->tls != NULL) {
        tls_conn_sendrec_ack(c->tls, (size_t)res);
    } else {
        c->out_off += (size_t)res;
        if (c->out_off == c->out_len) {
            out_free(c);
        }
    }
    conn_io(c);
out:
    conn_release(c);
}

static void conn_connect(httpc_conn_t *c);

static int connect_error(int res)
{
    switch (res) {
    case -ENETUNREACH:
    case -EHOSTUNREACH:
    case -EHOSTDOWN:
    case -ENETDOWN:
        return -EHOSTUNREACH;
    case -ETIMEDOUT:
        return -ETIMEDOUT;
    default:
        return -ECONNREFUSED;
    }
}

static void on_connect(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    httpc_conn_t *c = container_of(op, httpc_conn_t, connect_op);
    httpc_pool_t *p = c->pool;
    conn_hold(c);
    if (c->closing)
        goto out;
    if (res < 0) {
        close(c->fd);
        c->fd = -1;
        if (++c->addr_tries < p->naddrs) {
            log_debug("httpc_connect_next", "%s conn=%llu: %s, trying the next address", p->url.origin,
                      (unsigned long long)c->id, strerror(-res));
            c->addr_idx = (c->addr_idx + 1) % p->naddrs;
            conn_connect(c);
            goto out;
        }
        log_warn("httpc_connect_failed", "%s conn=%llu: %s", p->url.origin, (unsigned long long)c->id,
                 strerror(-res));
        conn_fail(c, connect_error(res));
        goto out;
    }
    p->addr_cur = c->addr_idx;
    met_self()->botapi_connects++;
    if (!p->url.tls) {
        conn_ready(c);
        conn_io(c);
        goto out;
    }
    int err;
    c->tls = tls_conn_new(p->opt.tls, p->url.host, p->url.port, &err);
    if (c->tls == NULL) {
        log_error("tls_start_failed", "%s conn=%llu: %s", p->url.origin, (unsigned long long)c->id,
                  strerror(-err));
        conn_fail(c, -ECONNRESET);
        goto out;
    }
    c->state = CS_HANDSHAKE;
    tls_pump(c);
out:
    conn_release(c);
}

static void conn_connect(httpc_conn_t *c)
{
    httpc_pool_t *p = c->pool;
    const struct sockaddr_storage *a = &p->addrs[c->addr_idx];
    c->fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        int e = errno;
        log_error("httpc_socket_failed", "%s: socket: %s", p->url.origin, strerror(e));
        conn_fail(c, -ECONNREFUSED);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct io_uring_sqe *sqe = rx_sqe(p->loop, &c->connect_op);
    io_uring_prep_connect(sqe, c->fd, (const struct sockaddr *)a, p->addr_lens[c->addr_idx]);
}

/* Opens a connection for `req`, which fails with the connection's error if it cannot be made. */
static void conn_open(httpc_pool_t *p, httpc_req_t *req)
{
    httpc_conn_t *c = xcalloc(1, sizeof(*c));
    c->pool = p;
    c->id = ++p->next_id;
    c->fd = -1;
    c->connect_op.cb = on_connect;
    c->recv_op.cb = on_recv;
    c->send_op.cb = on_send;
    core_queue_push_head(&p->conns, &c->link);
    p->nconns++;
    p->nlive++;
    met_self()->botapi_connections_open++;
    c->state = CS_CONNECTING;
    c->addr_idx = p->addr_cur;
    c->req = req;
    req->conn = c;
    conn_hold(c);
    rx_timer_start(p->loop, &c->timer, p->opt.connect_timeout_ms, on_conn_timer);
    conn_connect(c);
    conn_release(c);
}

/* ---- the pool ---- */

static void on_defer(rx_loop_t *loop, rx_defer_t *d)
{
    httpc_pool_t *p = container_of(d, httpc_pool_t, defer);
    if (p->freeing) {
        if (p->nconns == 0)
            free(p);
        return;
    }
    while (!core_queue_empty(&p->queue) && !p->freeing) {
        httpc_conn_t *idle = NULL;
        for (httpc_conn_t *c = conn_at(p->conns.head); c != NULL; c = conn_at(c->link.next)) {
            if (c->state == CS_IDLE) {
                idle = c;
                break;
            }
        }
        if (idle != NULL) {
            httpc_req_t *req = q_pop(p);
            idle->req = req;
            req->conn = idle;
            conn_hold(idle);
            conn_begin(idle);
            conn_io(idle);
            conn_release(idle);
        } else if (p->nlive < p->opt.max_conns) {
            conn_open(p, q_pop(p));
        } else {
            break;
        }
    }
}

static bool valid_token(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++) {
        if (!http_is_tchar(*s))
            return false;
    }
    return true;
}

static bool valid_text(const char *s, bool allow_space)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x20 || ch == 0x7f || (ch == ' ' && !allow_space))
            return false;
    }
    return true;
}

int httpc_request(httpc_pool_t *p, httpc_req_t *req)
{
    if (p->freeing)
        return -ECANCELED;
    if (!valid_token(req->method) || req->path == NULL || req->path[0] != '/' ||
        !valid_text(req->path, false) ||
        (req->content_type != NULL && !valid_text(req->content_type, true)) ||
        (req->body_len > 0 && req->body == NULL) || req->cb == NULL)
        return -EINVAL;
    /* Requests an idle or not yet opened connection will take do not count as waiting. */
    unsigned free_slots = p->opt.max_conns - p->nlive;
    for (httpc_conn_t *c = conn_at(p->conns.head); c != NULL; c = conn_at(c->link.next))
        if (c->state == CS_IDLE)
            free_slots++;
    if (p->qlen >= p->opt.max_queue + free_slots)
        return -EAGAIN;
    uint32_t ms = req->timeout_ms ? req->timeout_ms : DEF_REQUEST_TIMEOUT_MS;
    req->pool = p;
    req->conn = NULL;
    req->retried = false;
    req->deadline = rx_now(p->loop) + ms;
    memset(&req->timer, 0, sizeof(req->timer));
    rx_timer_start(p->loop, &req->timer, ms, on_req_timer);
    q_push_back(p, req);
    kick(p);
    return 0;
}

void httpc_pool_free(httpc_pool_t *p)
{
    if (p == NULL || p->freeing)
        return;
    p->freeing = true;
    httpc_req_t *req;
    while ((req = q_pop(p)) != NULL)
        req_finish(p, req, -ECANCELED, NULL);
    for (httpc_conn_t *c = conn_at(p->conns.head), *next; c != NULL; c = next) {
        conn_hold(c);
        req = c->req;
        c->req = NULL;
        conn_close(c);
        if (req != NULL)
            req_finish(p, req, -ECANCELED, NULL);
        next = conn_at(c->link.next);
        conn_release(c);
    }
    if (p->nconns == 0)
        kick(p);
}

/* ---- creation ---- */

httpc_pool_t *httpc_pool_new(rx_loop_t *loop, const httpc_options_t *opt, int *err)
{
    httpc_pool_t *p = xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->opt = *opt;
    p->opt.url = NULL;
    if (p->opt.max_conns == 0)
        p->opt.max_conns = DEF_MAX_CONNS;
    if (p->opt.max_queue == 0)
        p->opt.max_queue = DEF_MAX_QUEUE;
    if (p->opt.max_response == 0)
        p->opt.max_response = DEF_MAX_RESPONSE;
    if (p->opt.connect_timeout_ms == 0)
        p->opt.connect_timeout_ms = DEF_CONNECT_TIMEOUT_MS;
    if (p->opt.idle_timeout_ms == 0)
        p->opt.idle_timeout_ms = DEF_IDLE_TIMEOUT_MS;

    int e = opt->url != NULL ? httpc_parse_url(opt->url, strlen(opt->url), &p->url) : -EINVAL;
    if (e == 0 && p->url.tls && opt->tls == NULL)
        e = -EINVAL;
    if (e < 0) {
        /* The URL itself is not logged: a mistaken one might carry the bot token. */
        log_error("httpc_bad_url", "an origin URL must be https://<DNS name>[:port] (with a "
                                   "CA bundle) or http://<host>[:port], without a path");
        goto fail;
    }

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)p->url.port);
    int g = getaddrinfo(p->url.host, port, &hints, &res);
    if (g != 0) {
        e = (g == EAI_NONAME || g == EAI_NODATA) ? -ENOENT : -EHOSTUNREACH;
        log_error("httpc_resolve_failed", "%s: %s", p->url.origin, gai_strerror(g));
        goto fail;
    }
    for (struct addrinfo *ai = res; ai != NULL && p->naddrs < MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(p->addrs[0]))
            continue;
        memcpy(&p->addrs[p->naddrs], ai->ai_addr, ai->ai_addrlen);
        p->addr_lens[p->naddrs] = ai->ai_addrlen;
        p->naddrs++;
    }
    freeaddrinfo(res);
    if (p->naddrs == 0) {
        e = -ENOENT;
        log_error("httpc_resolve_failed", "%s: no usable address", p->url.origin);
        goto fail;
    }
    return p;

fail:
    free(p);
    *err = e;
    return NULL;
}
