/* SPDX-License-Identifier: MIT */
/*
 * test_lex.c - the HTTP/1 lexer shared by the server and the client: the
 * character classes byte by byte against their RFC definitions, header
 * lookup, comma-list elements, decimal digits, and the body reader in each
 * framing (Content-Length, chunked split anywhere, end of connection, none)
 * with its cap.
 */
#include "http1.h"
#include "tap.h"

#include <errno.h>
#include <string.h>

static void test_classes(void)
{
    int bad = 0;
    for (int c = 0; c < 256; c++) {
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool tchar = alnum || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        bool vchar = c >= 0x21 && c <= 0x7e;
        bool field = (c >= 0x20 && c != 0x7f) || c == '\t';
        bad += http_is_tchar((char)c) != tchar;
        bad += http_is_vchar((char)c) != vchar;
        bad += http_is_field_char((char)c) != field;
    }
    tap_eq_int(bad, 0, "tchar, VCHAR and field-value bytes match RFC 9110 for all 256 bytes");
}

static void test_headers(void)
{
    http_header_t h[] = {
        {"Host", 4, "a", 1},
        {"X-A", 3, "1", 1},
        {"x-a", 3, "2", 1},
    };
    tap_ok(http_header_find(h, 3, "X-a") == &h[1], "lookup ignores case, first match wins");
    tap_ok(http_header_find(h, 3, "x-b") == NULL, "lookup: absent is NULL");
    tap_ok(http_header_find(h, 0, "host") == NULL, "lookup in no headers");
    tap_ok(http_token_eq("KEEP-alive", 10, "keep-alive") && !http_token_eq("keep", 4, "keep-alive"),
           "http_token_eq compares the whole view, any case");
}

static void test_lists(void)
{
    const char *v = " , close ;x=1, keep-alive ,, up grade,";
    const char *p = v, *end = v + strlen(v);
    http_list_item_t it;
    int n = 0, ok = 0;
    while (http_list_next(&p, end, &it)) {
        n++;
        if (n == 1)
            ok += it.token_len == 5 && memcmp(it.token, "close", 5) == 0 &&
                  it.rest == HTTP_LIST_PARAMS;
        if (n == 2)
            ok += it.token_len == 10 && it.rest == HTTP_LIST_BARE;
        if (n == 3)
            ok += it.token_len == 2 && it.rest == HTTP_LIST_OTHER;
    }
    tap_ok(n == 3 && ok == 3, "list elements: token with parameters, bare token, not a token");
    tap_ok(http_list_has("Upgrade, CLOSE", 14, "close"), "list has: any case, any place");
    tap_ok(!http_list_has("close;x", 7, "close") && !http_list_has("closed", 6, "close") &&
               !http_list_has("", 0, "close"),
           "list has: only an element that is exactly the token");
}

static void test_digits(void)
{
    tap_ok(http_parse_digits("0", 1) == 0 && http_parse_digits("123", 3) == 123,
           "digits: values");
    tap_ok(http_parse_digits("999999999999999999", 18) == 999999999999999999LL,
           "digits: 18 nines fit");
    tap_ok(http_parse_digits("1000000000000000000", 19) == -1, "digits: 19 are refused");
    tap_ok(http_parse_digits("", 0) == -1 && http_parse_digits("+1", 2) == -1 &&
               http_parse_digits("1 ", 2) == -1,
           "digits: empty, signed or spaced are refused");
}

/* Feeds `in` to a body reader `step` bytes at a time, as a connection would. */
static long feed(http_body_t *b, const char *in, size_t step, char *buf, size_t *have)
{
    size_t n = strlen(in), off = 0;
    long r = -EAGAIN;
    *have = 0;
    while (off < n && r == -EAGAIN) {
        size_t k = n - off < step ? n - off : step;
        memcpy(buf + *have, in + off, k);
        *have += k;
        off += k;
        r = http_body_read(b, buf, have);
    }
    if (r >= 0 && off < n) {
        /* Later bytes follow what the reader already left after the body. */
        memcpy(buf + *have, in + off, n - off);
        r += (long)(n - off);
        *have += n - off;
    }
    return r;
}

static void test_body(void)
{
    char buf[256];
    size_t have;
    http_body_t b;

    http_body_init(&b, HTTP_BODY_LENGTH, 5, 100);
    long r = feed(&b, "helloGET", 3, buf, &have);
    tap_ok(r == 3 && b.len == 5 && memcmp(buf, "helloGET", 8) == 0,
           "Content-Length: complete, three bytes follow");
    http_body_init(&b, HTTP_BODY_LENGTH, 101, 100);
    have = 0;
    tap_ok(http_body_read(&b, buf, &have) == -EMSGSIZE, "Content-Length over the cap: at once");

    bool all = true;
    for (size_t step = 1; step <= 20; step++) {
        http_body_init(&b, HTTP_BODY_CHUNKED, 0, 100);
        r = feed(&b, "5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\nNEXT", step, buf, &have);
        all = all && r == 4 && b.len == 11 && have == 15 && memcmp(buf, "hello worldNEXT", 15) == 0;
    }
    tap_ok(all, "chunked, split at every size: decoded in place, the rest moved next to it");
    http_body_init(&b, HTTP_BODY_CHUNKED, 0, 4);
    tap_ok(feed(&b, "5\r\nhello\r\n0\r\n\r\n", 64, buf, &have) == -EMSGSIZE,
           "chunked over the cap");
    http_body_init(&b, HTTP_BODY_CHUNKED, 0, 100);
    tap_ok(feed(&b, "5\r\nhelloX\r\n", 64, buf, &have) == -EBADMSG, "chunked malformed");

    http_body_init(&b, HTTP_BODY_EOF, 0, 10);
    tap_ok(feed(&b, "0123456789", 4, buf, &have) == -EAGAIN && b.len == 10,
           "until EOF: never complete by itself, the body so far counted");
    http_body_init(&b, HTTP_BODY_EOF, 0, 10);
    tap_ok(feed(&b, "0123456789A", 4, buf, &have) == -EMSGSIZE, "until EOF: over the cap");

    http_body_init(&b, HTTP_BODY_NONE, 0, 10);
    tap_ok(feed(&b, "xy", 64, buf, &have) == 2 && b.len == 0,
           "no body: complete at once, every byte follows");
}

int main(void)
{
    test_classes();
    test_headers();
    test_lists();
    test_digits();
    test_body();
    return tap_done();
}
