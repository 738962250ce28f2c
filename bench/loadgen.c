/* SPDX-License-Identifier: MIT */
/*
 * loadgen.c - tgload, the constant-rate, open-loop HTTP/1.1 load generator of
 * bench/ (bench/run, bench/run-e2e and bench/ab-ingest drive it).
 *
 * Requests are scheduled at fixed intended times (request k at start + k/R)
 * and handed, in order, to whichever connection is free; a connection carries
 * one request at a time, as Telegram's webhook delivery does. Latency is
 * measured from the intended send time, so a request that waits because the
 * server is slow (all connections busy, backlog growing) is charged for the
 * wait: coordinated omission is corrected the way wrk2 does it, except that
 * the schedule is global instead of per connection. With -R 0 it runs closed
 * loop instead (each connection sends again as soon as it has its answer) and
 * latency counts from the actual send.
 *
 * One thread, epoll, nonblocking sockets; responses must carry Content-Length
 * or chunked framing (or end at close). Built by meson as tgload
 * (bench/meson.build), installed nowhere.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE (64 * 1024) /* one response, headers and body, must fit */
#define MAX_HEADERS 64        /* -H options */
#define NSEC 1000000000ull

/* ---- histogram ----
 *
 * HdrHistogram's log-linear layout with 128 linear sub-buckets per power of
 * two: values (ns) below 256 are exact, above that a bucket is at most 1/128
 * of its value wide, so any reported percentile is within 0.8% of the truth.
 * Values are clamped at 2^36 ns (68.7 s). 3840 counters, 30 KiB.
 */
#define H_SUB 128
#define H_MAXBITS 36
#define H_COUNT (H_SUB * (H_MAXBITS - 7) + 2 * H_SUB)

typedef struct hist {
    uint64_t counts[H_COUNT];
    uint64_t total; /* values recorded */
    uint64_t max;   /* largest value recorded, ns (exact) */
    uint64_t min;   /* smallest value recorded, ns (exact) */
    double sum;     /* for the mean, ns */
} hist_t;

static unsigned hist_index(uint64_t v)
{
    if (v >= (1ull << H_MAXBITS))
        v = (1ull << H_MAXBITS) - 1;
    if (v < 2 * H_SUB)
        return (unsigned)v;
    unsigned b = (unsigned)(63 - __builtin_clzll(v)) - 7;
    return H_SUB * b + (unsigned)(v >> b);
}

/* Highest value that lands in bucket i: percentiles are reported pessimistically. */
static uint64_t hist_upper(unsigned i)
{
    if (i < 2 * H_SUB)
        return i;
    unsigned b = i / H_SUB - 1;
    uint64_t s = i - (uint64_t)H_SUB * b;
    return ((s + 1) << b) - 1;
}

