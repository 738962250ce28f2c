/* SPDX-License-Identifier: MIT */
/*
 * test_server.c - the HTTP server's connection logic on a real reactor: a
 * request answered, keep-alive, pipelined requests answered in order (the
 * first one answered late, from a timer), a malformed request answered 400
 * and the connection closed, 413 for a body over the cap, 408 when a head
 * does not complete within the header timeout, HTTP/1.0 and Connection:
 * close, and requests sent one byte at a time.
 *
 * The server listens on a loopback port of this process and runs on the main
 * thread's loop; a client thread talks to it with blocking sockets and prints
 * the checks of what it receives. When it is done it writes to a pipe that
 * the loop reads, which drains the server and stops the loop. A loop holds
 * one server (its buffer ring's group id is fixed), so the tiny header
 * timeout gets a second run with a server of its own. Then the main thread
 * checks what the servers saw: which requests, in which order, and the
 * status counts they kept. A last server runs out of descriptors at accept
 * (RLIMIT_NOFILE lowered under it): it must back off instead of spinning, log
 * the failures at most once a second, and accept again when descriptors free.
 * Another one meets a client that pipelines requests for a large response and
 * never reads: the server must stop reading from it after a little, render
 * few of its responses, answer a second connection promptly meanwhile, and
 * cut it at the response deadline (not before: its input never overflows).
 */
#include "core.h"
#include "http.h"
#include "met.h"
#include "reactor.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_BODY 1024     /* bytes: the servers' body cap */
#define TINY_TIMEOUT 100  /* ms: the second server's header timeout */
#define LATE_MS 30        /* ms: how long /later waits before it is answered */
#define CLIENT_TIMEOUT 10 /* s: the client's receive timeout, so a lost answer fails */
#define BIG_BODY 65536    /* bytes: the answer to GET /big */
#define DEADLINE_MS 1000  /* ms: the non-reader's server's response deadline */

static rx_loop_t loop;
static http_server_t *srv; /* the server of the current run */
static uint16_t port;      /* its port */
static int done_pipe[2];

/* ---- the servers' side (main thread) ------------------------------------------------- */

#define MAX_SEEN 64
static char seen[MAX_SEEN][32]; /* "METHOD /path", in the order on_request saw them */
static int nseen;

static http_conn_t *late_conn; /* the request of /later, answered by late_timer */
static rx_timer_t late_timer;
static unsigned send_timeout_ms; /* of the next server; 0: the default */
static int nbig;                 /* GET /big requests answered */

/* The answer to every request: what the server read of it. */
static void answer(http_conn_t *c, const char *what, size_t body_len)
{
    char text[80];
    int n = snprintf(text, sizeof(text), "%s %zu\n", what, body_len);
    http_respond(c, 200, "text/plain", NULL, text, (size_t)n, false);
}

static void on_late(rx_loop_t *l, rx_timer_t *t)
{
    (void)l;
    (void)t;
    answer(late_conn, "GET /later", 0);
    late_conn = NULL;
}

static void on_request(http_server_t *s, http_conn_t *c, const http_request_t *req, char *body,
                       size_t body_len)
{
    (void)s;
    (void)body;
    char what[32];
    snprintf(what, sizeof(what), "%.*s %.*s", (int)req->method_len, req->method, (int)req->path_len,
             req->path);
    if (nseen < MAX_SEEN)
        memcpy(seen[nseen++], what, sizeof(what));
    if (strcmp(what, "GET /big") == 0) {
        static char big[BIG_BODY];
        memset(big, 'b', sizeof(big));
        nbig++;
        http_respond(c, 200, "text/plain", NULL, big, sizeof(big), false);
        return;
    }
    if (strcmp(what, "GET /later") == 0) {
        /* Answered from a timer: the next pipelined request must wait for it. */
        late_conn = c;
        rx_timer_start(&loop, &late_timer, LATE_MS, on_late);
        return;
    }
    answer(c, what, body_len);
}

static void on_drained(void *arg)
{
    (void)arg;
    rx_stop(&loop);
}

