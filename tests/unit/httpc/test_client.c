/* SPDX-License-Identifier: MIT */
/*
 * test_client.c - the HTTP/1.1 client pool on a real reactor, against a
 * real nginx over TLS 1.2 (certificates from tls/mkcerts.sh) and against
 * peer.py, a small Python server that misbehaves on purpose (plain and TLS).
 *
 * Checked: bodies arrive right; connections are reused (far fewer
 * handshakes than requests); after nginx closes idle connections the next
 * request reconnects with a resumed handshake; an unknown CA and a wrong
 * host name fail with -EKEYREJECTED and a log line naming BearSSL's error;
 * plain http:// works; chunked bodies are decoded; truncation (also TLS
 * without close_notify) is -ECONNRESET; deadlines give -ETIMEDOUT; bodies
 * over the cap give -EMSGSIZE; "Connection: close" and HTTP/1.0 close the
 * connection; a request on a connection the server closed is retried once;
 * the queue cap; freeing the pool with requests in flight.
 *
 * argv: mkcerts.sh, peer.py. Skips (77) without openssl, nginx or python3.
 */
#include "httpc.h"
#include "log.h"
#include "met.h"
#include "reactor.h"
#include "tap.h"
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

static char dir[256];
static rx_loop_t loop;
static tls_ctx_t *tls;
static pid_t nginx_pid = -1, peer_pid = -1, peer_tls_pid = -1;
static int nginx_port, bad_ca_port, wrong_name_port, peer_port, peer_tls_port;

