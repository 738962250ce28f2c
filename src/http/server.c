/* SPDX-License-Identifier: MIT */
/*
 * server.c - HTTP/1.1 connections on the reactor.
 *
 * Multishot accept on the listening socket; multishot recv into a shared
 * provided-buffer ring, copied at once into the connection's request buffer
 * (so ring buffers go back to the kernel within the same turn); one request
 * at a time per connection is handed to the application, later pipelined
 * bytes wait in the buffer; at most one send in flight per connection. A
 * connection's backlog is bounded: reading from it stops while a response is
 * in flight and pipelined input waits (PIPELINE_MAX), its next request waits
 * until the last response is mostly sent (OUT_LOWAT), and one that takes none
 * of what it is sent for the response deadline is closed.
 *
 * A connection is freed only when it is closed and neither a recv, a send,
 * a close nor an application request of it is outstanding.
 */
#include "http.h"
#include "core.h"
#include "log.h"
#include "met.h"

#include <assert.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define RECV_BGID 1
#define RECV_NBUFS 1024 /* x RECV_BUFSZ = 4 MiB of receive buffers per reactor */
#define RECV_BUFSZ 4096
#define LINGER_MS 2000 /* after a closing response, how long to read and discard */
#define INBUF_MIN 2048
#define TXN_FREE_MAX 256      /* request contexts kept for reuse */
#define SEND_TIMEOUT_MS 10000 /* send_timeout_ms when the options leave it 0 */
/*
 * A connection's backlog: while a request of it is in progress or a response
 * is in flight, reading stops once more than PIPELINE_MAX bytes of pipelined
 * input wait behind it, and resumes when the backlog is down to half of that
 * or the response is out. What the multishot recv had delivered before its
 * cancel lands is kept up to PIPELINE_SLACK more; past that the connection is
 * closed after its response. So a client that pipelines and never reads holds
 * one response and at most PIPELINE_MAX + PIPELINE_SLACK bytes of input.
 */
#define PIPELINE_MAX 16384
#define PIPELINE_SLACK 65536
/*
 * A response handed to the kernel still counts while more than OUT_LOWAT
 * bytes of it are unsent (the socket's TCP_NOTSENT_LOWAT, so that POLLOUT says
 * when it is down to that): the connection's next request waits until then.
 * So a client that does not read has at most one response rendered beyond
 * what it took, and its socket buffer queues little more than OUT_LOWAT.
 */
#define OUT_LOWAT 16384
/*
 * After a failed accept (EMFILE, ENFILE, ENOMEM...) the connection stays in
 * the backlog and the next accept fails at once: re-arming at once would spin.
 * So accepting resumes after a delay, doubling from the first to the cap, and
 * at most one line per ACCEPT_WARN_MS says so, with the failures it stands for.
 */
#define ACCEPT_DELAY_MIN_MS 10
#define ACCEPT_DELAY_MAX_MS 1000
#define ACCEPT_WARN_MS 1000

/* What a connection holds while a request is in progress. */
typedef struct http_txn {
    http_request_t req;
    http_body_t body; /* the body reader; body.len bytes of body at in + head_len */
    struct http_txn *next_free;
    union {
        max_align_t align;
        unsigned char bytes[HTTP_SCRATCH_SIZE];
    } scratch;
} http_txn_t;

