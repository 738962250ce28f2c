/* SPDX-License-Identifier: MIT */
/*
 * log.c - the event logger: one line per event on stderr, JSON or text.
 *
 * Each line is built in a stack buffer (no allocation), scrubbed of the
 * registered secrets and written with a single write(2), so that the lines of
 * several worker processes sharing stderr never interleave (4 KiB is also
 * PIPE_BUF, the size up to which a write to a pipe is atomic).
 */
#include "log.h"

#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Longest line written, newline included. */
#define LOG_LINE_MAX 4096
/* Secrets log_redact() keeps. */
#define LOG_REDACT_MAX 8

static const char log_redacted[] = "[redacted]";

static log_level_t log_level = LOG_INFO;
static log_format_t log_format = LOG_FORMAT_JSON;

/* Registered secrets, longest first, so that a secret that contains another
 * one is replaced whole rather than leaving its remainder in the line. */
static char *log_secrets[LOG_REDACT_MAX];
static size_t log_secret_lens[LOG_REDACT_MAX];
static unsigned log_nsecrets;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void log_setup(log_level_t level, log_format_t format)
{
    log_level = level;
    log_format = format;
}

int log_parse_level(const char *s, log_level_t *out)
{
    for (unsigned i = 0; i < ARRAY_SIZE(log_level_names); i++) {
        if (s != NULL && strcasecmp(s, log_level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    return -EINVAL;
}

int log_parse_format(const char *s, log_format_t *out)
{
    if (s != NULL && strcasecmp(s, "json") == 0) {
        *out = LOG_FORMAT_JSON;
        return 0;
    }
    if (s != NULL && strcasecmp(s, "text") == 0) {
        *out = LOG_FORMAT_TEXT;
        return 0;
    }
    return -EINVAL;
}

void log_redact(const char *secret)
{
    if (secret == NULL || secret[0] == '\0' || log_nsecrets == LOG_REDACT_MAX)
        return;
    size_t len = strlen(secret);
    for (unsigned i = 0; i < log_nsecrets; i++) {
        if (log_secret_lens[i] == len && memcmp(log_secrets[i], secret, len) == 0)
            return;
    }
    char *copy = xstrdup(secret);
    unsigned at = log_nsecrets;
    while (at > 0 && log_secret_lens[at - 1] < len) {
        log_secrets[at] = log_secrets[at - 1];
        log_secret_lens[at] = log_secret_lens[at - 1];
        at--;
    }
    log_secrets[at] = copy;
    log_secret_lens[at] = len;
    log_nsecrets++;
}

int log_enabled(log_level_t level)
{
    return level >= log_level && level < LOG_OFF && log_level < LOG_OFF;
}

/*
 * A message cut by vsnprintf may end in the first bytes of a secret whose
 * rest fell off; scrubbing cannot match such a stump, so drop it. Returns the
 * new length.
 */
static size_t log_trim_stump(const char *s, size_t len)
{
    size_t cut = 0;
    for (unsigned i = 0; i < log_nsecrets; i++) {
        size_t k = log_secret_lens[i] - 1;
        if (k > len)
            k = len;
        for (; k > cut; k--) {
            if (memcmp(s + len - k, log_secrets[i], k) == 0) {
                cut = k;
                break;
            }
        }
    }
    return len - cut;
}

/* Copies src[0..len) to dst with every secret replaced; stops at cap. Returns the length. */
static size_t log_scrub(const char *src, size_t len, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o < cap;) {
        size_t hit = 0;
        for (unsigned s = 0; s < log_nsecrets; s++) {
            size_t sl = log_secret_lens[s];
            if (sl <= len - i && memcmp(src + i, log_secrets[s], sl) == 0) {
                hit = sl;
                break;
            }
        }
        if (hit) {
            size_t n = sizeof(log_redacted) - 1;
            if (n > cap - o)
                n = cap - o;
            memcpy(dst + o, log_redacted, n);
            o += n;
            i += hit;
        } else {
            dst[o++] = src[i++];
        }
    }
    return o;
}

/*
 * Appends src[0..len) to dst[*o..cap) escaped for a JSON string (json) or for
 * a one-line text log (control characters shown as escapes, so that an event
 * stays on one line). Stops before a piece that would not fit whole, so the
 * output is always well formed.
 */
static void log_escape(const char *src, size_t len, char *dst, size_t *o, size_t cap, int json)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)src;
    for (size_t i = 0; i < len;) {
        char tmp[8];
        const char *piece = tmp;
        size_t plen, used = 1;
        uint32_t cp;
        int seq;
        unsigned char c = s[i];
        if (c == '"' && json) {
            piece = "\\\"";
            plen = 2;
        } else if (c == '\\' && json) {
            piece = "\\\\";
            plen = 2;
        } else if (c == '\n' && !json) {
            piece = "\\n";
            plen = 2;
        } else if (c < 0x20 || (c == 0x7f && !json)) {
            if (json) {
                memcpy(tmp, "\\u00", 4);
                tmp[4] = hex[c >> 4];
                tmp[5] = hex[c & 15];
                plen = 6;
            } else {
                memcpy(tmp, "\\x", 2);
                tmp[2] = hex[c >> 4];
                tmp[3] = hex[c & 15];
                plen = 4;
            }
        } else if (c < 0x80) {
            piece = (const char *)s + i;
            plen = 1;
        } else if ((seq = core_utf8_decode((const char *)s + i, len - i, &cp)) > 0) {
            piece = (const char *)s + i;
            plen = used = (size_t)seq;
        } else {
            /*
             * Invalid UTF-8 would make the whole line unparsable: U+FFFD
             * instead, one per maximal subpart.
             */
            used = (size_t)-seq;
            if (json) {
                piece = "\\ufffd";
                plen = 6;
            } else {
                piece = "\xef\xbf\xbd";
                plen = 3;
            }
        }
        if (plen > cap - *o)
            return;
        memcpy(dst + *o, piece, plen);
        *o += plen;
        i += used;
    }
}

