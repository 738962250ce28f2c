/* SPDX-License-Identifier: MIT */
/*
 * fuzz_http_parser.c - libFuzzer target for http_parse_request.
 *
 * Parses the input under the default limits and under small ones, and aborts
 * when an invariant breaks: the result is one of the documented ones; on
 * success every view lies inside the head and the derived fields are
 * consistent; and a prefix of the input never gives another verdict than the
 * whole (a prefix of an accepted head is -EAGAIN, a prefix of a refused input
 * is -EAGAIN or the same refusal, and bytes past a head change nothing).
 */
#include "fuzz.h"
#include "http_parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && p <= buf + len && n <= (size_t)(buf + len - p);
}

static bool is_tchar(char ch)
{
    unsigned char c = (unsigned char)ch;
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void check_accepted(const char *buf, int r, const http_limits_t *lim,
                           const http_request_t *req)
{
    size_t head = (size_t)r;
    /* The shortest head is "A * HTTP/1.0" CRLF CRLF. */
    CHECK(head <= lim->max_head && head >= 16);
    CHECK(memcmp(buf + head - 4, "\r\n\r\n", 4) == 0);
    CHECK(req->status == 0 && req->error == NULL);
    CHECK(req->method_len > 0 && inside(req->method, req->method_len, buf, head));
    for (size_t i = 0; i < req->method_len; i++)
        CHECK(is_tchar(req->method[i]));
    CHECK(req->target_len > 0 && req->target_len <= lim->max_target &&
          inside(req->target, req->target_len, buf, head));
    CHECK(req->target == req->method + req->method_len + 1);
    CHECK(inside(req->path, req->path_len, req->target, req->target_len));
    CHECK(memchr(req->path, '?', req->path_len) == NULL);
    CHECK(req->minor_version == 0 || req->minor_version == 1);
    CHECK(req->num_headers <= HTTP_MAX_HEADERS);
    for (size_t i = 0; i < req->num_headers; i++) {
        const http_header_t *h = &req->headers[i];
        CHECK(h->name_len > 0 && inside(h->name, h->name_len, buf, head));
        CHECK(inside(h->value, h->value_len, buf, head));
        for (size_t j = 0; j < h->name_len; j++)
            CHECK(is_tchar(h->name[j]));
        CHECK(h->name[h->name_len] == ':');
        for (size_t j = 0; j < h->value_len; j++) {
            unsigned char c = (unsigned char)h->value[j];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (h->value_len > 0) {
            CHECK(h->value[0] != ' ' && h->value[0] != '\t');
            CHECK(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
        }
        static char name[65536];
        if (h->name_len < sizeof(name)) {
            memcpy(name, h->name, h->name_len);
            name[h->name_len] = '\0';
            const http_header_t *f = http_find_header(req, name);
            CHECK(f != NULL && f <= h && http_token_eq(f->name, f->name_len, name));
        }
    }
    CHECK(req->content_length >= -1 &&
          (req->content_length < 0 || (uint64_t)req->content_length <= lim->max_body));
    CHECK(!(req->chunked && req->content_length >= 0));
    CHECK(!(req->chunked && req->minor_version == 0));
    CHECK(req->minor_version == 0 || http_find_header(req, "host") != NULL);
}

/* Parses a heap copy of exactly n bytes, so that ASan sees any over-read. */
static int parse_copy(const uint8_t *data, size_t n, const http_limits_t *lim, http_request_t *req)
{
    char *buf = malloc(n ? n : 1);
    CHECK(buf != NULL);
    memcpy(buf, data, n);
    int r = http_parse_request(buf, n, lim, req);
    if (r > 0)
        check_accepted(buf, r, lim, req);
    free(buf);
    return r;
}

static void check_prefix(const uint8_t *data, size_t k, const http_limits_t *lim, int whole,
                         const http_request_t *wreq)
{
    static http_request_t req;
    int r = parse_copy(data, k, lim, &req);
    if (whole > 0) {
        if (k < (size_t)whole) {
            CHECK(r == -EAGAIN);
        } else {
            CHECK(r == whole && req.num_headers == wreq->num_headers &&
                  req.content_length == wreq->content_length && req.chunked == wreq->chunked &&
                  req.keep_alive == wreq->keep_alive &&
                  req.expect_continue == wreq->expect_continue && req.path_len == wreq->path_len);
        }
    } else if (whole == -EAGAIN) {
        CHECK(r == -EAGAIN);
    } else {
        CHECK(r == -EAGAIN ||
              (r == -EBADMSG && req.status == wreq->status && strcmp(req.error, wreq->error) == 0));
    }
}

static void run(const uint8_t *data, size_t size, const http_limits_t *lim)
{
    static http_request_t req;
    int r = parse_copy(data, size, lim, &req);
    CHECK(r > 0 || r == -EAGAIN || r == -EBADMSG);
    if (r > 0)
        CHECK((size_t)r <= size);
    if (r == -EAGAIN)
        CHECK(size < lim->max_head);
    if (r == -EBADMSG) {
        CHECK(req.error != NULL && req.error[0] != '\0');
        CHECK(req.status == 400 || req.status == 413 || req.status == 414 || req.status == 431 ||
              req.status == 501 || req.status == 505);
    }
    /* Every prefix of small inputs; a spread of them and the edges of the head for larger. */
    if (size <= 96) {
        for (size_t k = 0; k < size; k++)
            check_prefix(data, k, lim, r, &req);
    } else {
        for (size_t k = 0; k < size; k += size / 23 + 1)
            check_prefix(data, k, lim, r, &req);
        if (r > 0) {
            check_prefix(data, (size_t)r - 1, lim, r, &req);
            check_prefix(data, (size_t)r, lim, r, &req);
        }
        check_prefix(data, size - 1, lim, r, &req);
    }
}

/* The verdict on the input as one request head, under the default limits. */
fuzz_verdict_t fuzz_verdict(const uint8_t *data, size_t size)
{
    static const http_limits_t def = HTTP_LIMITS_DEFAULT;
    static http_request_t req;
    int r = parse_copy(data, size, &def, &req);
    return r > 0 ? FUZZ_ACCEPTED : r == -EAGAIN ? FUZZ_INCOMPLETE : FUZZ_REFUSED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const http_limits_t def = HTTP_LIMITS_DEFAULT;
    static const http_limits_t small = {160, 24, 100};
    run(data, size, &def);
    run(data, size, &small);
    return 0;
}
