/* SPDX-License-Identifier: MIT */
/*
 * test_chunked.c - unit tests of the chunked body decoder (src/http/chunked.c).
 *
 * Each body is decoded whole, split in two at every byte, and fed one byte per
 * call; all must give the same body, verdict and following bytes. Every call
 * decodes a copy that ends exactly at a PROT_NONE guard page.
 */
#include "http1.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each call decodes a copy that ends exactly where a PROT_NONE page begins. */
static tap_guard_t guard;

/* The outcome of decoding one input in some number of calls. */
struct outcome {
    long ret; /* the last call's result */
    char body[20000];
    size_t body_len; /* decoded bytes, all calls */
    char rest[256];
    size_t rest_len; /* bytes after the body: left by the last call plus those never fed */
    uint64_t total;  /* the decoder's count */
};

/*
 * Decodes in[0..n) fed in pieces: cuts[] are the offsets where a new call
 * starts. Stops at the first call that does not return -EAGAIN.
 */
static void decode_cuts(const char *in, size_t n, const size_t *cuts, size_t ncuts,
                        uint64_t max_body, struct outcome *o)
{
    http_chunked_t d;
    http_chunked_init(&d, max_body);
    o->ret = -EAGAIN;
    o->body_len = 0;
    o->rest_len = 0;
    size_t from = 0;
    for (size_t i = 0; i <= ncuts && o->ret == -EAGAIN; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        size_t len = to - from;
        char *buf = tap_guard_copy(&guard, in + from, len, TAP_GUARD_END);
        o->ret = http_chunked_decode(&d, buf, &len);
        if (len > to - from || o->body_len + len > sizeof(o->body)) {
            printf("# decoded length %zu out of range\n", len);
            o->ret = -1000;
            return;
        }
        memcpy(o->body + o->body_len, buf, len);
        o->body_len += len;
        if (o->ret >= 0) {
            if (len + (size_t)o->ret > to - from || (size_t)o->ret + (n - to) > sizeof(o->rest)) {
                o->ret = -1001;
                return;
            }
            memcpy(o->rest, buf + len, (size_t)o->ret);
            memcpy(o->rest + o->ret, in + to, n - to);
            o->rest_len = (size_t)o->ret + (n - to);
        }
        from = to;
    }
    o->total = d.total;
}

static bool same(const struct outcome *a, const struct outcome *b)
{
    if ((a->ret >= 0) != (b->ret >= 0) || (a->ret < 0 && a->ret != b->ret))
        return false;
    if (a->ret < 0)
        return true;
    return a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0 &&
           a->rest_len == b->rest_len && memcmp(a->rest, b->rest, a->rest_len) == 0;
}

/* Whole, split in two at every byte, and one byte per call: all the same. */
static bool splits_agree(const char *in, size_t n, uint64_t max_body)
{
    static struct outcome whole, part;
    decode_cuts(in, n, NULL, 0, max_body, &whole);
    for (size_t k = 0; k <= n; k++) {
        decode_cuts(in, n, &k, 1, max_body, &part);
        if (!same(&whole, &part)) {
            printf("# split at %zu: %ld vs %ld\n", k, part.ret, whole.ret);
            return false;
        }
    }
    size_t *cuts = malloc((n + 1) * sizeof(*cuts));
    for (size_t k = 0; k < n; k++)
        cuts[k] = k + 1;
    decode_cuts(in, n, cuts, n, max_body, &part);
    free(cuts);
    if (!same(&whole, &part)) {
        printf("# byte at a time: %ld vs %ld\n", part.ret, whole.ret);
        return false;
    }
    return true;
}

struct good {
    const char *name;
    const char *in;
    const char *body;
    const char *rest;
};