/* ---- processes ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool up = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return up;
}

static bool wait_port(int port, int ms)
{
    for (int i = 0; i < ms / 20; i++) {
        if (port_open(port))
            return true;
        usleep(20000);
    }
    return false;
}

static pid_t spawn(char *const argv[], int *out_fd)
{
    int pfd[2];
    if (out_fd != NULL && pipe(pfd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        /* Whatever happens to the test (a sanitizer abort), its servers go with it. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (out_fd != NULL) {
            dup2(pfd[1], 1);
            close(pfd[0]);
            close(pfd[1]);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (out_fd != NULL) {
        close(pfd[1]);
        *out_fd = pfd[0];
    }
    return pid;
}

static void stop(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGTERM);
        waitpid(*pid, NULL, 0);
        *pid = -1;
    }
}

/* Starts peer.py (with TLS when cert is given) and reads the port it prints. */
static pid_t start_peer(const char *script, const char *cert, const char *key, int *port)
{
    char *argv[] = {"/usr/bin/python3", (char *)script, (char *)cert, (char *)key, NULL};
    if (cert == NULL)
        argv[2] = NULL;
    int fd;
    pid_t pid = spawn(argv, &fd);
    if (pid < 0)
        return -1;
    char line[32] = "";
    size_t n = 0;
    while (n < sizeof(line) - 1) {
        ssize_t r = read(fd, line + n, 1);
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    close(fd);
    *port = atoi(line);
    if (*port <= 0) {
        stop(&pid);
        return -1;
    }
    return pid;
}

static bool start_nginx(void)
{
    nginx_port = free_port();
    bad_ca_port = free_port();
    wrong_name_port = free_port();
    char conf[512];
    snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
    FILE *f = fopen(conf, "w");
    if (f == NULL)
        return false;
    fprintf(
        f,
        "%s"
        "worker_processes 1;\n"
        "error_log %s/nginx-error.log warn;\n"
        "pid %s/nginx.pid;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "  access_log off;\n"
        "  client_body_temp_path %s/body; proxy_temp_path %s/proxy;\n"
        "  fastcgi_temp_path %s/fastcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
        "  keepalive_timeout 1s;\n"
        "  keepalive_requests 100000;\n"
        "  ssl_protocols TLSv1.2;\n"
        "  ssl_session_cache shared:SSL:1m;\n"
        "  ssl_session_tickets off;\n"
        "  default_type application/json;\n"
        "  server {\n"
        "    listen 127.0.0.1:%d ssl;\n"
        "    ssl_certificate %s/server.pem; ssl_certificate_key %s/server.key;\n"
        "    location / { return 200 '{\"ok\":true,\"result\":{}}'; }\n"
        "    location /bot { return 200 '{\"ok\":true,\"result\":{\"method\":\"$request_method\""
        ",\"uri\":\"$request_uri\",\"len\":\"$content_length\"}}'; }\n"
        "  }\n"
        "  server {\n"
        "    listen 127.0.0.1:%d ssl;\n"
        "    ssl_certificate %s/other.pem; ssl_certificate_key %s/other.key;\n"
        "    location / { return 200 'unknown CA'; }\n"
        "  }\n"
        "  server {\n"
        "    listen 127.0.0.1:%d ssl;\n"
        "    ssl_certificate %s/wrong.pem; ssl_certificate_key %s/server.key;\n"
        "    location / { return 200 'wrong name'; }\n"
        "  }\n"
        "}\n",
        geteuid() == 0 ? "user root root;\n" : "", dir, dir, dir, dir, dir, dir, dir, nginx_port,
        dir, dir, bad_ca_port, dir, dir, wrong_name_port, dir, dir);
    fclose(f);
    char errlog[512];
    snprintf(errlog, sizeof(errlog), "%s/nginx-start.log", dir);
    char *argv[] = {"nginx", "-e", errlog, "-p", dir, "-c", conf, "-g", "daemon off;", NULL};
    nginx_pid = spawn(argv, NULL);
    return nginx_pid > 0 && wait_port(nginx_port, 5000) && wait_port(bad_ca_port, 1000) &&
           wait_port(wrong_name_port, 1000);
}

/* ---- stderr capture, for the log lines ---- */

static int saved_stderr = -1;

static void capture_start(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/log.txt", dir);
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
}

/* Stops capturing; returns what was logged (static buffer). */
static const char *capture_stop(void)
{
    static char buf[65536];
    char path[512];
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    snprintf(path, sizeof(path), "%s/log.txt", dir);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    /* Show it in the TAP output as comments, for whoever reads a failure. */
    for (const char *line = buf; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        printf("# log: %.*s\n", len, line);
        line += len + (nl != NULL);
    }
    return buf;
}

/* ---- calls ---- */

typedef struct call {
    httpc_req_t req;
    bool done;
    int err;
    int status;
    char body[8192];
    size_t body_len;
    int64_t retry_after;
    char ctype[64];
    size_t full_len;            /* the body's length, also past what body[] keeps */
    char last;                  /* its last byte */
    uint64_t started, finished; /* ms */
} call_t;

static int pending;
static rx_timer_t guard;

static void on_guard(rx_loop_t *l, rx_timer_t *t) { rx_stop(l); }

static void on_done(httpc_req_t *req, int err, const httpc_response_t *resp)
{
    call_t *c = container_of(req, call_t, req);
    c->done = true;
    c->err = err;
    c->finished = rx_now(&loop);
    if (resp != NULL) {
        c->status = resp->status;
        c->full_len = resp->body_len;
        c->last = resp->body_len > 0 ? resp->body[resp->body_len - 1] : 0;
        c->body_len = resp->body_len < sizeof(c->body) ? resp->body_len : sizeof(c->body);
        memcpy(c->body, resp->body, c->body_len);
        c->retry_after = resp->retry_after;
        size_t n = resp->content_type_len < sizeof(c->ctype) - 1 ? resp->content_type_len
                                                                 : sizeof(c->ctype) - 1;
        if (resp->content_type != NULL)
            memcpy(c->ctype, resp->content_type, n);
        c->ctype[n] = '\0';
    }
    if (--pending == 0)
        rx_stop(&loop);
}

static int start(httpc_pool_t *p, call_t *c, const char *method, const char *path, const char *body,
                 uint32_t timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->req.method = method;
    c->req.path = path;
    c->req.body = body;
    c->req.body_len = body ? strlen(body) : 0;
    c->req.content_type = body ? "application/json" : NULL;
    c->req.timeout_ms = timeout_ms ? timeout_ms : 10000;
    c->req.cb = on_done;
    c->started = rx_update_time(&loop);
    int r = httpc_request(p, &c->req);
    if (r == 0)
        pending++;
    return r;
}

/* Runs the loop until every started call completed, or `ms` passed. */
static bool run(unsigned ms)
{
    if (pending == 0)
        return true;
    rx_update_time(&loop);
    rx_timer_start(&loop, &guard, ms, on_guard);
    rx_run(&loop);
    rx_timer_stop(&loop, &guard);
    return pending == 0;
}

/* Runs the loop for `ms`, whatever happens. */
static void idle(unsigned ms)
{
    rx_update_time(&loop);
    rx_timer_start(&loop, &guard, ms, on_guard);
    rx_run(&loop);
}

/* One request, run to completion. */
static call_t *one(httpc_pool_t *p, const char *method, const char *path, const char *body,
                   uint32_t timeout_ms)
{
    static call_t c;
    if (start(p, &c, method, path, body, timeout_ms) != 0) {
        c.done = true;
        c.err = -9999;
        return &c;
    }
    run(15000);
    return &c;
}

static httpc_pool_t *pool(const char *url, unsigned max_conns)
{
    httpc_options_t o = {.url = url, .tls = tls, .max_conns = max_conns};
    int err = 0;
    httpc_pool_t *p = httpc_pool_new(&loop, &o, &err);
    if (p == NULL)
        printf("# pool %s: %d\n", url, err);
    return p;
}

/* Frees a pool and runs the loop until it is gone. */
static void drop(httpc_pool_t *p)
{
    httpc_pool_free(p);
    idle(50);
}

/*
 * The metrics the pool counts into this process's slot (connects, requests,
 * errors, retries, timeouts, TLS handshakes and failures), as counts since
 * met_mark().
 */
static met_slot_t met0;

static void met_mark(void)
{
    met0 = *met_self();
}

#define MET_SINCE(field) (met_self()->field - met0.field)

static bool body_is(const call_t *c, const char *s)
{
    return c->body_len == strlen(s) && memcmp(c->body, s, c->body_len) == 0;
}

/* ---- against nginx ---- */

static void test_nginx(void)
{
    char url[128];
    snprintf(url, sizeof(url), "https://localhost:%d", nginx_port);
    httpc_pool_t *p = pool(url, 4);
    if (p == NULL) {
        tap_ok(0, "nginx pool");
        return;
    }
    met_mark();

    call_t *c = one(p, "GET", "/", NULL, 0);
    tap_ok(c->err == 0 && c->status == 200 && body_is(c, "{\"ok\":true,\"result\":{}}"),
           "GET over TLS: 200 and the body");
    tap_ok(strcmp(c->ctype, "application/json") == 0, "... with its Content-Type");
    tap_ok(MET_SINCE(tls_handshakes_full) == 1 && MET_SINCE(tls_handshakes_resumed) == 0,
           "... one full handshake");

    /* Twenty requests, ten at a time, on at most four connections. */
    static call_t many[20];
    int good = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 10; i++)
            start(p, &many[round * 10 + i], "POST", "/bot123:secret/sendMessage",
                  "{\"chat_id\":1,\"text\":\"hi\"}", 0);
        run(15000);
    }
    for (int i = 0; i < 20; i++)
        good += many[i].err == 0 && many[i].status == 200 &&
                strstr(many[i].body, "\"method\":\"POST\"") != NULL &&
                strstr(many[i].body, "\"uri\":\"/bot123:secret/sendMessage\"") != NULL &&
                strstr(many[i].body, "\"len\":\"25\"") != NULL;
    tap_ok(good == 20, "20 POSTs: all answered, method, path and length seen by nginx");
    uint64_t hs = MET_SINCE(tls_handshakes_full) + MET_SINCE(tls_handshakes_resumed);
    printf("# connects %llu, full %llu, resumed %llu, requests %llu\n",
           (unsigned long long)MET_SINCE(botapi_connects),
           (unsigned long long)MET_SINCE(tls_handshakes_full),
           (unsigned long long)MET_SINCE(tls_handshakes_resumed),
           (unsigned long long)MET_SINCE(botapi_requests));
    tap_ok(MET_SINCE(botapi_connects) <= 4 && hs == MET_SINCE(botapi_connects) && hs < 21 / 4 + 2,
           "connections reused: at most 4 connects and handshakes for 21 requests");
    tap_ok(MET_SINCE(tls_handshakes_resumed) >= 1 || MET_SINCE(botapi_connects) == 1,
           "later connections resume the first session");
    tap_ok(met_self()->botapi_connections_open == MET_SINCE(botapi_connects),
           "all connections still open and idle");

    /* nginx closes idle connections after 1 s (close_notify and FIN). */
    uint64_t full = MET_SINCE(tls_handshakes_full), resumed = MET_SINCE(tls_handshakes_resumed);
    uint64_t connects = MET_SINCE(botapi_connects);
    idle(2000);
    tap_ok(met_self()->botapi_connections_open == 0, "after 2 s idle nginx closed them all, and the pool noticed");
    c = one(p, "GET", "/", NULL, 0);
    tap_ok(c->err == 0 && c->status == 200, "next request succeeds");
    tap_ok(MET_SINCE(botapi_connects) == connects + 1 &&
               MET_SINCE(tls_handshakes_resumed) == resumed + 1 &&
               MET_SINCE(tls_handshakes_full) == full,
           "... on a new connection with a resumed handshake");
    tap_ok(MET_SINCE(botapi_stale_retries) == 0 && MET_SINCE(botapi_transport_errors) == 0,
           "no retries and no errors so far");

    connects = MET_SINCE(botapi_connects);
    c = one(p, "HEAD", "/", NULL, 0);
    tap_ok(c->err == 0 && c->status == 200 && c->body_len == 0, "HEAD: no body read");
    c = one(p, "GET", "/", NULL, 0);
    tap_ok(c->err == 0 && body_is(c, "{\"ok\":true,\"result\":{}}") &&
               MET_SINCE(botapi_connects) == connects,
           "... and the connection stays in step for the next request");
    drop(p);

    /* An unknown CA. */
    snprintf(url, sizeof(url), "https://localhost:%d", bad_ca_port);
    p = pool(url, 2);
    met_mark();
    capture_start();
    c = one(p, "GET", "/", NULL, 0);
    const char *log = capture_stop();
    tap_ok(c->err == -EKEYREJECTED, "unknown CA: -EKEYREJECTED");
    tap_ok(strstr(log, "tls_handshake_failed") != NULL &&
               strstr(log, "BR_ERR_X509_NOT_TRUSTED") != NULL &&
               strstr(log, "certificate not trusted") != NULL,
           "... logged with BearSSL's error name and meaning");
    tap_ok(MET_SINCE(tls_failures) == 1 && MET_SINCE(botapi_transport_errors) == 1,
           "... and counted");
    drop(p);

    /* A certificate for another name. */
    snprintf(url, sizeof(url), "https://localhost:%d", wrong_name_port);
    p = pool(url, 2);
    capture_start();
    c = one(p, "GET", "/", NULL, 0);
    log = capture_stop();
    tap_ok(c->err == -EKEYREJECTED, "wrong host name: -EKEYREJECTED");
    tap_ok(strstr(log, "BR_ERR_X509_BAD_SERVER_NAME") != NULL &&
               strstr(log, "certificate is for another host name") != NULL,
           "... logged as BR_ERR_X509_BAD_SERVER_NAME");
    drop(p);
}

