/* SPDX-License-Identifier: MIT */
/*
 * fuzz_url.c - libFuzzer target for the client's origin URL parser
 * (httpc_parse_url).
 *
 * Aborts when the result is outside the documented set, or an accepted URL
 * breaks an invariant: a host of 1..HTTPC_MAX_HOST bytes of the allowed
 * characters, a nonzero port, https never with an address, the Host header
 * and the origin consistent with them, and the origin string parsing back
 * to the same host, port and scheme.
 */
#include "fuzz.h"
#include "httpc_parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

fuzz_verdict_t fuzz_verdict(const uint8_t *data, size_t size)
{
    httpc_url_t u;
    return httpc_parse_url((const char *)data, size, &u) == 0 ? FUZZ_ACCEPTED : FUZZ_REFUSED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so that a read past the end is caught. */
    char *buf = malloc(size ? size : 1);
    CHECK(buf != NULL);
    memcpy(buf, data, size);

    httpc_url_t u;
    int r = httpc_parse_url(buf, size, &u);
    CHECK(r == 0 || r == -EINVAL);
    if (r == 0) {
        size_t n = strlen(u.host);
        CHECK(n >= 1 && n <= HTTPC_MAX_HOST);
        CHECK(u.port != 0);
        CHECK(!(u.tls && u.ipv6));
        CHECK(strspn(u.host, u.ipv6 ? "0123456789abcdefABCDEF:." : "0123456789abcdefghijklmnopqrstu"
                                                                  "vwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._") ==
              n);
        if (u.tls)
            CHECK(strspn(u.host, "0123456789.") < n);
        CHECK(memmem(buf, size, u.host, n) != NULL);

        /* The origin names the same place and parses back to it. */
        char want[sizeof(u.origin)];
        snprintf(want, sizeof(want), "%s://%s%s%s:%u", u.tls ? "https" : "http",
                 u.ipv6 ? "[" : "", u.host, u.ipv6 ? "]" : "", (unsigned)u.port);
        CHECK(strcmp(want, u.origin) == 0);
        httpc_url_t back;
        CHECK(httpc_parse_url(u.origin, strlen(u.origin), &back) == 0);
        CHECK(back.tls == u.tls && back.ipv6 == u.ipv6 && back.port == u.port &&
              strcmp(back.host, u.host) == 0);

        /* The Host header is the host, bracketed for IPv6, with the port unless default. */
        size_t hn = strlen(u.host_hdr);
        size_t off = u.ipv6 ? 1 : 0;
        CHECK(hn >= n + 2 * off && memcmp(u.host_hdr + off, u.host, n) == 0);
        CHECK(u.host_hdr[n + 2 * off] == '\0' || u.host_hdr[n + 2 * off] == ':');
        if (u.host_hdr[n + 2 * off] == ':')
            CHECK(u.port != (u.tls ? 443 : 80));
    }
    free(buf);
    return 0;
}
