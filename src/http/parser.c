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
#include "http.h"

#include <errno.h>
#include <string.h>

/*
 * RFC 9112 2.2 lets a server ignore at least one empty line before the
 * request-line (some clients send a CRLF after a POST body); a few are
 * tolerated, more are a sign of garbage and are refused.
 */
#define HTTP_MAX_LEADING_CRLF 4

/* Content-Length digits accepted: 18 digits always fit in int64_t. */
#define HTTP_MAX_CL_DIGITS 18

/* Scan results of the internal steps; errors are returned as -EBADMSG. */
#define MORE 1

/* tchar, RFC 9110 5.6.2: the characters of methods, field names and codings. */
static inline bool is_tchar(char ch)
{
    unsigned char c = (unsigned char)ch;
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return true;
    default:
        return false;
    }
}

/* VCHAR: visible ASCII, the only bytes of a request-target. */
static inline bool is_vchar(char ch)
{
    unsigned char c = (unsigned char)ch;
    return c >= 0x21 && c <= 0x7e;
}

/* field-value bytes, RFC 9110 5.5: VCHAR, obs-text, SP and HTAB; no controls, no DEL. */
static inline bool is_field_char(char ch)
{
    unsigned char c = (unsigned char)ch;
    return (c >= 0x20 && c != 0x7f) || c == '\t';
}

static inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

static inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

bool http_token_eq(const char *s, size_t len, const char *lit)
{
    for (size_t i = 0; i < len; i++) {
        if (lit[i] == '\0' || lower(s[i]) != lower(lit[i]))
            return false;
    }
    return lit[len] == '\0';
}

const http_header_t *http_find_header(const http_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->num_headers; i++) {
        if (http_token_eq(req->headers[i].name, req->headers[i].name_len, name))
            return &req->headers[i];
    }
    return NULL;
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

/* What the header lines seen so far imply; folded into `req` at the end. */
typedef struct parse_ctx {
    const char *buf;          /* start of the input */
    const char *end;          /* end of the scanned window (at most max_head bytes) */
    const http_limits_t *lim; /* the caller's limits */
    http_request_t *req;      /* output */
    int hosts;                /* Host fields seen */
    bool te_seen;             /* a Transfer-Encoding field was seen */
    bool conn_close;          /* Connection lists "close" */
    bool conn_keep_alive;     /* Connection lists "keep-alive" */
} parse_ctx_t;

static int fail(http_request_t *req, int status, const char *why)
{
    req->status = status;
    req->error = why;
    return -EBADMSG;
}

/*
 * Checks the form of a complete request-target: origin-form ("/..."),
 * asterisk-form ("*") or absolute-form ("scheme://authority[/path][?query]"),
 * and sets req->path to the part before '?'. The bytes are already known to
 * be visible ASCII.
 */
static int check_target(http_request_t *req)
{
    const char *t = req->target;
    size_t n = req->target_len;

    if (t[0] == '/') {
        const char *q = memchr(t, '?', n);
        req->path = t;
        req->path_len = q ? (size_t)(q - t) : n;
        return 0;
    }
    if (t[0] == '*') {
        if (n != 1)
            return fail(req, 400, "malformed asterisk-form");
        req->path = t;
        req->path_len = 1;
        return 0;
    }
    /* absolute-form: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
    size_t i = 1;
    while (i < n && ((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
                     (t[i] >= '0' && t[i] <= '9') || t[i] == '+' || t[i] == '-' || t[i] == '.'))
        i++;
    if (n - i < 3 || memcmp(t + i, "://", 3) != 0) {
        /* authority-form ("host:port") is only for CONNECT through a proxy. */
        return fail(req, 400, "unsupported request-target form");
    }
    i += 3;
    size_t host = i;
    while (i < n && t[i] != '/' && t[i] != '?')
        i++;
    if (i == host)
        return fail(req, 400, "malformed absolute-form");
    /* The path of "http://h" or "http://h?q" is empty; it routes nowhere. */
    size_t p = i;
    while (i < n && t[i] != '?')
        i++;
    req->path = t + p;
    req->path_len = i - p;
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
    while (p < end && is_tchar(*p))
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
    const char *t = p;
    if (p == end)
        return MORE;
    if (is_ows(*p))
        return fail(req, 400, "extra whitespace in the request-line");
    if (*p != '/' && *p != '*' && !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        return fail(req, 400, *p == '\n' ? "bare LF" : "malformed request-target");
    while (p < end && *p != ' ') {
        if (*p == '\r')
            return fail(req, 400, "missing HTTP-version");
        if (!is_vchar(*p))
            return fail(req, 400, *p == '\n' ? "bare LF" : "malformed request-target");
        if ((size_t)(p - t) >= c->lim->max_target)
            return fail(req, 414, "request-target too long");
        p++;
    }
    if (p == end)
        return MORE;
    req->target = t;
    req->target_len = (size_t)(p - t);
    p++;

    /* HTTP-version CRLF, checked byte by byte so garbage is refused early. */
    const char *v = p;
    if (p < end && is_ows(*p))
        return fail(req, 400, "extra whitespace in the request-line");
    for (size_t i = 0; i < 10; i++, p++) {
        if (p == end)
            return MORE;
        char want = i < 5 ? version[i] : i == 6 ? '.' : i == 8 ? '\r' : i == 9 ? '\n' : 0;
        if (want == 0 ? (*p >= '0' && *p <= '9') : *p == want)
            continue;
        if (*p == '\n')
            return fail(req, 400, "bare LF");
        return fail(req, 400, i == 9 ? "bare CR" : "malformed HTTP-version");
    }
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return fail(req, 505, "unsupported HTTP version");
    req->minor_version = v[7] - '0';

    int r = check_target(req);
    if (r < 0)
        return r;
    *pp = p;
    return 0;
}