struct http_conn {
    http_server_t *srv;
    http_conn_t *prev, *next; /* all open connections */
    int fd;
    uint64_t id;
    rx_op_t recv_op;
    rx_op_t send_op;
    rx_op_t close_op;
    rx_op_t poll_op; /* POLLOUT: armed while the last response's unsent bytes exceed OUT_LOWAT */
    rx_timer_t timer;
    char *in;              /* request bytes: head, body, then pipelined bytes */
    size_t in_len;         /* bytes in `in` */
    size_t in_cap;         /* bytes allocated (counted in the server's budget) */
    size_t head_len;       /* length of the current request's head; 0 until parsed */
    const char *parsed_at; /* `in` when the head was parsed (its views point there) */
    http_txn_t *txn;       /* NULL when no request is in progress */
    char *out;             /* response being sent */
    size_t out_len;
    size_t out_off;
    uint64_t sent;       /* bytes handed to the kernel over the connection's life */
    uint64_t taken;      /* of those, bytes the peer had acknowledged when last looked at */
    uint64_t stalled_at; /* rx_now() ms since which the peer took none of ours; 0: owes none */
    bool dispatched;     /* the application holds the current request */
    bool closing;        /* no more requests; close when nothing is outstanding */
    bool close_after;    /* close once the current response is sent */
    bool lingering;      /* response sent, write side shut, discarding input */
    bool peer_eof;       /* the peer closed its write side or the socket failed */
    bool paused;         /* recv cancelled because enough pipelined input is buffered */
    bool head_timer;     /* the header deadline of the current request is set */
    bool overflow;       /* pipelined bytes were dropped: close after the response */
    bool aborted;        /* closed with a response unsent: what is left of it is dropped */
    bool fd_closed;
};

struct http_server {
    rx_loop_t *loop;
    http_server_options_t opt;
    int lfd;
    rx_op_t accept_op;
    rx_timer_t accept_timer;    /* re-arms accept after a failure */
    unsigned accept_delay_ms;   /* back-off before the next accept; 0 after a success */
    uint64_t accept_warned_at;  /* rx_now() of the last accept_failed line, ms; 0: none yet */
    unsigned accept_suppressed; /* failures not logged since that line */
    rx_bufring_t bufs;
    http_conn_t *conns; /* list of open connections */
    unsigned nconns;
    uint64_t next_id;
    uint64_t buffered; /* bytes allocated for request buffers */
    http_txn_t *txn_free;
    unsigned txn_free_len;
    bool draining;
    void (*on_drained)(void *arg);
    void *drained_arg;
    rx_defer_t drained_defer;
};

static void conn_process(http_conn_t *c);
static void conn_maybe_free(http_conn_t *c);
static void conn_arm_recv(http_conn_t *c);
static void conn_pause(http_conn_t *c);
static void conn_flow(http_conn_t *c);
static void on_accept(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags);

/* ---- small helpers ---- */

static http_txn_t *txn_get(http_server_t *s)
{
    http_txn_t *t = s->txn_free;
    if (t != NULL) {
        s->txn_free = t->next_free;
        s->txn_free_len--;
    } else {
        t = xmalloc(sizeof(*t));
    }
    memset(&t->req, 0, sizeof(t->req));
    return t;
}

static void txn_put(http_server_t *s, http_txn_t *t)
{
    if (s->txn_free_len >= TXN_FREE_MAX) {
        free(t);
        return;
    }
    t->next_free = s->txn_free;
    s->txn_free = t;
    s->txn_free_len++;
}

static void inbuf_release(http_conn_t *c)
{
    c->srv->buffered -= c->in_cap;
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
}

/* Makes room for `more` bytes; false when the budget or the cap says no. */
static bool inbuf_reserve(http_conn_t *c, size_t more)
{
    http_server_t *s = c->srv;
    if (c->in_len + more <= c->in_cap)
        return true;
    size_t cap = http_buf_grow(c->in_cap, c->in_len + more, INBUF_MIN);
    if (s->buffered - c->in_cap + cap > s->opt.buffer_budget)
        return false;
    char *p = xrealloc(c->in, cap);
    s->buffered = s->buffered - c->in_cap + cap;
    c->in = p;
    c->in_cap = cap;
    return true;
}

/* A response is in flight: being handed to the kernel, or handed and not yet mostly sent. */
static bool conn_sending(const http_conn_t *c)
{
    return c->out != NULL || c->poll_op.armed;
}

static void conn_close(http_conn_t *c)
{
    if (c->closing && c->fd_closed)
        return;
    c->closing = true;
    rx_timer_stop(c->srv->loop, &c->timer);
    if (!c->fd_closed)
        rx_cancel(c->srv->loop, &c->recv_op);
    rx_cancel(c->srv->loop, &c->poll_op);
    conn_maybe_free(c);
}