/* Appends a NUL-terminated string that needs no escaping, cut at cap. */
static void log_put(char *dst, size_t *o, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n > cap - *o)
        n = cap - *o;
    memcpy(dst + *o, s, n);
    *o += n;
}

static void log_write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* Nowhere left to report a broken stderr. */
        }
        buf += n;
        len -= (size_t)n;
    }
}

void log_vmsg(log_level_t level, const char *event, const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;
    int saved_errno = errno;

    char ts[32];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03ldZ", now.tv_nsec / 1000000);

    /* The raw message is never longer than a line, so one buffer of that size suffices. */
    char raw[LOG_LINE_MAX];
    int rn = vsnprintf(raw, sizeof(raw), fmt ? fmt : "", ap);
    size_t rlen = rn < 0 ? 0 : (size_t)rn;
    if (rlen >= sizeof(raw))
        rlen = log_trim_stump(raw, sizeof(raw) - 1);
    char msg[LOG_LINE_MAX];
    size_t mlen = log_scrub(raw, rlen, msg, sizeof(msg));
    explicit_bzero(raw, sizeof(raw));

    char ev[128];
    const char *e = event ? event : "";
    size_t elen = log_scrub(e, strlen(e), ev, sizeof(ev));

    const char *lname = log_level_names[level];
    char line[LOG_LINE_MAX];
    size_t o = 0;
    if (log_format == LOG_FORMAT_TEXT) {
        /* Room is kept for the newline. */
        size_t cap = sizeof(line) - 1;
        log_put(line, &o, cap, ts);
        log_put(line, &o, cap, " ");
        log_put(line, &o, cap, lname);
        log_put(line, &o, cap, " ");
        log_escape(ev, elen, line, &o, cap, 0);
        log_put(line, &o, cap, ": ");
        log_escape(msg, mlen, line, &o, cap, 0);
    } else {
        char head[64];
        snprintf(head, sizeof(head), "\",\"level\":\"%s\",\"pid\":%ld,\"event\":\"", lname,
                 (long)getpid());
        /* The tail "\"}" and the newline always fit: the fields before the
         * message are bounded (event at 127 bytes, each at most 6 escaped). */
        static const char tail[] = "\"}";
        size_t cap = sizeof(line) - (sizeof(tail) - 1) - 1;
        log_put(line, &o, cap, "{\"ts\":\"");
        log_put(line, &o, cap, ts);
        log_put(line, &o, cap, head);
        log_escape(ev, elen, line, &o, cap, 1);
        log_put(line, &o, cap, "\",\"msg\":\"");
        log_escape(msg, mlen, line, &o, cap, 1);
        memcpy(line + o, tail, sizeof(tail) - 1);
        o += sizeof(tail) - 1;
    }
    line[o++] = '\n';
    log_write_all(line, o);
    explicit_bzero(msg, sizeof(msg));
    errno = saved_errno;
}

void log_msg(log_level_t level, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, event, fmt, ap);
    va_end(ap);
}
