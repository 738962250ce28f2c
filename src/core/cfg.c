/* SPDX-License-Identifier: MIT */
/*
 * cfg.c - configuration from the environment: defaults, NAME_FILE secrets,
 * validation with one line per problem, and the ENVIRONMENT help text.
 *
 * Problem lines quote the bad value of plain settings so that the operator
 * sees what was read, but never print a secret: not the token, the webhook
 * secret or DATABASE_URL (which may hold a password), not even in part.
 */
#include "cfg.h"
#include "core.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest secret file read; real values are well under 1 KiB. */
#define CFG_SECRET_FILE_MAX (64 * 1024)
/* Longest TGRING_WEBHOOK_PATH. */
#define CFG_PATH_MAX 256
/* Longest part of a bad value quoted in a problem line. */
#define CFG_QUOTE_MAX 200

#define CFG_DEFAULT_API_URL "https://api.telegram.org"
#define CFG_DEFAULT_LISTEN "127.0.0.1:8080"
#define CFG_DEFAULT_WEBHOOK_PATH "/webhook/telegram"
/*
 * Burst 1, so that no window of the period's length ever holds more than n
 * messages: Telegram's limits are never exceeded.
 */
#define CFG_DEFAULT_RATE_GLOBAL "30/s,burst=1"
#define CFG_DEFAULT_RATE_CHAT "1/s,burst=1"
#define CFG_DEFAULT_RATE_GROUP "20/min,burst=1"
#define CFG_DEFAULT_TIMEZONE "UTC"
/* Where the IANA time zone files are; BOT_TIMEZONE is checked there when it exists. */
#define CFG_ZONEINFO "/usr/share/zoneinfo"
/* Largest n and burst of a rate spec. */
#define CFG_RATE_MAX 1000000u

#define CFG_STR_(x) #x
#define CFG_STR(x) CFG_STR_(x)

/* A TGRING_ number: where it goes in cfg_t, its default and its range. */
typedef struct cfg_num {
    const char *name;
    size_t offset; /* offsetof the field in cfg_t */
    int is_u64;    /* field is uint64_t, else unsigned */
    uint64_t def, min, max;
} cfg_num_t;

static const cfg_num_t cfg_nums[] = {
    {"TGRING_WORKERS", offsetof(cfg_t, workers), 0, 1, 1, 64},
    {"TGRING_MAX_BODY", offsetof(cfg_t, max_body), 1, 1048576, 1024, 64 * 1024 * 1024},
    {"TGRING_MAX_CONNECTIONS", offsetof(cfg_t, max_connections), 0, 16384, 1, 1000000},
    {"TGRING_QUEUE_MAX", offsetof(cfg_t, queue_max), 0, 4096, 1, 1000000},
    {"TGRING_ACK_TIMEOUT_MS", offsetof(cfg_t, ack_timeout_ms), 0, 5000, 1, 60000},
    {"TGRING_HEADER_TIMEOUT_MS", offsetof(cfg_t, header_timeout_ms), 0, 10000, 1, 600000},
    {"TGRING_BODY_TIMEOUT_MS", offsetof(cfg_t, body_timeout_ms), 0, 30000, 1, 600000},
    {"TGRING_IDLE_TIMEOUT_MS", offsetof(cfg_t, idle_timeout_ms), 0, 75000, 1, 3600000},
    {"TGRING_RESPONSE_TIMEOUT_MS", offsetof(cfg_t, response_timeout_ms), 0, 10000, 1, 600000},
    {"TGRING_SHUTDOWN_TIMEOUT_MS", offsetof(cfg_t, shutdown_timeout_ms), 0, 10000, 0, 600000},
    {"TGRING_DB_CONNECTIONS", offsetof(cfg_t, db_connections), 0, 2, 1, 16},
    {"TELEGRAM_WEBHOOK_MAX_CONNECTIONS", offsetof(cfg_t, webhook_max_connections), 0, 40, 1, 100},
    {"TGRING_API_CONNECTIONS", offsetof(cfg_t, api_connections), 0, 8, 1, 64},
    {"TGRING_SEND_ATTEMPTS", offsetof(cfg_t, send_attempts), 0, 8, 1, 100},
    {"TGRING_OUTBOX_LEASE_MS", offsetof(cfg_t, outbox_lease_ms), 0, 30000, 1000, 3600000},
    {"TGRING_RETENTION_HOURS", offsetof(cfg_t, retention_hours), 0, 48, 24, 87600},
    {"TGRING_PROCESS_LEASE_MS", offsetof(cfg_t, process_lease_ms), 0, 30000, 1000, 3600000},
    {"TGRING_HANDLER_TIMEOUT_MS", offsetof(cfg_t, handler_timeout_ms), 0, 10000, 100, 3600000},
    {"TGRING_PROCESS_POLL_MS", offsetof(cfg_t, process_poll_ms), 0, 250, 10, 60000},
    {"TGRING_PROCESS_CAPACITY", offsetof(cfg_t, process_capacity), 0, 256, 0, 65536},
    {"BOT_NOTIFY_HOUR", offsetof(cfg_t, bot_notify_hour), 0, 9, 0, 23},
};

