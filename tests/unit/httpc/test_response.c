/* SPDX-License-Identifier: MIT */
/*
 * test_response.c - the client's response head parser: accepted heads and
 * what is derived from them (framing, keep-alive, Retry-After, Content-Type),
 * every refusal, incremental input (each prefix is -EAGAIN), the head size
 * cap and the field count cap. Inputs sit at the end of a page followed by
 * an inaccessible page, so a read past the end faults.
 */
#include "httpc_parse.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each input is copied to end exactly at a guard page. */
static tap_guard_t guard;

static int parse(const char *s, size_t len, size_t max_head, httpc_head_t *h)
{
    return httpc_parse_response(tap_guard_copy(&guard, s, len, TAP_GUARD_END), len, max_head, h);
}

static int parse_str(const char *s, httpc_head_t *h)
{
    return parse(s, strlen(s), HTTPC_MAX_HEAD, h);
}

static bool view_eq(const char *v, size_t len, const char *lit)
{
    return v != NULL && len == strlen(lit) && memcmp(v, lit, len) == 0;
}

static void test_accepted(void)
{
    httpc_head_t h;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    "Content-Length: 5\r\nServer: nginx\r\n\r\nhello";
    int r = parse_str(s, &h);
    tap_ok(r == (int)strlen(s) - 5, "complete head: its length");
    tap_ok(h.status == 200 && h.minor_version == 1 && view_eq(h.reason, h.reason_len, "OK"),
           "status line fields");
    tap_ok(h.content_length == 5 && !h.chunked && h.keep_alive, "framing and keep-alive");
    tap_ok(view_eq(h.content_type, h.content_type_len, "application/json"), "Content-Type view");
    tap_ok(h.num_headers == 3 && h.retry_after == -1, "three fields, no Retry-After");
    const http_header_t *f = http_header_find(h.headers, h.num_headers, "SERVER");
    tap_ok(f != NULL && view_eq(f->value, f->value_len, "nginx"), "find_header ignores case");
    tap_ok(http_header_find(h.headers, h.num_headers, "X-None") == NULL, "find_header: absent");

    tap_ok(parse_str("HTTP/1.1 204\r\n\r\n", &h) > 0 && h.status == 204 && h.reason_len == 0,
           "no reason phrase and no space");
    tap_ok(parse_str("HTTP/1.1 200 \r\n\r\n", &h) > 0 && h.reason_len == 0, "empty reason phrase");
    tap_ok(parse_str("HTTP/1.1 404 Not \tFound\x80\r\n\r\n", &h) > 0 &&
               view_eq(h.reason, h.reason_len, "Not \tFound\x80"),
           "reason with HTAB and obs-text");
    tap_ok(parse_str("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", &h) > 0 && !h.keep_alive,
           "HTTP/1.0: never kept alive");
    tap_ok(parse_str("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n", &h) > 0 &&
               !h.keep_alive,
           "Connection list with close");
    tap_ok(parse_str("HTTP/1.1 200 OK\r\nConnection: closed\r\n\r\n", &h) > 0 && h.keep_alive,
           "'closed' is not 'close'");
    tap_ok(parse_str("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", &h) > 0 &&
               h.chunked && h.content_length == -1,
           "chunked, any case");
    tap_ok(parse_str("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\n\r\n", &h) > 0 &&
               h.retry_after == 30,
           "Retry-After seconds");
    tap_ok(parse_str("HTTP/1.1 503 x\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n", &h) >
                   0 &&
               h.retry_after == -1,
           "Retry-After date: ignored");
    tap_ok(parse_str("HTTP/1.1 503 x\r\nRetry-After: 99999999999999999999999\r\n\r\n", &h) > 0 &&
               h.retry_after == 1000000000,
           "huge Retry-After: capped");
    tap_ok(parse_str("HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Pad: \t v \t\r\n\r\n", &h) > 0 &&
               h.headers[0].value_len == 0 &&
               view_eq(h.headers[1].value, h.headers[1].value_len, "v"),
           "empty value; OWS stripped");
    tap_ok(parse_str("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &h) > 0 &&
               h.content_length == 0,
           "Content-Length 0");
    tap_ok(parse_str("HTTP/1.1 100 Continue\r\n\r\n", &h) > 0 && h.status == 100, "interim 100");
}

static void test_refused(void)
{
    static const struct {
        const char *in;
        const char *why;
    } bad[] = {
        {"SSH-2.0-OpenSSH_9.2\r\n", "another protocol"},
        {"<html>", "HTML"},
        {"HTTP/2 200\r\n\r\n", "HTTP/2"},
        {"HTTP/1.2 200 OK\r\n\r\n", "HTTP/1.2"},
        {"HTTP/1.1 099 x\r\n\r\n", "status below 100"},
        {"HTTP/1.1 600 x\r\n\r\n", "status 600"},
        {"HTTP/1.1 20 OK\r\n\r\n", "two-digit status"},
        {"HTTP/1.1 2000 OK\r\n\r\n", "four-digit status"},
        {"HTTP/1.1  200 OK\r\n\r\n", "two spaces"},
        {"HTTP/1.1 200\tOK\r\n\r\n", "tab after status"},
        {"HTTP/1.1 200 OK\n\r\n", "bare LF after status line"},
        {"HTTP/1.1 200 OK\r\nA: b\n\r\n", "bare LF after a field"},
        {"HTTP/1.1 200 OK\r\nA: b\r\n\n", "bare LF at the end"},
        {"HTTP/1.1 200 OK\rX: y\r\n\r\n", "CR without LF"},
        {"HTTP/1.1 200 O\x01K\r\n\r\n", "control in reason"},
        {"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", "obs-fold"},
        {"HTTP/1.1 200 OK\r\nA : b\r\n\r\n", "space before colon"},
        {"HTTP/1.1 200 OK\r\n: b\r\n\r\n", "empty field name"},
        {"HTTP/1.1 200 OK\r\nA(b): c\r\n\r\n", "non-token name"},
        {"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", "no colon"},
        {"HTTP/1.1 200 OK\r\nA: b\x7f\r\n\r\n", "DEL in value"},
        {"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", "signed Content-Length"},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "negative Content-Length"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n", "hex Content-Length"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n", "two values"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", "a list"},
        {"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "empty Content-Length"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n", "19 digits"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", "repeated CL"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "gzip coding"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n", "identity coding"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         "repeated TE"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "TE and CL"},
        {"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "TE in HTTP/1.0"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        httpc_head_t h;
        int r = parse_str(bad[i].in, &h);
        tap_ok(r == -EBADMSG && h.error != NULL, "refused: %s", bad[i].why);
    }
    httpc_head_t h;
    tap_ok(parse("HTTP/1.1 200 OK\r\nA: \0b\r\n\r\n", 25, HTTPC_MAX_HEAD, &h) == -EBADMSG,
           "refused: NUL in value");
    tap_ok(parse("SSH", 3, HTTPC_MAX_HEAD, &h) == -EBADMSG, "refused at once from a 3-byte prefix");
}

static void test_incremental(void)
{
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: "
                    "chunked\r\nRetry-After: 7\r\n\r\n";
    size_t len = strlen(s);
    bool all_again = true;
    httpc_head_t h;
    for (size_t i = 0; i < len; i++)
        if (parse(s, i, HTTPC_MAX_HEAD, &h) != -EAGAIN)
            all_again = false;
    tap_ok(all_again, "every proper prefix: -EAGAIN");
    tap_ok(parse(s, len, HTTPC_MAX_HEAD, &h) == (int)len && h.chunked && h.retry_after == 7,
           "the whole head parses");
}

static void test_caps(void)
{
    httpc_head_t h;
    char buf[HTTPC_MAX_HEAD + 64];
    /* A head of exactly max_head bytes, then one byte longer. */
    size_t max = 100;
    int n = snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nX: ");
    while ((size_t)n < max - 4)
        buf[n++] = 'a';
    memcpy(buf + n, "\r\n\r\n", 4);
    n += 4;
    tap_ok(parse(buf, (size_t)n, max, &h) == (int)max, "head of exactly max_head bytes");
    tap_ok(parse(buf, (size_t)n, max - 1, &h) == -EMSGSIZE, "one byte over: -EMSGSIZE");
    tap_ok(parse(buf, 60, 60, &h) == -EMSGSIZE, "incomplete at the cap: -EMSGSIZE");
    tap_ok(parse(buf, 60, 61, &h) == -EAGAIN, "incomplete below the cap: -EAGAIN");

    n = snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < HTTPC_MAX_HEADERS; i++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "X-%d: v\r\n", i);
    memcpy(buf + n, "\r\n", 2);
    tap_ok(parse(buf, (size_t)n + 2, HTTPC_MAX_HEAD, &h) == n + 2 &&
               h.num_headers == HTTPC_MAX_HEADERS,
           "HTTPC_MAX_HEADERS fields");
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "X-last: v\r\n\r\n");
    tap_ok(parse(buf, (size_t)n, HTTPC_MAX_HEAD, &h) == -EBADMSG, "one field more: refused");
}

int main(void)
{
    test_accepted();
    test_refused();
    test_incremental();
    test_caps();
    tap_guard_free(&guard);
    return tap_done();
}
