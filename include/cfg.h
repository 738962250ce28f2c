/* SPDX-License-Identifier: MIT */
/*
 * cfg.h - configuration from the environment.
 *
 * Every variable is read once at start. Each secret may also be given as
 * NAME_FILE (a path whose contents, less one trailing newline, are the value);
 * setting both is an error. Every problem is reported, one line each, before
 * the start is refused, so an operator fixes them all in one go.
 */
#ifndef TGRING_CFG_H
#define TGRING_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"

/* What a subcommand needs; cfg_load() reports a missing required variable. */
enum {
    CFG_NEED_DB = 1 << 0,          /* DATABASE_URL */
    CFG_NEED_SECRET = 1 << 1,      /* TELEGRAM_WEBHOOK_SECRET */
    CFG_NEED_TOKEN = 1 << 2,       /* TELEGRAM_BOT_TOKEN */
    CFG_NEED_WEBHOOK_URL = 1 << 3, /* TELEGRAM_WEBHOOK_URL */
};

/*
 * One token bucket as a TELEGRAM_RATE_* variable gives it, "<n>/s" or
 * "<n>/min" with an optional ",burst=<b>": n tokens per period_ms, holding at
 * most burst. tg builds its rate limiter from these numbers.
 */
typedef struct cfg_rate {
    uint32_t n;         /* tokens per period, 1..1000000 */
    uint32_t period_ms; /* 1000 ("/s") or 60000 ("/min") */
    uint32_t burst;     /* bucket size in tokens, 1..1000000 */
} cfg_rate_t;

typedef struct cfg {
    /* Secrets: heap copies, wiped by cfg_dispose(). NULL when unset. */
    char *bot_token;      /* TELEGRAM_BOT_TOKEN: <digits>:<30+ chars of A-Za-z0-9_-> */
    char *webhook_secret; /* TELEGRAM_WEBHOOK_SECRET: 1-256 chars of A-Za-z0-9_- */
    char *database_url;   /* DATABASE_URL: libpq URI or conninfo (may hold a password) */
    /* Plain settings. */
    char *webhook_url; /* TELEGRAM_WEBHOOK_URL: https:// URL, NULL when unset */
    char *api_url;     /* TELEGRAM_API_URL, default "https://api.telegram.org"; no final '/' */
    char *ca_file;     /* TELEGRAM_CA_FILE, NULL = the system bundle */
    char *listen;      /* TGRING_LISTEN as given, default "127.0.0.1:8080" */
    struct sockaddr_storage listen_addr; /* parsed TGRING_LISTEN (IPv4, [IPv6]:port) */
    socklen_t listen_addr_len;           /* bytes of listen_addr in use, for bind(2) */
    /* TGRING_WEBHOOK_PATH, default "/webhook/telegram": starts with '/', at most 256 bytes,
     * no spaces, control characters, '?' or '#'. */
    char *webhook_path;
    unsigned workers;        /* TGRING_WORKERS, 1..64, default 1 */
    log_level_t log_level;   /* LOG_LEVEL, default info */
    log_format_t log_format; /* LOG_FORMAT, default json */
    /* Tunables, each with its own TGRING_ variable. */
    uint64_t max_body;            /* TGRING_MAX_BODY bytes, default 1048576, 1 KiB..64 MiB */
    unsigned max_connections;     /* TGRING_MAX_CONNECTIONS, default 16384, 1..1000000; a worker
                                     lowers it to fit RLIMIT_NOFILE */
    unsigned queue_max;           /* TGRING_QUEUE_MAX updates waiting for commit, default 4096,
                                     1..1000000 */
    uint64_t memory_limit;        /* TGRING_MEMORY_LIMIT bytes (b/k/m/g accepted), 0 = unset: the
                                     cgroup's limit applies; worker_plan() sizes buffers to it */
    unsigned ack_timeout_ms;      /* TGRING_ACK_TIMEOUT_MS, default 5000, 1..60000: 503 past it */
    unsigned header_timeout_ms;   /* TGRING_HEADER_TIMEOUT_MS, default 10000, 1..600000, from
                                     first byte */
    unsigned body_timeout_ms;     /* TGRING_BODY_TIMEOUT_MS, default 30000, 1..600000 */
    unsigned idle_timeout_ms;     /* TGRING_IDLE_TIMEOUT_MS, default 75000, 1..3600000: keep-alive
                                     idle */
    unsigned response_timeout_ms; /* TGRING_RESPONSE_TIMEOUT_MS, default 10000, 1..600000: to
                                     send one response; the connection is closed past it */
    unsigned shutdown_timeout_ms; /* TGRING_SHUTDOWN_TIMEOUT_MS, default 10000, 0..600000 grace */
    unsigned db_connections;      /* TGRING_DB_CONNECTIONS, default 2, 1..16: PostgreSQL connections
                                     per worker */
    /* Sending to the Bot API. */
    /*
     * Token buckets, "<n>/s" or "<n>/min" with ",burst=<b>" (default b = n).
     * The defaults use burst 1, so that no window of the period's length ever
     * holds more than n messages: Telegram's limits are never exceeded.
     */
    cfg_rate_t rate_global; /* TELEGRAM_RATE_GLOBAL, default "30/s,burst=1" */
    cfg_rate_t rate_chat;   /* TELEGRAM_RATE_CHAT, default "1/s,burst=1" */
    cfg_rate_t rate_group;  /* TELEGRAM_RATE_GROUP, default "20/min,burst=1" */
    char *allowed_updates;  /* TELEGRAM_ALLOWED_UPDATES: comma list, NULL = Telegram's default */
    unsigned webhook_max_connections; /* TELEGRAM_WEBHOOK_MAX_CONNECTIONS, 1..100, default 40 */
    unsigned api_connections;         /* TGRING_API_CONNECTIONS, 1..64, default 8 */
    unsigned send_attempts;           /* TGRING_SEND_ATTEMPTS, 1..100, default 8 */
    unsigned outbox_lease_ms;         /* TGRING_OUTBOX_LEASE_MS, 1000..3600000, default 30000 */
    /* Processing updates. */
    unsigned retention_hours;    /* TGRING_RETENTION_HOURS, 24..87600, default 48: processed
                                    updates are kept this long (dedupe needs 24 h) */
    unsigned process_lease_ms;   /* TGRING_PROCESS_LEASE_MS, 1000..3600000, default 30000 */
    unsigned handler_timeout_ms; /* TGRING_HANDLER_TIMEOUT_MS, 100..3600000, default 10000;
                                    below the process lease */
    unsigned process_poll_ms;    /* TGRING_PROCESS_POLL_MS, 10..60000, default 250 */
    unsigned process_capacity;   /* TGRING_PROCESS_CAPACITY, 1..65536, default 256 per worker */
    /* The quit-smoking bot (src/bot/quit/). */
    int64_t *bot_admin_ids;   /* BOT_ADMIN_IDS: comma list of user ids (> 0), NULL when unset */
    unsigned bot_admin_count; /* entries of bot_admin_ids, at most CFG_ADMINS_MAX */
    unsigned bot_notify_hour; /* BOT_NOTIFY_HOUR, 0..23, default 9: local hour of the reminder */
    char *bot_timezone;       /* BOT_TIMEZONE, IANA name, default "UTC" */
    bool bot_now_set;         /* BOT_NOW given: the bot's clock stands still at bot_now_ms */
    int64_t bot_now_ms;       /* BOT_NOW (RFC 3339), ms since the epoch; for tests and demos */
} cfg_t;