/* ---- against peer.py ---- */

static void test_peer(const char *scheme, int port)
{
    char url[128];
    bool is_tls = strcmp(scheme, "https") == 0;
    snprintf(url, sizeof(url), "%s://localhost:%d", scheme, port);
    httpc_options_t o = {.url = url, .tls = tls, .max_conns = 2, .max_response = 1 << 20};
    int err;
    httpc_pool_t *p = httpc_pool_new(&loop, &o, &err);
    if (p == NULL) {
        tap_ok(0, "peer pool");
        return;
    }
    met_mark();

    call_t *c = one(p, "GET", "/ok", NULL, 0);
    tap_ok(c->err == 0 && c->status == 200 && body_is(c, "{\"ok\":true,\"result\":{}}"), "%s: GET",
           scheme);

    c = one(p, "POST", "/echo", "{\"a\":\"\xc3\xa9\"}", 0);
    tap_ok(c->err == 0 && body_is(c, "POST /echo|application/json|{\"a\":\"\xc3\xa9\"}"),
           "%s: POST body and Content-Type arrive", scheme);
    tap_ok(MET_SINCE(botapi_connects) == 1, "%s: ... on the same connection", scheme);

    /* A body of many TLS records each way. */
    static char big[100001];
    memset(big, 'b', sizeof(big) - 1);
    big[0] = '[';
    big[sizeof(big) - 2] = ']';
    c = one(p, "POST", "/echo", big, 0);
    size_t prefix = strlen("POST /echo|application/json|");
    tap_ok(c->err == 0 && c->full_len == prefix + sizeof(big) - 1 && c->last == ']',
           "%s: 100 KB request and response bodies", scheme);

    c = one(p, "GET", "/chunked", NULL, 0);
    tap_ok(c->err == 0 && body_is(c, "{\"ok\":true,\"result\":[1,2]}\n"),
           "%s: chunked body decoded (pieces sent apart, extension, trailer)", scheme);
    c = one(p, "GET", "/ok", NULL, 0);
    tap_ok(c->err == 0 && MET_SINCE(botapi_connects) == 1,
           "%s: connection kept after a chunked response",
           scheme);

    c = one(p, "GET", "/interim", NULL, 0);
    tap_ok(c->err == 0 && c->status == 200, "%s: 100 Continue skipped", scheme);

    c = one(p, "GET", "/retry", NULL, 0);
    tap_ok(c->err == 0 && c->status == 429 && c->retry_after == 7, "%s: 429 with Retry-After",
           scheme);

    /* The server closes a kept-alive connection just as a request arrives. */
    uint64_t connects = MET_SINCE(botapi_connects);
    c = one(p, "POST", "/stale", "{}", 0);
    tap_ok(c->err == 0 && c->status == 200 && MET_SINCE(botapi_stale_retries) == 1,
           "%s: request on a connection the server closed: retried once, succeeds", scheme);
    tap_ok(MET_SINCE(botapi_connects) == connects + 1, "%s: ... on a fresh connection", scheme);
    uint64_t stale = MET_SINCE(botapi_stale_retries);
    static call_t once;
    memset(&once, 0, sizeof(once));
    if (start(p, &once, "POST", "/stale", "{}", 0) == 0)
        once.req.once = true; /* set before the loop sends it */
    run(15000);
    tap_ok(once.err == -ECONNRESET && MET_SINCE(botapi_stale_retries) == stale,
           "%s: a request sent once only is not sent again: -ECONNRESET (%d)", scheme, once.err);
    c = one(p, "GET", "/ok", NULL, 0); /* a kept-alive connection again, for what follows */

    connects = MET_SINCE(botapi_connects);
    c = one(p, "GET", "/close", NULL, 0);
    tap_ok(c->err == 0 && c->status == 200, "%s: Connection: close answered", scheme);
    c = one(p, "GET", "/ok", NULL, 0);
    tap_ok(c->err == 0 && MET_SINCE(botapi_connects) == connects + 1,
           "%s: ... and the next request reconnects", scheme);
    connects = MET_SINCE(botapi_connects);
    c = one(p, "GET", "/http10", NULL, 0);
    tap_ok(c->err == 0 && c->status == 200, "%s: HTTP/1.0 answered", scheme);
    c = one(p, "GET", "/ok", NULL, 0);
    tap_ok(c->err == 0 && MET_SINCE(botapi_connects) == connects + 1,
           "%s: ... and its connection closed", scheme);

    c = one(p, "GET", "/eof", NULL, 0);
    tap_ok(c->err == 0 && body_is(c, "until the end"), "%s: body to the end of the connection%s",
           scheme, is_tls ? ", ended by close_notify" : "");
    capture_start();
    c = one(p, "GET", "/eof-abrupt", NULL, 0);
    const char *log = capture_stop();
    if (is_tls)
        tap_ok(c->err == -ECONNRESET && strstr(log, "tls_truncated") != NULL,
               "%s: EOF without close_notify: truncation, -ECONNRESET", scheme);
    else
        tap_ok(c->err == 0 && body_is(c, "until the end"), "%s: EOF ends a body without length",
               scheme);

    c = one(p, "GET", "/trunc", NULL, 0);
    tap_ok(c->err == -ECONNRESET, "%s: Content-Length not reached before EOF: -ECONNRESET", scheme);

    uint64_t t0 = rx_update_time(&loop);
    c = one(p, "GET", "/hang", NULL, 300);
    uint64_t took = rx_update_time(&loop) - t0;
    tap_ok(c->err == -ETIMEDOUT && took >= 290 && took < 2000,
           "%s: no answer: -ETIMEDOUT at the deadline", scheme);

    c = one(p, "GET", "/big", NULL, 0);
    tap_ok(c->err == -EMSGSIZE, "%s: Content-Length over the cap: -EMSGSIZE", scheme);
    c = one(p, "GET", "/chunked-big", NULL, 0);
    tap_ok(c->err == -EMSGSIZE, "%s: chunked body over the cap: -EMSGSIZE", scheme);
    c = one(p, "GET", "/garbage", NULL, 0);
    tap_ok(c->err == -EPROTO, "%s: not HTTP: -EPROTO", scheme);

    c = one(p, "GET", "/ok", NULL, 0);
    tap_ok(c->err == 0, "%s: the pool still works after all that", scheme);
    printf("# %s: connects %llu requests %llu errors %llu retries %llu timeouts %llu\n", scheme,
           (unsigned long long)MET_SINCE(botapi_connects),
           (unsigned long long)MET_SINCE(botapi_requests),
           (unsigned long long)MET_SINCE(botapi_transport_errors),
           (unsigned long long)MET_SINCE(botapi_stale_retries),
           (unsigned long long)MET_SINCE(botapi_timeouts));
    tap_ok(MET_SINCE(botapi_timeouts) == 1 &&
               MET_SINCE(botapi_transport_errors) == (is_tls ? 7 : 6),
           "%s: errors and timeouts counted", scheme);

    /* Freeing the pool with requests in flight and queued. */
    static call_t hang[4];
    for (int i = 0; i < 4; i++)
        start(p, &hang[i], "GET", "/hang", NULL, 5000);
    idle(100);
    httpc_pool_free(p);
    int cancelled = 0;
    for (int i = 0; i < 4; i++)
        cancelled += hang[i].done && hang[i].err == -ECANCELED;
    tap_ok(cancelled == 4 && pending == 0,
           "%s: pool freed: in-flight and queued requests -ECANCELED", scheme);
    idle(50);
}