/* One line of the help text. */
typedef struct cfg_help {
    const char *name;
    const char *def;
    const char *meaning;
} cfg_help_t;

static const cfg_help_t cfg_help[] = {
    {"TELEGRAM_BOT_TOKEN", "-", "bot token (secret), at most " CFG_STR(CFG_TOKEN_MAX) " chars"},
    {"TELEGRAM_WEBHOOK_SECRET", "-", "webhook secret, A-Za-z0-9_- (secret)"},
    {"DATABASE_URL", "-", "libpq URI or conninfo (secret)"},
    {"TELEGRAM_WEBHOOK_URL", "-", "public https:// URL of the webhook"},
    {"TELEGRAM_API_URL", CFG_DEFAULT_API_URL, "Bot API base URL"},
    {"TELEGRAM_CA_FILE", "system bundle", "PEM file of CAs for the Bot API"},
    {"TGRING_LISTEN", CFG_DEFAULT_LISTEN, "host:port, [v6]:port or :port"},
    {"TGRING_WEBHOOK_PATH", CFG_DEFAULT_WEBHOOK_PATH, "path Telegram POSTs updates to"},
    {"TGRING_WORKERS", "1", "worker processes, 1..64"},
    {"LOG_LEVEL", "info", "debug, info, warn or error"},
    {"LOG_FORMAT", "json", "json or text"},
    {"TGRING_MAX_BODY", "1048576", "largest update, bytes, 1024..64 Mi"},
    {"TGRING_MAX_CONNECTIONS", "16384", "per worker, lowered to fit ulimit -n"},
    {"TGRING_QUEUE_MAX", "4096", "updates waiting for a commit"},
    {"TGRING_MEMORY_LIMIT", "the cgroup's", "memory to fit in, e.g. 256m or 1g"},
    {"TGRING_ACK_TIMEOUT_MS", "5000", "wait for a commit, then 503; ms"},
    {"TGRING_HEADER_TIMEOUT_MS", "10000", "ms to receive a request head"},
    {"TGRING_BODY_TIMEOUT_MS", "30000", "ms to receive a request body"},
    {"TGRING_IDLE_TIMEOUT_MS", "75000", "ms a keep-alive connection idles"},
    {"TGRING_RESPONSE_TIMEOUT_MS", "10000", "ms a client may stall reading"},
    {"TGRING_SHUTDOWN_TIMEOUT_MS", "10000", "ms to finish work on stop"},
    {"TGRING_DB_CONNECTIONS", "2", "PostgreSQL connections per worker"},
    {"TELEGRAM_RATE_GLOBAL", CFG_DEFAULT_RATE_GLOBAL, "all chats: <n>/s|min[,burst=<b>]"},
    {"TELEGRAM_RATE_CHAT", CFG_DEFAULT_RATE_CHAT, "one chat, same form"},
    {"TELEGRAM_RATE_GROUP", CFG_DEFAULT_RATE_GROUP, "one group (chat id < 0), same form"},
    {"TGRING_API_CONNECTIONS", "8", "kept-alive Bot API connections"},
    {"TGRING_SEND_ATTEMPTS", "8", "sends of a row before it is failed"},
    {"TGRING_OUTBOX_LEASE_MS", "30000", "ms a claimed outbox row is held"},
    {"TGRING_RETENTION_HOURS", "48", "keep processed updates, hours, >= 24"},
    {"TGRING_PROCESS_LEASE_MS", "30000", "ms a claimed update is held"},
    {"TGRING_HANDLER_TIMEOUT_MS", "10000", "ms a handler may take (< lease)"},
    {"TGRING_PROCESS_POLL_MS", "250", "ms between polls for others' updates"},
    {"TGRING_PROCESS_CAPACITY", "256", "updates in progress (0: store only)"},
    {"TELEGRAM_WEBHOOK_MAX_CONNECTIONS", "40", "set-webhook max_connections, 1..100"},
    {"TELEGRAM_ALLOWED_UPDATES", "Telegram's", "set-webhook: comma list of types"},
    {"BOT_ADMIN_IDS", "-", "bot admins: comma list of user ids"},
    {"BOT_NOTIFY_HOUR", "9", "hour of the daily reminder, 0..23"},
    {"BOT_TIMEZONE", CFG_DEFAULT_TIMEZONE, "IANA zone of that hour and of days"},
    {"BOT_NOW", "the clock", "fixed RFC 3339 time: tests, demos only"},
};

