/* SPDX-License-Identifier: MIT */
/*
 * response.c - the strict HTTP/1.1 response head parser of the client: a
 * pure function over bytes (RFC 9112 sections 4 and 5, framing per 6.3).
 *
 * Stateless and re-run over the whole buffer as bytes arrive: heads are
 * capped at HTTPC_MAX_HEAD bytes, so this stays cheap. Anything that could
 * make us and an intermediary disagree about where the body ends (bare LF,
 * obs-fold, repeated or odd Content-Length, Transfer-Encoding together with
 * Content-Length) is refused rather than guessed at. Characters, fields,
 * lists and digits are the shared lexer's (http1.h), the same as the
 * server's request parser.
 */
#include "httpc_parse.h"

#include <errno.h>
#include <string.h>

#define RETRY_AFTER_MAX 1000000000 /* seconds; a larger value is capped, not refused */

static int bad(httpc_head_t *h, const char *why)
{
    h->error = why;
    return -EBADMSG;
}

/*
 * Finds the CRLF that ends the line starting at `pos`: returns the index of
 * its CR, -EAGAIN if the line is not complete within buf[0..len), -EBADMSG
 * for a CR not followed by LF or a bare LF.
 */
static long line_end(const char *buf, size_t len, size_t pos)
{
    for (size_t i = pos; i < len; i++) {
        if (buf[i] == '\n')
            return -EBADMSG;
        if (buf[i] == '\r') {
            if (i + 1 == len)
                return -EAGAIN;
            return buf[i + 1] == '\n' ? (long)i : -EBADMSG;
        }
    }
    return -EAGAIN;
}

static int parse_status_line(const char *buf, size_t eol, httpc_head_t *h)
{
    /* "HTTP/1.x SP DDD" is 12 bytes; the reason phrase is optional. */
    if (eol < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
        return bad(h, "malformed status line");
    if (buf[7] != '0' && buf[7] != '1')
        return bad(h, "unsupported HTTP version");
    h->minor_version = buf[7] - '0';
    if (buf[8] != ' ')
        return bad(h, "malformed status line");
    if (buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' ||
        buf[11] > '9')
        return bad(h, "bad status code");
    h->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    h->reason = buf + 12;
    h->reason_len = 0;
    if (eol > 12) {
        if (buf[12] != ' ')
            return bad(h, "malformed status line");
        for (size_t i = 13; i < eol; i++)
            if (!http_is_field_char(buf[i]))
                return bad(h, "control character in reason phrase");
        h->reason = buf + 13;
        h->reason_len = eol - 13;
    }
    return 0;
}

static int parse_field(const char *buf, size_t pos, size_t eol, httpc_head_t *h)
{
    if (http_is_ows(buf[pos]))
        return bad(h, "obs-fold in header");
    size_t i = pos;
    while (i < eol && http_is_tchar(buf[i]))
        i++;
    if (i == eol || buf[i] != ':') {
        if (i < eol && http_is_ows(buf[i]))
            return bad(h, "whitespace before colon");
        return bad(h, "malformed header field name");
    }
    if (i == pos)
        return bad(h, "empty header field name");
    size_t vs = i + 1, ve = eol;
    for (size_t k = vs; k < ve; k++)
        if (!http_is_field_char(buf[k]))
            return bad(h, "control character in header value");
    while (vs < ve && http_is_ows(buf[vs]))
        vs++;
    while (ve > vs && http_is_ows(buf[ve - 1]))
        ve--;
    if (h->num_headers == HTTPC_MAX_HEADERS)
        return bad(h, "too many header fields");
    http_header_t *f = &h->headers[h->num_headers++];
    f->name = buf + pos;
    f->name_len = i - pos;
    f->value = buf + vs;
    f->value_len = ve - vs;
    return 0;
}

/* Derives framing, connection and the few fields the client reports. */
static int derive(httpc_head_t *h)
{
    bool seen_cl = false, seen_te = false, close = false;
    for (size_t i = 0; i < h->num_headers; i++) {
        const http_header_t *f = &h->headers[i];
        if (http_token_eq(f->name, f->name_len, "content-length")) {
            if (seen_cl)
                return bad(h, "repeated Content-Length");
            seen_cl = true;
            h->content_length = http_parse_digits(f->value, f->value_len);
            if (h->content_length < 0)
                return bad(h, "invalid Content-Length");
        } else if (http_token_eq(f->name, f->name_len, "transfer-encoding")) {
            if (seen_te)
                return bad(h, "repeated Transfer-Encoding");
            seen_te = true;
            if (!http_token_eq(f->value, f->value_len, "chunked"))
                return bad(h, "unsupported transfer coding");
            h->chunked = true;
        } else if (http_token_eq(f->name, f->name_len, "connection")) {
            if (http_list_has(f->value, f->value_len, "close"))
                close = true;
        } else if (http_token_eq(f->name, f->name_len, "retry-after")) {
            int64_t v = http_parse_digits(f->value, f->value_len);
            if (v < 0 && f->value_len > 18) {
                /* All digits but huge still means "a long time". */
                bool digits = true;
                for (size_t k = 0; k < f->value_len; k++)
                    digits = digits && http_is_digit(f->value[k]);
                if (digits)
                    v = RETRY_AFTER_MAX;
            }
            h->retry_after = v > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : v;
        } else if (http_token_eq(f->name, f->name_len, "content-type")) {
            h->content_type = f->value;
            h->content_type_len = f->value_len;
        }
    }
    if (seen_te && h->minor_version == 0)
        return bad(h, "Transfer-Encoding in HTTP/1.0");
    if (seen_te && seen_cl)
        return bad(h, "both Transfer-Encoding and Content-Length");
    h->keep_alive = h->minor_version == 1 && !close;
    return 0;
}

int httpc_parse_response(const char *buf, size_t len, size_t max_head, httpc_head_t *head)
{
    head->minor_version = 0;
    head->status = 0;
    head->reason = NULL;
    head->reason_len = 0;
    head->num_headers = 0;
    head->content_length = -1;
    head->chunked = false;
    head->keep_alive = false;
    head->retry_after = -1;
    head->content_type = NULL;
    head->content_type_len = 0;
    head->error = NULL;

    /* Only the first max_head bytes may hold the head. */
    size_t lim = len < max_head ? len : max_head;
    int more = len < max_head ? -EAGAIN : -EMSGSIZE;
    if (more == -EMSGSIZE)
        head->error = "response head too large"; /* kept only if that is the outcome */

    /* Refuse another protocol from the first bytes on, not after 16 KB of it. */
    size_t pfx = lim < 7 ? lim : 7;
    if (memcmp(buf, "HTTP/1.", pfx) != 0)
        return bad(head, "not an HTTP/1.x response");

    long eol = line_end(buf, lim, 0);
    if (eol == -EAGAIN)
        return more;
    if (eol < 0)
        return bad(head, "bare CR or LF in status line");
    int r = parse_status_line(buf, (size_t)eol, head);
    if (r < 0)
        return r;

    size_t pos = (size_t)eol + 2;
    for (;;) {
        eol = line_end(buf, lim, pos);
        if (eol == -EAGAIN)
            return more;
        if (eol < 0)
            return bad(head, "bare CR or LF in header");
        if ((size_t)eol == pos)
            break; /* the empty line ending the head */
        r = parse_field(buf, pos, (size_t)eol, head);
        if (r < 0)
            return r;
        pos = (size_t)eol + 2;
    }
    head->error = NULL;
    r = derive(head);
    if (r < 0)
        return r;
    return (int)(pos + 2);
}