static rx_op_t done_op;
static char done_byte;
static void on_done(rx_loop_t *l, rx_op_t *op, int res, uint32_t flags)
{
    (void)l;
    (void)op;
    (void)flags;
    if (res != 1)
        tap_bail("the client's done pipe");
    http_server_drain(srv, on_drained, NULL);
}

/* A listening socket on 127.0.0.1 and an ephemeral port. OUT: port. */
static int listen_loopback(uint16_t *out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
        tap_bail("cannot listen on loopback");
    *out = ntohs(a.sin_port);
    return fd;
}

static http_server_t *server_new(uint16_t *out, unsigned header_timeout_ms)
{
    http_server_options_t opt = {
        .limits = {8192, 2048, MAX_BODY},
        .max_connections = 32,
        .buffer_budget = 1u << 20,
        .header_timeout_ms = header_timeout_ms,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
        .send_timeout_ms = send_timeout_ms,
        .on_request = on_request,
    };
    int err = 0;
    http_server_t *s = http_server_new(&loop, listen_loopback(out), &opt, &err);
    if (s == NULL) {
        tap_diag("http_server_new: %s", strerror(-err));
        tap_bail("cannot start a server");
    }
    return s;
}

/* ---- the client's side (its own thread) ---------------------------------------------- */

typedef struct client {
    int fd;
    char buf[16384]; /* received and not yet consumed */
    size_t len;
} client_t;

/* One response as the client read it. */
typedef struct response {
    int status; /* 0 when none could be read */
    bool close; /* it said Connection: close */
    char body[256];
} response_t;

