/* SPDX-License-Identifier: MIT */
/*
 * url.c - the client's origin URL parser (httpc_parse.h): splits
 * "scheme://host[:port][/]" into what a pool needs to connect, to name the
 * server in SNI and the Host header, and to write log lines. A pure
 * function over bytes, unit-tested and fuzzed.
 */
#include "httpc_parse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || http_is_digit(ch) ||
           ch == '-' || ch == '.' || ch == '_';
}

static bool ipv6_char(char ch)
{
    return http_is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
           ch == ':' || ch == '.';
}

/* True when s[0..len) starts with the literal `lit`. */
static bool has_prefix(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len >= n && memcmp(s, lit, n) == 0;
}

int httpc_parse_url(const char *url, size_t len, httpc_url_t *out)
{
    if (url == NULL)
        return -EINVAL;
    const char *s, *end = url + len;
    if (has_prefix(url, len, "https://")) {
        out->tls = true;
        out->port = 443;
        s = url + 8;
    } else if (has_prefix(url, len, "http://")) {
        out->tls = false;
        out->port = 80;
        s = url + 7;
    } else {
        return -EINVAL;
    }

    const char *h, *he;
    out->ipv6 = s < end && *s == '[';
    if (out->ipv6) {
        h = ++s;
        while (s < end && ipv6_char(*s))
            s++;
        he = s;
        if (s == end || *s != ']' || he == h)
            return -EINVAL;
        s++;
    } else {
        h = s;
        while (s < end && host_char(*s))
            s++;
        he = s;
        if (he == h)
            return -EINVAL;
    }
    size_t host_len = (size_t)(he - h);
    if (host_len > HTTPC_MAX_HOST)
        return -EINVAL;

    bool explicit_port = false;
    if (s < end && *s == ':') {
        const char *ds = ++s;
        unsigned long port = 0;
        while (s < end && http_is_digit(*s) && s - ds < 6)
            port = port * 10 + (unsigned long)(*s++ - '0');
        if (s == ds || port == 0 || port > 65535)
            return -EINVAL;
        out->port = (uint16_t)port;
        explicit_port = true;
    }
    if (s < end && *s == '/')
        s++;
    if (s != end)
        return -EINVAL;

    memcpy(out->host, h, host_len);
    out->host[host_len] = '\0';
    if (out->tls) {
        bool numeric = true;
        for (size_t i = 0; i < host_len; i++)
            numeric = numeric && (http_is_digit(h[i]) || h[i] == '.');
        if (out->ipv6 || numeric)
            return -EINVAL;
    }

    const char *lb = out->ipv6 ? "[" : "", *rb = out->ipv6 ? "]" : "";
    bool default_port = out->port == (out->tls ? 443 : 80);
    if (explicit_port && !default_port)
        snprintf(out->host_hdr, sizeof(out->host_hdr), "%s%s%s:%u", lb, out->host, rb,
                 (unsigned)out->port);
    else
        snprintf(out->host_hdr, sizeof(out->host_hdr), "%s%s%s", lb, out->host, rb);
    snprintf(out->origin, sizeof(out->origin), "%s://%s%s%s:%u", out->tls ? "https" : "http", lb,
             out->host, rb, (unsigned)out->port);
    return 0;
}
