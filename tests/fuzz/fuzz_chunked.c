/* SPDX-License-Identifier: MIT */
/*
 * fuzz_chunked.c - libFuzzer target for the chunked body decoder.
 *
 * Decodes the input whole, split in two at a point taken from the input, in
 * pieces of 1..7 bytes, and (for small inputs) one byte per call, under a
 * large and a small body limit. Aborts when the calls disagree on the verdict,
 * the decoded body or the bytes left after it, or when a call reports more
 * bytes than it was given or a body over its limit.
 */
#include "fuzz.h"
#include "http1.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define BIG_BODY 1048576 /* bytes: a body limit that the corpus stays under */
#define SMALL_BODY 64    /* bytes: a body limit that "too-big-sum" crosses only in sum */

/* The outcome of decoding one input in some number of calls. */
struct outcome {
    long ret;   /* the last call's result */
    char *body; /* decoded bytes of all calls (as many as the input at most) */
    size_t body_len;
    char *rest; /* bytes after the body: left by the last call plus those never fed */
    size_t rest_len;
};

/* Feeds data in calls of step(i) bytes (0 = everything left); heap copies of exact size. */
static void decode(const uint8_t *data, size_t size, uint64_t max_body, size_t first, size_t step,
                   struct outcome *o)
{
    http_chunked_t d;
    http_chunked_init(&d, max_body);
    o->ret = -EAGAIN;
    o->body_len = 0;
    o->rest_len = 0;
    size_t from = 0;
    while (o->ret == -EAGAIN) {
        size_t n = size - from;
        if (from == 0 && first != 0 && first < n)
            n = first;
        else if (from != 0 && step != 0 && step < n)
            n = step;
        char *buf = malloc(n ? n : 1);
        CHECK(buf != NULL);
        memcpy(buf, data + from, n);
        size_t len = n;
        long r = http_chunked_decode(&d, buf, &len);
        CHECK(r == -EAGAIN || r == -EBADMSG || r == -EMSGSIZE || r >= 0);
        CHECK(len <= n);
        memcpy(o->body + o->body_len, buf, len);
        o->body_len += len;
        CHECK(d.total <= max_body);
        if (r >= 0) {
            CHECK(len + (size_t)r <= n);
            CHECK(d.total == o->body_len);
            memcpy(o->rest, buf + len, (size_t)r);
            memcpy(o->rest + r, data + from + n, size - from - n);
            o->rest_len = (size_t)r + size - from - n;
        }
        free(buf);
        o->ret = r;
        from += n;
        if (from == size && r == -EAGAIN)
            break;
    }
    if (o->ret == -EAGAIN)
        CHECK(d.total == o->body_len);
}

static void same(const struct outcome *a, const struct outcome *b)
{
    CHECK(a->ret == b->ret || (a->ret >= 0 && b->ret >= 0));
    if (a->ret >= 0 || a->ret == -EAGAIN) {
        CHECK(a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0);
        CHECK(a->rest_len == b->rest_len && memcmp(a->rest, b->rest, a->rest_len) == 0);
    }
}

static void run(const uint8_t *data, size_t size, uint64_t max_body)
{
    struct outcome o[2];
    for (int i = 0; i < 2; i++) {
        o[i].body = malloc(size + 1);
        o[i].rest = malloc(size + 1);
        CHECK(o[i].body != NULL && o[i].rest != NULL);
    }
    decode(data, size, max_body, 0, 0, &o[0]);
    size_t cut = size ? (data[0] * 257u + data[size - 1]) % (size + 1) : 0;
    decode(data, size, max_body, cut ? cut : 1, 0, &o[1]);
    same(&o[0], &o[1]);
    decode(data, size, max_body, 1 + size % 7, 1 + (size / 7) % 7, &o[1]);
    same(&o[0], &o[1]);
    if (size <= 4096) {
        decode(data, size, max_body, 1, 1, &o[1]);
        same(&o[0], &o[1]);
    }
    for (int i = 0; i < 2; i++) {
        free(o[i].body);
        free(o[i].rest);
    }
}

/* The verdict on the input decoded in one call, under the small body limit. */
fuzz_verdict_t fuzz_verdict(const uint8_t *data, size_t size)
{
    struct outcome o = {.body = malloc(size + 1), .rest = malloc(size + 1)};
    CHECK(o.body != NULL && o.rest != NULL);
    decode(data, size, SMALL_BODY, 0, 0, &o);
    free(o.body);
    free(o.rest);
    if (o.ret >= 0)
        return FUZZ_ACCEPTED;
    return o.ret == -EAGAIN ? FUZZ_INCOMPLETE : o.ret == -EMSGSIZE ? FUZZ_TOO_BIG : FUZZ_REFUSED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size, BIG_BODY);
    run(data, size, SMALL_BODY);
    return 0;
}