/* State of one cfg_load() call. */
typedef struct cfg_ctx {
    cfg_t *cfg;
    FILE *err;
    int problems;
} cfg_ctx_t;

/* getenv() with the empty string read as unset. */
static const char *cfg_env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static void cfg_problem(cfg_ctx_t *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cfg_problem(cfg_ctx_t *c, const char *name, const char *fmt, ...)
{
    c->problems++;
    if (c->err == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(c->err, "tgring: config: %s: ", name);
    vfprintf(c->err, fmt, ap);
    fputc('\n', c->err);
    va_end(ap);
}

/* The secrets loaded so far, NULL where not (yet) set. */
#define CFG_SECRETS(c)                                                                             \
    {                                                                                              \
        (c)->cfg->bot_token, (c)->cfg->webhook_secret, (c)->cfg->database_url                      \
    }

/*
 * Replaces, in place, every occurrence of a loaded secret in the quoted value
 * in buf[0..cap) (NUL-terminated) by "[redacted]"; cuts the value short
 * ("...\"") where that does not fit.
 */
static void cfg_scrub(const cfg_ctx_t *c, char *buf, size_t cap)
{
    const char *secrets[] = CFG_SECRETS(c);
    static const char mark[] = "[redacted]";
    const size_t ml = sizeof(mark) - 1;
    for (size_t s = 0; s < ARRAY_SIZE(secrets); s++) {
        size_t sl = secrets[s] ? strlen(secrets[s]) : 0;
        char *from = buf, *at;
        if (sl == 0)
            continue;
        while ((at = strstr(from, secrets[s])) != NULL) {
            size_t tail = strlen(at + sl) + 1;
            size_t room = cap - (size_t)(at - buf);
            if (ml + tail > room) {
                if (room >= 5)
                    memcpy(at, "...\"", 5);
                else
                    *at = '\0';
                break;
            }
            memmove(at + ml, at + sl, tail);
            memcpy(at, mark, ml);
            from = at + ml; /* the mark itself is not searched again */
        }
    }
}

/*
 * Writes `v` as a double-quoted string to `out` buf[0..cap): control bytes,
 * quotes and backslashes escaped, long values cut with "...", and any secret
 * already loaded replaced by [redacted] (a webhook URL may embed the token),
 * in the value and again in what was written (an escape such as \x12 could
 * otherwise complete a secret from the bytes around it).
 */
static const char *cfg_quote(const cfg_ctx_t *c, const char *v, char *buf, size_t cap)
{
    const char *secrets[] = CFG_SECRETS(c);
    size_t o = 0, n = strlen(v);
    buf[o++] = '"';
    for (size_t i = 0; i < n;) {
        /* Room for the longest piece, "...", the closing quote and the NUL. */
        if (i >= CFG_QUOTE_MAX || o + 16 >= cap) {
            o += (size_t)snprintf(buf + o, cap - o, "...");
            break;
        }
        size_t hit = 0;
        for (size_t s = 0; s < ARRAY_SIZE(secrets); s++) {
            size_t sl = secrets[s] ? strlen(secrets[s]) : 0;
            if (sl > 0 && sl <= n - i && memcmp(v + i, secrets[s], sl) == 0) {
                hit = sl;
                break;
            }
        }
        if (hit) {
            o += (size_t)snprintf(buf + o, cap - o, "[redacted]");
            i += hit;
            continue;
        }
        unsigned char ch = (unsigned char)v[i++];
        if (ch == '"' || ch == '\\')
            o += (size_t)snprintf(buf + o, cap - o, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        else
            buf[o++] = (char)ch;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    cfg_scrub(c, buf, cap);
    return buf;
}

/*
 * Reads a secret file into a heap string, less one trailing "\n" or "\r\n".
 * Returns 0, -errno, -EFBIG (over the cap) or -EILSEQ (holds a NUL byte).
 */
static int cfg_read_secret_file(const char *path, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char *buf = xmalloc(CFG_SECRET_FILE_MAX + 1);
    size_t len = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, CFG_SECRET_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > CFG_SECRET_FILE_MAX) {
            rc = -EFBIG;
            goto fail;
        }
    }
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
    }
    if (memchr(buf, '\0', len) != NULL) {
        rc = -EILSEQ;
        goto fail;
    }
    buf[len] = '\0';
    close(fd);
    *out = buf;
    return 0;
fail:
    explicit_bzero(buf, CFG_SECRET_FILE_MAX + 1);
    free(buf);
    close(fd);
    return rc;
}

/*
 * Loads secret `name` from the environment or from the file named by
 * NAME_FILE into *out (NULL when neither is set). Returns 1 if the variable
 * was given at all, even if unusable, so a missing-variable line is not added.
 */
static int cfg_load_secret(cfg_ctx_t *c, const char *name, char **out)
{
    char file_name[64];
    snprintf(file_name, sizeof(file_name), "%s_FILE", name);
    const char *v = cfg_env(name);
    const char *path = cfg_env(file_name);
    if (v != NULL && path != NULL) {
        cfg_problem(c, name, "both %s and %s are set; use one", name, file_name);
        return 1;
    }
    if (v != NULL) {
        *out = xstrdup(v);
        return 1;
    }
    if (path == NULL)
        return 0;
    char q[CFG_QUOTE_MAX + 64];
    int rc = cfg_read_secret_file(path, out);
    if (rc == -EFBIG)
        cfg_problem(c, file_name, "file %s is larger than %d bytes",
                    cfg_quote(c, path, q, sizeof(q)), CFG_SECRET_FILE_MAX);
    else if (rc == -EILSEQ)
        cfg_problem(c, file_name, "file %s contains a NUL byte", cfg_quote(c, path, q, sizeof(q)));
    else if (rc < 0)
        cfg_problem(c, file_name, "cannot read %s: %s", cfg_quote(c, path, q, sizeof(q)),
                    strerror(-rc));
    return 1;
}

static int cfg_is_token_char(unsigned char ch)
{
    return isascii(ch) && (isalnum(ch) || ch == '_' || ch == '-');
}

/* ^[0-9]+:[A-Za-z0-9_-]{30,}$ */
static int cfg_token_valid(const char *s)
{
    size_t i = 0;
    while (s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == 0 || s[i] != ':')
        return 0;
    size_t start = ++i;
    while (cfg_is_token_char((unsigned char)s[i]))
        i++;
    return s[i] == '\0' && i - start >= 30;
}

static int cfg_secret_valid(const char *s)
{
    size_t i = 0;
    while (cfg_is_token_char((unsigned char)s[i]))
        i++;
    return s[i] == '\0' && i >= 1 && i <= 256;
}

/* Strict decimal (core_parse_u64()) over a NUL-terminated string. */
static int cfg_parse_u64(const char *s, uint64_t *out)
{
    return core_parse_u64(s, strlen(s), out);
}

int cfg_parse_listen(const char *s, struct sockaddr_storage *out, socklen_t *out_len)
{
    char host[64];
    const char *port_s;
    if (s == NULL)
        return -EINVAL;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        port_s = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        /* A bare IPv6 address would make the port ambiguous. */
        if (strchr(host, ':') != NULL)
            return -EINVAL;
        port_s = colon + 1;
    }
    uint64_t port;
    if (cfg_parse_u64(port_s, &port) < 0 || port == 0 || port > 65535)
        return -EINVAL;

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (s[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return -EINVAL;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        len = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        if (host[0] == '\0')
            a4->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (strcmp(host, "localhost") == 0)
            a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
            return -EINVAL;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        len = sizeof(*a4);
    }
    *out = ss;
    *out_len = len;
    return 0;
}

/* Reads 1..CFG_RATE_MAX in plain decimal at *p, advancing it. */
static int cfg_rate_number(const char **p, uint32_t *out)
{
    const char *s = *p;
    uint32_t v = 0;
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9') {
        /* Eight digits are enough to tell that a number is too big. */
        if (n == 8)
            return 0;
        v = v * 10 + (uint32_t)(s[n] - '0');
        n++;
    }
    if (n == 0 || v < 1 || v > CFG_RATE_MAX)
        return 0;
    *out = v;
    *p = s + n;
    return 1;
}