static void hist_record(hist_t *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    if (h->total == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->total++;
    h->sum += (double)v;
}

static uint64_t hist_percentile(const hist_t *h, double p)
{
    if (h->total == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->total);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_COUNT; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = hist_upper(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- configuration ---- */

/* One piece of the body template: literal text or a placeholder. */
typedef struct piece {
    const char *text; /* literal bytes (not NUL-terminated), NULL for a placeholder */
    size_t len;       /* literal length, bytes */
    int kind;         /* 1 = {{ID}}, 2 = {{CHAT}} when text is NULL */
} piece_t;

typedef struct opts {
    char host[256];   /* target host (name or address) */
    char port[16];    /* target port */
    const char *path; /* request target */
    const char *method;
    const char *headers[MAX_HEADERS]; /* extra header lines, "Name: value" */
    int nheaders;
    piece_t *pieces; /* body template, NULL for no body */
    int npieces;
    unsigned conns;      /* connections */
    double rate;         /* intended requests/s, 0 = closed loop */
    double duration;     /* measured seconds */
    double warmup;       /* seconds before measuring (requests sent, not recorded) */
    double timeout;      /* seconds a request may take before its connection is dropped */
    uint64_t start_id;   /* first {{ID}} */
    uint64_t chats;      /* {{CHAT}} = id % chats */
    const char *json;    /* file to write the JSON summary to, or NULL */
    const char *timeline; /* file for per-second lines, or NULL */
    const char *label;   /* free text copied into the JSON */
    const char *sendlog; /* file for one line per request: id, intended time, status; or NULL */
} opts_t;

static opts_t o = {
    .host = "127.0.0.1",
    .port = "8080",
    .path = "/",
    .method = "GET",
    .conns = 10,
    .rate = 1000,
    .duration = 10,
    .warmup = 2,
    .timeout = 10,
    .start_id = 1,
    .chats = 1000,
};

/* ---- connections ---- */

enum { C_DOWN, C_CONNECTING, C_IDLE, C_WRITING, C_READING };

typedef struct conn {
    int fd;
    int state;
    uint64_t intended;  /* when the current request should have been sent, ns */
    uint64_t id;        /* the current request's {{ID}} */
    uint64_t sent;      /* when it was actually sent, ns */
    uint64_t retry_at;  /* earliest reconnect after a failed connect, ns */
    char *wbuf;         /* the current request */
    size_t wlen, woff;  /* its length and how much is written, bytes */
    char *rbuf;         /* response bytes so far */
    size_t rlen;        /* bytes in rbuf */
    uint64_t since;     /* when the pending connect started, ns */
    uint32_t gen;       /* bumped per socket: events of a closed socket are ignored */
    unsigned idx;       /* index in the conns array */
} conn_t;

static conn_t *conns;
static int ep;
static char *req_head; /* request line and fixed headers, without Content-Length */
static size_t req_head_len;
static size_t wbuf_cap;
static struct addrinfo *target_ai;

/* ---- counters ---- */

static hist_t hist;                 /* latency of recorded requests */
static uint64_t status_counts[600]; /* recorded responses by status */
static uint64_t status_all[600];    /* every response, warm-up and drain included */
static uint64_t n_issued;           /* requests taken off the schedule (ids used) */
static uint64_t n_recorded;         /* responses in the measured window */
static uint64_t n_in_window;        /* responses completed inside the window (throughput) */
static uint64_t err_connect, err_read, err_write, err_parse, err_closed, err_timeout;
static uint64_t n_reconnects;
static uint64_t n_unsent; /* scheduled in the window but never sent before the drain deadline */
static uint64_t max_backlog; /* most requests due and waiting for a free connection */

static uint64_t t_start, t_measure, t_end, t_deadline;

/*
 * -S: one line per request that was sent, "id intended_unix_ns status", for
 * matching each request to an effect seen elsewhere on this machine (the
 * end-to-end bench joins it with the Bot API stand-in's log). The intended
 * time is converted from CLOCK_MONOTONIC to CLOCK_REALTIME with one offset
 * taken at the start, so both sides compare on the realtime clock. Status 0:
 * no response (error or timeout).
 */
static FILE *sendlog;
static int64_t realtime_offset; /* CLOCK_REALTIME - CLOCK_MONOTONIC at the start, ns */

static void sendlog_write(const conn_t *c, int status)
{
    if (sendlog != NULL)
        fprintf(sendlog, "%" PRIu64 " %" PRId64 " %d\n", c->id,
                (int64_t)c->intended + realtime_offset, status);
}

/*
 * Per-second timeline, by completion time from the start of the schedule: a
 * stall shows as one bad second, a server that falls behind as a run of them.
 */
typedef struct second {
    uint64_t done;    /* responses completed in this second */
    uint64_t max;     /* largest latency among them, ns */
    uint64_t backlog; /* most requests due and waiting for a connection, at any moment */
} second_t;

static second_t *timeline;
static size_t timeline_len;

static second_t *second_at(uint64_t now)
{
    if (timeline == NULL || now < t_start)
        return NULL;
    uint64_t i = (now - t_start) / NSEC;
    return i < timeline_len ? &timeline[i] : NULL;
}
static volatile sig_atomic_t interrupted;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tgload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        die("out of memory");
    return p;
}

/* ---- body template ---- */

static void load_template(const char *file)
{
    FILE *f = fopen(file, "rb");
    if (f == NULL)
        die("%s: %s", file, strerror(errno));
    size_t cap = 4096, len = 0;
    char *t = xmalloc(cap);
    size_t n;
    while ((n = fread(t + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap)
            t = realloc(t, cap *= 2);
        if (t == NULL)
            die("out of memory");
    }
    fclose(f);
    /* A trailing newline from an editor is not part of the body. */
    while (len > 0 && (t[len - 1] == '\n' || t[len - 1] == '\r'))
        len--;

    o.pieces = xmalloc(sizeof(piece_t) * (len + 1));
    size_t lit = 0;
    for (size_t i = 0; i <= len;) {
        int kind = 0;
        size_t skip = 0;
        if (i + 6 <= len && memcmp(t + i, "{{ID}}", 6) == 0)
            kind = 1, skip = 6;
        else if (i + 8 <= len && memcmp(t + i, "{{CHAT}}", 8) == 0)
            kind = 2, skip = 8;
        if (kind != 0 || i == len) {
            if (i > lit)
                o.pieces[o.npieces++] = (piece_t){t + lit, i - lit, 0};
            if (kind == 0)
                break;
            o.pieces[o.npieces++] = (piece_t){NULL, 0, kind};
            i += skip;
            lit = i;
        } else {
            i++;
        }
    }
}

/* Builds the request for id into c->wbuf. */
static void build_request(conn_t *c, uint64_t id)
{
    char *p = c->wbuf;
    memcpy(p, req_head, req_head_len);
    p += req_head_len;
    if (o.pieces == NULL) {
        memcpy(p, "\r\n", 2);
        c->wlen = req_head_len + 2;
        return;
    }
    /* The body first, past room for the Content-Length line, then the head is moved up. */
    char body_tmp[64];
    size_t blen = 0;
    for (int i = 0; i < o.npieces; i++) {
        const piece_t *pc = &o.pieces[i];
        blen += pc->text ? pc->len
                         : (size_t)snprintf(body_tmp, sizeof(body_tmp), "%" PRIu64,
                                            pc->kind == 1 ? id : id % o.chats);
    }
    p += sprintf(p, "Content-Length: %zu\r\n\r\n", blen);
    for (int i = 0; i < o.npieces; i++) {
        const piece_t *pc = &o.pieces[i];
        if (pc->text) {
            memcpy(p, pc->text, pc->len);
            p += pc->len;
        } else {
            p += sprintf(p, "%" PRIu64, pc->kind == 1 ? id : id % o.chats);
        }
    }
    c->wlen = (size_t)(p - c->wbuf);
}

/* ---- connection handling ---- */

static void conn_epoll(conn_t *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)c->gen << 32 | c->idx};
    if (epoll_ctl(ep, op, c->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void conn_open(conn_t *c, uint64_t now)
{
    c->fd = socket(target_ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s (raise ulimit -n?)", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->rlen = 0;
    c->gen++;
    c->since = now;
    if (connect(c->fd, target_ai->ai_addr, target_ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        err_connect++;
        close(c->fd);
        c->fd = -1;
        c->state = C_DOWN;
        c->retry_at = now + 10 * 1000000ull;
        return;
    }
    c->state = C_CONNECTING;
    conn_epoll(c, EPOLLOUT, EPOLL_CTL_ADD);
}

/* Drops the connection (the request on it, if any, is already counted) and reconnects. */
static void conn_reset(conn_t *c, uint64_t now)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = C_DOWN;
    n_reconnects++;
    conn_open(c, now);
}

static void conn_fail(conn_t *c, uint64_t *counter, uint64_t now)
{
    if (c->state == C_WRITING || c->state == C_READING) {
        (*counter)++;
        sendlog_write(c, 0);
    }
    else if (c->state == C_CONNECTING)
        err_connect++;
    conn_reset(c, now);
}

static void conn_write(conn_t *c, uint64_t now)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                conn_epoll(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
                return;
            }
            if (errno == EINTR)
                continue;
            conn_fail(c, &err_write, now);
            return;
        }
        c->woff += (size_t)n;
    }
    if (c->state == C_WRITING) {
        c->state = C_READING;
        conn_epoll(c, EPOLLIN, EPOLL_CTL_MOD);
    }
}

static void conn_send(conn_t *c, uint64_t intended, uint64_t now)
{
    c->id = o.start_id + n_issued;
    build_request(c, c->id);
    n_issued++;
    c->intended = intended;
    c->sent = now;
    c->woff = 0;
    c->state = C_WRITING;
    conn_write(c, now);
}

/* The nonblocking connect finished, one way or the other. */
static void conn_connected(conn_t *c, uint64_t now)
{
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
        err_connect++;
        close(c->fd);
        c->fd = -1;
        c->state = C_DOWN;
        c->retry_at = now + 10 * 1000000ull;
        return;
    }
    c->state = C_IDLE;
    conn_epoll(c, EPOLLIN, EPOLL_CTL_MOD);
}

/* The connection an event is for, or NULL when it is about an earlier socket. */
static conn_t *event_conn(const struct epoll_event *ev)
{
    conn_t *c = &conns[(uint32_t)ev->data.u64];
    if (c->fd < 0 || c->gen != (uint32_t)(ev->data.u64 >> 32))
        return NULL;
    return c;
}

/* ---- response parsing ---- */

/* Case-insensitive header name match at line start; returns the value or NULL. */
static const char *header_value(const char *line, const char *end, const char *name)
{
    size_t nl = strlen(name);
    if ((size_t)(end - line) <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return NULL;
    const char *v = line + nl + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    return v;
}

/*
 * Looks for one complete response in c->rbuf. Returns 1 and sets *status and
 * *close_after when it is complete, 0 when more bytes are needed, -1 when the
 * bytes are not HTTP/1.1. eof says the peer closed (ends a body without framing).
 */
static int parse_response(conn_t *c, bool eof, int *status, bool *close_after)
{
    char *b = c->rbuf;
    size_t len = c->rlen;
    char *hend = memmem(b, len, "\r\n\r\n", 4);
    if (hend == NULL)
        return len >= RBUF_SIZE ? -1 : 0;
    if (len < 12 || memcmp(b, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)b[9]) ||
        !isdigit((unsigned char)b[10]) || !isdigit((unsigned char)b[11]))
        return -1;
    int st = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    if (st < 100 || st > 599)
        return -1;
    bool http10 = b[7] == '0';
    long long clen = -1;
    bool chunked = false, conn_close = http10, conn_keep = false;
    /* The status line's CRLF may be the first half of the blank line's CRLFCRLF. */
    char *line = (char *)memchr(b, '\n', (size_t)(hend + 2 - b)) + 1;
    while (line < hend + 2) {
        char *eol = memchr(line, '\r', (size_t)(hend + 2 - line));
        if (eol == NULL)
            break;
        const char *v;
        if ((v = header_value(line, eol, "Content-Length")) != NULL) {
            char *e;
            clen = strtoll(v, &e, 10);
            if (e == v || clen < 0)
                return -1;
        } else if ((v = header_value(line, eol, "Transfer-Encoding")) != NULL) {
            chunked = memmem(v, (size_t)(eol - v), "chunked", 7) != NULL;
        } else if ((v = header_value(line, eol, "Connection")) != NULL) {
            if (strncasecmp(v, "close", 5) == 0)
                conn_close = true;
            else if (strncasecmp(v, "keep-alive", 10) == 0)
                conn_keep = true;
        }
        line = eol + 2;
    }
    if (http10 && conn_keep)
        conn_close = false;
    size_t body_at = (size_t)(hend + 4 - b);
    size_t need;
    if (st < 200 || st == 204 || st == 304 || strcmp(o.method, "HEAD") == 0) {
        need = body_at;
    } else if (chunked) {
        size_t p = body_at;
        for (;;) {
            char *crlf = memmem(b + p, len - p, "\r\n", 2);
            if (crlf == NULL)
                return 0;
            char *e;
            unsigned long long sz = strtoull(b + p, &e, 16);
            if (e == b + p)
                return -1;
            p = (size_t)(crlf + 2 - b);
            if (sz == 0) {
                /* Trailers, then an empty line. */
                for (;;) {
                    char *t = memmem(b + p, len - p, "\r\n", 2);
                    if (t == NULL)
                        return 0;
                    size_t l = (size_t)(t - (b + p));
                    p = (size_t)(t + 2 - b);
                    if (l == 0)
                        break;
                }
                need = p;
                break;
            }
            if (len - p < sz + 2)
                return len >= RBUF_SIZE ? -1 : 0;
            p += sz + 2;
        }
    } else if (clen >= 0) {
        need = body_at + (size_t)clen;
        if (need > RBUF_SIZE)
            return -1;
    } else {
        /* Body until close. */
        if (!eof)
            return len >= RBUF_SIZE ? -1 : 0;
        need = len;
        conn_close = true;
    }
    if (len < need)
        return 0;
    if (len > need)
        return -1; /* nothing was pipelined, so nothing may follow */
    *status = st;
    *close_after = conn_close;
    return 1;
}

static void on_response(conn_t *c, int status, uint64_t now)
{
    status_all[status]++;
    sendlog_write(c, status);
    bool closed_loop = o.rate == 0;
    uint64_t from = closed_loop ? c->sent : c->intended;
    second_t *sec = second_at(now);
    if (sec != NULL) {
        sec->done++;
        if (now - from > sec->max)
            sec->max = now - from;
    }
    if (from >= t_measure && from < t_end) {
        hist_record(&hist, now - from);
        status_counts[status]++;
        n_recorded++;
    }
    if (now >= t_measure && now < t_end)
        n_in_window++;
}

static void conn_read(conn_t *c, uint64_t now)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, 0);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            if (errno == EINTR)
                continue;
            conn_fail(c, &err_read, now);
            return;
        }
        if (c->state != C_READING) {
            /* Bytes (or a close) while no request is out: the server closed an idle conn. */
            if (n > 0)
                err_parse++;
            conn_reset(c, now);
            return;
        }
        bool eof = n == 0;
        c->rlen += (size_t)n;
        int status;
        bool close_after;
        int r = parse_response(c, eof, &status, &close_after);
        if (r < 0) {
            conn_fail(c, &err_parse, now);
            return;
        }
        if (r == 0) {
            if (eof)
                conn_fail(c, &err_closed, now);
            else if (c->rlen == RBUF_SIZE)
                conn_fail(c, &err_parse, now);
            else
                continue;
            return;
        }
        on_response(c, status, now);
        c->rlen = 0;
        if (close_after || eof) {
            conn_reset(c, now);
            return;
        }
        c->state = C_IDLE;
        return;
    }
}