/* Closes at once, also with a response half sent: its send is cancelled. */
static void conn_abort(http_conn_t *c)
{
    c->aborted = true;
    if (c->send_op.armed)
        rx_cancel(c->srv->loop, &c->send_op);
    conn_close(c);
}

static void on_close(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    http_conn_t *c = container_of(op, http_conn_t, close_op);
    conn_maybe_free(c);
}

static void on_drained_defer(rx_loop_t *loop, rx_defer_t *d)
{
    http_server_t *s = container_of(d, http_server_t, drained_defer);
    if (s->on_drained != NULL && s->nconns == 0 && !s->accept_op.armed) {
        void (*cb)(void *) = s->on_drained;
        s->on_drained = NULL;
        cb(s->drained_arg);
    }
}

/*
 * Frees the connection when it is closing and nothing of it is outstanding;
 * closes its descriptor first (through the ring) if that has not happened.
 */
static void conn_maybe_free(http_conn_t *c)
{
    http_server_t *s = c->srv;
    if (!c->closing || c->dispatched || c->recv_op.armed || c->send_op.armed || c->close_op.armed ||
        c->poll_op.armed)
        return;
    if (!c->fd_closed) {
        c->fd_closed = true;
        struct io_uring_sqe *sqe = rx_sqe(s->loop, &c->close_op);
        io_uring_prep_close(sqe, c->fd);
        return;
    }
    rx_timer_stop(s->loop, &c->timer);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->nconns--;
    met_self()->http_connections_open--;
    if (c->txn != NULL)
        txn_put(s, c->txn);
    inbuf_release(c);
    free(c->out);
    free(c);
    if (s->draining && s->nconns == 0)
        rx_defer(s->loop, &s->drained_defer, on_drained_defer);
}

/*
 * Looks at how much of what was sent the peer has taken: what the socket
 * still queues (SIOCOUTQ: unsent or unacknowledged) it has not. Progress
 * restarts the response deadline's count; with nothing queued and no response
 * in flight the peer owes nothing. Should the ioctl fail, what the kernel
 * accepted counts as taken, which leaves each response its own deadline.
 */
static void conn_look(http_conn_t *c)
{
    int queued = 0;
    if (ioctl(c->fd, SIOCOUTQ, &queued) != 0 || queued < 0 || (uint64_t)queued > c->sent)
        queued = 0;
    uint64_t taken = c->sent - (uint64_t)queued;
    if (taken > c->taken) {
        c->taken = taken;
        c->stalled_at = rx_now(c->srv->loop);
    }
    if (queued == 0 && c->out == NULL)
        c->stalled_at = 0;
}

static void on_timer(rx_loop_t *loop, rx_timer_t *t);

/*
 * Arms the response deadline: send_timeout_ms after the peer last took
 * something. Progress is seen when looked for, so the timer looks every
 * quarter of the deadline: a peer is cut at most a quarter late.
 */
static void conn_arm_deadline(http_conn_t *c)
{
    unsigned timeout = c->srv->opt.send_timeout_ms;
    uint64_t now = rx_now(c->srv->loop), end = c->stalled_at + timeout;
    uint64_t after = end > now ? end - now : 0;
    if (after > timeout / 4 + 1)
        after = timeout / 4 + 1;
    rx_timer_start(c->srv->loop, &c->timer, after, on_timer);
}

static void on_timer(rx_loop_t *loop, rx_timer_t *t)
{
    http_conn_t *c = container_of(t, http_conn_t, timer);
    if (conn_sending(c)) {
        conn_look(c);
        if (rx_now(loop) - c->stalled_at < c->srv->opt.send_timeout_ms) {
            conn_arm_deadline(c); /* not yet, or the peer took some: look again later */
            return;
        }
        /*
         * The peer took none of what it was sent for the whole deadline,
         * across pipelined responses: it stopped reading. Waiting longer would
         * hold its descriptor and buffers for as long as it likes.
         */
        met_self()->http_send_timeouts++;
        log_info("http_send_timeout",
                 "conn=%llu client took nothing sent to it for %u ms (%zu of %zu bytes of "
                 "the response handed to the kernel); closing",
                 (unsigned long long)c->id, c->srv->opt.send_timeout_ms, c->out_off, c->out_len);
        conn_abort(c);
        return;
    }
    if (c->lingering || (c->head_len == 0 && c->in_len == 0)) {
        conn_close(c); /* idle keep-alive or linger over: close silently */
        return;
    }
    log_debug("http_timeout", "conn=%llu %s timeout", (unsigned long long)c->id,
              c->head_len == 0 ? "header" : "body");
    http_respond(c, 408, "text/plain", NULL, "request timeout\n", 16, true);
}

