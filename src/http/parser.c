/* SPDX-License-Identifier: MIT */
/*
 * parser.c - the strict HTTP/1.1 request-head parser (RFC 9112) and the small
 * helpers around it. A pure function over bytes: no I/O, no allocation, no
 * state between calls; the server calls it again on the whole accumulated
 * buffer when more bytes arrive.
 *
 * The head is scanned once, front to back, and every decision depends only on
 * the bytes already scanned. So a prefix of any input is either still valid
 * (-EAGAIN) or refused with the same status and reason as the whole input, and
 * an input split anywhere gives the same verdict as the whole.
 */
#include "http_parse.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/*
 * RFC 9112 2.2 lets a server ignore at least one empty line before the
 * request-line (some clients send a CRLF after a POST body); a few are
 * tolerated, more are a sign of garbage and are refused.
 */
#define HTTP_MAX_LEADING_CRLF 4

/* Scan results of the internal steps; errors are returned as -EBADMSG. */
#define MORE 1

const http_header_t *http_find_header(const http_request_t *req, const char *name)
{
    return http_header_find(req->headers, req->num_headers, name);
}

const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* What a field name means for the parser; decided when its colon is read. */
enum field_kind {
    F_OTHER,
    F_CONTENT_LENGTH,
    F_TRANSFER_ENCODING,
    F_HOST,
    F_CONNECTION,
    F_EXPECT,
};

/* What the field lines seen so far imply; folded into `req` at the end. */
typedef struct parse_ctx {
    const char *end;          /* end of the scanned window (at most max_head bytes) */
    const http_limits_t *lim; /* the caller's limits */
    http_request_t *req;      /* output */
    bool cl_seen;             /* a Content-Length field name was read */
    bool te_seen;             /* a Transfer-Encoding field name was read */
    bool host_seen;           /* a Host field name was read */
    bool conn_close;          /* Connection lists "close" */
    bool conn_keep_alive;     /* Connection lists "keep-alive" */
} parse_ctx_t;

static int fail(http_request_t *req, int status, const char *why)
{
    req->status = status;
    req->error = why;
    return -EBADMSG;
}

static inline bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* reg-name characters (RFC 3986 3.2.2): unreserved, pct-encoded and sub-delims. */
static inline bool is_reg_name(char c)
{
    return is_alpha(c) || http_is_digit(c) || (c != '\0' && strchr("-._~%!$&'()*+,;=", c) != NULL);
}

/* The bytes that can appear in uri-host [":" port], IP literals included. */
static inline bool is_authority_char(char c)
{
    return is_reg_name(c) || c == ':' || c == '[' || c == ']';
}

/*
 * Host = uri-host [ ":" port ] (RFC 9110 7.2), where uri-host is a reg-name
 * (possibly empty) or a bracketed IP literal. RFC 9112 3.2 requires a 400 for
 * an invalid one; percent-encodings are not decoded, only allowed.
 */
static bool valid_host(const char *s, size_t n)
{
    size_t i = 0;
    bool bracket = n > 0 && s[0] == '[';
    for (i = bracket; i < n; i++) {
        if (!is_reg_name(s[i]) && !(bracket && s[i] == ':'))
            break;
    }
    if (bracket) {
        if (i == n || s[i] != ']')
            return false;
        i++;
    }
    if (i == n)
        return true;
    if (s[i++] != ':')
        return false;
    for (; i < n; i++) {
        if (!http_is_digit(s[i]))
            return false;
    }
    return true;
}

/* States of the request-target scan. */
enum {
    T_START,     /* first byte */
    T_ORIGIN,    /* origin-form: "/" then any visible ASCII */
    T_ASTERISK,  /* "*", which must stand alone */
    T_SCHEME,    /* absolute-form: the scheme, letters */
    T_SLASH1,    /* after "scheme:" */
    T_SLASH2,    /* after "scheme:/" */
    T_AUTHORITY, /* after "scheme://", up to "/", "?" or SP */
    T_PATH,      /* absolute-form path and query */
};

/* Checks the authority of an absolute-form target, which ends at `p`. */
static int check_authority(http_request_t *req, const char *a, const char *p)
{
    if (p == a)
        return fail(req, 400, "absolute-form without a host");
    /* No userinfo either: RFC 9110 4.2.4 says to treat it as an error. */
    if (!valid_host(a, (size_t)(p - a)))
        return fail(req, 400, "invalid authority in absolute-form");
    return 0;
}

/*
 * Scans the request-target at *pp up to its SP: origin-form ("/..."),
 * asterisk-form ("*") or absolute-form ("scheme://authority[/path][?query]").
 * Each byte is judged as it is read, so a bad form is refused at its first
 * bad byte. Sets target and path; returns 0 with *pp at the SP, MORE, or
 * -EBADMSG.
 */