/* ---- scheduling ---- */

static uint64_t intended_of(uint64_t k)
{
    return t_start + (uint64_t)((double)k * (double)NSEC / o.rate);
}

/* Hands due requests to idle connections; returns the time of the next due request. */
static uint64_t dispatch(uint64_t now)
{
    static unsigned rr; /* round-robin start, so that every connection gets used */
    if (o.rate == 0) {
        if (now >= t_end)
            return UINT64_MAX;
        for (unsigned i = 0; i < o.conns; i++)
            if (conns[i].state == C_IDLE)
                conn_send(&conns[i], now, now);
        return UINT64_MAX;
    }
    uint64_t k = n_issued;
    uint64_t due = intended_of(k);
    unsigned scanned = 0;
    while (due <= now && due < t_end && scanned < o.conns) {
        conn_t *c = &conns[rr];
        rr = (rr + 1) % o.conns;
        scanned++;
        if (c->state != C_IDLE)
            continue;
        conn_send(c, due, now);
        scanned = 0;
        due = intended_of(n_issued);
    }
    if (due <= now && due < t_end) {
        uint64_t backlog = 0;
        /* Count the waiting requests without walking them all. */
        uint64_t last = (uint64_t)((double)((now < t_end ? now : t_end) - t_start) * o.rate /
                                   (double)NSEC);
        if (last >= n_issued)
            backlog = last - n_issued + 1;
        if (backlog > max_backlog)
            max_backlog = backlog;
        second_t *sec = second_at(now);
        if (sec != NULL && backlog > sec->backlog)
            sec->backlog = backlog;
        return UINT64_MAX; /* woken by the next response */
    }
    return due < t_end ? due : UINT64_MAX;
}