static void test_misc(void)
{
    int err = 0;
    httpc_options_t o = {.tls = tls};
    static const char *bad[] = {
        "ftp://localhost",
        "https://",
        "https://localhost/path",
        "https://localhost:0",
        "https://localhost:65536",
        "https://127.0.0.1:443",
        "https://[::1]:443",
        "http://a b",
        "localhost:80",
    };
    int refused = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.url = bad[i];
        err = 0;
        httpc_pool_t *p = httpc_pool_new(&loop, &o, &err);
        refused += p == NULL && err == -EINVAL;
        if (p != NULL) {
            printf("# accepted %s\n", bad[i]);
            drop(p);
        }
    }
    tap_ok(refused == (int)(sizeof(bad) / sizeof(bad[0])), "bad URLs refused with -EINVAL");
    o.url = "https://localhost";
    o.tls = NULL;
    tap_ok(httpc_pool_new(&loop, &o, &err) == NULL && err == -EINVAL, "https without tls: -EINVAL");

    /* Connection refused: a port nobody listens on. */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", free_port());
    httpc_pool_t *p = pool(url, 1);
    capture_start();
    call_t *c = one(p, "GET", "/", NULL, 0);
    capture_stop();
    tap_ok(c->err == -ECONNREFUSED, "nobody listening: -ECONNREFUSED");

    static call_t q[3];
    tap_ok(start(p, &q[0], "GET", "/a\r\nX: y", NULL, 0) == -EINVAL &&
               start(p, &q[0], "GE T", "/", NULL, 0) == -EINVAL &&
               start(p, &q[0], "GET", "nopath", NULL, 0) == -EINVAL,
           "CR/LF in the path, bad method, no leading slash: -EINVAL");
    drop(p);

    /* Queue cap: one connection slot and max_queue 1 admit two requests, not three. */
    snprintf(url, sizeof(url), "http://localhost:%d", peer_port);
    httpc_options_t o2 = {.url = url, .max_conns = 1, .max_queue = 1};
    p = httpc_pool_new(&loop, &o2, &err);
    met_mark();
    int r0 = start(p, &q[0], "GET", "/ok", NULL, 0);
    int r1 = start(p, &q[1], "GET", "/ok", NULL, 0);
    int r2 = start(p, &q[2], "GET", "/ok", NULL, 0);
    run(5000);
    tap_ok(r0 == 0 && r1 == 0 && r2 == -EAGAIN, "queue full: -EAGAIN, no callback");
    tap_ok(q[0].err == 0 && q[1].err == 0 && !q[2].done, "the admitted ones complete");
    tap_ok(MET_SINCE(botapi_connects) == 1, "... one after the other on one connection");
    tap_ok(MET_SINCE(botapi_requests) == 2 && MET_SINCE(botapi_transport_errors) == 0,
           "... counted as two answered requests; the refused one not at all");
    drop(p);

    /* Our own idle timeout closes kept-alive connections. */
    httpc_options_t o3 = {.url = url, .idle_timeout_ms = 200};
    p = httpc_pool_new(&loop, &o3, &err);
    c = one(p, "GET", "/ok", NULL, 0);
    bool was_open = met_self()->botapi_connections_open == 1;
    idle(500);
    tap_ok(c->err == 0 && was_open && met_self()->botapi_connections_open == 0,
           "idle_timeout_ms closes an idle connection");
    drop(p);

    printf("# memory per TLS connection while open: %zu bytes (BearSSL buffer %d)\n",
           tls_conn_memory(), 33178);
    tap_ok(tls_conn_memory() > 33178 && tls_conn_memory() < 48 * 1024,
           "a TLS connection holds about 40 KB");
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    log_setup(LOG_INFO, LOG_FORMAT_TEXT);
    if (argc < 3 || system("openssl version >/dev/null 2>&1") != 0 ||
        system("nginx -v >/dev/null 2>&1") != 0 || access("/usr/bin/python3", X_OK) != 0) {
        return tap_skip_all("needs openssl, nginx and /usr/bin/python3");
    }
    snprintf(dir, sizeof(dir), "/tmp/tgring-httpc-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "sh '%s' '%s'", argv[1], dir);
    if (system(cmd) != 0) {
        return tap_skip_all("could not make certificates with openssl");
    }
    if (rx_loop_init(&loop, 256) != 0) {
        return tap_skip_all("io_uring not available");
    }
    char ca[512], cert[512], key[512];
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(cert, sizeof(cert), "%s/server.pem", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    int err;
    tls = tls_ctx_new(ca, &err);
    tap_ok(tls != NULL, "trust anchors from the test CA");

    bool have_nginx = start_nginx();
    peer_pid = start_peer(argv[2], NULL, NULL, &peer_port);
    peer_tls_pid = start_peer(argv[2], cert, key, &peer_tls_port);
    tap_ok(have_nginx && peer_pid > 0 && peer_tls_pid > 0, "nginx and the peers started");
    if (tls != NULL && have_nginx && peer_pid > 0 && peer_tls_pid > 0) {
        test_nginx();
        test_peer("http", peer_port);
        tls_ctx_flush_sessions(tls);
        test_peer("https", peer_tls_port);
        test_misc();
    }
    stop(&nginx_pid);
    stop(&peer_pid);
    stop(&peer_tls_pid);
    tls_ctx_free(tls);
    rx_loop_dispose(&loop);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return tap_done();
}
