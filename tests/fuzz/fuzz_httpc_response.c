/* SPDX-License-Identifier: MIT */
/*
 * fuzz_httpc_response.c - libFuzzer target for the client's response head
 * parser.
 *
 * Parses the input under the full head cap and under a small one, and
 * aborts when a result is outside the documented set, an accepted head
 * breaks an invariant (length past the input or the cap, views outside the
 * head, framing both chunked and with a length, no final CRLF CRLF), the two
 * caps disagree, parsing the accepted head alone differs, or (for heads up
 * to 1 KiB) a proper prefix of an accepted head is not -EAGAIN.
 */
#include "fuzz.h"
#include "httpc_parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define SMALL_HEAD 64

static void check_view(const char *v, size_t len, const char *base, size_t head_len)
{
    CHECK(v >= base && v + len <= base + head_len);
}

static void check_head(const char *buf, int r, const httpc_head_t *h)
{
    size_t n = (size_t)r;
    CHECK(n >= 16 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
    CHECK(h->status >= 100 && h->status <= 599);
    CHECK(h->minor_version == 0 || h->minor_version == 1);
    CHECK(h->num_headers <= HTTPC_MAX_HEADERS);
    CHECK(h->error == NULL);
    check_view(h->reason, h->reason_len, buf, n);
    for (size_t i = 0; i < h->num_headers; i++) {
        CHECK(h->headers[i].name_len > 0);
        check_view(h->headers[i].name, h->headers[i].name_len, buf, n);
        check_view(h->headers[i].value, h->headers[i].value_len, buf, n);
    }
    if (h->content_type != NULL)
        check_view(h->content_type, h->content_type_len, buf, n);
    CHECK(h->content_length >= -1 && h->content_length <= 999999999999999999LL);
    CHECK(!(h->chunked && h->content_length >= 0));
    CHECK(!(h->chunked && h->minor_version == 0));
    CHECK(!(h->keep_alive && h->minor_version == 0));
    CHECK(h->retry_after >= -1 && h->retry_after <= 1000000000);
}

/* The verdict on the input as one response head, under the full head cap. */
fuzz_verdict_t fuzz_verdict(const uint8_t *data, size_t size)
{
    httpc_head_t h;
    int r = httpc_parse_response((const char *)data, size, HTTPC_MAX_HEAD, &h);
    if (r > 0)
        return FUZZ_ACCEPTED;
    return r == -EAGAIN ? FUZZ_INCOMPLETE : r == -EMSGSIZE ? FUZZ_TOO_BIG : FUZZ_REFUSED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so that a read past the end is caught. */
    char *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    memcpy(buf, data, size);

    httpc_head_t h;
    int r = httpc_parse_response(buf, size, HTTPC_MAX_HEAD, &h);
    CHECK(r > 0 || r == -EAGAIN || r == -EBADMSG || r == -EMSGSIZE);
    if (r == -EBADMSG)
        CHECK(h.error != NULL);
    if (r == -EMSGSIZE)
        CHECK(size >= HTTPC_MAX_HEAD);
    if (r > 0) {
        CHECK((size_t)r <= size && (size_t)r <= HTTPC_MAX_HEAD);
        check_head(buf, r, &h);
        int status = h.status;
        int64_t cl = h.content_length;
        bool chunked = h.chunked, keep = h.keep_alive;
        size_t nh = h.num_headers;

        /* The head alone, without what follows it, parses the same. */
        httpc_head_t h2;
        CHECK(httpc_parse_response(buf, (size_t)r, HTTPC_MAX_HEAD, &h2) == r);
        CHECK(h2.status == status && h2.content_length == cl && h2.chunked == chunked &&
              h2.keep_alive == keep && h2.num_headers == nh);

        if (r <= 1024)
            for (int i = 0; i < r; i++)
                CHECK(httpc_parse_response(buf, (size_t)i, HTTPC_MAX_HEAD, &h2) == -EAGAIN);
    }

    /* Under a small cap: the same verdict for short heads, -EMSGSIZE for long ones. */
    httpc_head_t hs;
    int rs = httpc_parse_response(buf, size, SMALL_HEAD, &hs);
    CHECK(rs > 0 || rs == -EAGAIN || rs == -EBADMSG || rs == -EMSGSIZE);
    if (r > 0 && r <= SMALL_HEAD)
        CHECK(rs == r);
    if (r > SMALL_HEAD)
        CHECK(rs == -EMSGSIZE);
    if (rs > 0)
        CHECK(rs == r);
    free(buf);
    return 0;
}
