/* SPDX-License-Identifier: MIT */
/*
 * test_parser.c - unit tests of the HTTP request-head parser (src/http/parser.c).
 *
 * Every input is parsed from a copy that ends exactly at a PROT_NONE guard
 * page, so a read past the end crashes the test. Valid requests are also
 * parsed at every prefix length (each must be -EAGAIN), and refused ones at
 * every prefix (each must be -EAGAIN or the same refusal).
 */
#include "http_parse.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each input is copied to end exactly where a PROT_NONE page begins. */
static tap_guard_t guard;

static const http_limits_t def_lim = HTTP_LIMITS_DEFAULT;

static int parse_lim(const char *s, size_t n, const http_limits_t *lim, http_request_t *req)
{
    return http_parse_request(tap_guard_copy(&guard, s, n, TAP_GUARD_END), n, lim, req);
}

static int parse(const char *s, http_request_t *req)
{
    return parse_lim(s, strlen(s), &def_lim, req);
}

static bool view_eq(const char *p, size_t n, const char *want)
{
    return p != NULL && strlen(want) == n && memcmp(p, want, n) == 0;
}

/* Every proper prefix of a valid head is -EAGAIN; the whole gives its length. */
static bool split_ok(const char *s, size_t n, const http_limits_t *lim, int want)
{
    http_request_t req;
    for (size_t k = 0; k < (size_t)want; k++) {
        int r = parse_lim(s, k, lim, &req);
        if (r != -EAGAIN) {
            printf("# prefix %zu of %zu gave %d (status %d, %s)\n", k, n, r, req.status,
                   req.error ? req.error : "");
            return false;
        }
    }
    for (size_t k = (size_t)want; k <= n; k++) {
        if (parse_lim(s, k, lim, &req) != want) {
            printf("# prefix %zu of %zu did not give %d\n", k, n, want);
            return false;
        }
    }
    return true;
}

/* Every prefix of a refused input is -EAGAIN or the same refusal. */
static bool split_bad(const char *s, size_t n, const http_limits_t *lim, int status,
                      const char *error)
{
    http_request_t req;
    for (size_t k = 0; k < n; k++) {
        int r = parse_lim(s, k, lim, &req);
        if (r == -EAGAIN)
            continue;
        if (r != -EBADMSG || req.status != status || strcmp(req.error, error) != 0) {
            printf("# prefix %zu of %zu gave %d (status %d, %s)\n", k, n, r, req.status,
                   req.error ? req.error : "");
            return false;
        }
    }
    return true;
}

/* ---- valid requests ---------------------------------------------------- */

struct good {
    const char *name;
    const char *req;
    const char *method;
    const char *path;
    int minor;
    int64_t content_length;
    bool chunked;
    bool keep_alive;
};