/* ---- sending ---- */

static void conn_send(http_conn_t *c)
{
    struct io_uring_sqe *sqe = rx_sqe(c->srv->loop, &c->send_op);
    io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
}

static void conn_start_linger(http_conn_t *c)
{
    /*
     * Closing right after writing with unread input in the socket makes the
     * kernel send RST, which can destroy the response before the client reads
     * it. So: shut the write side, read and discard for a while, then close.
     */
    c->lingering = true;
    if (c->peer_eof || shutdown(c->fd, SHUT_WR) != 0) {
        conn_close(c);
        return;
    }
    inbuf_release(c);
    rx_timer_start(c->srv->loop, &c->timer, LINGER_MS, on_timer);
    if (!c->recv_op.armed)
        conn_arm_recv(c);
}

static void on_send(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    http_conn_t *c = container_of(op, http_conn_t, send_op);
    if (res <= 0 || c->aborted) {
        /* The peer went away, or the deadline passed; nothing more can be said to it. */
        c->peer_eof = true;
        free(c->out);
        c->out = NULL;
        conn_close(c);
        return;
    }
    c->out_off += (size_t)res;
    c->sent += (uint64_t)res;
    /*
     * Progress counts from when it is seen. Looking costs a system call, so
     * it waits until more than OUT_LOWAT bytes were sent since the peer was
     * last seen taking: a peer that leaves less than that in the kernel holds
     * nothing of ours, and one that leaves more is looked at on every send.
     */
    if (c->sent - c->taken > OUT_LOWAT)
        conn_look(c);
    if (c->out_off < c->out_len) {
        conn_send(c); /* short send: the rest */
        return;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (c->overflow) {
        conn_close(c); /* it sends far more than it lets us answer: no lingering for it */
        return;
    }
    if (c->close_after) {
        conn_start_linger(c);
        return;
    }
    /* What the peer has not taken (as last looked at) bounds what is unsent. */
    int unsent = 0;
    if (c->sent - c->taken > OUT_LOWAT && ioctl(c->fd, SIOCOUTQNSD, &unsent) == 0 &&
        unsent > OUT_LOWAT) {
        /* The next request waits for the client to take this; the deadline keeps running. */
        io_uring_prep_poll_add(rx_sqe(loop, &c->poll_op), c->fd, POLLOUT);
        return;
    }
    conn_process(c);
}

static void on_poll(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    http_conn_t *c = container_of(op, http_conn_t, poll_op);
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (res < 0 || (res & (POLLERR | POLLHUP))) {
        c->peer_eof = true;
        conn_close(c);
        return;
    }
    conn_process(c);
}

/* Appends s[0..len) at *p, which stays below end (our own headers only: past it is a bug). */
static char *head_put(char *p, const char *end, const char *s, size_t len)
{
    if (len > (size_t)(end - p))
        abort();
    memcpy(p, s, len);
    return p + len;
}

static char *head_puts(char *p, const char *end, const char *s)
{
    return head_put(p, end, s, strlen(s));
}

/* Appends v in decimal. */
static char *head_putu(char *p, const char *end, uint64_t v)
{
    char d[20];
    size_t n = 0;
    do
        d[sizeof(d) - ++n] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    return head_put(p, end, d + sizeof(d) - n, n);
}

/*
 * The response head into buf[0..cap): status line, Content-Length, the
 * optional Content-Type and Connection: close, extra_headers (each ending
 * in CRLF), the empty line. Built by copying rather than printf, which was
 * a visible share of a small response's CPU. Returns its length.
 */
static size_t head_format(char *buf, size_t cap, int status, size_t len, const char *content_type,
                          bool close, const char *extra_headers)
{
    const char *end = buf + cap;
    char *p = buf;

    assert(status >= 100 && status <= 999);
    p = head_put(p, end, "HTTP/1.1 ", 9);
    p = head_putu(p, end, (uint64_t)status);
    p = head_put(p, end, " ", 1);
    p = head_puts(p, end, http_reason(status));
    p = head_put(p, end, "\r\nContent-Length: ", 18);
    p = head_putu(p, end, len);
    p = head_put(p, end, "\r\n", 2);
    if (content_type != NULL) {
        p = head_put(p, end, "Content-Type: ", 14);
        p = head_puts(p, end, content_type);
        p = head_put(p, end, "\r\n", 2);
    }
    if (close)
        p = head_put(p, end, "Connection: close\r\n", 19);
    if (extra_headers != NULL)
        p = head_puts(p, end, extra_headers);
    p = head_put(p, end, "\r\n", 2);
    return (size_t)(p - buf);
}

void http_respond(http_conn_t *c, int status, const char *content_type, const char *extra_headers,
                  const char *body, size_t len, bool close)
{
    http_server_t *s = c->srv;
    assert(c->out == NULL);
    if (status >= 100 && status < 600)
        met_self()->http_requests[status]++;
    if (c->txn != NULL && c->head_len > 0 && !c->txn->req.keep_alive)
        close = true;
    if (s->draining || c->peer_eof || c->overflow)
        close = true;
    c->dispatched = false;

    /*
     * Release the request: its bytes leave the buffer, pipelined ones move
     * down. The body reader left the (decoded) body right after the head.
     */
    size_t used = c->head_len > 0 ? c->head_len + c->txn->body.len : 0;
    if (used > 0 && used <= c->in_len) {
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
    }
    c->head_len = 0;
    c->head_timer = false;
    if (c->txn != NULL) {
        txn_put(s, c->txn);
        c->txn = NULL;
    }
    if (c->in_len == 0 && c->in != NULL)
        inbuf_release(c); /* idle connections hold no buffer */

    if (c->closing) {
        conn_maybe_free(c);
        return;
    }

    char head[512];
    size_t n = head_format(head, sizeof(head), status, len, content_type, close, extra_headers);
    /*
     * Before the response is queued: with little of the last one left
     * unseen (OUT_LOWAT, as in on_send()) or nothing left in the socket the
     * peer owes nothing and the deadline counts from now; otherwise it goes
     * on counting from when the peer last took something.
     */
    if (c->sent - c->taken > OUT_LOWAT) {
        conn_look(c);
        if (c->stalled_at == 0)
            c->stalled_at = rx_now(s->loop);
    } else {
        c->stalled_at = rx_now(s->loop);
    }
    c->out = xmalloc(n + len);
    memcpy(c->out, head, n);
    if (len > 0)
        memcpy(c->out + n, body, len);
    c->out_len = n + len;
    c->out_off = 0;
    c->close_after = close;
    if (!close)
        conn_flow(c);
    /* The response's deadline; what comes after the send sets the next timer. */
    conn_arm_deadline(c);
    conn_send(c);
}

/* ---- receiving ---- */

static void on_recv(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    http_conn_t *c = container_of(op, http_conn_t, recv_op);
    http_server_t *s = c->srv;

    if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
        uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);
        if (!c->closing && !c->lingering) {
            size_t n = (size_t)res;
            if (c->dispatched) {
                /*
                 * The application holds views into c->in, so it must not
                 * move: pipelined bytes only fill the spare room reserved at
                 * dispatch, reading pauses, and a client that sends more
                 * than that before its answer is disconnected after it.
                 */
                if (c->in_len + n <= c->in_cap) {
                    memcpy(c->in + c->in_len, rx_bufring_buf(&s->bufs, bid), n);
                    c->in_len += n;
                } else {
                    c->overflow = true;
                }
                conn_pause(c);
            } else if (conn_sending(c) && c->in_len + n > PIPELINE_MAX + PIPELINE_SLACK) {
                /* Delivered before the pause took effect, and more than a connection may hold. */
                c->overflow = true;
            } else if (inbuf_reserve(c, n)) {
                memcpy(c->in + c->in_len, rx_bufring_buf(&s->bufs, bid), n);
                c->in_len += n;
                if (conn_sending(c))
                    conn_flow(c);
            } else if (!conn_sending(c)) {
                rx_bufring_recycle(&s->bufs, bid);
                /* The server's request buffers are all in use: back off. */
                http_respond(c, 503, "text/plain", "Retry-After: 1\r\n", "server busy\n", 12, true);
                return;
            } else {
                conn_close(c);
            }
        }
        rx_bufring_recycle(&s->bufs, bid);
    } else if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED)) {
        c->peer_eof = true; /* EOF or a socket error */
    }

    if (c->closing) {
        if (!(flags & IORING_CQE_F_MORE))
            conn_maybe_free(c);
        return;
    }
    if (c->peer_eof) {
        /*
         * The peer is gone (or half-closed). A request the application holds
         * is still answered, since its update may be committing; otherwise
         * close now.
         */
        if (c->lingering || (!c->dispatched && !conn_sending(c)))
            conn_close(c);
        else if (!(flags & IORING_CQE_F_MORE))
            conn_maybe_free(c);
        return;
    }
    if (c->lingering) {
        c->in_len = 0;
        if (!(flags & IORING_CQE_F_MORE))
            conn_arm_recv(c);
        return;
    }
    if (!(flags & IORING_CQE_F_MORE) && !c->paused)
        conn_arm_recv(c); /* -ENOBUFS or the kernel ended the multishot: re-arm */
    if (res > 0)
        conn_process(c);
}