static int parse_target(parse_ctx_t *c, const char **pp)
{
    http_request_t *req = c->req;
    const char *t = *pp, *p = *pp, *end = c->end;
    const char *auth = NULL, *path = t;
    int st = T_START;

    for (;; p++) {
        if (p == end)
            return MORE;
        char ch = *p;
        if (ch == ' ' && st != T_START)
            break;
        if (ch == '\r')
            return fail(req, 400,
                        st == T_START ? "missing request-target" : "missing HTTP-version");
        if (!http_is_vchar(ch)) {
            if (ch == '\n')
                return fail(req, 400, "bare LF");
            if (st == T_START && http_is_ows(ch))
                return fail(req, 400, "extra whitespace in the request-line");
            return fail(req, 400, "malformed request-target");
        }
        if ((size_t)(p - t) >= c->lim->max_target)
            return fail(req, 414, "request-target too long");
        switch (st) {
        case T_START:
            if (ch == '/')
                st = T_ORIGIN;
            else if (ch == '*')
                st = T_ASTERISK;
            else if (is_alpha(ch))
                st = T_SCHEME;
            else
                return fail(req, 400, "malformed request-target");
            break;
        case T_ASTERISK:
            return fail(req, 400, "malformed asterisk-form");
        case T_SCHEME:
            if (ch == ':')
                st = T_SLASH1;
            else if (!is_alpha(ch))
                return fail(req, 400, "unsupported request-target form");
            break;
        case T_SLASH1:
        case T_SLASH2:
            /* Anything but "//" here is authority-form, for CONNECT through a proxy. */
            if (ch != '/')
                return fail(req, 400, "unsupported request-target form");
            st = st == T_SLASH1 ? T_SLASH2 : T_AUTHORITY;
            auth = p + 1;
            break;
        case T_AUTHORITY:
            if (ch == '/' || ch == '?') {
                int r = check_authority(req, auth, p);
                if (r < 0)
                    return r;
                path = p;
                st = T_PATH;
            } else if (!is_authority_char(ch)) {
                return fail(req, 400, "invalid authority in absolute-form");
            }
            break;
        default:
            break;
        }
    }

    switch (st) {
    case T_SCHEME:
    case T_SLASH1:
    case T_SLASH2:
        return fail(req, 400, "unsupported request-target form");
    case T_AUTHORITY: {
        /* "http://h" has an empty path; it routes nowhere. */
        int r = check_authority(req, auth, p);
        if (r < 0)
            return r;
        path = p;
        break;
    }
    default:
        break;
    }
    req->target = t;
    req->target_len = (size_t)(p - t);
    const char *q = memchr(path, '?', (size_t)(p - path));
    req->path = path;
    req->path_len = (size_t)((q ? q : p) - path);
    *pp = p;
    return 0;
}

/*
 * Parses the request-line starting at *pp, after any leading empty lines.
 * Returns 0 with *pp past its CRLF, MORE when the window ends first, or
 * -EBADMSG.
 */
static int parse_request_line(parse_ctx_t *c, const char **pp)
{
    static const char version[] = "HTTP/";
    http_request_t *req = c->req;
    const char *p = *pp, *end = c->end;

    for (int n = 0; p < end && *p == '\r'; n++) {
        if (n == HTTP_MAX_LEADING_CRLF)
            return fail(req, 400, "too many empty lines before the request-line");
        if (p + 1 == end)
            return MORE;
        if (p[1] != '\n')
            return fail(req, 400, "bare CR");
        p += 2;
    }

    /* method SP */
    const char *m = p;
    while (p < end && http_is_tchar(*p))
        p++;
    if (p == end)
        return MORE;
    if (*p == '\n')
        return fail(req, 400, "bare LF");
    if (p == m || *p != ' ')
        return fail(req, 400, "malformed request-line");
    req->method = m;
    req->method_len = (size_t)(p - m);
    p++;

    /* request-target SP */
    int r = parse_target(c, &p);
    if (r != 0)
        return r;
    p++;

    /* HTTP-version CRLF, checked byte by byte so garbage is refused early. */
    const char *v = p;
    if (p < end && http_is_ows(*p))
        return fail(req, 400, "extra whitespace in the request-line");
    for (size_t i = 0; i < 10; i++, p++) {
        if (p == end)
            return MORE;
        char want = i < 5 ? version[i] : i == 6 ? '.' : i == 8 ? '\r' : i == 9 ? '\n' : 0;
        if (want == 0 ? http_is_digit(*p) : *p == want) {
            if (i == 7 && (v[5] != '1' || (v[7] != '0' && v[7] != '1')))
                return fail(req, 505, "unsupported HTTP version");
            continue;
        }
        if (*p == '\n')
            return fail(req, 400, "bare LF");
        return fail(req, 400, i == 9 ? "bare CR" : "malformed HTTP-version");
    }
    req->minor_version = v[7] - '0';
    *pp = p;
    return 0;
}

