/* SPDX-License-Identifier: MIT */
/*
 * test_llhttp_diff.c - differential test of our request-head parser against
 * llhttp, as a second opinion.
 *
 * Every file of the given corpus directories is parsed as one request head by
 * both parsers; they must agree on accept, reject or incomplete, and when both
 * accept, on the head length, the version, Content-Length, chunked and
 * keep-alive. llhttp runs with every lenient flag off. Where our parser is
 * deliberately stricter (or llhttp is), the disagreement is allowed only for
 * the classes listed in `allowed` below, each with its reason.
 *
 * Usage: test_llhttp_diff DIR_OR_FILE... Exits 77 (skip) when llhttp's sources
 * were not available at build time.
 */
#include "http.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef HAVE_LLHTTP
#include "llhttp.h"

enum verdict { INCOMPLETE, ACCEPT, REJECT };

static const char *const verdict_name[] = {"incomplete", "accept", "reject"};

/*
 * The known disagreements. `ours` is our verdict, `theirs` llhttp's; `error`
 * is our error string when we reject, or NULL for any; `status` our status
 * when nonzero; `llhttp_errno` llhttp's error when it rejects, or -1 for any.
 */
struct allowed {
    enum verdict ours, theirs;
    int status;
    const char *error;
    int llhttp_errno;
    const char *why;
};

static const struct allowed allowed[] = {
    /* Our limits; llhttp has none of its own (node applies them outside it). */
    {REJECT, ACCEPT, 413, NULL, -1, "body limit"},
    {REJECT, ACCEPT, 414, NULL, -1, "target length limit"},
    {REJECT, ACCEPT, 431, NULL, -1, "head size or field count limit"},
    {REJECT, INCOMPLETE, 414, NULL, -1, "target length limit, seen early"},
    {REJECT, INCOMPLETE, 431, NULL, -1, "head size limit, seen early"},
    /* RFC 9112 3.2: a server MUST refuse 1.1 requests without exactly one Host. */
    {REJECT, ACCEPT, 400, "missing Host", -1, "llhttp does not check Host"},
    {REJECT, ACCEPT, 400, "duplicate Host", -1, "llhttp does not check Host"},
    /* RFC 9112 6.1: Transfer-Encoding in a 1.0 request cannot be trusted (smuggling). */
    {REJECT, ACCEPT, 400, "Transfer-Encoding in HTTP/1.0", -1, "1.0 has no transfer codings"},
    /* We decode only chunked; RFC 9112 6.1 says 501 for codings a server does not know. */
    {REJECT, ACCEPT, 501, "unsupported transfer coding", -1, "only chunked is implemented"},
    /* Two Transfer-Encoding fields are one list: "chunked" then "chunked" applies it twice. */
    {REJECT, ACCEPT, 400, "chunked is not the final transfer coding", -1,
     "combined Transfer-Encoding fields"},
    /* More than 18 digits is refused before any arithmetic can overflow. */
    {REJECT, ACCEPT, 400, "Content-Length too long", -1, "overflow guard"},
    /* Only HTTP/1.0 and 1.1 are spoken here; llhttp also takes 0.9 and 2.0 heads. */
    {REJECT, ACCEPT, 505, NULL, -1, "HTTP/1.x only"},
    /* RFC 9112 2.2 asks to ignore "at least one" empty line; we stop after a few. */
    {REJECT, ACCEPT, 400, "too many empty lines before the request-line", -1,
     "empty lines before the request-line are capped"},
    {REJECT, INCOMPLETE, 400, "too many empty lines before the request-line", -1,
     "empty lines before the request-line are capped"},
    /*
     * RFC 9112 2.2 lets a recipient accept a bare LF as a line end and treat a
     * bare CR as whitespace; llhttp does. We refuse both: a proxy in front that
     * splits lines differently is how requests get smuggled.
     */
    {REJECT, ACCEPT, 400, "bare LF", -1, "CRLF only"},
    {REJECT, ACCEPT, 400, "bare CR", -1, "CRLF only"},
    /* RFC 9112 5.2: a server may refuse obs-fold with 400, and we do. */
    {REJECT, ACCEPT, 400, "obs-fold", -1, "no line folding"},
    /* RFC 9112 3: the request-line has single SP separators; llhttp skips extra ones. */
    {REJECT, ACCEPT, 400, "extra whitespace in the request-line", -1, "single SP only"},
    /* RFC 9110 5.1: field-name = token, at least one character; llhttp takes ": x". */
    {REJECT, ACCEPT, 400, "empty field name", -1, "field names are tokens"},
    /*
     * A Transfer-Encoding that is empty or not a list of tokens has no final
     * chunked coding, so RFC 9112 6.3 says 400; llhttp lets these through as
     * if the field were absent.
     */
    {REJECT, ACCEPT, 400, "empty Transfer-Encoding", -1, "framing must be clear"},
    {REJECT, ACCEPT, 400, "malformed Transfer-Encoding", -1, "framing must be clear"},
    /* authority-form is for CONNECT to a proxy, which this server is not. */
    {REJECT, ACCEPT, 400, "unsupported request-target form", -1, "no authority-form"},
    /* RFC 9112 3.2.4: asterisk-form is exactly "*"; llhttp takes any "*..." target. */
    {REJECT, ACCEPT, 400, "malformed asterisk-form", -1, "asterisk-form is one byte"},
    /* A request-line without a version is HTTP/0.9, which llhttp still parses. */
    {REJECT, ACCEPT, 400, "missing HTTP-version", -1, "no HTTP/0.9"},
    /* llhttp knows a fixed list of methods; RFC 9110 9.1 allows any token. */
    {ACCEPT, REJECT, 0, NULL, HPE_INVALID_METHOD, "extension methods are tokens"},
    {INCOMPLETE, REJECT, 0, NULL, HPE_INVALID_METHOD, "extension methods are tokens"},
};