static void conn_arm_recv(http_conn_t *c)
{
    if (c->recv_op.armed)
        return;
    struct io_uring_sqe *sqe = rx_sqe(c->srv->loop, &c->recv_op);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = c->srv->bufs.bgid;
}

/* Stops reading until conn_flow() resumes it; what the recv delivered meanwhile still comes. */
static void conn_pause(http_conn_t *c)
{
    if (c->paused)
        return;
    c->paused = true;
    rx_cancel(c->srv->loop, &c->recv_op);
}

/* Input bytes buffered behind the request in progress (all of them when none is). */
static size_t conn_backlog(const http_conn_t *c)
{
    size_t used = c->dispatched ? c->head_len + c->txn->body.len : 0;
    return c->in_len - used;
}

/*
 * Pauses or resumes reading by the connection's backlog (see PIPELINE_MAX).
 * Called where a request needs more input (reading resumes), at dispatch,
 * when a response is queued and when input arrives while it is in flight.
 */
static void conn_flow(http_conn_t *c)
{
    if (c->closing || c->lingering || c->peer_eof)
        return;
    bool busy = c->dispatched || conn_sending(c);
    size_t backlog = conn_backlog(c);
    if (busy && backlog > PIPELINE_MAX) {
        conn_pause(c);
    } else if (!busy || backlog <= PIPELINE_MAX / 2) {
        c->paused = false;
        conn_arm_recv(c); /* no-op while armed, also with a cancel on its way */
    }
}