int cfg_parse_rate(const char *s, cfg_rate_t *out)
{
    cfg_rate_t r;
    if (s == NULL || !cfg_rate_number(&s, &r.n) || *s++ != '/')
        return -EINVAL;
    if (strncmp(s, "min", 3) == 0) {
        r.period_ms = 60000;
        s += 3;
    } else if (*s == 's') {
        r.period_ms = 1000;
        s++;
    } else {
        return -EINVAL;
    }
    r.burst = r.n;
    if (strncmp(s, ",burst=", 7) == 0) {
        s += 7;
        if (!cfg_rate_number(&s, &r.burst))
            return -EINVAL;
    }
    if (*s != '\0')
        return -EINVAL;
    *out = r;
    return 0;
}

/* Reads a TELEGRAM_RATE_* variable into *out, `def` when unset or bad. */
static void cfg_load_rate(cfg_ctx_t *c, const char *name, const char *def, cfg_rate_t *out)
{
    char q[CFG_QUOTE_MAX + 64];
    const char *v = cfg_env(name);
    if (v != NULL && cfg_parse_rate(v, out) == 0)
        return;
    if (v != NULL)
        cfg_problem(c, name, "expected <n>/s or <n>/min, optionally ,burst=<b>, got %s",
                    cfg_quote(c, v, q, sizeof(q)));
    cfg_parse_rate(def, out);
}