static int on_content_length(parse_ctx_t *c, const http_header_t *h)
{
    http_request_t *req = c->req;
    if (req->content_length >= 0)
        return fail(req, 400, "duplicate Content-Length");
    if (c->te_seen)
        return fail(req, 400, "Content-Length with Transfer-Encoding");
    if (h->value_len == 0)
        return fail(req, 400, "empty Content-Length");
    int64_t n = 0;
    for (size_t i = 0; i < h->value_len; i++) {
        char d = h->value[i];
        if (d < '0' || d > '9')
            return fail(req, 400, "invalid Content-Length");
        if (i == HTTP_MAX_CL_DIGITS)
            return fail(req, 400, "Content-Length too long");
        n = n * 10 + (d - '0');
    }
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
    if (req->minor_version == 0)
        return fail(req, 400, "Transfer-Encoding in HTTP/1.0");
    if (req->content_length >= 0)
        return fail(req, 400, "Content-Length with Transfer-Encoding");
    c->te_seen = true;

    bool any = false, unknown = false, not_last = false;
    const char *p = h->value, *end = h->value + h->value_len;
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        if (p == end)
            break;
        const char *name = p;
        while (p < end && is_tchar(*p))
            p++;
        if (p == name)
            return fail(req, 400, "malformed Transfer-Encoding");
        size_t name_len = (size_t)(p - name);
        while (p < end && is_ows(*p))
            p++;
        bool params = p < end && *p == ';';
        if (p < end && *p != ',' && *p != ';')
            return fail(req, 400, "malformed Transfer-Encoding");
        /* Parameters of an unknown coding are not looked into: it is refused. */
        while (p < end && *p != ',')
            p++;
        if (req->chunked)
            not_last = true;
        any = true;
        if (!params && http_token_eq(name, name_len, "chunked")) {
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

/* Connection is a comma list of tokens; only close and keep-alive matter here. */
static void on_connection(parse_ctx_t *c, const http_header_t *h)
{
    const char *p = h->value, *end = h->value + h->value_len;
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        const char *tok = p;
        while (p < end && *p != ',' && !is_ows(*p))
            p++;
        size_t n = (size_t)(p - tok);
        if (http_token_eq(tok, n, "close"))
            c->conn_close = true;
        else if (http_token_eq(tok, n, "keep-alive"))
            c->conn_keep_alive = true;
        while (p < end && *p != ',')
            p++;
    }
}

/* Applies what a complete field line means for framing and connection use. */
static int on_header(parse_ctx_t *c, const http_header_t *h)
{
    if (http_token_eq(h->name, h->name_len, "content-length"))
        return on_content_length(c, h);
    if (http_token_eq(h->name, h->name_len, "transfer-encoding"))
        return on_transfer_encoding(c, h);
    if (http_token_eq(h->name, h->name_len, "host")) {
        if (c->hosts++ > 0)
            return fail(c->req, 400, "duplicate Host");
    } else if (http_token_eq(h->name, h->name_len, "connection")) {
        on_connection(c, h);
    } else if (http_token_eq(h->name, h->name_len, "expect")) {
        if (http_token_eq(h->value, h->value_len, "100-continue"))
            c->req->expect_continue = true;
    }
    return 0;
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
        if (is_ows(*p))
            return fail(req, 400,
                        req->num_headers ? "obs-fold" : "whitespace before the first field");
        if (req->num_headers == HTTP_MAX_HEADERS)
            return fail(req, 431, "too many header fields");

        const char *name = p;
        while (p < end && is_tchar(*p))
            p++;
        if (p == end)
            return MORE;
        if (is_ows(*p))
            return fail(req, 400, "whitespace between field name and colon");
        if (*p == '\n')
            return fail(req, 400, "bare LF");
        if (*p != ':')
            return fail(req, 400, "invalid field name");
        if (p == name)
            return fail(req, 400, "empty field name");
        size_t name_len = (size_t)(p - name);
        p++;

        while (p < end && is_ows(*p))
            p++;
        const char *value = p, *value_end = p;
        while (p < end && *p != '\r') {
            if (!is_field_char(*p))
                return fail(req, 400, *p == '\n' ? "bare LF" : "control character in field value");
            p++;
            if (!is_ows(p[-1]))
                value_end = p;
        }
        if (p == end || p + 1 == end)
            return MORE;
        if (p[1] != '\n')
            return fail(req, 400, "bare CR");
        p += 2;

        http_header_t *h = &req->headers[req->num_headers++];
        h->name = name;
        h->name_len = name_len;
        h->value = value;
        h->value_len = (size_t)(value_end - value);
        int r = on_header(c, h);
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
     * the body or the next request.
     */
    parse_ctx_t c = {
        .buf = buf,
        .end = buf + (len < lim->max_head ? len : lim->max_head),
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
        if (len >= lim->max_head)
            return fail(req, 431, "request head too large");
        return -EAGAIN;
    }

    if (req->minor_version == 1 && c.hosts == 0)
        return fail(req, 400, "missing Host");
    if (req->minor_version == 1)
        req->keep_alive = !c.conn_close;
    else
        req->keep_alive = c.conn_keep_alive && !c.conn_close;
    return (int)(p - buf);
}