static void respond_error(http_conn_t *c, int status, const char *why)
{
    char body[160];
    int n = snprintf(body, sizeof(body), "%s\n", why ? why : http_reason(status));
    if (n < 0 || (size_t)n >= sizeof(body))
        n = (int)sizeof(body) - 1;
    log_debug("http_reject", "conn=%llu status=%d %s", (unsigned long long)c->id, status,
              why ? why : "");
    http_respond(c, status, "text/plain", NULL, body, (size_t)n, true);
}

/* Parses and hands out the next request if its bytes are all here. */
static void conn_process(http_conn_t *c)
{
    http_server_t *s = c->srv;
    if (c->dispatched || conn_sending(c) || c->closing || c->lingering)
        return;
    if (c->in_len == 0) {
        if (s->draining || c->peer_eof) {
            conn_close(c);
            return;
        }
        conn_flow(c);
        rx_timer_start(s->loop, &c->timer, s->opt.idle_timeout_ms, on_timer);
        return;
    }
    if (c->txn == NULL)
        c->txn = txn_get(s);
    http_request_t *req = &c->txn->req;

    if (c->head_len == 0) {
        int r = http_parse_request(c->in, c->in_len, &s->opt.limits, req);
        if (r == -EAGAIN) {
            /* The header deadline counts from the first byte of the request. */
            if (c->peer_eof) {
                conn_close(c); /* it can never complete */
                return;
            }
            if (!c->head_timer) {
                c->head_timer = true;
                rx_timer_start(s->loop, &c->timer, s->opt.header_timeout_ms, on_timer);
            }
            conn_flow(c);
            return;
        }
        if (r < 0) {
            respond_error(c, req->status ? req->status : 400, req->error);
            return;
        }
        c->head_len = (size_t)r;
        c->parsed_at = c->in;
        /* A request without Content-Length or chunked has no body (RFC 9112 6.3). */
        uint64_t length = req->content_length > 0 ? (uint64_t)req->content_length : 0;
        http_body_init(&c->txn->body, req->chunked ? HTTP_BODY_CHUNKED : HTTP_BODY_LENGTH, length,
                       s->opt.limits.max_body);
        rx_timer_start(s->loop, &c->timer, s->opt.body_timeout_ms, on_timer);
        if (req->expect_continue && c->in_len == c->head_len) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            /* Best effort, without waiting: the body may follow regardless. */
            ssize_t w = send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
        }
    }

    http_body_t *body = &c->txn->body;
    size_t avail = c->in_len - c->head_len;
    long rest = http_body_read(body, c->in + c->head_len, &avail);
    if (rest == -EBADMSG) {
        respond_error(c, 400, "malformed chunked body");
        return;
    }
    if (rest == -EMSGSIZE) {
        respond_error(c, 413, "body too large");
        return;
    }
    /* Chunked framing removed shrinks the input; what follows the body is the next request. */
    c->in_len = c->head_len + avail;
    bool complete = rest >= 0;
    if (!complete) {
        if (c->peer_eof)
            conn_close(c);
        else
            conn_flow(c);
        return;
    }
    rx_timer_stop(s->loop, &c->timer);
    /* Room for a few pipelined bytes, since the buffer must not move from here on. */
    inbuf_reserve(c, 2 * RECV_BUFSZ);
    if (c->in != c->parsed_at) {
        /*
         * The buffer grew (and moved) after the head was parsed: the views in
         * `req` point at the old one. Parsing the same bytes again gives the
         * same result, now pointing at the new one.
         */
        int r = http_parse_request(c->in, c->in_len, &s->opt.limits, req);
        assert(r == (int)c->head_len);
        (void)r;
        c->parsed_at = c->in;
    }
    c->dispatched = true;
    conn_flow(c);
    s->opt.on_request(s, c, req, c->in + c->head_len, body->len);
}