/*
 * Called when a field name's colon is read: what the name is, and the checks
 * that need only the name (so that they happen as early as they can).
 * Returns the field_kind or -EBADMSG.
 */
static int on_field_name(parse_ctx_t *c, const char *name, size_t len)
{
    http_request_t *req = c->req;
    if (http_token_eq(name, len, "content-length")) {
        if (c->cl_seen)
            return fail(req, 400, "duplicate Content-Length");
        if (c->te_seen)
            return fail(req, 400, "Content-Length with Transfer-Encoding");
        c->cl_seen = true;
        return F_CONTENT_LENGTH;
    }
    if (http_token_eq(name, len, "transfer-encoding")) {
        if (req->minor_version == 0)
            return fail(req, 400, "Transfer-Encoding in HTTP/1.0");
        if (c->cl_seen)
            return fail(req, 400, "Content-Length with Transfer-Encoding");
        c->te_seen = true;
        return F_TRANSFER_ENCODING;
    }
    if (http_token_eq(name, len, "host")) {
        if (c->host_seen)
            return fail(req, 400, "duplicate Host");
        c->host_seen = true;
        return F_HOST;
    }
    if (http_token_eq(name, len, "connection"))
        return F_CONNECTION;
    if (http_token_eq(name, len, "expect"))
        return F_EXPECT;
    return F_OTHER;
}

/*
 * Content-Length = 1*DIGIT, with OWS around it already allowed by the field
 * syntax. Judged byte by byte: `digits` counts the digits so far, `*after`
 * says OWS followed them. Returns 0 or -EBADMSG.
 */
static int content_length_byte(http_request_t *req, char ch, size_t *digits, bool *after)
{
    if (http_is_ows(ch)) {
        *after = true;
        return 0;
    }
    if (!http_is_digit(ch) || *after)
        return fail(req, 400, "invalid Content-Length");
    if (++*digits > HTTP_MAX_DIGITS)
        return fail(req, 400, "Content-Length too long");
    return 0;
}

/* At the end of a Content-Length value of `digits` digits (at most 18). */
static int on_content_length(parse_ctx_t *c, const char *value, size_t digits)
{
    http_request_t *req = c->req;
    if (digits == 0)
        return fail(req, 400, "empty Content-Length");
    int64_t n = http_parse_digits(value, digits);
    if ((uint64_t)n > c->lim->max_body)
        return fail(req, 413, "Content-Length over the body limit");
    req->content_length = n;
    return 0;
}

/*
 * Transfer-Encoding: the only coding supported is chunked, and it must be the
 * last one. Several Transfer-Encoding fields are treated as one combined list
 * (RFC 9110 5.3), so "chunked" followed by another field is "chunked not last".
 */
static int on_transfer_encoding(parse_ctx_t *c, const http_header_t *h)
{
    http_request_t *req = c->req;
    bool any = false, unknown = false, not_last = false;
    const char *p = h->value, *end = h->value + h->value_len;
    http_list_item_t it;
    while (http_list_next(&p, end, &it)) {
        if (it.token_len == 0 || it.rest == HTTP_LIST_OTHER)
            return fail(req, 400, "malformed Transfer-Encoding");
        if (req->chunked)
            not_last = true;
        any = true;
        /* Parameters of an unknown coding are not looked into: it is refused. */
        if (it.rest == HTTP_LIST_BARE && http_token_eq(it.token, it.token_len, "chunked")) {
            req->chunked = true;
        } else {
            req->chunked = false;
            unknown = true;
        }
    }
    if (not_last)
        return fail(req, 400, "chunked is not the final transfer coding");
    if (unknown)
        return fail(req, 501, "unsupported transfer coding");
    if (!any)
        return fail(req, 400, "empty Transfer-Encoding");
    return 0;
}

/*
 * Connection is a comma list of tokens (RFC 9110 7.6.1); only close and
 * keep-alive matter here. An element that is not a token is not keep-alive,
 * but one that starts with the token close still closes: closing is safe.
 */
static void on_connection(parse_ctx_t *c, const http_header_t *h)
{
    const char *p = h->value, *end = h->value + h->value_len;
    http_list_item_t it;
    while (http_list_next(&p, end, &it)) {
        if (http_token_eq(it.token, it.token_len, "close"))
            c->conn_close = true;
        else if (it.rest == HTTP_LIST_BARE && http_token_eq(it.token, it.token_len, "keep-alive"))
            c->conn_keep_alive = true;
    }
}