static void check_timeouts(uint64_t now)
{
    uint64_t limit = (uint64_t)(o.timeout * (double)NSEC);
    for (unsigned i = 0; i < o.conns; i++) {
        conn_t *c = &conns[i];
        if ((c->state == C_READING || c->state == C_WRITING) && now - c->sent > limit)
            conn_fail(c, &err_timeout, now);
        else if (c->state == C_CONNECTING && now - c->since > limit)
            conn_fail(c, &err_connect, now);
        else if (c->state == C_DOWN && now >= c->retry_at)
            conn_open(c, now);
    }
}

static bool all_quiet(void)
{
    for (unsigned i = 0; i < o.conns; i++)
        if (conns[i].state == C_WRITING || conns[i].state == C_READING)
            return false;
    return true;
}

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- output ---- */

static double ms(uint64_t ns) { return (double)ns / 1e6; }

/* Writes s as a JSON string: quotes, backslashes and control characters escaped. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void report(void)
{
    double secs = o.duration;
    static const double ps[] = {50, 90, 99, 99.9, 99.99};
    static const char *pn[] = {"p50", "p90", "p99", "p99.9", "p99.99"};
    uint64_t errors = err_connect + err_read + err_write + err_parse + err_closed + err_timeout;
    uint64_t ok2xx = 0, ok2xx_all = 0;
    for (int s = 200; s < 300; s++) {
        ok2xx += status_counts[s];
        ok2xx_all += status_all[s];
    }

    printf("target   %s:%s %s %s, %u connections, %s %.0f req/s, %.1f s (+%.1f s warm-up)\n",
           o.host, o.port, o.method, o.path, o.conns, o.rate == 0 ? "closed loop" : "open loop",
           o.rate, o.duration, o.warmup);
    printf("rate     %.1f responses/s completed in the window (%" PRIu64 " recorded)\n",
           (double)n_in_window / secs, n_recorded);
    printf("latency  (from the %s send time)\n", o.rate == 0 ? "actual" : "intended");
    for (int i = 0; i < 5; i++)
        printf("  %-7s %10.3f ms\n", pn[i], ms(hist_percentile(&hist, ps[i])));
    printf("  %-7s %10.3f ms\n  %-7s %10.3f ms\n", "max", ms(hist.max), "mean",
           hist.total ? hist.sum / (double)hist.total / 1e6 : 0.0);
    printf("status  ");
    for (int s = 0; s < 600; s++)
        if (status_counts[s])
            printf(" %d:%" PRIu64, s, status_counts[s]);
    printf("  (all phases:");
    for (int s = 0; s < 600; s++)
        if (status_all[s])
            printf(" %d:%" PRIu64, s, status_all[s]);
    printf(")\n");
    /* The worst second inside the measured window. */
    size_t first = (size_t)((t_measure - t_start) / NSEC), worst = first;
    size_t last = (size_t)((t_end - t_start) / NSEC);
    for (size_t i = first; i < last && i < timeline_len; i++)
        if (timeline[i].max > timeline[worst].max)
            worst = i;
    uint64_t worst_max = worst < timeline_len ? timeline[worst].max : 0;
    double worst_t = (double)worst - (double)first;
    printf("worst s  at %.0f s into the window: max %.3f ms, %" PRIu64 " responses, backlog %" PRIu64
           "\n",
           worst_t, ms(worst_max), worst < timeline_len ? timeline[worst].done : 0,
           worst < timeline_len ? timeline[worst].backlog : 0);
    printf("errors   connect %" PRIu64 ", read %" PRIu64 ", write %" PRIu64 ", parse %" PRIu64
           ", closed %" PRIu64 ", timeout %" PRIu64 ", unsent %" PRIu64 "; reconnects %" PRIu64
           "; max backlog %" PRIu64 "\n",
           err_connect, err_read, err_write, err_parse, err_closed, err_timeout, n_unsent,
           n_reconnects, max_backlog);

    /* The JSON summary, in memory that grows as needed (no buffer to outgrow), strings escaped. */
    char *json = NULL;
    size_t json_len = 0;
    FILE *js = open_memstream(&json, &json_len);
    if (js == NULL)
        die("open_memstream: %s", strerror(errno));
    fprintf(js, "{\"label\":");
    json_string(js, o.label ? o.label : "");
    fprintf(js, ",\"target\":");
    char target[512];
    snprintf(target, sizeof(target), "%s:%s", o.host, o.port);
    json_string(js, target);
    fprintf(js, ",\"path\":");
    json_string(js, o.path);
    fprintf(js, ",\"connections\":%u,\"intended_rate\":%.1f,\"duration_s\":%.3f,\"warmup_s\":%.3f,"
           "\"rate\":%.1f,\"recorded\":%" PRIu64 ",\"issued\":%" PRIu64
           ",\"first_id\":%" PRIu64 ",\"ok_2xx\":%" PRIu64 ",\"ok_2xx_all\":%" PRIu64
           ",\"latency_ms\":{",
           o.conns, o.rate, o.duration, o.warmup, (double)n_in_window / secs, n_recorded,
           n_issued, o.start_id, ok2xx, ok2xx_all);
    for (int i = 0; i < 5; i++)
        fprintf(js, "\"%s\":%.3f,", pn[i], ms(hist_percentile(&hist, ps[i])));
    fprintf(js, "\"max\":%.3f,\"mean\":%.3f},\"status\":{", ms(hist.max),
           hist.total ? hist.sum / (double)hist.total / 1e6 : 0.0);
    const char *sep = "";
    for (int s = 0; s < 600; s++)
        if (status_all[s]) {
            fprintf(js, "%s\"%d\":%" PRIu64, sep, s, status_all[s]);
            sep = ",";
        }
    fprintf(js, "},\"errors\":%" PRIu64 ",\"timeouts\":%" PRIu64 ",\"unsent\":%" PRIu64
           ",\"reconnects\":%" PRIu64 ",\"max_backlog\":%" PRIu64
           ",\"worst_second\":{\"t\":%.0f,\"max_ms\":%.3f}}",
           errors, err_timeout, n_unsent, n_reconnects, max_backlog, worst_t, ms(worst_max));
    if (fclose(js) != 0)
        die("the JSON summary: %s", strerror(errno));
    printf("%s\n", json);
    if (o.timeline) {
        FILE *f = fopen(o.timeline, "w");
        if (f == NULL)
            die("%s: %s", o.timeline, strerror(errno));
        fprintf(f, "# second (0 = end of warm-up), responses, max latency ms, max backlog\n");
        for (size_t i = 0; i < timeline_len; i++)
            fprintf(f, "%.0f %" PRIu64 " %.3f %" PRIu64 "\n", (double)i - (double)first,
                    timeline[i].done, ms(timeline[i].max), timeline[i].backlog);
        if (fclose(f) != 0)
            die("%s: cannot write", o.timeline);
    }
    if (o.json) {
        FILE *f = fopen(o.json, "w");
        if (f == NULL || fprintf(f, "%s\n", json) < 0 || fclose(f) != 0)
            die("%s: cannot write", o.json);
    }
    free(json);
}