/* ---- accepting ---- */

static void arm_accept(http_server_t *s)
{
    struct io_uring_sqe *sqe = rx_sqe(s->loop, &s->accept_op);
    io_uring_prep_multishot_accept(sqe, s->lfd, NULL, NULL, SOCK_CLOEXEC);
}

static void on_accept_timer(rx_loop_t *loop, rx_timer_t *t)
{
    http_server_t *s = container_of(t, http_server_t, accept_timer);
    if (!s->draining && !s->accept_op.armed)
        arm_accept(s);
}

/* Backs off after a failed accept and logs it, throttled. */
static void accept_failed(http_server_t *s, int err)
{
    met_self()->http_accept_errors++;
    if (s->accept_delay_ms == 0)
        s->accept_delay_ms = ACCEPT_DELAY_MIN_MS;
    else if (s->accept_delay_ms < ACCEPT_DELAY_MAX_MS / 2)
        s->accept_delay_ms *= 2;
    else
        s->accept_delay_ms = ACCEPT_DELAY_MAX_MS;
    uint64_t now = rx_now(s->loop);
    if (s->accept_warned_at != 0 && now - s->accept_warned_at < ACCEPT_WARN_MS) {
        s->accept_suppressed++;
        return;
    }
    log_warn("accept_failed",
             "accept: %s (%u more failures since the last line); retrying in %u ms", strerror(-err),
             s->accept_suppressed, s->accept_delay_ms);
    s->accept_warned_at = now;
    s->accept_suppressed = 0;
}

