/* SPDX-License-Identifier: MIT */
/*
 * test_url.c - the client's origin URL parser: what each accepted URL
 * splits into (scheme, host, port, Host header, origin for logs), every
 * kind of refusal, inputs that end at a guard page, and the verdict on each
 * file of the fuzz corpus (tests/fuzz/corpus/url, given as argv[1]): files
 * named ok-* must be accepted, bad-* refused.
 */
#include "httpc_parse.h"
#include "tap.h"

#include <errno.h>
#include <string.h>

static tap_guard_t guard;

static int parse(const char *s, httpc_url_t *u)
{
    size_t len = strlen(s);
    return httpc_parse_url(tap_guard_copy(&guard, s, len, TAP_GUARD_END), len, u);
}

static void accepted(const char *url, bool tls, const char *host, unsigned port,
                     const char *host_hdr, const char *origin)
{
    httpc_url_t u;
    memset(&u, 0xa5, sizeof(u));
    int r = parse(url, &u);
    tap_ok(r == 0 && u.tls == tls && strcmp(u.host, host) == 0 && u.port == port &&
               strcmp(u.host_hdr, host_hdr) == 0 && strcmp(u.origin, origin) == 0,
           "accepted: %s", url);
}

static void refused(const char *url, const char *why)
{
    httpc_url_t u;
    tap_ok(parse(url, &u) == -EINVAL, "refused, %s: %s", why, url);
}

static void test_accepted(void)
{
    accepted("https://api.telegram.org", true, "api.telegram.org", 443, "api.telegram.org",
             "https://api.telegram.org:443");
    accepted("https://api.telegram.org/", true, "api.telegram.org", 443, "api.telegram.org",
             "https://api.telegram.org:443");
    accepted("https://example.com:8443", true, "example.com", 8443, "example.com:8443",
             "https://example.com:8443");
    accepted("https://example.com:443", true, "example.com", 443, "example.com",
             "https://example.com:443");
    accepted("http://localhost", false, "localhost", 80, "localhost", "http://localhost:80");
    accepted("http://127.0.0.1:8081/", false, "127.0.0.1", 8081, "127.0.0.1:8081",
             "http://127.0.0.1:8081");
    accepted("http://[::1]:8080", false, "::1", 8080, "[::1]:8080", "http://[::1]:8080");
    accepted("http://[::1]", false, "::1", 80, "[::1]", "http://[::1]:80");
    accepted("http://h:000080", false, "h", 80, "h", "http://h:80");
    accepted("http://A_b-c.D:65535", false, "A_b-c.D", 65535, "A_b-c.D:65535",
             "http://A_b-c.D:65535");

    char longest[8 + HTTPC_MAX_HOST + 1];
    memcpy(longest, "https://", 8);
    memset(longest + 8, 'a', HTTPC_MAX_HOST);
    longest[8 + HTTPC_MAX_HOST] = '\0';
    httpc_url_t u;
    tap_ok(parse(longest, &u) == 0 && strlen(u.host) == HTTPC_MAX_HOST,
           "a host of HTTPC_MAX_HOST bytes");
    char toolong[8 + HTTPC_MAX_HOST + 2];
    memcpy(toolong, longest, sizeof(longest));
    strcat(toolong, "a");
    tap_ok(parse(toolong, &u) == -EINVAL, "one byte longer: refused");
}

static void test_refused(void)
{
    httpc_url_t u;
    tap_ok(httpc_parse_url(NULL, 0, &u) == -EINVAL, "NULL: refused");
    refused("", "empty");
    refused("ftp://example.com", "another scheme");
    refused("HTTPS://example.com", "an upper-case scheme");
    refused("https:/example.com", "one slash");
    refused("https://", "no host");
    refused("https://:443", "no host before the port");
    refused("https://127.0.0.1", "https with an IPv4 address");
    refused("https://1234", "https with an all-digit host");
    refused("https://[::1]", "https with an IPv6 literal");
    refused("http://[::1", "an unclosed bracket");
    refused("http://[]", "empty brackets");
    refused("http://[fe80::1%eth0]", "a zone id");
    refused("http://[::g]", "a non-hex IPv6 literal");
    refused("https://example.com:", "an empty port");
    refused("https://example.com:0", "port 0");
    refused("https://example.com:65536", "port 65536");
    refused("http://h:0000080", "seven port digits");
    refused("https://example.com:80a", "a port with a letter");
    refused("https://example.com/bot1:x/getMe", "a path");
    refused("https://example.com//", "two slashes");
    refused("https://example.com?x", "a query");
    refused("https://example.com#f", "a fragment");
    refused("https://user@example.com", "userinfo");
    refused("https://example.com ", "a trailing space");
    refused("https://exa mple.com", "a space in the host");

    /* A (ptr, len) view: a NUL inside is a byte like any other, and refused. */
    static const char nul[] = "https://exa\0mple.com";
    tap_ok(httpc_parse_url(tap_guard_copy(&guard, nul, sizeof(nul) - 1, TAP_GUARD_END),
                           sizeof(nul) - 1, &u) == -EINVAL,
           "a NUL byte: refused");
    /* Only the view is read: a prefix of a longer string is judged alone. */
    tap_ok(httpc_parse_url("https://a.b/x", 11, &u) == 0 && strcmp(u.host, "a.b") == 0,
           "the view ends before the path: accepted");
}

/* The fuzz corpus's verdicts, by file name. */
static void check_corpus_file(const char *path, const char *data, size_t len)
{
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    httpc_url_t u;
    int r = httpc_parse_url(data, len, &u);
    if (strncmp(name, "ok-", 3) == 0)
        tap_ok(r == 0, "corpus %s: accepted", name);
    else if (strncmp(name, "bad-", 4) == 0)
        tap_ok(r == -EINVAL, "corpus %s: refused", name);
    else
        tap_ok(r == 0 || r == -EINVAL, "corpus %s: a documented result", name);
}

int main(int argc, char **argv)
{
    test_accepted();
    test_refused();
    tap_corpus_fn *fn = check_corpus_file;
    for (int i = 1; i < argc; i++)
        tap_walk(argv[i], tap_corpus_file, &fn);
    tap_guard_free(&guard);
    return tap_done();
}