/* Copies an optional plain string; returns the value or NULL when unset. */
static const char *cfg_load_plain(const char *name, char **field, const char *def)
{
    const char *v = cfg_env(name);
    if (v != NULL)
        *field = xstrdup(v);
    else if (def != NULL)
        *field = xstrdup(def);
    return v;
}

static int cfg_url_has_scheme(const char *v, const char *scheme)
{
    size_t n = strlen(scheme);
    /* The scheme must be followed by a host. */
    return strncasecmp(v, scheme, n) == 0 && v[n] != '\0' && v[n] != '/';
}

static void cfg_check_path(cfg_ctx_t *c, const char *v)
{
    char q[CFG_QUOTE_MAX + 64];
    const char *what = NULL;
    if (v[0] != '/')
        what = "must start with '/'";
    else if (strlen(v) > CFG_PATH_MAX)
        what = "must be at most 256 bytes";
    for (const unsigned char *p = (const unsigned char *)v; what == NULL && *p; p++) {
        if (*p <= 0x20 || *p == 0x7f)
            what = "must not contain spaces or control characters";
        else if (*p == '?' || *p == '#')
            what = "must not contain '?' or '#'";
    }
    if (what != NULL)
        cfg_problem(c, "TGRING_WEBHOOK_PATH", "%s, got %s", what, cfg_quote(c, v, q, sizeof(q)));
}

static void cfg_check_ca_file(cfg_ctx_t *c, const char *v)
{
    char q[CFG_QUOTE_MAX + 64];
    /* O_NONBLOCK: a FIFO given by mistake must not hang the start. */
    int fd = open(v, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        cfg_problem(c, "TELEGRAM_CA_FILE", "cannot read %s: %s", cfg_quote(c, v, q, sizeof(q)),
                    strerror(e));
        return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        cfg_problem(c, "TELEGRAM_CA_FILE", "not a regular file: %s", cfg_quote(c, v, q, sizeof(q)));
    close(fd);
}

static void cfg_load_num(cfg_ctx_t *c, const cfg_num_t *n)
{
    char q[CFG_QUOTE_MAX + 64];
    uint64_t v = n->def;
    const char *s = cfg_env(n->name);
    if (s != NULL && (cfg_parse_u64(s, &v) < 0 || v < n->min || v > n->max)) {
        cfg_problem(c, n->name, "must be %llu..%llu, got %s", (unsigned long long)n->min,
                    (unsigned long long)n->max, cfg_quote(c, s, q, sizeof(q)));
        v = n->def;
    }
    char *field = (char *)c->cfg + n->offset;
    if (n->is_u64)
        *(uint64_t *)(void *)field = v;
    else
        *(unsigned *)(void *)field = (unsigned)v;
}

unsigned cfg_days_in_month(int64_t y, unsigned m)
{
    static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12)
        return 0;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[m - 1] + (m == 2 && leap ? 1 : 0);
}

/* Howard Hinnant's days_from_civil. */
int64_t cfg_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Reads exactly n digits at *p, advancing it. */
static bool cfg_digits(const char **p, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*p)[i];
        if (ch < '0' || ch > '9')
            return false;
        v = v * 10 + (unsigned)(ch - '0');
    }
    *p += n;
    *out = v;
    return true;
}

