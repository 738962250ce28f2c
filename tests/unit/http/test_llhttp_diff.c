/* SPDX-License-Identifier: MIT */
/*
 * test_llhttp_diff.c - differential test of our request-head parser against
 * llhttp, as a second opinion.
 *
 * Every file of the given corpus directories is parsed as one request head by
 * both parsers; they must agree on accept, reject or incomplete, and when both
 * accept, on the head length, the version, Content-Length, chunked and
 * keep-alive. llhttp is built in its strict mode (LLHTTP_STRICT_MODE=1) and
 * runs with every lenient flag off. Where our parser is
 * deliberately stricter (or llhttp is), the disagreement is allowed only for
 * the classes listed in `allowed` below, each with its reason.
 *
 * Usage: test_llhttp_diff DIR_OR_FILE... Exits 77 (skip) when llhttp's sources
 * were not available at build time.
 */
#include "http_parse.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_LLHTTP
#include "llhttp.h"

enum verdict { INCOMPLETE, ACCEPT, REJECT };

static const char *const verdict_name[] = {"incomplete", "accept", "reject"};

/*
 * The known disagreements. `ours` is our verdict, `theirs` the set of llhttp
 * verdicts allowed with it; `error` is our error string when we reject, or
 * NULL for any; `status` our status when nonzero; `llhttp_errno` llhttp's
 * error when it rejects, or -1 for any. We refuse a bad field line as soon as
 * it ends, so where we are stricter llhttp may accept the head or still be
 * waiting for its end (LAX).
 */
struct allowed {
    enum verdict ours;
    unsigned theirs;
    int status;
    const char *error;
    int llhttp_errno;
    /* A further condition on our result and the input, or NULL. */
    bool (*when)(const http_request_t *req, const char *buf, size_t len);
    const char *why;
};

#define LAX ((1u << ACCEPT) | (1u << INCOMPLETE))

/* Finds `name` (with its CRLF before and colon after) in buf; the offset after it, or 0. */
static size_t find_field(const char *buf, size_t len, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i + n <= len; i++) {
        if (http_token_eq(buf + i, n, name))
            return i + n;
    }
    return 0;
}

/* The input has a Transfer-Encoding field name, complete or not. */
static bool te_named(const http_request_t *req, const char *buf, size_t len)
{
    return find_field(buf, len, "\r\ntransfer-encoding:") != 0;
}

/* A Content-Length whose digits are followed by HTAB. */
static bool cl_trailing_htab(const http_request_t *req, const char *buf, size_t len)
{
    size_t i = find_field(buf, len, "\r\ncontent-length:");
    if (i == 0)
        return false;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t'))
        i++;
    while (i < len && buf[i] >= '0' && buf[i] <= '9')
        i++;
    return i < len && buf[i] == '\t';
}

/* A Transfer-Encoding field line whose value is followed by HTAB. */
static bool te_trailing_htab(const http_request_t *req, const char *buf, size_t len)
{
    for (size_t i = 0; i < req->num_headers; i++) {
        const http_header_t *h = &req->headers[i];
        /* The line goes on to CRLF, so the byte after the value is inside it. */
        if (http_token_eq(h->name, h->name_len, "transfer-encoding") &&
            h->value[h->value_len] == '\t')
            return true;
    }
    return false;
}