/*
 * Longest TELEGRAM_BOT_TOKEN, in characters. Every Bot API call's path is
 * "/bot<token>/<method>" in a buffer of TG_PATH_MAX bytes (tg_sender.h), which
 * is sized from this: 4 + 155 + 1 + 63 (the longest method name the sender
 * takes) + the NUL = 224. A longer token would fail every call, so cfg_load()
 * refuses it. Telegram's tokens are about 46 characters.
 */
#define CFG_TOKEN_MAX 155

/* Most ids BOT_ADMIN_IDS may list. */
#define CFG_ADMINS_MAX 64

/*
 * Fills `cfg` from the environment (getenv). `need` is a mask of CFG_NEED_*.
 * A variable set to the empty string counts as unset. Numbers are plain
 * decimal (no sign, spaces or suffix). Writes one line per problem to `err`
 * ("tgring: config: TGRING_WORKERS: must be 1..64, got \"abc\"") and never
 * prints a secret's value; `err` may be NULL to only count them.
 * Returns the number of problems (0 = usable). On success the token and the
 * webhook secret are also registered with log_redact(); the log level and
 * format are left for the caller to pass to log_setup(). cfg_dispose() is
 * safe either way.
 */
int cfg_load(cfg_t *cfg, unsigned need, FILE *err);

/* Frees the strings, zeroing the secrets first. */
void cfg_dispose(cfg_t *cfg);

/*
 * Parses "host:port" (IPv4 literal or "localhost"), "[v6]:port" or ":port"
 * (0.0.0.0, all IPv4 interfaces; "[::]:port" for IPv6), port 1..65535.
 * OUT: out, out_len (untouched on failure). Returns 0 or -EINVAL.
 */
int cfg_parse_listen(const char *s, struct sockaddr_storage *out, socklen_t *out_len);

/*
 * Parses a rate spec: "<n>/s" or "<n>/min", optionally followed by
 * ",burst=<b>" (plain decimal, no spaces or signs), as in
 * TELEGRAM_RATE_CHAT="1/s,burst=3". Without ",burst=" the burst is n.
 * OUT: *out, untouched on failure. Returns 0 or -EINVAL (also for NULL, and
 * for n or b outside 1..1000000).
 */
int cfg_parse_rate(const char *s, cfg_rate_t *out);

/*
 * Parses an RFC 3339 time, "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)"
 * ('t', 'z' and a space instead of 'T' accepted; fraction digits past
 * milliseconds dropped), checking the calendar (no leap seconds). OUT: *ms,
 * ms since the epoch, untouched on failure. Returns 0 or -EINVAL.
 */
int cfg_parse_time(const char *s, int64_t *ms);

/*
 * Days from 1970-01-01 to the proleptic Gregorian date y-m-d (negative
 * before it); m 1..12, d 1..31 (not checked against the month: see
 * cfg_days_in_month()).
 */
int64_t cfg_days_from_civil(int64_t y, unsigned m, unsigned d);

/* Days in month m (1..12) of year y; 0 for a month out of range. */
unsigned cfg_days_in_month(int64_t y, unsigned m);

/*
 * Writes the variables, their defaults and meanings (the body of the help
 * text's environment section, after the caller's heading) to `out`, one
 * aligned line each under a NAME/DEFAULT/MEANING row.
 */
void cfg_print_help(FILE *out);

#endif