int cfg_parse_time(const char *s, int64_t *ms)
{
    unsigned y, mo, d, h, mi, sec, frac = 0, oh = 0, om = 0;
    int sign = 0;
    if (s == NULL || !cfg_digits(&s, 4, &y) || *s++ != '-' || !cfg_digits(&s, 2, &mo) ||
        *s++ != '-' || !cfg_digits(&s, 2, &d))
        return -EINVAL;
    if (*s != 'T' && *s != 't' && *s != ' ')
        return -EINVAL;
    s++;
    if (!cfg_digits(&s, 2, &h) || *s++ != ':' || !cfg_digits(&s, 2, &mi) || *s++ != ':' ||
        !cfg_digits(&s, 2, &sec))
        return -EINVAL;
    if (*s == '.') {
        int n = 0;
        for (s++; *s >= '0' && *s <= '9'; s++, n++)
            if (n < 3)
                frac = frac * 10 + (unsigned)(*s - '0');
        if (n == 0)
            return -EINVAL;
        for (; n < 3; n++)
            frac *= 10;
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        sign = *s++ == '-' ? -1 : 1;
        if (!cfg_digits(&s, 2, &oh) || *s++ != ':' || !cfg_digits(&s, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
    } else {
        return -EINVAL;
    }
    if (*s != '\0' || mo < 1 || mo > 12 || d < 1 || d > cfg_days_in_month(y, mo) || h > 23 ||
        mi > 59 || sec > 59)
        return -EINVAL;
    int64_t t = cfg_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    t -= sign * (int64_t)(oh * 3600 + om * 60);
    *ms = t * 1000 + frac;
    return 0;
}

/* BOT_ADMIN_IDS: "1,2,3" (blanks around the ids allowed), each 1..2^63-1. */
static void cfg_load_admins(cfg_ctx_t *c, const char *v)
{
    char q[CFG_QUOTE_MAX + 64];
    cfg_t *cfg = c->cfg;
    const char *p = v;
    cfg->bot_admin_ids = xcalloc(CFG_ADMINS_MAX, sizeof(*cfg->bot_admin_ids));
    for (;;) {
        while (*p == ' ')
            p++;
        uint64_t id = 0;
        size_t n = 0;
        while (p[n] >= '0' && p[n] <= '9' && id <= (uint64_t)INT64_MAX / 10) {
            id = id * 10 + (uint64_t)(p[n] - '0');
            n++;
        }
        p += n;
        while (*p == ' ')
            p++;
        if (n == 0 || id == 0 || id > (uint64_t)INT64_MAX || (*p != ',' && *p != '\0')) {
            cfg_problem(c, "BOT_ADMIN_IDS", "expected a comma list of user ids, got %s",
                        cfg_quote(c, v, q, sizeof(q)));
            cfg->bot_admin_count = 0;
            return;
        }
        if (cfg->bot_admin_count == CFG_ADMINS_MAX) {
            cfg_problem(c, "BOT_ADMIN_IDS", "at most %d ids", CFG_ADMINS_MAX);
            cfg->bot_admin_count = 0;
            return;
        }
        cfg->bot_admin_ids[cfg->bot_admin_count++] = (int64_t)id;
        if (*p++ == '\0')
            return;
    }
}

/*
 * BOT_TIMEZONE: an IANA name (letters, digits, '/', '_', '-', '+'; no "..").
 * PostgreSQL does the arithmetic with its own copy of the zone data, which
 * on Debian is the system's: where that directory exists, the name must be
 * a file in it, so that a typo stops the start instead of the reminders.
 */
static void cfg_check_timezone(cfg_ctx_t *c, const char *v)
{
    char q[CFG_QUOTE_MAX + 64];
    bool okay = v[0] != '/' && strlen(v) <= 64 && strstr(v, "..") == NULL;
    for (const char *p = v; *p != '\0' && okay; p++)
        okay = isascii((unsigned char)*p) &&
               (isalnum((unsigned char)*p) || strchr("/_-+", *p) != NULL);
    if (!okay) {
        cfg_problem(c, "BOT_TIMEZONE", "expected an IANA time zone like Europe/Berlin, got %s",
                    cfg_quote(c, v, q, sizeof(q)));
        return;
    }
    char path[128];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", CFG_ZONEINFO, v);
    if (stat(CFG_ZONEINFO, &st) == 0 && (stat(path, &st) != 0 || !S_ISREG(st.st_mode)))
        cfg_problem(c, "BOT_TIMEZONE", "unknown time zone %s (not in %s)",
                    cfg_quote(c, v, q, sizeof(q)), CFG_ZONEINFO);
}

int cfg_load(cfg_t *cfg, unsigned need, FILE *err)
{
    cfg_ctx_t c = {.cfg = cfg, .err = err, .problems = 0};
    char q[CFG_QUOTE_MAX + 64];
    const char *v;
    memset(cfg, 0, sizeof(*cfg));

    /* Secrets first, so that the plain values quoted below can be scrubbed of them. */
    int have_token = cfg_load_secret(&c, "TELEGRAM_BOT_TOKEN", &cfg->bot_token);
    int have_secret = cfg_load_secret(&c, "TELEGRAM_WEBHOOK_SECRET", &cfg->webhook_secret);
    int have_db = cfg_load_secret(&c, "DATABASE_URL", &cfg->database_url);
    if (cfg->bot_token != NULL && !cfg_token_valid(cfg->bot_token))
        cfg_problem(&c, "TELEGRAM_BOT_TOKEN",
                    "not a valid bot token (expected <digits>:<30 or more of A-Za-z0-9_->)");
    else if (cfg->bot_token != NULL && strlen(cfg->bot_token) > CFG_TOKEN_MAX)
        cfg_problem(&c, "TELEGRAM_BOT_TOKEN",
                    "too long (%zu characters, at most %d: every Bot API call's path "
                    "/bot<token>/<method> must fit)",
                    strlen(cfg->bot_token), CFG_TOKEN_MAX);
    else if (!have_token && (need & CFG_NEED_TOKEN))
        cfg_problem(&c, "TELEGRAM_BOT_TOKEN", "not set (required)");
    if (cfg->webhook_secret != NULL && !cfg_secret_valid(cfg->webhook_secret))
        cfg_problem(&c, "TELEGRAM_WEBHOOK_SECRET", "must be 1-256 characters of A-Za-z0-9_-");
    else if (!have_secret && (need & CFG_NEED_SECRET))
        cfg_problem(&c, "TELEGRAM_WEBHOOK_SECRET", "not set (required)");
    if (cfg->database_url != NULL && cfg->database_url[0] == '\0')
        cfg_problem(&c, "DATABASE_URL", "is empty");
    else if (!have_db && (need & CFG_NEED_DB))
        cfg_problem(&c, "DATABASE_URL", "not set (required)");

    if ((v = cfg_load_plain("TELEGRAM_WEBHOOK_URL", &cfg->webhook_url, NULL)) != NULL) {
        if (!cfg_url_has_scheme(v, "https://"))
            cfg_problem(&c, "TELEGRAM_WEBHOOK_URL", "must start with https://, got %s",
                        cfg_quote(&c, v, q, sizeof(q)));
    } else if (need & CFG_NEED_WEBHOOK_URL) {
        cfg_problem(&c, "TELEGRAM_WEBHOOK_URL", "not set (required)");
    }

    v = cfg_load_plain("TELEGRAM_API_URL", &cfg->api_url, CFG_DEFAULT_API_URL);
    if (v != NULL && !cfg_url_has_scheme(v, "https://") && !cfg_url_has_scheme(v, "http://"))
        cfg_problem(&c, "TELEGRAM_API_URL", "must start with https:// or http://, got %s",
                    cfg_quote(&c, v, q, sizeof(q)));
    /* Callers append "/bot<token>/<method>"; a trailing '/' would double it. */
    for (size_t n = strlen(cfg->api_url); n > 0 && cfg->api_url[n - 1] == '/'; n--)
        cfg->api_url[n - 1] = '\0';

    if ((v = cfg_load_plain("TELEGRAM_CA_FILE", &cfg->ca_file, NULL)) != NULL)
        cfg_check_ca_file(&c, v);

    cfg_load_plain("TGRING_LISTEN", &cfg->listen, CFG_DEFAULT_LISTEN);
    if (cfg_parse_listen(cfg->listen, &cfg->listen_addr, &cfg->listen_addr_len) < 0)
        cfg_problem(&c, "TGRING_LISTEN",
                    "expected host:port, [v6]:port or :port with port 1..65535, got %s",
                    cfg_quote(&c, cfg->listen, q, sizeof(q)));

    cfg_load_plain("TGRING_WEBHOOK_PATH", &cfg->webhook_path, CFG_DEFAULT_WEBHOOK_PATH);
    cfg_check_path(&c, cfg->webhook_path);

    for (size_t i = 0; i < ARRAY_SIZE(cfg_nums); i++)
        cfg_load_num(&c, &cfg_nums[i]);

    /* Empty means: whatever the cgroup says (worker_plan() reads it). */
    if ((v = cfg_env("TGRING_MEMORY_LIMIT")) != NULL &&
        (core_parse_size(v, &cfg->memory_limit) < 0 || cfg->memory_limit == 0))
        cfg_problem(&c, "TGRING_MEMORY_LIMIT",
                    "expected a size in bytes with an optional unit b, k, m or g (e.g. 256m), "
                    "got %s",
                    cfg_quote(&c, v, q, sizeof(q)));

    /* A handler past its deadline is failed before its lease can run out under it. */
    if (cfg->handler_timeout_ms >= cfg->process_lease_ms)
        cfg_problem(&c, "TGRING_HANDLER_TIMEOUT_MS",
                    "must be below TGRING_PROCESS_LEASE_MS (%u), got %u", cfg->process_lease_ms,
                    cfg->handler_timeout_ms);

    cfg_load_rate(&c, "TELEGRAM_RATE_GLOBAL", CFG_DEFAULT_RATE_GLOBAL, &cfg->rate_global);
    cfg_load_rate(&c, "TELEGRAM_RATE_CHAT", CFG_DEFAULT_RATE_CHAT, &cfg->rate_chat);
    cfg_load_rate(&c, "TELEGRAM_RATE_GROUP", CFG_DEFAULT_RATE_GROUP, &cfg->rate_group);
    if ((v = cfg_load_plain("TELEGRAM_ALLOWED_UPDATES", &cfg->allowed_updates, NULL)) != NULL) {
        /* Update type names: lowercase words separated by single commas. */
        bool okay = v[0] != ',' && v[strlen(v) - 1] != ',' && strstr(v, ",,") == NULL;
        for (const char *p = v; *p != '\0' && okay; p++)
            okay = (*p >= 'a' && *p <= 'z') || *p == '_' || *p == ',';
        if (!okay)
            cfg_problem(&c, "TELEGRAM_ALLOWED_UPDATES",
                        "expected a comma list of update types like message,callback_query, "
                        "got %s",
                        cfg_quote(&c, v, q, sizeof(q)));
    }

    if ((v = cfg_env("BOT_ADMIN_IDS")) != NULL)
        cfg_load_admins(&c, v);
    cfg_load_plain("BOT_TIMEZONE", &cfg->bot_timezone, CFG_DEFAULT_TIMEZONE);
    cfg_check_timezone(&c, cfg->bot_timezone);
    if ((v = cfg_env("BOT_NOW")) != NULL) {
        if (cfg_parse_time(v, &cfg->bot_now_ms) == 0)
            cfg->bot_now_set = true;
        else
            cfg_problem(&c, "BOT_NOW",
                        "expected an RFC 3339 time like 2024-05-01T09:30:00Z, got %s",
                        cfg_quote(&c, v, q, sizeof(q)));
    }

    cfg->log_level = LOG_INFO;
    if ((v = cfg_env("LOG_LEVEL")) != NULL && log_parse_level(v, &cfg->log_level) < 0)
        cfg_problem(&c, "LOG_LEVEL", "must be debug, info, warn or error, got %s",
                    cfg_quote(&c, v, q, sizeof(q)));
    cfg->log_format = LOG_FORMAT_JSON;
    if ((v = cfg_env("LOG_FORMAT")) != NULL && log_parse_format(v, &cfg->log_format) < 0)
        cfg_problem(&c, "LOG_FORMAT", "must be json or text, got %s",
                    cfg_quote(&c, v, q, sizeof(q)));

    if (c.problems == 0) {
        log_redact(cfg->bot_token);
        log_redact(cfg->webhook_secret);
    }
    return c.problems;
}

static void cfg_free_secret(char **s)
{
    if (*s != NULL) {
        explicit_bzero(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void cfg_dispose(cfg_t *cfg)
{
    cfg_free_secret(&cfg->bot_token);
    cfg_free_secret(&cfg->webhook_secret);
    cfg_free_secret(&cfg->database_url);
    free(cfg->webhook_url);
    free(cfg->api_url);
    free(cfg->ca_file);
    free(cfg->listen);
    free(cfg->webhook_path);
    free(cfg->allowed_updates);
    free(cfg->bot_admin_ids);
    free(cfg->bot_timezone);
    memset(cfg, 0, sizeof(*cfg));
}

void cfg_print_help(FILE *out)
{
    int wname = 0, wdef = 0;
    for (size_t i = 0; i < ARRAY_SIZE(cfg_help); i++) {
        int n = (int)strlen(cfg_help[i].name), d = (int)strlen(cfg_help[i].def);
        wname = n > wname ? n : wname;
        wdef = d > wdef ? d : wdef;
    }
    fprintf(out, "  %-*s  %-*s  %s\n", wname, "NAME", wdef, "DEFAULT", "MEANING");
    for (size_t i = 0; i < ARRAY_SIZE(cfg_help); i++)
        fprintf(out, "  %-*s  %-*s  %s\n", wname, cfg_help[i].name, wdef, cfg_help[i].def,
                cfg_help[i].meaning);
}