static const struct good goods[] = {
    {"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello", ""},
    {"empty body", "0\r\n\r\n", "", ""},
    {"several chunks", "3\r\nabc\r\n1\r\nd\r\n4\r\nefgh\r\n0\r\n\r\n", "abcdefgh", ""},
    {"hex sizes", "a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n", "0123456789abcdefghijk", ""},
    {"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello", ""},
    {"16 hex digits", "0000000000000002\r\nhi\r\n0000000000000000\r\n\r\n", "hi", ""},
    {"CRLF inside data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n", ""},
    {"extension", "5;name\r\nhello\r\n0;last\r\n\r\n", "hello", ""},
    {"extension with values", "5;a=b;c=\"d e\";f\r\nhello\r\n0\r\n\r\n", "hello", ""},
    {"extension with BWS", "5 ; a = b ;\tc\t=\t\"x\" \r\nhello\r\n0 ;z\r\n\r\n", "hello", ""},
    {"extension quoted-pair", "5;q=\"a\\\"b;c\\\\\"\r\nhello\r\n0\r\n\r\n", "hello", ""},
    {"extension obs-text", "5;q=\"\xc3\xa9\"\r\nhello\r\n0\r\n\r\n", "hello", ""},
    {"trailer", "5\r\nhello\r\n0\r\nX-Sum: abc\r\n\r\n", "hello", ""},
    {"trailers with OWS and empty value", "2\r\nhi\r\n0\r\nA:\r\nB: \tc d\t\r\nc:\r\n\r\n", "hi",
     ""},
    {"trailer obs-text", "2\r\nhi\r\n0\r\nX: \xff\x80\r\n\r\n", "hi", ""},
    {"next request follows", "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "hello",
     "GET / HTTP/1.1\r\n"},
    {"bytes follow trailers", "1\r\nx\r\n0\r\nT: v\r\n\r\nabc", "x", "abc"},
};

static void test_goods(void)
{
    static struct outcome o;
    for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
        const struct good *g = &goods[i];
        size_t n = strlen(g->in);
        decode_cuts(g->in, n, NULL, 0, 1048576, &o);
        tap_ok(o.ret == (long)strlen(g->rest), "%s: complete (%ld)", g->name, o.ret);
        tap_ok(o.body_len == strlen(g->body) && memcmp(o.body, g->body, o.body_len) == 0 &&
                   o.total == o.body_len,
               "%s: body", g->name);
        tap_ok(o.rest_len == strlen(g->rest) && memcmp(o.rest, g->rest, o.rest_len) == 0,
               "%s: following bytes", g->name);
        tap_ok(splits_agree(g->in, n, 1048576), "%s: every split decodes the same", g->name);
    }
}

struct bad {
    const char *name;
    const char *in;
    size_t len; /* bytes; inputs may hold NUL */
    long ret;
    uint64_t max_body;
};

#define B(name, s, ret)                                                                            \
    {                                                                                              \
        name, s, sizeof(s) - 1, ret, 1048576                                                       \
    }
#define M(name, s, max)                                                                            \
    {                                                                                              \
        name, s, sizeof(s) - 1, -EMSGSIZE, max                                                     \
    }

static const struct bad bads[] = {
    B("empty size line", "\r\n", -EBADMSG),
    B("non-hex size", "x\r\n", -EBADMSG),
    B("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", -EBADMSG),
    B("signed size", "-5\r\n", -EBADMSG),
    B("plus-signed size", "+5\r\n", -EBADMSG),
    B("leading space", " 5\r\nhello\r\n", -EBADMSG),
    B("space after size without extension", "5 \r\nhello\r\n", -EBADMSG),
    B("bare LF after size", "5\nhello\r\n0\r\n\r\n", -EBADMSG),
    B("bare CR after size", "5\rhello\r\n", -EBADMSG),
    B("NUL in size", "5\0\r\n", -EBADMSG),
    B("17 hex digits", "00000000000000005\r\nhello\r\n", -EBADMSG),
    B("data longer than its size", "5\r\nhelloX\r\n0\r\n\r\n", -EBADMSG),
    B("data shorter than its size", "5\r\nhell\r\n0\r\n\r\n", -EBADMSG),
    B("bare LF after data", "5\r\nhello\n0\r\n\r\n", -EBADMSG),
    B("bare CR after data", "5\r\nhello\r0\r\n\r\n", -EBADMSG),
    B("extension without a name", "5;\r\nhello\r\n", -EBADMSG),
    B("extension with an empty name", "5;=x\r\nhello\r\n", -EBADMSG),
    B("extension with an empty value", "5;a=\r\nhello\r\n", -EBADMSG),
    B("extension with control byte", "5;a\x01\r\nhello\r\n", -EBADMSG),
    B("extension value with space", "5;a=b c\r\nhello\r\n", -EBADMSG),
    B("extension unterminated quote", "5;a=\"b\r\nhello\r\n", -EBADMSG),
    B("extension bare LF", "5;a\nhello\r\n", -EBADMSG),
    B("extension bare CR", "5;a\rhello\r\n", -EBADMSG),
    B("extension quoted control byte", "5;a=\"\x7f\"\r\nhello\r\n", -EBADMSG),
    B("last-chunk without CRLF", "0\r\n\rx", -EBADMSG),
    B("last-chunk bare LF", "0\r\n\n", -EBADMSG),
    B("last-chunk then data", "0\r\nhello\r\n\r\n", -EBADMSG),
    B("trailer obs-fold", "0\r\nA: b\r\n c\r\n\r\n", -EBADMSG),
    B("trailer whitespace before colon", "0\r\nA : b\r\n\r\n", -EBADMSG),
    B("trailer without colon", "0\r\nAb\r\n\r\n", -EBADMSG),
    B("trailer empty name", "0\r\n: b\r\n\r\n", -EBADMSG),
    B("trailer bare LF", "0\r\nA: b\n\r\n", -EBADMSG),
    B("trailer bare CR", "0\r\nA: b\rc\r\n\r\n", -EBADMSG),
    B("trailer NUL", "0\r\nA: \0\r\n\r\n", -EBADMSG),
    B("trailer DEL", "0\r\nA: \x7f\r\n\r\n", -EBADMSG),
    B("trailer non-token name", "0\r\nA(: b\r\n\r\n", -EBADMSG),
    M("one chunk over max_body", "6\r\nhello!\r\n0\r\n\r\n", 5),
    M("chunks add up over max_body", "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", 5),
    M("huge size", "ffffffffffffffff\r\n", 1048576),
    M("huge size with leading zeros", "000fffffffffffff\r\n", 1048576),
};