static void client_open(client_t *cl, uint16_t p)
{
    cl->len = 0;
    cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(p), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT};
    int one = 1;
    if (cl->fd < 0 || connect(cl->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(cl->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        tap_bail("cannot connect to the server");
}

static void client_close(client_t *cl)
{
    close(cl->fd);
}

static void client_send(client_t *cl, const char *data, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t n = send(cl->fd, data + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the server closed: what it answered tells */
        off += (size_t)n;
    }
}

/* One byte per send, with a pause between them so that each arrives on its own. */
static void client_send_bytes(client_t *cl, const char *data)
{
    for (const char *p = data; *p; p++) {
        client_send(cl, p, 1);
        usleep(1000);
    }
}

/* Reads more into cl->buf; false on EOF, error or timeout. */
static bool client_fill(client_t *cl)
{
    if (cl->len == sizeof(cl->buf))
        return false;
    ssize_t n = recv(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len, 0);
    if (n <= 0)
        return false;
    cl->len += (size_t)n;
    return true;
}

/* The value of header `name` (with its ": ") in head[0..len), or NULL. */
static const char *find_field(const char *head, size_t len, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = head; p + nl <= head + len; p++)
        if ((p == head || p[-1] == '\n') && strncasecmp(p, name, nl) == 0)
            return p + nl;
    return NULL;
}

/* Reads one response (head and Content-Length body) from cl. */
static response_t client_read(client_t *cl)
{
    response_t r = {0};
    char *end;
    while ((end = memmem(cl->buf, cl->len, "\r\n\r\n", 4)) == NULL)
        if (!client_fill(cl))
            return r;
    size_t head = (size_t)(end - cl->buf) + 4;
    const char *cl_field = find_field(cl->buf, head, "Content-Length: ");
    size_t body = cl_field ? strtoul(cl_field, NULL, 10) : 0;
    while (cl->len < head + body)
        if (!client_fill(cl))
            return r;
    if (sscanf(cl->buf, "HTTP/1.1 %d ", &r.status) != 1)
        r.status = -1;
    const char *conn = find_field(cl->buf, head, "Connection: ");
    r.close = conn != NULL && strncasecmp(conn, "close", 5) == 0;
    size_t keep = body < sizeof(r.body) - 1 ? body : sizeof(r.body) - 1;
    memcpy(r.body, cl->buf + head, keep);
    r.body[keep] = '\0';
    memmove(cl->buf, cl->buf + head + body, cl->len - head - body);
    cl->len -= head + body;
    return r;
}

/* Whether the server closed the connection with nothing more to read. */
static bool client_eof(client_t *cl)
{
    if (cl->len != 0)
        return false;
    char b;
    return recv(cl->fd, &b, 1, 0) == 0;
}

/* Checks that r is a 200 whose body is `want` (what on_request answers). */
static void check_200(const response_t *r, const char *want, const char *what)
{
    if (!tap_ok(r->status == 200 && strcmp(r->body, want) == 0, "%s", what))
        tap_diag("got status %d, body \"%s\"; want 200, \"%s\"", r->status, r->body, want);
}

static void test_one(void)
{
    client_t cl;
    client_open(&cl, port);
    static const char req[] = "GET /one HTTP/1.1\r\nHost: x\r\n\r\n";
    client_send(&cl, req, sizeof(req) - 1);
    response_t r = client_read(&cl);
    check_200(&r, "GET /one 0\n", "a request is answered");
    tap_ok(!r.close, "and the connection kept alive");

    static const char post[] = "POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    client_send(&cl, post, sizeof(post) - 1);
    r = client_read(&cl);
    check_200(&r, "POST /post 5\n", "keep-alive: a second request on it, with a body");
    client_close(&cl);
}

static void test_pipelined(void)
{
    client_t cl;
    client_open(&cl, port);
    /* One send: the first is answered late, the others wait in the buffer. */
    static const char reqs[] = "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /now HTTP/1.1\r\nHost: x\r\n\r\n"
                               "POST /third HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    client_send(&cl, reqs, sizeof(reqs) - 1);
    response_t a = client_read(&cl), b = client_read(&cl), c = client_read(&cl);
    check_200(&a, "GET /later 0\n", "pipelined: the first answer is the first request's");
    check_200(&b, "GET /now 0\n", "pipelined: then the second's");
    check_200(&c, "POST /third 3\n", "pipelined: then the third's");
    client_close(&cl);
}

static void test_malformed(void)
{
    client_t cl;
    client_open(&cl, port);
    static const char reqs[] = "GET /good HTTP/1.1\r\nHost: x\r\n\r\n"
                               "GET /bad HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n"
                               "GET /never HTTP/1.1\r\nHost: x\r\n\r\n";
    client_send(&cl, reqs, sizeof(reqs) - 1);
    response_t a = client_read(&cl), b = client_read(&cl);
    check_200(&a, "GET /good 0\n", "malformed: the good request before it is answered");
    tap_ok(b.status == 400 && b.close, "malformed: 400 with Connection: close (status %d)",
           b.status);
    tap_ok(client_eof(&cl), "malformed: then the connection is closed, the next request unread");
    client_close(&cl);
}

static void test_too_big(void)
{
    client_t cl;
    client_open(&cl, port);
    char req[128];
    int n = snprintf(req, sizeof(req),
                     "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", MAX_BODY + 1);
    client_send(&cl, req, (size_t)n);
    response_t r = client_read(&cl);
    tap_ok(r.status == 413 && r.close,
           "Content-Length over the cap: 413, Connection: close "
           "(status %d)",
           r.status);
    tap_ok(client_eof(&cl), "and the connection is closed");
    client_close(&cl);

    /* A chunked body crosses the cap only as it arrives. */
    client_open(&cl, port);
    static const char head[] = "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "400\r\n";
    client_send(&cl, head, sizeof(head) - 1);
    char chunk[0x400 + 2];
    memset(chunk, 'x', sizeof(chunk));
    memcpy(chunk + 0x400, "\r\n", 2);
    client_send(&cl, chunk, sizeof(chunk));
    client_send(&cl, "1\r\nx\r\n", 6);
    r = client_read(&cl);
    tap_ok(r.status == 413 && r.close, "chunked body over the cap: 413 (status %d)", r.status);
    client_close(&cl);
}

static void test_header_timeout(void)
{
    client_t cl;
    client_open(&cl, port);
    static const char part[] = "GET /slow HTTP/1.1\r\nHost: x\r\n";
    client_send(&cl, part, sizeof(part) - 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    response_t r = client_read(&cl);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    tap_ok(r.status == 408 && r.close, "a head that does not complete: 408 (status %d)", r.status);
    tap_ok(client_eof(&cl), "and the connection is closed");
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    tap_diag("408 came %ld ms after the head's first bytes (header timeout %d ms)", ms,
             TINY_TIMEOUT);
    client_close(&cl);
}

static void test_close(void)
{
    client_t cl;
    client_open(&cl, port);
    static const char req[] = "GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    client_send(&cl, req, sizeof(req) - 1);
    response_t r = client_read(&cl);
    check_200(&r, "GET /close 0\n", "Connection: close: answered");
    tap_ok(r.close && client_eof(&cl), "with Connection: close, then closed");
    client_close(&cl);

    client_open(&cl, port);
    static const char old[] = "GET /old HTTP/1.0\r\n\r\n";
    client_send(&cl, old, sizeof(old) - 1);
    r = client_read(&cl);
    check_200(&r, "GET /old 0\n", "HTTP/1.0: answered");
    tap_ok(client_eof(&cl), "and closed after the answer");
    client_close(&cl);
}

static void test_bytes(void)
{
    client_t cl;
    client_open(&cl, port);
    client_send_bytes(&cl, "POST /split HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    response_t r = client_read(&cl);
    check_200(&r, "POST /split 5\n", "a request sent one byte at a time");
    client_send_bytes(&cl, "POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n");
    r = client_read(&cl);
    check_200(&r, "POST /chunks 5\n",
              "then a chunked one, one byte at a time, on the same "
              "connection");
    client_close(&cl);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Whether the connection is gone: reset or closed by the server. */
static bool client_gone(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
           ti.tcpi_state != TCP_ESTABLISHED;
}

static void test_nonreader(void)
{
    /* A tiny receive window, and nothing is ever read. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rcv = 2048, snd = 16384;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd)) != 0 ||
        connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
        tap_bail("cannot connect the non-reader");
    static const char req[] = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
    char reqs[100 * (sizeof(req) - 1)];
    for (size_t i = 0; i < 100; i++)
        memcpy(reqs + i * (sizeof(req) - 1), req, sizeof(req) - 1);

    /* Pipelines until the server takes no more for 200 ms (or 4 MiB, or it closes). */
    struct timespec t0, stalled;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    stalled = t0;
    size_t pushed = 0;
    bool failed = false;
    while (pushed < (4u << 20) && ms_since(&stalled) < 200) {
        ssize_t n = send(fd, reqs, sizeof(reqs), MSG_NOSIGNAL);
        if (n > 0) {
            pushed += (size_t)n;
            clock_gettime(CLOCK_MONOTONIC, &stalled);
        } else if (n < 0 && errno == EAGAIN) {
            usleep(5000);
        } else {
            failed = true;
            break;
        }
    }
    tap_ok(!failed && pushed < (512u << 10),
           "a pipelining non-reader stops being read from (%zu bytes taken, in %.0f ms)", pushed,
           ms_since(&t0));

    /* Meanwhile another connection is answered at once, every time. */
    client_t cl;
    client_open(&cl, port);
    static const char one[] = "GET /one HTTP/1.1\r\nHost: x\r\n\r\n";
    double worst = 0;
    int good = 0;
    for (int i = 0; i < 5; i++) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        client_send(&cl, one, sizeof(one) - 1);
        response_t r = client_read(&cl);
        good += r.status == 200 && strcmp(r.body, "GET /one 0\n") == 0;
        if (ms_since(&t) > worst)
            worst = ms_since(&t);
    }
    client_close(&cl);
    bool held = !client_gone(fd);
    tap_ok(good == 5 && worst < 250 && held,
           "meanwhile another connection's requests are answered promptly (%d of 5, the slowest "
           "in %.1f ms, the non-reader %s)",
           good, worst, held ? "still connected" : "already cut");

    /* Then the non-reader is cut at the deadline: not before, not much after. */
    while (!client_gone(fd) && ms_since(&t0) < 5 * DEADLINE_MS)
        usleep(10000);
    double cut = ms_since(&t0);
    tap_ok(client_gone(fd) && cut >= DEADLINE_MS - 50 && cut < 2 * DEADLINE_MS + 500,
           "and it is cut at the response deadline (%.0f ms after its first request, "
           "deadline %d ms)",
           cut, DEADLINE_MS);
    close(fd);
}

static void *client_main(void *arg)
{
    void (*const *tests)(void) = arg;
    for (; *tests != NULL; tests++)
        (*tests)();
    if (write(done_pipe[1], "x", 1) != 1)
        tap_bail("cannot write the done pipe");
    return NULL;
}

/* ---- out of descriptors at accept ---------------------------------------------------- */

#define EMFILE_CLIENTS 6 /* connections waiting in the backlog */
#define EMFILE_SPARE 2   /* descriptors left for accept */

static rx_timer_t stop_timer;

static void on_stop(rx_loop_t *l, rx_timer_t *t)
{
    (void)t;
    rx_stop(l);
}

/* Runs the loop for `ms`; returns the CPU time the process used meanwhile, in ms. */
static long run_for(unsigned ms)
{
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    rx_timer_start(&loop, &stop_timer, ms, on_stop);
    rx_run(&loop);
    getrusage(RUSAGE_SELF, &r1);
    long us = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) *
                  1000000L +
              (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) +
              (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
    return us / 1000;
}

/* Lines of `path` that hold `what`. */
static int count_lines(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int n = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, what) != NULL;
    if (f != NULL)
        fclose(f);
    return n;
}

static void test_accept_emfile(void)
{
    /* The server's log lines go to a file for the count, the descriptor taken before the limit. */
    char logpath[] = "/tmp/test_http_server_log_XXXXXX";
    int logfd = mkstemp(logpath);
    int saved_err = dup(STDERR_FILENO);
    if (logfd < 0 || saved_err < 0 || dup2(logfd, STDERR_FILENO) < 0)
        tap_bail("cannot redirect stderr");
    srv = server_new(&port, 10000);
    client_t cl[EMFILE_CLIENTS];
    for (int i = 0; i < EMFILE_CLIENTS; i++)
        client_open(&cl[i], port); /* completed by the kernel, waiting in the backlog */
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    int lowest = dup(0); /* the lowest free descriptor number */
    close(lowest);
    low.rlim_cur = (rlim_t)lowest + EMFILE_SPARE;
    low.rlim_max = old.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0)
        tap_bail("cannot lower RLIMIT_NOFILE");
    met_slot_t *m = met_self();
    uint64_t total0 = m->http_connections_total, errors0 = m->http_accept_errors;

    long cpu = run_for(1500);
    uint64_t errors = m->http_accept_errors - errors0;
    tap_eq_int((long long)(m->http_connections_total - total0), EMFILE_SPARE,
               "out of descriptors: the connections that fit are accepted");
    tap_ok(errors >= 3 && errors <= 20,
           "accept is retried with a growing delay, not at once (%llu failures in 1.5 s)",
           (unsigned long long)errors);
    tap_ok(cpu < 300, "the server does not spin (%ld ms of CPU in 1.5 s)", cpu);
    /* Two connections end: their descriptors serve those waiting. */
    client_close(&cl[0]);
    client_close(&cl[1]);
    run_for(1500);
    uint64_t total = m->http_connections_total - total0;
    tap_ok(total >= 2 * EMFILE_SPARE, "descriptors freed: accepting resumes (%llu accepted)",
           (unsigned long long)total);

    /* Reading the log takes a descriptor. */
    setrlimit(RLIMIT_NOFILE, &old);
    int lines = count_lines(logpath, "accept_failed");
    tap_ok(lines >= 1 && lines <= 3, "the failures are logged at most once a second (%d lines)",
           lines);
    tap_ok(count_lines(logpath, "accept: Too many open files (0 more") == 1 &&
               count_lines(logpath, "more failures since the last line") == lines && lines >= 2,
           "the first line says the error, the next counts the failures it stands for");

    for (int i = 2; i < EMFILE_CLIENTS; i++)
        client_close(&cl[i]);
    http_server_drain(srv, on_drained, NULL);
    tap_eq_int(rx_run(&loop), 0, "the loop ran until the server was drained");
    tap_eq_int(http_server_connections(srv), 0, "the server holds no connection");
    http_server_free(srv);
    dup2(saved_err, STDERR_FILENO);
    close(saved_err);
    close(logfd);
    unlink(logpath);
}

/* ---- main ---------------------------------------------------------------------------- */

/* The requests the servers must have handed out, in order. */
static const char *const want_seen[] = {
    "GET /one",  "POST /post", "GET /later", "GET /now",    "POST /third",
    "GET /good", "GET /close", "GET /old",   "POST /split", "POST /chunks",
};

/* Runs the client thread's tests (a NULL-terminated list) against a new server. */
static void run(unsigned header_timeout_ms, void (*const *tests)(void))
{
    srv = server_new(&port, header_timeout_ms);
    io_uring_prep_read(rx_sqe(&loop, &done_op), done_pipe[0], &done_byte, 1, 0);
    pthread_t client;
    if (pthread_create(&client, NULL, client_main, (void *)tests) != 0)
        tap_bail("cannot start the client thread");
    tap_eq_int(rx_run(&loop), 0, "the loop ran until the server was drained");
    pthread_join(client, NULL);
    tap_eq_int(http_server_connections(srv), 0, "the server holds no connection");
    http_server_free(srv);
}

int main(void)
{
    int err = rx_loop_init(&loop, 256);
    if (err < 0)
        return tap_skip_all("no io_uring here: %s", rx_strerror_setup(err));
    if (pipe2(done_pipe, O_CLOEXEC) != 0)
        tap_bail("pipe");
    done_op.cb = on_done;

    static void (*const generous[])(void) = {
        test_one, test_pipelined, test_malformed, test_too_big, test_close, test_bytes, NULL};
    run(10000, generous);
    static void (*const tiny[])(void) = {test_header_timeout, NULL};
    run(TINY_TIMEOUT, tiny);

    bool order = nseen == (int)ARRAY_SIZE(want_seen);
    for (int i = 0; order && i < nseen; i++)
        order = strcmp(seen[i], want_seen[i]) == 0;
    if (!tap_ok(order, "the servers handed out exactly the complete requests, in order"))
        for (int i = 0; i < nseen; i++)
            tap_diag("%d: %s", i, seen[i]);
    met_slot_t *m = met_self();
    tap_eq_int((long long)m->http_requests[200], (long long)ARRAY_SIZE(want_seen),
               "the servers counted every 200");
    tap_ok(m->http_requests[400] == 1 && m->http_requests[413] == 2 && m->http_requests[408] == 1,
           "and one 400, two 413s, one 408");
    tap_eq_int((long long)m->http_connections_total, 9, "nine connections accepted");
    tap_eq_int((long long)m->http_connections_open, 0, "none left open");

    /* The non-reader: few of its responses rendered, one deadline cut. */
    uint64_t timeouts0 = m->http_send_timeouts;
    send_timeout_ms = DEADLINE_MS;
    static void (*const nonreader[])(void) = {test_nonreader, NULL};
    run(10000, nonreader);
    tap_ok(nbig >= 1 && nbig <= 4, "the server rendered %d of its pipelined responses", nbig);
    tap_eq_int((long long)(m->http_send_timeouts - timeouts0), 1,
               "and counted one connection cut at the deadline");
    send_timeout_ms = 0;

    test_accept_emfile();

    close(done_pipe[0]);
    close(done_pipe[1]);
    rx_loop_dispose(&loop);
    return tap_done();
}