static void on_accept(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    http_server_t *s = container_of(op, http_server_t, accept_op);
    if (res >= 0) {
        s->accept_delay_ms = 0;
        if (s->draining || s->nconns >= s->opt.max_connections) {
            close(res);
        } else {
            int one = 1, lowat = OUT_LOWAT;
            setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            setsockopt(res, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
            http_conn_t *c = xcalloc(1, sizeof(*c));
            c->srv = s;
            c->fd = res;
            c->id = ++s->next_id;
            c->recv_op.cb = on_recv;
            c->send_op.cb = on_send;
            c->close_op.cb = on_close;
            c->poll_op.cb = on_poll;
            c->next = s->conns;
            if (s->conns != NULL)
                s->conns->prev = c;
            s->conns = c;
            s->nconns++;
            met_self()->http_connections_open++;
            met_self()->http_connections_total++;
            conn_arm_recv(c);
            rx_timer_start(loop, &c->timer, s->opt.idle_timeout_ms, on_timer);
        }
    } else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN && res != -ECONNABORTED) {
        accept_failed(s, res);
        /* Should the kernel keep the multishot armed, stop it: the timer re-arms. */
        if (flags & IORING_CQE_F_MORE)
            rx_cancel(loop, op);
    }
    if (!(flags & IORING_CQE_F_MORE)) {
        if (s->draining) {
            if (s->nconns == 0)
                rx_defer(s->loop, &s->drained_defer, on_drained_defer);
        } else if (s->accept_delay_ms > 0) {
            rx_timer_start(loop, &s->accept_timer, s->accept_delay_ms, on_accept_timer);
        } else {
            arm_accept(s);
        }
    }
}

http_server_t *http_server_new(rx_loop_t *loop, int fd, const http_server_options_t *opt, int *err)
{
    http_server_t *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->opt = *opt;
    s->lfd = fd;
    if (s->opt.send_timeout_ms == 0)
        s->opt.send_timeout_ms = SEND_TIMEOUT_MS;
    s->accept_op.cb = on_accept;
    int r = rx_bufring_init(loop, &s->bufs, RECV_BGID, RECV_NBUFS, RECV_BUFSZ);
    if (r < 0) {
        *err = r;
        free(s);
        return NULL;
    }
    arm_accept(s);
    return s;
}

void *http_server_data(const http_server_t *s)
{
    return s->opt.data;
}

unsigned http_server_connections(const http_server_t *s)
{
    return s->nconns;
}

uint64_t http_server_buffered(const http_server_t *s)
{
    return s->buffered;
}

uint64_t http_conn_id(const http_conn_t *c)
{
    return c->id;
}

void *http_conn_scratch(http_conn_t *c)
{
    return c->txn->scratch.bytes;
}

void http_server_drain(http_server_t *s, void (*on_drained)(void *arg), void *arg)
{
    s->draining = true;
    s->on_drained = on_drained;
    s->drained_arg = arg;
    rx_cancel(s->loop, &s->accept_op);
    rx_timer_stop(s->loop, &s->accept_timer);
    if (s->lfd >= 0) {
        close(s->lfd);
        s->lfd = -1;
    }
    for (http_conn_t *c = s->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (!c->dispatched && !conn_sending(c) && c->in_len == 0)
            conn_close(c);
    }
    if (s->nconns == 0)
        rx_defer(s->loop, &s->drained_defer, on_drained_defer);
}

void http_server_close_all(http_server_t *s)
{
    for (http_conn_t *c = s->conns, *next; c != NULL; c = next) {
        next = c->next;
        conn_abort(c);
    }
}

void http_server_free(http_server_t *s)
{
    rx_timer_stop(s->loop, &s->accept_timer);
    while (s->txn_free != NULL) {
        http_txn_t *t = s->txn_free;
        s->txn_free = t->next_free;
        free(t);
    }
    rx_bufring_dispose(s->loop, &s->bufs);
    if (s->lfd >= 0)
        close(s->lfd);
    free(s);
}