static int n_run, n_failed;

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

    n_run++;
    if (ours == ACCEPT && theirs == ACCEPT) {
        /*
         * We close when any Connection option is "close", also in 1.0 next to
         * keep-alive and with trailing HTAB, where llhttp keeps the connection.
         * Closing is always safe, so only the other way round is a failure.
         */
        bool ka_ok = req.keep_alive == h.keep_alive || (!req.keep_alive && h.keep_alive);
        if ((size_t)r != head || req.minor_version != h.minor || !ka_ok ||
            req.chunked != h.chunked || req.content_length != h.content_length) {
            printf("not ok %d - %s: both accept but differ: head %d/%zu, minor %d/%d, "
                   "keep-alive %d/%d, chunked %d/%d, content-length %lld/%lld\n",
                   n_run, path, r, head, req.minor_version, h.minor, req.keep_alive, h.keep_alive,
                   req.chunked, h.chunked, (long long)req.content_length,
                   (long long)h.content_length);
            n_failed++;
            return;
        }
        printf("ok %d - %s: both accept\n", n_run, path);
        return;
    }
    if (ours == theirs) {
        printf("ok %d - %s: both %s\n", n_run, path, verdict_name[ours]);
        return;
    }
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        const struct allowed *a = &allowed[i];
        if (a->ours != ours || a->theirs != theirs)
            continue;
        if (a->status != 0 && a->status != req.status)
            continue;
        if (a->error != NULL && strcmp(a->error, req.error) != 0)
            continue;
        if (a->llhttp_errno != -1 && a->llhttp_errno != err)
            continue;
        printf("ok %d - %s: we %s, llhttp %s: allowed, %s\n", n_run, path, verdict_name[ours],
               verdict_name[theirs], a->why);
        return;
    }
    printf("not ok %d - %s: we %s (%d %s), llhttp %s (%s: %s)\n", n_run, path, verdict_name[ours],
           req.status, req.error ? req.error : "", verdict_name[theirs],
           llhttp_errno_name((llhttp_errno_t)err),
           llhttp_get_error_reason(&p) ? llhttp_get_error_reason(&p) : "");
    n_failed++;
}

static void run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        printf("not ok %d - %s: cannot open\n", ++n_run, path);
        n_failed++;
        return;
    }
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    check(path, buf, len);
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        printf("not ok %d - %s: missing\n", ++n_run, path);
        n_failed++;
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        run_file(path);
        return;
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        printf("not ok %d - %s: cannot open\n", ++n_run, path);
        n_failed++;
        return;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof(*names));
            if (names == NULL)
                abort();
        }
        size_t l = strlen(path) + strlen(e->d_name) + 2;
        names[count] = malloc(l);
        if (names[count] == NULL)
            abort();
        snprintf(names[count++], l, "%s/%s", path, e->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof(*names), cmp);
    for (size_t i = 0; i < count; i++) {
        run_path(names[i]);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        run_path(argv[i]);
    if (n_run == 0) {
        printf("not ok 1 - no corpus files\n");
        n_run = n_failed = 1;
    }
    printf("1..%d\n", n_run);
    return n_failed ? 1 : 0;
}

#else

int main(void)
{
    printf("1..0 # SKIP llhttp sources (node-llhttp) were not found at build time\n");
    return 77;
}

#endif