static const struct allowed allowed[] = {
    /* Our limits; llhttp has none of its own (node applies them outside it). */
    {REJECT, LAX, 413, NULL, -1, NULL, "body limit"},
    {REJECT, LAX, 414, NULL, -1, NULL, "target length limit"},
    {REJECT, LAX, 431, NULL, -1, NULL, "head size or field count limit"},
    /* RFC 9112 3.2: a server MUST refuse 1.1 requests without exactly one Host. */
    {REJECT, LAX, 400, "missing Host", -1, NULL, "llhttp does not check Host"},
    {REJECT, LAX, 400, "duplicate Host", -1, NULL, "llhttp does not check Host"},
    {REJECT, LAX, 400, "invalid Host", -1, NULL, "llhttp does not check Host"},
    /* RFC 9112 6.1: Transfer-Encoding in a 1.0 request cannot be trusted (smuggling). */
    {REJECT, LAX, 400, "Transfer-Encoding in HTTP/1.0", -1, NULL, "1.0 has no transfer codings"},
    /* We decode only chunked; RFC 9112 6.1 says 501 for codings a server does not know. */
    {REJECT, LAX, 501, "unsupported transfer coding", -1, NULL, "only chunked is implemented"},
    /* Two Transfer-Encoding fields are one list: "chunked" then "chunked" applies it twice. */
    {REJECT, LAX, 400, "chunked is not the final transfer coding", -1, NULL,
     "combined Transfer-Encoding fields"},
    /* More than 18 digits is refused before any arithmetic can overflow. */
    {REJECT, LAX, 400, "Content-Length too long", -1, NULL, "overflow guard"},
    /* Only HTTP/1.0 and 1.1 are spoken here; llhttp also takes 0.9 and 2.0 heads. */
    {REJECT, LAX, 505, NULL, -1, NULL, "HTTP/1.x only"},
    /* RFC 9112 2.2 asks to ignore "at least one" empty line; we stop after a few. */
    {REJECT, LAX, 400, "too many empty lines before the request-line", -1, NULL,
     "empty lines before the request-line are capped"},
    /*
     * RFC 9112 2.2 lets a recipient accept a bare LF as a line end and treat a
     * bare CR as whitespace; llhttp does. We refuse both: a proxy in front that
     * splits lines differently is how requests get smuggled.
     */
    {REJECT, LAX, 400, "bare LF", -1, NULL, "CRLF only"},
    {REJECT, LAX, 400, "bare CR", -1, NULL, "CRLF only"},
    /* RFC 9112 5.2: a server may refuse obs-fold with 400, and we do. */
    {REJECT, LAX, 400, "obs-fold", -1, NULL, "no line folding"},
    /* RFC 9112 3: the request-line has single SP separators; llhttp skips extra ones. */
    {REJECT, LAX, 400, "extra whitespace in the request-line", -1, NULL, "single SP only"},
    /* RFC 9110 5.1: field-name = token, at least one character; llhttp takes ": x". */
    {REJECT, LAX, 400, "empty field name", -1, NULL, "field names are tokens"},
    /*
     * A Transfer-Encoding that is empty or not a list of tokens has no final
     * chunked coding, so RFC 9112 6.3 says 400; llhttp lets these through as
     * if the field were absent.
     */
    {REJECT, LAX, 400, "empty Transfer-Encoding", -1, NULL, "framing must be clear"},
    {REJECT, LAX, 400, "malformed Transfer-Encoding", -1, NULL, "framing must be clear"},
    /* authority-form is for CONNECT to a proxy, which this server is not. */
    {REJECT, LAX, 400, "unsupported request-target form", -1, NULL, "no authority-form"},
    /* RFC 9110 4.2.1: an http URI with an empty host is invalid and MUST be refused. */
    {REJECT, LAX, 400, "absolute-form without a host", -1, NULL, "hosts are not empty"},
    /*
     * RFC 3986 3.2: the port is digits and the host a reg-name or IP literal;
     * userinfo is an error for http URIs (RFC 9110 4.2.4). llhttp takes any
     * of its "server" characters there.
     */
    {REJECT, LAX, 400, "invalid authority in absolute-form", -1, NULL, "authority syntax"},
    /* RFC 9112 3.2.4: asterisk-form is exactly "*"; llhttp takes any "*..." target. */
    {REJECT, LAX, 400, "malformed asterisk-form", -1, NULL, "asterisk-form is one byte"},
    /* llhttp takes "CONNECT" CRLF as a request with an empty target. */
    {REJECT, LAX, 400, "missing request-target", -1, NULL, "targets are not empty"},
    /* A request-line without a version is HTTP/0.9, which llhttp still parses. */
    {REJECT, LAX, 400, "missing HTTP-version", -1, NULL, "no HTTP/0.9"},
    /* Both refuse these, llhttp only further on. */
    {REJECT, 1u << INCOMPLETE, 400, "Content-Length with Transfer-Encoding", -1, NULL,
     "refused at the field name"},
    {REJECT, 1u << INCOMPLETE, 400, "empty Content-Length", -1, NULL, "refused at the CR"},
    /* llhttp also knows protocol names other than HTTP (RTSP, ICE) and waits for more. */
    {REJECT, 1u << INCOMPLETE, 400, "malformed HTTP-version", -1, NULL, "HTTP only"},
    /*
     * A coding after chunked (also in a second field): llhttp refuses it at
     * once, we when the field line ends, both with 400.
     */
    {INCOMPLETE, 1u << REJECT, 0, NULL, HPE_INVALID_TRANSFER_ENCODING, te_named,
     "refused at the end of the field line"},
    /* llhttp knows a fixed list of methods; RFC 9110 9.1 allows any token. */
    {ACCEPT, 1u << REJECT, 0, NULL, HPE_INVALID_METHOD, NULL, "extension methods are tokens"},
    {INCOMPLETE, 1u << REJECT, 0, NULL, HPE_INVALID_METHOD, NULL, "extension methods are tokens"},
    /*
     * RFC 9110 5.5: OWS around a field value is not part of it, so
     * "chunked<HTAB>" is chunked and "5<HTAB>" is 5. llhttp trims SP but not
     * HTAB there.
     */
    {ACCEPT, 1u << REJECT, 0, NULL, HPE_INVALID_TRANSFER_ENCODING, te_trailing_htab,
     "HTAB after a value is OWS"},
    {ACCEPT, 1u << REJECT, 0, NULL, HPE_INVALID_CONTENT_LENGTH, cl_trailing_htab,
     "HTAB after a value is OWS"},
    {INCOMPLETE, 1u << REJECT, 0, NULL, HPE_INVALID_CONTENT_LENGTH, cl_trailing_htab,
     "HTAB after a value is OWS"},
};