static void test_bads(void)
{
    static struct outcome o;
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        const struct bad *b = &bads[i];
        decode_cuts(b->in, b->len, NULL, 0, b->max_body, &o);
        tap_ok(o.ret == b->ret, "%s: %s (%ld)", b->name, b->ret == -EBADMSG ? "400" : "413", o.ret);
        tap_ok(splits_agree(b->in, b->len, b->max_body), "%s: every split agrees", b->name);
    }
}
#undef B
#undef M

static void test_limits(void)
{
    static char in[20000];
    static struct outcome o;
    size_t n;

    /* Chunk extensions (the bytes between size and CR) are capped at 1 KiB per line. */
    n = 0;
    in[n++] = '5';
    in[n++] = ';';
    while (n < 1 + 1024)
        in[n++] = 'e';
    memcpy(in + n, "\r\nhello\r\n0\r\n\r\n", 14);
    decode_cuts(in, n + 14, NULL, 0, 1048576, &o);
    tap_ok(o.ret == 0 && o.body_len == 5, "1 KiB of extension accepted");
    memmove(in + 3, in + 2, n + 14 - 2);
    decode_cuts(in, n + 15, NULL, 0, 1048576, &o);
    tap_ok(o.ret == -EBADMSG, "1 KiB + 1 of extension refused");

    /* Many small extensions on many chunks: the cap is per line. */
    n = 0;
    for (int i = 0; i < 20; i++) {
        memcpy(in + n, "1", 1);
        n++;
        for (int j = 0; j < 100; j++) {
            memcpy(in + n, ";ab=cd", 6);
            n += 6;
        }
        memcpy(in + n, "\r\nx\r\n", 5);
        n += 5;
    }
    memcpy(in + n, "0\r\n\r\n", 5);
    n += 5;
    decode_cuts(in, n, NULL, 0, 1048576, &o);
    tap_ok(o.ret == 0 && o.body_len == 20, "600 bytes of extensions on each of 20 chunks accepted");

    /* Trailers are capped at 8 KiB in all. */
    n = 0;
    memcpy(in, "0\r\n", 3);
    n = 3;
    while (n + 13 + 6 <= 3 + 8192) {
        memcpy(in + n, "X: 12345678\r\n", 13);
        n += 13;
    }
    /* One last field pads the section to exactly 8 KiB with the final CRLF. */
    size_t fill = 3 + 8192 - 6 - n;
    memcpy(in + n, "Y:", 2);
    n += 2;
    memset(in + n, 'y', fill);
    n += fill;
    memcpy(in + n, "\r\n\r\n", 4);
    n += 4;
    decode_cuts(in, n, NULL, 0, 1048576, &o);
    tap_ok(o.ret == 0 && n == 3 + 8192, "8 KiB of trailer section accepted (%ld, %zu)", o.ret, n);
    memmove(in + n - 3, in + n - 4, 4);
    in[n - 4] = 'y';
    n++;
    decode_cuts(in, n, NULL, 0, 1048576, &o);
    tap_ok(o.ret == -EBADMSG, "8 KiB + 1 of trailer section refused");

    /* The body limit is on decoded bytes: exactly max_body is fine. */
    decode_cuts("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 20, NULL, 0, 5, &o);
    tap_ok(o.ret == 0 && o.body_len == 5 && o.total == 5, "body of exactly max_body accepted");
    decode_cuts("0\r\n\r\n", 5, NULL, 0, 0, &o);
    tap_ok(o.ret == 0 && o.body_len == 0, "empty body with max_body 0 accepted");
    decode_cuts("1\r\n", 3, NULL, 0, 0, &o);
    tap_ok(o.ret == -EMSGSIZE, "any chunk with max_body 0 is too big");

    /* Large data in one chunk, split at a few places. */
    n = 0;
    memcpy(in, "2710\r\n", 6);
    n = 6;
    for (int i = 0; i < 10000; i++)
        in[n++] = (char)('a' + i % 26);
    memcpy(in + n, "\r\n0\r\n\r\n", 7);
    n += 7;
    size_t cuts[] = {1, 6, 7, 5000, 10005, 10006, 10007, 10010};
    decode_cuts(in, n, cuts, sizeof(cuts) / sizeof(cuts[0]), 1048576, &o);
    tap_ok(o.ret == 0 && o.body_len == 10000 && memcmp(o.body, in + 6, 10000) == 0,
           "10000-byte chunk decoded across 9 calls");
}

static void test_calls(void)
{
    http_chunked_t d;
    char buf[64];
    size_t len;

    /* Errors are sticky. */
    http_chunked_init(&d, 100);
    memcpy(buf, "x\r\n", 3);
    len = 3;
    long r1 = http_chunked_decode(&d, buf, &len);
    memcpy(buf, "5\r\nhello\r\n0\r\n\r\n", 15);
    len = 15;
    long r2 = http_chunked_decode(&d, buf, &len);
    tap_ok(r1 == -EBADMSG && r2 == -EBADMSG && len == 0, "a malformed body stays malformed");

    http_chunked_init(&d, 3);
    memcpy(buf, "5\r\n", 3);
    len = 3;
    r1 = http_chunked_decode(&d, buf, &len);
    memcpy(buf, "0\r\n\r\n", 5);
    len = 5;
    r2 = http_chunked_decode(&d, buf, &len);
    tap_ok(r1 == -EMSGSIZE && r2 == -EMSGSIZE, "a too large body stays too large");

    /* An empty call changes nothing. */
    http_chunked_init(&d, 100);
    len = 0;
    r1 = http_chunked_decode(&d, buf, &len);
    tap_ok(r1 == -EAGAIN && len == 0, "empty input is -EAGAIN");

    /* After completion, every further byte belongs to what follows. */
    http_chunked_init(&d, 100);
    memcpy(buf, "0\r\n\r\n", 5);
    len = 5;
    r1 = http_chunked_decode(&d, buf, &len);
    memcpy(buf, "abc", 3);
    len = 3;
    r2 = http_chunked_decode(&d, buf, &len);
    tap_ok(r1 == 0 && r2 == 3 && len == 0 && memcmp(buf, "abc", 3) == 0,
           "after the end, input is left as following bytes");

    /* The decoded bytes of each call are at the start of its buffer. */
    http_chunked_init(&d, 100);
    memcpy(buf, "3;x=y\r\nabc\r\n2\r\nd", 16);
    len = 16;
    r1 = http_chunked_decode(&d, buf, &len);
    tap_ok(r1 == -EAGAIN && len == 4 && memcmp(buf, "abcd", 4) == 0 && d.total == 4,
           "partial input: decoded bytes so far");
    memcpy(buf, "e\r\n0\r\n\r\nNEXT", 12);
    len = 12;
    r2 = http_chunked_decode(&d, buf, &len);
    tap_ok(r2 == 4 && len == 1 && buf[0] == 'e' && memcmp(buf + 1, "NEXT", 4) == 0 && d.total == 5,
           "completion: the rest is moved down after the decoded bytes");
}

int main(void)
{
    test_goods();
    test_bads();
    test_limits();
    test_calls();
    return tap_done();
}