static const struct good goods[] = {
    {"simple GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", 1, -1, false, true},
    {"webhook POST",
     "POST /webhook/telegram HTTP/1.1\r\nHost: bot.example.com\r\n"
     "Content-Type: application/json\r\nContent-Length: 15\r\n"
     "X-Telegram-Bot-Api-Secret-Token: s3cr3t_-\r\n\r\n",
     "POST", "/webhook/telegram", 1, 15, false, true},
    {"HTTP/1.0 without Host", "GET /x HTTP/1.0\r\n\r\n", "GET", "/x", 0, -1, false, false},
    {"HTTP/1.0 keep-alive", "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET", "/x", 0, -1,
     false, true},
    {"HTTP/1.0 keep-alive in a list", "GET / HTTP/1.0\r\nConnection: foo ,Keep-Alive\r\n\r\n",
     "GET", "/", 0, -1, false, true},
    {"HTTP/1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
     "GET", "/", 0, -1, false, false},
    {"HTTP/1.1 close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "GET", "/", 1, -1,
     false, false},
    {"HTTP/1.1 close in a list", "GET / HTTP/1.1\r\nHost: a\r\nConnection: TE,  CLOSE\t\r\n\r\n",
     "GET", "/", 1, -1, false, false},
    {"HTTP/1.1 close in a second Connection field",
     "GET / HTTP/1.1\r\nConnection: keep-alive\r\nHost: a\r\nconnection: close\r\n\r\n", "GET", "/",
     1, -1, false, false},
    {"HTTP/1.0 keep-alive that is not a token",
     "GET / HTTP/1.0\r\nConnection: keep-alive x, keep-alive\"\r\n\r\n", "GET", "/", 0, -1, false,
     false},
    {"HTTP/1.1 close followed by junk still closes",
     "GET / HTTP/1.1\r\nHost: a\r\nConnection: close \"x\"\r\n\r\n", "GET", "/", 1, -1, false,
     false},
    {"HTTP/1.1 closer is not close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: closer\r\n\r\n",
     "GET", "/", 1, -1, false, true},
    {"query string", "GET /a/b?x=1&y=/z?w HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/a/b", 1, -1, false,
     true},
    {"empty query", "GET /? HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", 1, -1, false, true},
    {"asterisk form", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS", "*", 1, -1, false, true},
    {"absolute form", "GET http://example.com:8080/a/b?c HTTP/1.1\r\nHost: example.com\r\n\r\n",
     "GET", "/a/b", 1, -1, false, true},
    {"absolute form without path", "OPTIONS https://example.com HTTP/1.1\r\nHost: x\r\n\r\n",
     "OPTIONS", "", 1, -1, false, true},
    {"one leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "/", 1, -1, false, true},
    {"four leading CRLFs", "\r\n\r\n\r\n\r\nPOST /p HTTP/1.0\r\nContent-Length: 0\r\n\r\n", "POST",
     "/p", 0, 0, false, false},
    {"obs-text in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9 \xff\x80\r\n\r\n",
     "GET", "/", 1, -1, false, true},
    {"HTAB in values", "GET / HTTP/1.1\r\nHost:\ta\t\r\nX-T:\tb\tc\t\r\n\r\n", "GET", "/", 1, -1,
     false, true},
    {"empty values", "GET / HTTP/1.1\r\nHost:\r\nX-E:\r\nX-F:   \r\n\r\n", "GET", "/", 1, -1, false,
     true},
    {"case-insensitive names",
     "PUT /u HTTP/1.1\r\nhOsT: a\r\ncontent-LENGTH: 5\r\nCONNECTION: CLOSE\r\n\r\n", "PUT", "/u", 1,
     5, false, false},
    {"chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "POST", "/", 1,
     -1, true, true},
    {"chunked in capitals", "POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\nHost: a\r\n\r\n",
     "POST", "/", 1, -1, true, true},
    {"chunked with empty list elements",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked ,\r\n\r\n", "POST", "/", 1, -1,
     true, true},
    {"Content-Length 0", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "POST", "/", 1,
     0, false, true},
    {"Content-Length with leading zeros and OWS",
     "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t007 \r\n\r\n", "POST", "/", 1, 7, false,
     true},
    {"Content-Length at max_body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n",
     "POST", "/", 1, 1048576, false, true},
    {"extension method", "M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n", "M-SEARCH", "/x", 1, -1, false,
     true},
    /* A method is case-sensitive and kept as sent: routing must not match "post" to POST. */
    {"lower-case method kept as sent", "post /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
     "post", "/x", 1, 0, false, true},
    {"tchar punctuation in method and name",
     "!#$%&'*+-.^_`|~0aZ /x HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~0aZ: v\r\n\r\n",
     "!#$%&'*+-.^_`|~0aZ", "/x", 1, -1, false, true},
    {"colon in a value", "GET / HTTP/1.1\r\nHost: example.com:8443\r\n\r\n", "GET", "/", 1, -1,
     false, true},
    {"Host IP literal", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "GET", "/", 1, -1, false,
     true},
    {"Host with an empty port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", "GET", "/", 1, -1, false,
     true},
    {"Host reg-name characters", "GET / HTTP/1.1\r\nHost: A-z.0_9~%20!$&'()*+,;=:443\r\n\r\n",
     "GET", "/", 1, -1, false, true},
    {"visible ASCII in the target",
     "GET /a%20b;c=d/~e!$&'()*+,:@[]{}|^`\"<>\\ HTTP/1.1\r\nHost: a\r\n\r\n", "GET",
     "/a%20b;c=d/~e!$&'()*+,:@[]{}|^`\"<>\\", 1, -1, false, true},
    {"Expect 100-continue",
     "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", "POST", "/",
     1, 3, false, true},
};

static void test_goods(void)
{
    for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
        const struct good *g = &goods[i];
        size_t n = strlen(g->req);
        http_request_t req;
        int r = parse(g->req, &req);
        tap_ok(r == (int)n, "%s: whole head accepted (%d)", g->name, r);
        tap_ok(view_eq(req.method, req.method_len, g->method) &&
                   view_eq(req.path, req.path_len, g->path) && req.minor_version == g->minor,
               "%s: method, path and version", g->name);
        tap_ok(req.content_length == g->content_length && req.chunked == g->chunked &&
                   req.keep_alive == g->keep_alive && req.status == 0 && req.error == NULL,
               "%s: framing and keep-alive", g->name);
        tap_ok(split_ok(g->req, n, &def_lim, (int)n), "%s: every prefix is -EAGAIN", g->name);
    }
}

static void test_fields(void)
{
    http_request_t req;
    const http_header_t *h;

    parse("GET /a?b HTTP/1.1\r\nHost: a\r\n\r\n", &req);
    tap_ok(view_eq(req.target, req.target_len, "/a?b"), "target keeps the query");

    parse("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9 \xff\x80\r\n\r\n", &req);
    h = http_find_header(&req, "x-name");
    tap_ok(h != NULL && view_eq(h->value, h->value_len, "caf\xc3\xa9 \xff\x80"),
           "obs-text kept in the value");

    parse("GET / HTTP/1.1\r\nHost:\ta\t\r\nX-T:\tb\tc\t\r\n\r\n", &req);
    h = http_find_header(&req, "X-T");
    tap_ok(h != NULL && view_eq(h->value, h->value_len, "b\tc"), "inner HTAB kept, OWS stripped");
    h = http_find_header(&req, "host");
    tap_ok(h != NULL && view_eq(h->value, h->value_len, "a"), "HTAB stripped around Host");

    parse("GET / HTTP/1.1\r\nHost:\r\nX-E:\r\nX-F:   \r\n\r\n", &req);
    h = http_find_header(&req, "x-f");
    tap_ok(h != NULL && h->value_len == 0 && req.num_headers == 3, "OWS-only value is empty");

    parse("GET / HTTP/1.1\r\nX-S:  a b  \r\nA: 1\r\nB: 2\r\na: 3\r\nHost: h\r\n\r\n", &req);
    tap_ok(req.num_headers == 5 && view_eq(req.headers[1].name, req.headers[1].name_len, "A") &&
               view_eq(req.headers[3].value, req.headers[3].value_len, "3"),
           "fields kept in order");
    h = http_find_header(&req, "a");
    tap_ok(h == &req.headers[1], "http_find_header returns the first match");
    tap_ok(http_find_header(&req, "missing") == NULL, "http_find_header: absent is NULL");
    h = http_find_header(&req, "x-s");
    tap_ok(h != NULL && view_eq(h->value, h->value_len, "a b"), "leading and trailing SP stripped");

    parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", &req);
    tap_ok(req.expect_continue, "Expect: 100-continue is seen");
    parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", &req);
    tap_ok(!req.expect_continue, "Expect: 100-continue is ignored in HTTP/1.0");
    parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continuex\r\n\r\n", &req);
    tap_ok(!req.expect_continue, "other Expect values are not 100-continue");
    parse("POST / HTTP/1.1\r\nHost: a\r\n\r\n", &req);
    tap_ok(!req.expect_continue && req.content_length == -1 && !req.chunked,
           "no Expect, no body framing");

    static const char big[] =
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n";
    http_limits_t huge = {8192, 2048, UINT64_MAX};
    int r = parse_lim(big, strlen(big), &huge, &req);
    tap_ok(r > 0 && req.content_length == 999999999999999999LL, "18-digit Content-Length");

    /* A head followed by body bytes: only the head is consumed. */
    static const char body[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd";
    r = parse(body, &req);
    tap_ok(r == (int)strlen(body) - 4, "body bytes are not part of the head");
}

static void test_pipelined(void)
{
    static const char in[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                             "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                             "\r\nGET /3?q HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    size_t n = strlen(in), off = 0;
    http_request_t req;
    const char *buf = tap_guard_copy(&guard, in, n, TAP_GUARD_END);

    int r = http_parse_request(buf + off, n - off, &def_lim, &req);
    tap_ok(r > 0 && view_eq(req.path, req.path_len, "/1") && req.keep_alive,
           "pipelined: first request");
    off += (size_t)r;
    r = http_parse_request(buf + off, n - off, &def_lim, &req);
    tap_ok(r > 0 && view_eq(req.path, req.path_len, "/2") && req.content_length == 3,
           "pipelined: second request");
    off += (size_t)r;
    tap_ok(memcmp(buf + off, "abc", 3) == 0, "pipelined: body follows the second head");
    off += (size_t)req.content_length;
    r = http_parse_request(buf + off, n - off, &def_lim, &req);
    tap_ok(r > 0 && off + (size_t)r == n && view_eq(req.path, req.path_len, "/3") &&
               !req.keep_alive,
           "pipelined: third request after a stray CRLF");
}

/* ---- refused requests -------------------------------------------------- */

struct bad {
    const char *req;
    size_t len; /* bytes; inputs may hold NUL */
    int status;
    const char *error;
};

#define B(s, status, error)                                                                        \
    {                                                                                              \
        s, sizeof(s) - 1, status, error                                                            \
    }

#define H "Host: a\r\n"
static const struct bad bads[] = {
    /* request-line */
    B("GET  / HTTP/1.1\r\n" H "\r\n", 400, "extra whitespace in the request-line"),
    B("GET /  HTTP/1.1\r\n" H "\r\n", 400, "extra whitespace in the request-line"),
    B("GET / HTTP/1.1 \r\n" H "\r\n", 400, "malformed HTTP-version"),
    B(" GET / HTTP/1.1\r\n" H "\r\n", 400, "malformed request-line"),
    B("GET\t/ HTTP/1.1\r\n" H "\r\n", 400, "malformed request-line"),
    B("GET /\tHTTP/1.1\r\n" H "\r\n", 400, "malformed request-target"),
    B("GE(T / HTTP/1.1\r\n" H "\r\n", 400, "malformed request-line"),
    B("GET\0 / HTTP/1.1\r\n" H "\r\n", 400, "malformed request-line"),
    B("/ HTTP/1.1\r\n" H "\r\n", 400, "malformed request-line"),
    B("GET / http/1.1\r\n" H "\r\n", 400, "malformed HTTP-version"),
    B("GET / HTTP/1.10\r\n" H "\r\n", 400, "malformed HTTP-version"),
    B("GET / HTTP/11\r\n" H "\r\n", 400, "malformed HTTP-version"),
    B("GET / HTTP/1\r\n" H "\r\n", 400, "malformed HTTP-version"),
    B("GET / HTTP/1.x\r\n" H "\r\n", 400, "malformed HTTP-version"),
    B("GET / XTTP/1.1\r\n" H "\r\n", 400, "malformed HTTP-version"),
    B("GET / HTTP/2.0\r\n" H "\r\n", 505, "unsupported HTTP version"),
    B("GET / HTTP/0.9\r\n" H "\r\n", 505, "unsupported HTTP version"),
    B("GET / HTTP/1.2\r\n" H "\r\n", 505, "unsupported HTTP version"),
    B("GET / HTTP/9.9\r\n\r\n", 505, "unsupported HTTP version"),
    B("GET /\r\n\r\n", 400, "missing HTTP-version"),
    B("GET / \r\n" H "\r\n", 400, "malformed HTTP-version"),
    B("GET \t/ HTTP/1.1\r\n" H "\r\n", 400, "extra whitespace in the request-line"),
    B("GET / \tHTTP/1.1\r\n" H "\r\n", 400, "extra whitespace in the request-line"),
    B("GET\r\n" H "\r\n", 400, "malformed request-line"),
    B("GET /a b HTTP/1.1\r\n" H "\r\n", 400, "malformed HTTP-version"),
    B("GET /\x7f HTTP/1.1\r\n" H "\r\n", 400, "malformed request-target"),
    B("GET /\xc3\xa9 HTTP/1.1\r\n" H "\r\n", 400, "malformed request-target"),
    B("GET /\x01 HTTP/1.1\r\n" H "\r\n", 400, "malformed request-target"),
    B("GET a.b HTTP/1.1\r\n" H "\r\n", 400, "unsupported request-target form"),
    B("GET http:/x HTTP/1.1\r\n" H "\r\n", 400, "unsupported request-target form"),
    B("GET http:// HTTP/1.1\r\n" H "\r\n", 400, "absolute-form without a host"),
    B("GET http:///x HTTP/1.1\r\n" H "\r\n", 400, "absolute-form without a host"),
    B("GET *x HTTP/1.1\r\n" H "\r\n", 400, "malformed asterisk-form"),
    B("GET ?x HTTP/1.1\r\n" H "\r\n", 400, "malformed request-target"),
    B("GET 1http://a/ HTTP/1.1\r\n" H "\r\n", 400, "malformed request-target"),
    B("GET h_t://a/ HTTP/1.1\r\n" H "\r\n", 400, "unsupported request-target form"),
    B("GET http://?q HTTP/1.1\r\n" H "\r\n", 400, "absolute-form without a host"),
    B("GET http://a\"b/ HTTP/1.1\r\n" H "\r\n", 400, "invalid authority in absolute-form"),
    B("GET http://u:p@a/ HTTP/1.1\r\n" H "\r\n", 400, "invalid authority in absolute-form"),
    B("GET http://a:80x/ HTTP/1.1\r\n" H "\r\n", 400, "invalid authority in absolute-form"),
    B("GET /a\r\n" H "\r\n", 400, "missing HTTP-version"),
    B("CONNECT example.com:443 HTTP/1.1\r\n" H "\r\n", 400, "unsupported request-target form"),
    /* line endings */
    B("GET / HTTP/1.1\n" H "\r\n", 400, "bare LF"),
    B("GET / HTTP/1.1\rX" H "\r\n", 400, "bare CR"),
    B("GET / HTTP/1.1\r\r\n" H "\r\n", 400, "bare CR"),
    B("GET /\n HTTP/1.1\r\n" H "\r\n", 400, "bare LF"),
    B("GET \n HTTP/1.1\r\n" H "\r\n", 400, "bare LF"),
    B("\nGET / HTTP/1.1\r\n" H "\r\n", 400, "bare LF"),
    B("\rGET / HTTP/1.1\r\n" H "\r\n", 400, "bare CR"),
    B("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n" H "\r\n", 400,
      "too many empty lines before the request-line"),
    B("GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "bare LF"),
    B("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, "bare CR"),
    B("GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare LF"),
    B("GET / HTTP/1.1\r\nHost: a\r\n\rX", 400, "bare CR"),
    B("GET / HTTP/1.1\r\nHost: a\r\nX\n: b\r\n\r\n", 400, "bare LF"),
    B("GET / HTTP/1.1\r\nHost: a\r\nX: b\nc\r\n\r\n", 400, "bare LF"),
    /* field lines */
    B("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 400, "obs-fold"),
    B("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 400, "obs-fold"),
    B("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "whitespace before the first field"),
    B("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace between field name and colon"),
    B("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400, "whitespace between field name and colon"),
    B("GET / HTTP/1.1\r\nHost a\r\n\r\n", 400, "whitespace between field name and colon"),
    B("GET / HTTP/1.1\r\n" H ": a\r\n\r\n", 400, "empty field name"),
    B("GET / HTTP/1.1\r\n" H "X(: a\r\n\r\n", 400, "invalid field name"),
    B("GET / HTTP/1.1\r\n" H "X\0Y: a\r\n\r\n", 400, "invalid field name"),
    B("GET / HTTP/1.1\r\n" H "X-\xc3\xa9: a\r\n\r\n", 400, "invalid field name"),
    B("GET / HTTP/1.1\r\n" H "NoColon\r\n\r\n", 400, "invalid field name"),
    B("GET / HTTP/1.1\r\n" H "X: a\0b\r\n\r\n", 400, "control character in field value"),
    B("GET / HTTP/1.1\r\n" H "X: \0\r\n\r\n", 400, "control character in field value"),
    B("GET / HTTP/1.1\r\n" H "X: a\x01\r\n\r\n", 400, "control character in field value"),
    B("GET / HTTP/1.1\r\n" H "X: a\x1f\r\n\r\n", 400, "control character in field value"),
    B("GET / HTTP/1.1\r\n" H "X: a\x7f\r\n\r\n", 400, "control character in field value"),
    B("GET / HTTP/1.1\r\n" H "X: a\x0b\r\n\r\n", 400, "control character in field value"),
    /* Content-Length */
    B("POST / HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\n", 400, "invalid Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: -5\r\n\r\n", 400, "invalid Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 5 5\r\n\r\n", 400, "invalid Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 5,5\r\n\r\n", 400, "invalid Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 5, 5\r\n\r\n", 400, "invalid Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 0x10\r\n\r\n", 400, "invalid Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 1e3\r\n\r\n", 400, "invalid Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 5\xc2\xa0\r\n\r\n", 400, "invalid Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", 400, "empty Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length:  \r\n\r\n", 400, "empty Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 1000000000000000000\r\n\r\n", 400,
      "Content-Length too long"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999\r\n\r\n", 400,
      "Content-Length too long"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 0000000000000000005\r\n\r\n", 400,
      "Content-Length too long"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400,
      "duplicate Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\ncontent-length: 6\r\n\r\n", 400,
      "duplicate Content-Length"),
    B("POST / HTTP/1.1\r\n" H "Content-Length: 1048577\r\n\r\n", 413,
      "Content-Length over the body limit"),
    B("POST / HTTP/1.0\r\nContent-Length: 999999999999999999\r\n\r\n", 413,
      "Content-Length over the body limit"),
    /* Transfer-Encoding */
    B("POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
      "Content-Length with Transfer-Encoding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
      "Content-Length with Transfer-Encoding"),
    B("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
      "Transfer-Encoding in HTTP/1.0"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", 501,
      "unsupported transfer coding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: identity\r\n\r\n", 501,
      "unsupported transfer coding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n", 501,
      "unsupported transfer coding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501,
      "unsupported transfer coding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;q=1\r\n\r\n", 501,
      "unsupported transfer coding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n", 400,
      "chunked is not the final transfer coding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n", 400,
      "chunked is not the final transfer coding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      400, "chunked is not the final transfer coding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
      "chunked is not the final transfer coding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n", 400, "empty Transfer-Encoding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: ,\r\n\r\n", 400, "empty Transfer-Encoding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chu nked\r\n\r\n", 400,
      "malformed Transfer-Encoding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: \"chunked\"\r\n\r\n", 400,
      "malformed Transfer-Encoding"),
    B("POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\xff\r\n\r\n", 400,
      "malformed Transfer-Encoding"),
    /* refused before the line ends */
    B("POST / HTTP/1.1\r\nContent-Length: 1x", 400, "invalid Content-Length"),
    B("POST / HTTP/1.1\r\nContent-Length: 1 2", 400, "invalid Content-Length"),
    B("POST / HTTP/1.1\r\nContent-Length: 1234567890123456789", 400, "Content-Length too long"),
    B("POST / HTTP/1.1\r\nContent-Length: \r", 400, "empty Content-Length"),
    B("POST / HTTP/1.1\r\nContent-Length: 1048577\r", 413, "Content-Length over the body limit"),
    B("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length:", 400, "duplicate Content-Length"),
    B("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding:", 400,
      "Content-Length with Transfer-Encoding"),
    B("POST / HTTP/1.0\r\nTransfer-Encoding:", 400, "Transfer-Encoding in HTTP/1.0"),
    B("GET / HTTP/1.1\r\nHost: a\r\nHost:", 400, "duplicate Host"),
    B("GET / HTTP/0.1", 505, "unsupported HTTP version"),
    B("GET / HTTP/1.a", 400, "malformed HTTP-version"),
    B("GET h2", 400, "unsupported request-target form"),
    B("GET http:x", 400, "unsupported request-target form"),
    B("GET http:/x", 400, "unsupported request-target form"),
    B("GET http:// ", 400, "absolute-form without a host"),
    B("GET http://a@", 400, "invalid authority in absolute-form"),
    B("GET http://a:8x/", 400, "invalid authority in absolute-form"),
    B("GET *a", 400, "malformed asterisk-form"),
    B("GET /a\r", 400, "missing HTTP-version"),
    B("GET \r\n" H "\r\n", 400, "missing request-target"),
    /* Host */
    B("GET / HTTP/1.1\r\n\r\n", 400, "missing Host"),
    B("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 400, "missing Host"),
    B("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "duplicate Host"),
    B("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400, "duplicate Host"),
    B("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host"),
    B("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid Host"),
    B("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400, "invalid Host"),
    B("GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", 400, "invalid Host"),
    B("GET / HTTP/1.1\r\nHost: a:80:81\r\n\r\n", 400, "invalid Host"),
    B("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, "invalid Host"),
    B("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400, "invalid Host"),
    B("GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n", 400, "invalid Host"),
    B("GET / HTTP/1.0\r\nHost: a\tb\r\n\r\n", 400, "invalid Host"),
};

/* A printable form of s[0..n) for test names, cut to fit out[size]. */
static void show(char *out, size_t size, const char *s, size_t n)
{
    size_t m = 0;
    for (size_t j = 0; j < n && m + 5 < size; j++) {
        unsigned char c = (unsigned char)s[j];
        if (c == '\r' || c == '\n')
            m += (size_t)snprintf(out + m, size - m, "%s", c == '\r' ? "\\r" : "\\n");
        else if (c < 0x20 || c >= 0x7f || c == '#')
            m += (size_t)snprintf(out + m, size - m, "\\x%02x", c);
        else
            out[m++] = (char)c;
    }
    out[m] = '\0';
}

static void test_bads(void)
{
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        const struct bad *b = &bads[i];
        size_t n = b->len;
        http_request_t req;
        int r = parse_lim(b->req, n, &def_lim, &req);
        char shown[96];
        show(shown, sizeof(shown), b->req, n);
        tap_ok(r == -EBADMSG && req.status == b->status && req.error != NULL &&
                   strcmp(req.error, b->error) == 0,
               "%d %s: %s", b->status, b->error, shown);
        if (r == -EBADMSG && req.error != NULL && strcmp(req.error, b->error) != 0)
            printf("# got %d %s\n", req.status, req.error);
        tap_ok(split_bad(b->req, n, &def_lim, b->status, b->error),
               "%d %s: every prefix agrees (%s)", b->status, b->error, shown);
    }
}
#undef H
#undef B

/* ---- limits ------------------------------------------------------------ */

/* Appends to out[*n]; the caller's buffer is large enough. */
static void put(char *out, size_t *n, const char *s)
{
    size_t l = strlen(s);
    memcpy(out + *n, s, l);
    *n += l;
}

static void test_limits(void)
{
    static char in[20000];
    http_request_t req;
    size_t n;
    int r;

    /* A head of exactly max_head bytes is accepted; one more byte is 431. */
    http_limits_t lim = {256, 64, 100};
    n = 0;
    put(in, &n, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    while (n < 256 - 4)
        in[n++] = 'v';
    put(in, &n, "\r\n\r\n");
    r = parse_lim(in, n, &lim, &req);
    tap_ok(r == 256, "head of exactly max_head bytes accepted (%d)", r);
    tap_ok(split_ok(in, n, &lim, 256), "head of exactly max_head: every prefix is -EAGAIN");
    memmove(in + 30, in + 29, n - 29);
    n++;
    r = parse_lim(in, n, &lim, &req);
    tap_ok(r == -EBADMSG && req.status == 431, "head of max_head + 1 bytes is 431");
    tap_ok(split_bad(in, n, &lim, 431, "request head too large"), "max_head + 1: prefixes agree");
    r = parse_lim(in, 256, &lim, &req);
    tap_ok(r == -EBADMSG && req.status == 431, "incomplete head reaching max_head is 431");
    r = parse_lim(in, 255, &lim, &req);
    tap_ok(r == -EAGAIN, "incomplete head below max_head is -EAGAIN");

    /* With the default limits, a long stream of valid field lines is 431 early. */
    n = 0;
    put(in, &n, "POST / HTTP/1.1\r\n");
    while (n < 9000)
        put(in, &n,
            "X-Pad: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n");
    r = parse_lim(in, n, &def_lim, &req);
    tap_ok(r == -EBADMSG && req.status == 431 && strcmp(req.error, "request head too large") == 0,
           "9000 bytes without an end of head: 431 before the head ends");

    /* Target of exactly max_target is fine; one more is 414, even before the line ends. */
    n = 0;
    put(in, &n, "GET /");
    while (n < 4 + 64)
        in[n++] = 'a';
    put(in, &n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    r = parse_lim(in, n, &lim, &req);
    tap_ok(r == (int)n && req.target_len == 64, "target of exactly max_target accepted");
    memmove(in + 6, in + 5, n - 5);
    n++;
    r = parse_lim(in, n, &lim, &req);
    tap_ok(r == -EBADMSG && req.status == 414, "target of max_target + 1 is 414");
    r = parse_lim(in, 4 + 65, &lim, &req);
    tap_ok(r == -EBADMSG && req.status == 414, "414 as soon as the target passes max_target");
    r = parse_lim(in, 4 + 64, &lim, &req);
    tap_ok(r == -EAGAIN, "-EAGAIN while the target is within max_target");
    tap_ok(split_bad(in, n, &lim, 414, "request-target too long"), "414: every prefix agrees");
    n = 0;
    put(in, &n, "GET /");
    while (n < 3000)
        in[n++] = 'x';
    r = parse_lim(in, n, &def_lim, &req);
    tap_ok(r == -EBADMSG && req.status == 414, "default limits: 3000-byte target is 414");

    /* HTTP_MAX_HEADERS fields are fine, one more is 431. */
    n = 0;
    put(in, &n, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < HTTP_MAX_HEADERS; i++)
        put(in, &n, "X: y\r\n");
    put(in, &n, "\r\n");
    r = parse_lim(in, n, &def_lim, &req);
    tap_ok(r == (int)n && req.num_headers == HTTP_MAX_HEADERS, "HTTP_MAX_HEADERS fields accepted");
    n -= 2;
    put(in, &n, "X: y\r\n\r\n");
    r = parse_lim(in, n, &def_lim, &req);
    tap_ok(r == -EBADMSG && req.status == 431 && strcmp(req.error, "too many header fields") == 0,
           "HTTP_MAX_HEADERS + 1 fields is 431");
    tap_ok(split_bad(in, n, &def_lim, 431, "too many header fields"), "431 fields: prefixes agree");

    /* Content-Length against a custom max_body. */
    r = parse_lim("POST / HTTP/1.0\r\nContent-Length: 100\r\n\r\n", 40, &lim, &req);
    tap_ok(r == 40 && req.content_length == 100, "Content-Length equal to max_body accepted");
    r = parse_lim("POST / HTTP/1.0\r\nContent-Length: 101\r\n\r\n", 40, &lim, &req);
    tap_ok(r == -EBADMSG && req.status == 413, "Content-Length over max_body is 413");

    /* A refusal in the first max_head bytes wins over the size limit. */
    n = 0;
    put(in, &n, "GET / HTTP/1.1\r\nHost: a\r\nBad\x01: y\r\n");
    while (n < 300)
        in[n++] = 'z';
    r = parse_lim(in, n, &lim, &req);
    tap_ok(r == -EBADMSG && req.status == 400, "early 400 wins over a later 431");
}

/* ---- helpers ----------------------------------------------------------- */

static void test_helpers(void)
{
    static const struct {
        int status;
        const char *reason;
    } reasons[] = {
        {100, "Continue"},
        {200, "OK"},
        {204, "No Content"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
        {299, "Unknown"},
        {-1, "Unknown"},
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        tap_ok(strcmp(http_reason(reasons[i].status), reasons[i].reason) == 0,
               "http_reason(%d) is %s", reasons[i].status, reasons[i].reason);

    tap_ok(http_token_eq("Content-LENGTH", 14, "content-length"), "http_token_eq ignores case");
    tap_ok(!http_token_eq("Content-Lengt", 13, "content-length"), "http_token_eq: shorter view");
    tap_ok(!http_token_eq("Content-Lengths", 15, "content-length"), "http_token_eq: longer view");
    tap_ok(http_token_eq("closex", 5, "close"), "http_token_eq compares only the view");
    tap_ok(http_token_eq("", 0, ""), "http_token_eq: empty equals empty");
    tap_ok(!http_token_eq("a", 1, ""), "http_token_eq: non-empty view against empty literal");
    tap_ok(!http_token_eq("[", 1, "{"), "http_token_eq folds letters only");
}

int main(void)
{
    test_goods();
    test_fields();
    test_pipelined();
    test_bads();
    test_limits();
    test_helpers();
    return tap_done();
}