/* ---- main ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tgload [options] host:port\n"
            "  -P PATH     request target (default /)\n"
            "  -m METHOD   request method (default GET, POST with -b)\n"
            "  -H LINE     extra header \"Name: value\" (repeatable)\n"
            "  -b FILE     body template; {{ID}} becomes a unique increasing id,\n"
            "              {{CHAT}} becomes id %% chats\n"
            "  -i N        first id (default 1)\n"
            "  -C N        chats for {{CHAT}} (default 1000)\n"
            "  -c N        connections, each with one request in flight (default 10)\n"
            "  -R N        intended requests/s, spread evenly; 0 = closed loop (default 1000)\n"
            "  -d SECONDS  measured duration (default 10)\n"
            "  -w SECONDS  warm-up before measuring (default 2)\n"
            "  -t SECONDS  request timeout; the connection is dropped (default 10)\n"
            "  -j FILE     also write the JSON summary line to FILE\n"
            "  -T FILE     write per-second lines to FILE: responses, max latency, backlog\n"
            "  -l TEXT     label copied into the JSON\n"
            "  -S FILE     write \"id intended_unix_ns status\" per request sent (status 0:\n"
            "              no response); the intended time on CLOCK_REALTIME\n"
            "Latency is measured from the intended send time (open loop) or the\n"
            "actual send time (-R 0). The last stdout line is the JSON summary.\n");
}

static void parse_target(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0')
        die("target must be host:port, got \"%s\"", s);
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']')
        h++, hl -= 2;
    if (hl >= sizeof(o.host) || strlen(colon + 1) >= sizeof(o.port))
        die("target too long");
    memcpy(o.host, h, hl);
    o.host[hl] = '\0';
    strcpy(o.port, colon + 1);
}

static double num(const char *s, const char *what)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e != '\0' || v < 0 || !isfinite(v))
        die("bad %s \"%s\"", what, s);
    return v;
}

int main(int argc, char **argv)
{
    bool method_set = false;
    int opt;
    while ((opt = getopt(argc, argv, "P:m:H:b:i:C:c:R:d:w:t:j:T:l:S:h")) != -1) {
        switch (opt) {
        case 'P': o.path = optarg; break;
        case 'm': o.method = optarg, method_set = true; break;
        case 'H':
            if (o.nheaders == MAX_HEADERS)
                die("too many -H");
            o.headers[o.nheaders++] = optarg;
            break;
        case 'b': load_template(optarg); break;
        case 'i': o.start_id = (uint64_t)num(optarg, "-i"); break;
        case 'C': o.chats = (uint64_t)num(optarg, "-C"); break;
        case 'c': o.conns = (unsigned)num(optarg, "-c"); break;
        case 'R': o.rate = num(optarg, "-R"); break;
        case 'd': o.duration = num(optarg, "-d"); break;
        case 'w': o.warmup = num(optarg, "-w"); break;
        case 't': o.timeout = num(optarg, "-t"); break;
        case 'j': o.json = optarg; break;
        case 'T': o.timeline = optarg; break;
        case 'l': o.label = optarg; break;
        case 'S': o.sendlog = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    parse_target(argv[optind]);
    if (o.conns == 0 || o.duration <= 0 || o.chats == 0 || o.timeout <= 0)
        die("-c, -d, -C and -t must be positive");
    if (o.pieces && !method_set)
        o.method = "POST";

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int gr = getaddrinfo(o.host, o.port, &hints, &target_ai);
    if (gr != 0)
        die("%s:%s: %s", o.host, o.port, gai_strerror(gr));

    /* Request head: fixed part, built once. */
    size_t cap = 256 + strlen(o.path) + strlen(o.host) + strlen(o.method);
    for (int i = 0; i < o.nheaders; i++)
        cap += strlen(o.headers[i]) + 2;
    req_head = xmalloc(cap);
    int hl = snprintf(req_head, cap, "%s %s HTTP/1.1\r\nHost: %s:%s\r\n", o.method, o.path,
                      o.host, o.port);
    for (int i = 0; i < o.nheaders; i++)
        hl += snprintf(req_head + hl, cap - (size_t)hl, "%s\r\n", o.headers[i]);
    req_head_len = (size_t)hl;
    size_t body_max = 0;
    for (int i = 0; i < o.npieces; i++)
        body_max += o.pieces[i].text ? o.pieces[i].len : 24;
    wbuf_cap = req_head_len + 64 + body_max;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < o.conns + 64) {
        rl.rlim_cur = rl.rlim_max < o.conns + 64 ? rl.rlim_max : o.conns + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Wake-ups for the schedule should be on time to the microsecond, not 50 us late (ns). */
    prctl(PR_SET_TIMERSLACK, 1000UL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    conns = calloc(o.conns, sizeof(conn_t));
    if (conns == NULL)
        die("out of memory");
    uint64_t now = now_ns();
    for (unsigned i = 0; i < o.conns; i++) {
        conns[i].idx = i;
        conns[i].fd = -1;
        conns[i].wbuf = xmalloc(wbuf_cap);
        conns[i].rbuf = xmalloc(RBUF_SIZE);
        conns[i].retry_at = now;
        conn_open(&conns[i], now);
    }

    /* Let the connections come up before the schedule starts (not counted). */
    struct epoll_event evs[256];
    uint64_t up_deadline = now + 5 * NSEC;
    for (;;) {
        unsigned up = 0;
        for (unsigned i = 0; i < o.conns; i++)
            up += conns[i].state == C_IDLE;
        if (up == o.conns || now_ns() > up_deadline || interrupted)
            break;
        int n = epoll_wait(ep, evs, 256, 10);
        for (int i = 0; i < n; i++) {
            conn_t *c = event_conn(&evs[i]);
            if (c != NULL && c->state == C_CONNECTING)
                conn_connected(c, now_ns());
            else if (c != NULL && c->state == C_IDLE)
                conn_read(c, now_ns());
        }
        now = now_ns();
        for (unsigned i = 0; i < o.conns; i++)
            if (conns[i].state == C_DOWN && now >= conns[i].retry_at)
                conn_open(&conns[i], now);
    }
    err_connect = 0; /* refusals while the server comes up are not the server's errors */

    t_start = now_ns();
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    realtime_offset = (int64_t)((uint64_t)rt.tv_sec * NSEC + (uint64_t)rt.tv_nsec) -
                      (int64_t)now_ns();
    t_measure = t_start + (uint64_t)(o.warmup * (double)NSEC);
    t_end = t_measure + (uint64_t)(o.duration * (double)NSEC);
    t_deadline = t_end + (uint64_t)(o.timeout * (double)NSEC);
    timeline_len = (size_t)ceil(o.warmup + o.duration + o.timeout) + 2;
    timeline = calloc(timeline_len, sizeof(second_t));
    if (timeline == NULL)
        die("out of memory");
    uint64_t next_timeout_scan = t_start;
    if (o.sendlog != NULL) {
        sendlog = fopen(o.sendlog, "w");
        if (sendlog == NULL)
            die("%s: %s", o.sendlog, strerror(errno));
        setvbuf(sendlog, NULL, _IOFBF, 1 << 20);
        fprintf(sendlog,
                "# id intended_unix_ns status (0: no response); window_unix_ns %" PRId64
                " %" PRId64 "\n",
                (int64_t)t_measure + realtime_offset, (int64_t)t_end + realtime_offset);
    }

    for (;;) {
        now = now_ns();
        if (interrupted)
            break;
        if (now >= t_end && all_quiet()) {
            /* Open loop: requests scheduled in the window but still unsent wait their turn. */
            if (o.rate == 0 || intended_of(n_issued) >= t_end)
                break;
        }
        if (now >= t_deadline)
            break;
        uint64_t next = dispatch(now);
        if (now >= next_timeout_scan) {
            check_timeouts(now);
            next_timeout_scan = now + 10 * 1000000ull;
        }
        uint64_t wake = next_timeout_scan;
        if (next < wake)
            wake = next;
        if (t_end > now && t_end < wake)
            wake = t_end;
        now = now_ns();
        uint64_t wait = wake > now ? wake - now : 0;
        struct timespec ts = {(time_t)(wait / NSEC), (long)(wait % NSEC)};
        int n = epoll_pwait2(ep, evs, 256, &ts, NULL);
        if (n < 0 && errno != EINTR)
            die("epoll_pwait2: %s", strerror(errno));
        now = now_ns();
        for (int i = 0; i < n; i++) {
            conn_t *c = event_conn(&evs[i]);
            uint32_t e = evs[i].events;
            if (c == NULL)
                continue;
            if (c->state == C_CONNECTING) {
                conn_connected(c, now);
                if (c->state == C_IDLE)
                    dispatch(now);
                continue;
            }
            if ((e & EPOLLOUT) && c->state == C_WRITING)
                conn_write(c, now);
            if ((e & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->fd >= 0)
                conn_read(c, now);
            /* A connection freed by this response takes the next due request at once. */
            if (c->state == C_IDLE && (o.rate == 0 ? now < t_end : true))
                dispatch(now);
        }
    }
    /* Requests that were scheduled inside the window but never sent. */
    if (o.rate > 0) {
        uint64_t sched = (uint64_t)ceil((double)(t_end - t_start) * o.rate / (double)NSEC);
        if (sched > n_issued)
            n_unsent = sched - n_issued;
    }
    for (unsigned i = 0; i < o.conns; i++)
        if (conns[i].state == C_WRITING || conns[i].state == C_READING) {
            err_timeout++;
            sendlog_write(&conns[i], 0);
        }
    if (sendlog != NULL && fclose(sendlog) != 0)
        die("%s: cannot write", o.sendlog);
    report();
    return interrupted ? 130 : 0;
}