/* Applies what a complete field line means, once its CRLF has been read. */
static int on_field(parse_ctx_t *c, int kind, const http_header_t *h)
{
    switch (kind) {
    case F_TRANSFER_ENCODING:
        return on_transfer_encoding(c, h);
    case F_HOST:
        if (!valid_host(h->value, h->value_len))
            return fail(c->req, 400, "invalid Host");
        return 0;
    case F_CONNECTION:
        on_connection(c, h);
        return 0;
    case F_EXPECT:
        /* RFC 9110 10.1.1: a 100-continue expectation in HTTP/1.0 is ignored. */
        if (c->req->minor_version == 1 && http_token_eq(h->value, h->value_len, "100-continue"))
            c->req->expect_continue = true;
        return 0;
    default:
        return 0;
    }
}

/*
 * Parses field lines and the final empty line. Returns 0 with *pp past the
 * empty line, MORE when the window ends first, or -EBADMSG.
 */
static int parse_fields(parse_ctx_t *c, const char **pp)
{
    http_request_t *req = c->req;
    const char *p = *pp, *end = c->end;

    for (;;) {
        if (p == end)
            return MORE;
        if (*p == '\r') {
            if (p + 1 == end)
                return MORE;
            if (p[1] != '\n')
                return fail(req, 400, "bare CR");
            *pp = p + 2;
            return 0;
        }
        if (*p == '\n')
            return fail(req, 400, "bare LF");
        if (http_is_ows(*p))
            return fail(req, 400,
                        req->num_headers ? "obs-fold" : "whitespace before the first field");
        if (req->num_headers == HTTP_MAX_HEADERS)
            return fail(req, 431, "too many header fields");

        const char *name = p;
        while (p < end && http_is_tchar(*p))
            p++;
        if (p == end)
            return MORE;
        if (http_is_ows(*p))
            return fail(req, 400, "whitespace between field name and colon");
        if (*p == '\n')
            return fail(req, 400, "bare LF");
        if (*p != ':')
            return fail(req, 400, "invalid field name");
        if (p == name)
            return fail(req, 400, "empty field name");
        size_t name_len = (size_t)(p - name);
        int kind = on_field_name(c, name, name_len);
        if (kind < 0)
            return kind;
        p++;

        while (p < end && http_is_ows(*p))
            p++;
        const char *value = p, *value_end = p;
        size_t digits = 0;
        bool after = false;
        for (; p < end && *p != '\r'; p++) {
            if (!http_is_field_char(*p))
                return fail(req, 400, *p == '\n' ? "bare LF" : "control character in field value");
            if (kind == F_CONTENT_LENGTH) {
                int r = content_length_byte(req, *p, &digits, &after);
                if (r < 0)
                    return r;
            }
            if (!http_is_ows(*p))
                value_end = p + 1;
        }
        if (p == end)
            return MORE;
        if (kind == F_CONTENT_LENGTH) {
            int r = on_content_length(c, value, digits);
            if (r < 0)
                return r;
        }
        if (p + 1 == end)
            return MORE;
        if (p[1] != '\n')
            return fail(req, 400, "bare CR");
        p += 2;

        http_header_t *h = &req->headers[req->num_headers++];
        h->name = name;
        h->name_len = name_len;
        h->value = value;
        h->value_len = (size_t)(value_end - value);
        int r = on_field(c, kind, h);
        if (r < 0)
            return r;
    }
}

int http_parse_request(const char *buf, size_t len, const http_limits_t *lim, http_request_t *req)
{
    memset(req, 0, offsetof(http_request_t, headers));
    req->num_headers = 0;
    req->content_length = -1;
    req->chunked = false;
    req->keep_alive = false;
    req->expect_continue = false;
    req->status = 0;
    req->error = NULL;

    /*
     * Only the first max_head bytes are looked at: a head that has not ended
     * by then is refused whatever follows, and bytes past the head belong to
     * the body or the next request. The cap also keeps the result in an int.
     */
    size_t max_head = lim->max_head < INT_MAX ? lim->max_head : INT_MAX;
    parse_ctx_t c = {
        .end = buf + (len < max_head ? len : max_head),
        .lim = lim,
        .req = req,
    };
    const char *p = buf;
    int r = parse_request_line(&c, &p);
    if (r == 0)
        r = parse_fields(&c, &p);
    if (r < 0)
        return r;
    if (r == MORE) {
        if (len >= max_head)
            return fail(req, 431, "request head too large");
        return -EAGAIN;
    }

    if (req->minor_version == 1 && !c.host_seen)
        return fail(req, 400, "missing Host");
    if (req->minor_version == 1)
        req->keep_alive = !c.conn_close;
    else
        req->keep_alive = c.conn_keep_alive && !c.conn_close;
    return (int)(p - buf);
}