/* What llhttp knew when the head ended (its flags are reset after the message). */
struct llhttp_head {
    int done;               /* on_headers_complete ran */
    int minor;              /* HTTP minor version */
    bool keep_alive;        /* llhttp_should_keep_alive() */
    bool chunked;           /* F_CHUNKED */
    int64_t content_length; /* -1 without F_CONTENT_LENGTH */
};

static int on_headers_complete(llhttp_t *p)
{
    struct llhttp_head *h = p->data;
    h->done = 1;
    h->minor = p->http_minor;
    h->keep_alive = llhttp_should_keep_alive(p) != 0;
    h->chunked = (p->flags & F_CHUNKED) != 0;
    h->content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1;
    return HPE_PAUSED;
}

static enum verdict run_llhttp(const char *buf, size_t len, llhttp_t *p, struct llhttp_head *h,
                               int *err, size_t *head)
{
    static llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    settings.on_headers_complete = on_headers_complete;
    memset(h, 0, sizeof(*h));
    llhttp_init(p, HTTP_REQUEST, &settings);
    p->data = h;
    llhttp_set_lenient_headers(p, 0);
    llhttp_set_lenient_chunked_length(p, 0);
    llhttp_set_lenient_keep_alive(p, 0);
    llhttp_set_lenient_transfer_encoding(p, 0);
    *err = llhttp_execute(p, buf, len);
    if (!h->done)
        return *err == HPE_OK ? INCOMPLETE : REJECT;
    /*
     * llhttp checks the framing (Transfer-Encoding without a final chunked)
     * just after on_headers_complete: resume with no input to run that check
     * and nothing of the body.
     */
    const char *pos = llhttp_get_error_pos(p);
    *head = (size_t)(pos - buf);
    llhttp_resume(p);
    *err = llhttp_execute(p, pos, 0);
    /* CONNECT and Upgrade end llhttp's HTTP parsing there: the head was fine. */
    return *err == HPE_OK || *err == HPE_PAUSED_UPGRADE ? ACCEPT : REJECT;
}

static void check(const char *path, const char *buf, size_t len)
{
    static const http_limits_t lim = HTTP_LIMITS_DEFAULT;
    http_request_t req;
    llhttp_t p;
    struct llhttp_head h;
    int err = 0;
    size_t head = 0;

    int r = http_parse_request(buf, len, &lim, &req);
    enum verdict ours = r > 0 ? ACCEPT : r == -EAGAIN ? INCOMPLETE : REJECT;
    enum verdict theirs = run_llhttp(buf, len, &p, &h, &err, &head);

    if (ours == ACCEPT && theirs == ACCEPT) {
        /*
         * We close when any Connection option is "close", also in 1.0 next to
         * keep-alive and with trailing HTAB, where llhttp keeps the connection.
         * Closing is always safe, so only the other way round is a failure.
         */
        bool ka_ok = req.keep_alive == h.keep_alive || (!req.keep_alive && h.keep_alive);
        if ((size_t)r != head || req.minor_version != h.minor || !ka_ok ||
            req.chunked != h.chunked || req.content_length != h.content_length) {
            tap_ok(false,
                   "%s: both accept but differ: head %d/%zu, minor %d/%d, "
                   "keep-alive %d/%d, chunked %d/%d, content-length %lld/%lld",
                   path, r, head, req.minor_version, h.minor, req.keep_alive, h.keep_alive,
                   req.chunked, h.chunked, (long long)req.content_length,
                   (long long)h.content_length);
            return;
        }
        tap_ok(true, "%s: both accept", path);
        return;
    }
    if (ours == theirs) {
        tap_ok(true, "%s: both %s", path, verdict_name[ours]);
        return;
    }
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        const struct allowed *a = &allowed[i];
        if (a->ours != ours || !(a->theirs & (1u << theirs)))
            continue;
        if (a->status != 0 && a->status != req.status)
            continue;
        if (a->error != NULL && strcmp(a->error, req.error) != 0)
            continue;
        if (a->llhttp_errno != -1 && a->llhttp_errno != err)
            continue;
        if (a->when != NULL && !a->when(&req, buf, len))
            continue;
        tap_ok(true, "%s: we %s, llhttp %s: allowed, %s", path, verdict_name[ours],
               verdict_name[theirs], a->why);
        return;
    }
    tap_ok(false, "%s: we %s (%d %s), llhttp %s (%s: %s)", path, verdict_name[ours], req.status,
           req.error ? req.error : "", verdict_name[theirs], llhttp_errno_name((llhttp_errno_t)err),
           llhttp_get_error_reason(&p) ? llhttp_get_error_reason(&p) : "");
}

int main(int argc, char **argv) { return tap_corpus(argc, argv, check); }

#else

int main(void) { return tap_skip_all("llhttp sources (node-llhttp) were not found at build time"); }

#endif
