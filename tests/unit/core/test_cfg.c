/* SPDX-License-Identifier: MIT */
/*
 * test_cfg.c - unit tests for configuration: defaults, one problem line per
 * bad variable (rate specs included, all in one pass), NAME_FILE secrets,
 * secrets never printed, required variables, cfg_parse_rate() and
 * cfg_parse_listen() forms, the help text, and the secrets being registered
 * with the logger.
 */
#include "cfg.h"
#include "core.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const all_vars[] = {
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_BOT_TOKEN_FILE",
    "TELEGRAM_WEBHOOK_SECRET",
    "TELEGRAM_WEBHOOK_SECRET_FILE",
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "TELEGRAM_WEBHOOK_URL",
    "TELEGRAM_API_URL",
    "TELEGRAM_CA_FILE",
    "TGRING_LISTEN",
    "TGRING_WEBHOOK_PATH",
    "TGRING_WORKERS",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "TGRING_MAX_BODY",
    "TGRING_MAX_CONNECTIONS",
    "TGRING_QUEUE_MAX",
    "TGRING_ACK_TIMEOUT_MS",
    "TGRING_HEADER_TIMEOUT_MS",
    "TGRING_BODY_TIMEOUT_MS",
    "TGRING_IDLE_TIMEOUT_MS",
    "TGRING_RESPONSE_TIMEOUT_MS",
    "TGRING_SHUTDOWN_TIMEOUT_MS",
    "TGRING_DB_CONNECTIONS",
    "TELEGRAM_RATE_GLOBAL",
    "TELEGRAM_RATE_CHAT",
    "TELEGRAM_RATE_GROUP",
    "TGRING_API_CONNECTIONS",
    "TGRING_SEND_ATTEMPTS",
    "TGRING_OUTBOX_LEASE_MS",
    "TELEGRAM_WEBHOOK_MAX_CONNECTIONS",
    "TELEGRAM_ALLOWED_UPDATES",
    "BOT_ADMIN_IDS",
    "BOT_NOTIFY_HOUR",
    "BOT_TIMEZONE",
    "BOT_NOW",
};

#define TOKEN "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
#define SECRET "Wh-secret_0123456789"
#define DBURL "postgres://tgring:hunter2pw@db:5432/tgring"

static void clear_env(void) {
    for (size_t i = 0; i < sizeof(all_vars) / sizeof(all_vars[0]); i++)
        unsetenv(all_vars[i]);
}

static char errbuf[8192];

/* Runs cfg_load() with `err` captured into errbuf; returns its result. */
static int load(cfg_t *cfg, unsigned need) {
    char *text = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&text, &len);
    int n = cfg_load(cfg, need, err);
    fclose(err);
    snprintf(errbuf, sizeof(errbuf), "%s", text);
    free(text);
    return n;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Writes `content` to a new temporary file; returns its path (static buffer per slot). */
static const char *temp_file(int slot, const char *content, size_t len) {
    static char paths[4][64];
    snprintf(paths[slot], sizeof(paths[slot]), "/tmp/tgring-test-cfg-XXXXXX");
    int fd = mkstemp(paths[slot]);
    if (fd < 0 || write(fd, content, len) != (ssize_t)len) {
        perror("temp file");
        exit(1);
    }
    close(fd);
    return paths[slot];
}

static void test_defaults(void) {
    cfg_t c;
    clear_env();
    int n = load(&c, 0);
    tap_ok(n == 0 && errbuf[0] == '\0', "no variables, nothing needed: no problems");
    tap_ok(c.bot_token == NULL && c.webhook_secret == NULL && c.database_url == NULL &&
               c.webhook_url == NULL && c.ca_file == NULL,
           "unset secrets and optional settings are NULL");
    tap_ok(c.api_url && strcmp(c.api_url, "https://api.telegram.org") == 0, "api_url default");
    tap_ok(c.listen && strcmp(c.listen, "127.0.0.1:8080") == 0, "listen default");
    struct sockaddr_in *a4 = (struct sockaddr_in *)&c.listen_addr;
    tap_ok(a4->sin_family == AF_INET && ntohs(a4->sin_port) == 8080 &&
               a4->sin_addr.s_addr == htonl(INADDR_LOOPBACK) && c.listen_addr_len == sizeof(*a4),
           "listen_addr is 127.0.0.1:8080");
    tap_ok(c.webhook_path && strcmp(c.webhook_path, "/webhook/telegram") == 0,
           "webhook_path default");
    tap_ok(c.workers == 1 && c.log_level == LOG_INFO && c.log_format == LOG_FORMAT_JSON,
           "workers 1, log info json");
    tap_ok(c.max_body == 1048576 && c.max_connections == 16384 && c.queue_max == 4096 &&
               c.ack_timeout_ms == 5000 && c.header_timeout_ms == 10000 &&
               c.body_timeout_ms == 30000 && c.idle_timeout_ms == 75000 &&
               c.response_timeout_ms == 10000 &&
               c.shutdown_timeout_ms == 10000 && c.db_connections == 2,
           "tunable defaults");
    tap_ok(c.rate_global.n == 30 && c.rate_global.period_ms == 1000 && c.rate_global.burst == 1 &&
               c.rate_chat.n == 1 && c.rate_chat.period_ms == 1000 && c.rate_chat.burst == 1 &&
               c.rate_group.n == 20 && c.rate_group.period_ms == 60000 &&
               c.rate_group.burst == 1 && c.allowed_updates == NULL,
           "rate (30/s, 1/s, 20/min, burst 1) and allowed-updates defaults");
    tap_ok(c.webhook_max_connections == 40 && c.api_connections == 8 && c.send_attempts == 8 &&
               c.outbox_lease_ms == 30000,
           "sender defaults");
    cfg_dispose(&c);
    tap_ok(c.api_url == NULL && c.listen == NULL, "cfg_dispose clears the struct");
    cfg_dispose(&c);

    /* Empty strings count as unset. */
    for (size_t i = 0; i < sizeof(all_vars) / sizeof(all_vars[0]); i++)
        setenv(all_vars[i], "", 1);
    n = load(&c, 0);
    tap_ok(n == 0 && c.workers == 1 && strcmp(c.listen, "127.0.0.1:8080") == 0 &&
               c.bot_token == NULL,
           "every variable set to \"\" reads as unset");
    cfg_dispose(&c);
}

static void test_all_valid(void) {
    cfg_t c;
    clear_env();
    const char *ca = temp_file(0, "-----BEGIN CERTIFICATE-----\n", 28);
    setenv("TELEGRAM_BOT_TOKEN", TOKEN, 1);
    setenv("TELEGRAM_WEBHOOK_SECRET", SECRET, 1);
    setenv("DATABASE_URL", DBURL, 1);
    setenv("TELEGRAM_WEBHOOK_URL", "https://bot.example.com/webhook/telegram", 1);
    setenv("TELEGRAM_API_URL", "http://127.0.0.1:8081//", 1);
    setenv("TELEGRAM_CA_FILE", ca, 1);
    setenv("TGRING_LISTEN", "[::1]:9000", 1);
    setenv("TGRING_WEBHOOK_PATH", "/hook/a-b_c.d~e%20", 1);
    setenv("TGRING_WORKERS", "64", 1);
    setenv("LOG_LEVEL", "DEBUG", 1);
    setenv("LOG_FORMAT", "text", 1);
    setenv("TGRING_MAX_BODY", "67108864", 1);
    setenv("TGRING_MAX_CONNECTIONS", "1000000", 1);
    setenv("TGRING_QUEUE_MAX", "1", 1);
    setenv("TGRING_ACK_TIMEOUT_MS", "60000", 1);
    setenv("TGRING_HEADER_TIMEOUT_MS", "007", 1);
    setenv("TGRING_BODY_TIMEOUT_MS", "600000", 1);
    setenv("TGRING_IDLE_TIMEOUT_MS", "3600000", 1);
    setenv("TGRING_RESPONSE_TIMEOUT_MS", "600000", 1);
    setenv("TGRING_SHUTDOWN_TIMEOUT_MS", "0", 1);
    setenv("TGRING_DB_CONNECTIONS", "16", 1);
    unsigned all = CFG_NEED_DB | CFG_NEED_SECRET | CFG_NEED_TOKEN | CFG_NEED_WEBHOOK_URL;
    int n = load(&c, all);
    tap_diag("%s", errbuf);
    tap_ok(n == 0 && errbuf[0] == '\0', "every variable valid at its bound: no problems");
    tap_ok(c.bot_token && strcmp(c.bot_token, TOKEN) == 0 && c.webhook_secret &&
               strcmp(c.webhook_secret, SECRET) == 0 && c.database_url &&
               strcmp(c.database_url, DBURL) == 0,
           "secrets are read");
    tap_ok(strcmp(c.webhook_url, "https://bot.example.com/webhook/telegram") == 0 &&
               strcmp(c.ca_file, ca) == 0 && strcmp(c.webhook_path, "/hook/a-b_c.d~e%20") == 0,
           "plain strings are read");
    tap_ok(strcmp(c.api_url, "http://127.0.0.1:8081") == 0, "api_url loses its trailing slashes");
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&c.listen_addr;
    tap_ok(a6->sin6_family == AF_INET6 && ntohs(a6->sin6_port) == 9000 &&
               IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr) && c.listen_addr_len == sizeof(*a6),
           "listen [::1]:9000");
    tap_ok(c.workers == 64 && c.log_level == LOG_DEBUG && c.log_format == LOG_FORMAT_TEXT &&
               c.max_body == 67108864 && c.max_connections == 1000000 && c.queue_max == 1 &&
               c.ack_timeout_ms == 60000 && c.header_timeout_ms == 7 &&
               c.body_timeout_ms == 600000 && c.idle_timeout_ms == 3600000 &&
               c.response_timeout_ms == 600000 &&
               c.shutdown_timeout_ms == 0 && c.db_connections == 16,
           "numbers are read at their bounds");
    cfg_dispose(&c);
    tap_ok(c.bot_token == NULL && c.database_url == NULL, "cfg_dispose frees the secrets");
    unlink(ca);
}

/* One bad value: exactly one problem line, naming the variable. */
typedef struct bad {
    const char *var, *value;
} bad_t;

static void test_bad_values(void) {
    static char long_path[300], long_secret[300];
    long_path[0] = '/';
    memset(long_path + 1, 'a', 256);
    memset(long_secret, 'a', 257);
    const bad_t bad[] = {
        {"TELEGRAM_BOT_TOKEN", "abc"},
        {"TELEGRAM_BOT_TOKEN", "123:AAHdqTcvCH1vGWJxfSeofSAs0K5PA"}, /* 29 after ':' */
        {"TELEGRAM_BOT_TOKEN", ":AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"},
        {"TELEGRAM_BOT_TOKEN", "12a:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"},
        {"TELEGRAM_BOT_TOKEN", "123:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw!"},
        {"TELEGRAM_BOT_TOKEN", TOKEN "\n"},
        {"TELEGRAM_BOT_TOKEN", " " TOKEN},
        {"TELEGRAM_WEBHOOK_SECRET", long_secret},
        {"TELEGRAM_WEBHOOK_SECRET", "has space"},
        {"TELEGRAM_WEBHOOK_SECRET", "dot.ted"},
        {"TELEGRAM_WEBHOOK_URL", "http://bot.example.com/hook"},
        {"TELEGRAM_WEBHOOK_URL", "bot.example.com"},
        {"TELEGRAM_WEBHOOK_URL", "https://"},
        {"TELEGRAM_API_URL", "ftp://api.telegram.org"},
        {"TELEGRAM_API_URL", "api.telegram.org"},
        {"TELEGRAM_CA_FILE", "/nonexistent/ca.pem"},
        {"TELEGRAM_CA_FILE", "/"},
        {"TGRING_LISTEN", "abc"},
        {"TGRING_LISTEN", "127.0.0.1"},
        {"TGRING_LISTEN", ":0"},
        {"TGRING_LISTEN", "example.com:80"},
        {"TGRING_WEBHOOK_PATH", "webhook"},
        {"TGRING_WEBHOOK_PATH", "/a b"},
        {"TGRING_WEBHOOK_PATH", "/a?b=1"},
        {"TGRING_WEBHOOK_PATH", "/a\tb"},
        {"TGRING_WEBHOOK_PATH", long_path},
        {"TGRING_WORKERS", "0"},
        {"TGRING_WORKERS", "65"},
        {"TGRING_WORKERS", "abc"},
        {"TGRING_WORKERS", "+1"},
        {"TGRING_WORKERS", "-1"},
        {"TGRING_WORKERS", " 1"},
        {"TGRING_WORKERS", "1 "},
        {"TGRING_WORKERS", "1x"},
        {"TGRING_WORKERS", "0x10"},
        {"TGRING_WORKERS", "18446744073709551617"},
        {"TGRING_WORKERS", "4294967297"},
        {"TGRING_MAX_BODY", "1023"},
        {"TGRING_MAX_BODY", "67108865"},
        {"TGRING_MAX_BODY", "1M"},
        {"TGRING_MAX_CONNECTIONS", "0"},
        {"TGRING_MAX_CONNECTIONS", "1000001"},
        {"TGRING_QUEUE_MAX", "0"},
        {"TGRING_ACK_TIMEOUT_MS", "0"},
        {"TGRING_ACK_TIMEOUT_MS", "60001"},
        {"TGRING_HEADER_TIMEOUT_MS", "1.5"},
        {"TGRING_BODY_TIMEOUT_MS", "600001"},
        {"TGRING_IDLE_TIMEOUT_MS", "x"},
        {"TGRING_RESPONSE_TIMEOUT_MS", "0"},
        {"TGRING_RESPONSE_TIMEOUT_MS", "600001"},
        {"TGRING_SHUTDOWN_TIMEOUT_MS", "-0"},
        {"TGRING_DB_CONNECTIONS", "0"},
        {"TGRING_DB_CONNECTIONS", "17"},
        {"LOG_LEVEL", "verbose"},
        {"LOG_FORMAT", "xml"},
        {"TELEGRAM_WEBHOOK_MAX_CONNECTIONS", "101"},
        {"TGRING_API_CONNECTIONS", "0"},
        {"TGRING_SEND_ATTEMPTS", "101"},
        {"TGRING_OUTBOX_LEASE_MS", "999"},
        {"TELEGRAM_ALLOWED_UPDATES", "message,,poll"},
        {"TELEGRAM_ALLOWED_UPDATES", "Message"},
        {"TELEGRAM_ALLOWED_UPDATES", "message,"},
        {"TELEGRAM_RATE_GLOBAL", "30/h"},
        {"TELEGRAM_RATE_CHAT", "0/s"},
        {"TELEGRAM_RATE_GROUP", "20/min,burst=0"},
    };
    int wrong = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg_t c;
        char prefix[128];
        clear_env();
        setenv(bad[i].var, bad[i].value, 1);
        int n = load(&c, 0);
        snprintf(prefix, sizeof(prefix), "tgring: config: %s: ", bad[i].var);
        if (n != 1 || count_lines(errbuf) != 1 || strncmp(errbuf, prefix, strlen(prefix)) != 0) {
            printf("# %s=\"%s\": %d problems:\n", bad[i].var, bad[i].value, n);
            tap_diag("%s", errbuf);
            wrong++;
        }
        cfg_dispose(&c);
    }
    tap_ok(wrong == 0, "each of %zu bad values gives exactly one line naming its variable",
           sizeof(bad) / sizeof(bad[0]));

    cfg_t c;
    clear_env();
    setenv("TGRING_WORKERS", "abc", 1);
    load(&c, 0);
    tap_ok(strcmp(errbuf, "tgring: config: TGRING_WORKERS: must be 1..64, got \"abc\"\n") == 0,
           "a number's line gives the range and quotes the value");
    cfg_dispose(&c);
    setenv("TGRING_WORKERS", "a\"b\x01", 1);
    load(&c, 0);
    tap_diag("%s", errbuf);
    tap_ok(strstr(errbuf, "got \"a\\\"b\\x01\"\n") != NULL, "quoted values are escaped");
    cfg_dispose(&c);
    clear_env();
    setenv("TELEGRAM_CA_FILE", "/nonexistent/ca.pem", 1);
    load(&c, 0);
    tap_ok(strstr(errbuf, "\"/nonexistent/ca.pem\"") && strstr(errbuf, strerror(ENOENT)),
           "the CA file line names the path and the error");
    cfg_dispose(&c);

    /* Several problems: one line each, all reported. */
    clear_env();
    setenv("TGRING_WORKERS", "0", 1);
    setenv("LOG_LEVEL", "loud", 1);
    setenv("TGRING_LISTEN", "nope", 1);
    int n = load(&c, CFG_NEED_DB);
    tap_ok(n == 4 && count_lines(errbuf) == 4 && strstr(errbuf, "TGRING_WORKERS:") &&
               strstr(errbuf, "LOG_LEVEL:") && strstr(errbuf, "TGRING_LISTEN:") &&
               strstr(errbuf, "DATABASE_URL: not set"),
           "four problems give four lines");
    cfg_dispose(&c);

    /* One pass reports them all, the rate specs among them, and keeps their defaults. */
    clear_env();
    setenv("TGRING_WORKERS", "65", 1);
    setenv("TELEGRAM_RATE_GLOBAL", "30/hour", 1);
    setenv("TELEGRAM_RATE_CHAT", "1/s,burst=3", 1);
    setenv("TELEGRAM_RATE_GROUP", "20/min;burst=1", 1);
    setenv("TELEGRAM_API_URL", "ftp://x", 1);
    n = load(&c, CFG_NEED_SECRET);
    tap_diag("%s", errbuf);
    tap_ok(n == 5 && count_lines(errbuf) == 5 && strstr(errbuf, "TGRING_WORKERS:") &&
               strstr(errbuf, "tgring: config: TELEGRAM_RATE_GLOBAL: expected <n>/s or <n>/min, "
                              "optionally ,burst=<b>, got \"30/hour\"\n") &&
               strstr(errbuf, "TELEGRAM_RATE_GROUP:") && !strstr(errbuf, "TELEGRAM_RATE_CHAT") &&
               strstr(errbuf, "TELEGRAM_API_URL:") &&
               strstr(errbuf, "TELEGRAM_WEBHOOK_SECRET: not set"),
           "five problems, two of them rate specs, give five lines in one run");
    tap_ok(c.rate_chat.n == 1 && c.rate_chat.burst == 3 && c.rate_global.n == 30 &&
               c.rate_global.period_ms == 1000 && c.rate_group.period_ms == 60000,
           "a good rate spec is read beside bad ones, which keep their defaults");
    cfg_dispose(&c);
}

static void test_required(void) {
    cfg_t c;
    clear_env();
    unsigned all = CFG_NEED_DB | CFG_NEED_SECRET | CFG_NEED_TOKEN | CFG_NEED_WEBHOOK_URL;
    int n = load(&c, all);
    tap_ok(n == 4 && count_lines(errbuf) == 4, "four required variables missing: four lines");
    tap_ok(strstr(errbuf, "tgring: config: DATABASE_URL: not set (required)\n") &&
               strstr(errbuf, "tgring: config: TELEGRAM_BOT_TOKEN: not set (required)\n") &&
               strstr(errbuf, "tgring: config: TELEGRAM_WEBHOOK_SECRET: not set (required)\n") &&
               strstr(errbuf, "tgring: config: TELEGRAM_WEBHOOK_URL: not set (required)\n"),
           "each missing line names its variable");
    cfg_dispose(&c);
    setenv("DATABASE_URL", "", 1);
    n = load(&c, CFG_NEED_DB);
    tap_ok(n == 1 && strcmp(errbuf, "tgring: config: DATABASE_URL: not set (required)\n") == 0,
           "an empty required variable is not set");
    cfg_dispose(&c);
    setenv("DATABASE_URL", DBURL, 1);
    n = load(&c, CFG_NEED_DB);
    tap_ok(n == 0, "only what is needed is required");
    cfg_dispose(&c);
}

static void test_files(void) {
    cfg_t c;
    clear_env();
    const char *tf = temp_file(0, TOKEN "\n", strlen(TOKEN) + 1);
    const char *sf = temp_file(1, SECRET "\r\n", strlen(SECRET) + 2);
    const char *df = temp_file(2, DBURL "\n\n", strlen(DBURL) + 2);
    setenv("TELEGRAM_BOT_TOKEN_FILE", tf, 1);
    setenv("TELEGRAM_WEBHOOK_SECRET_FILE", sf, 1);
    setenv("DATABASE_URL_FILE", df, 1);
    int n = load(&c, CFG_NEED_DB | CFG_NEED_SECRET | CFG_NEED_TOKEN);
    tap_ok(n == 0, "secrets from files are accepted and satisfy the need mask");
    tap_ok(c.bot_token && strcmp(c.bot_token, TOKEN) == 0, "token file: trailing \\n stripped");
    tap_ok(c.webhook_secret && strcmp(c.webhook_secret, SECRET) == 0,
           "secret file: trailing \\r\\n stripped");
    tap_ok(c.database_url && strcmp(c.database_url, DBURL "\n") == 0,
           "only one trailing newline is stripped");
    cfg_dispose(&c);
    unlink(df);
    unsetenv("DATABASE_URL_FILE");

    /* Both NAME and NAME_FILE. */
    setenv("TELEGRAM_BOT_TOKEN", TOKEN, 1);
    n = load(&c, CFG_NEED_TOKEN);
    tap_ok(n == 1 && count_lines(errbuf) == 1 &&
               strncmp(errbuf, "tgring: config: TELEGRAM_BOT_TOKEN: ", 36) == 0 &&
               strstr(errbuf, "TELEGRAM_BOT_TOKEN_FILE") && !strstr(errbuf, TOKEN),
           "both NAME and NAME_FILE set: one problem, no value");
    tap_diag("%s", errbuf);
    cfg_dispose(&c);
    unsetenv("TELEGRAM_BOT_TOKEN");
    unlink(tf);
    unlink(sf);

    /* Unreadable file: names the variable, the path and the error. */
    clear_env();
    setenv("DATABASE_URL_FILE", "/nonexistent/db-url", 1);
    n = load(&c, CFG_NEED_DB);
    tap_ok(n == 1 && count_lines(errbuf) == 1 &&
               strstr(errbuf, "tgring: config: DATABASE_URL_FILE: ") == errbuf &&
               strstr(errbuf, "\"/nonexistent/db-url\"") && strstr(errbuf, strerror(ENOENT)),
           "unreadable file: one line with variable, path and error, no extra not-set line");
    cfg_dispose(&c);

    /* A directory cannot be read. */
    setenv("DATABASE_URL_FILE", "/", 1);
    n = load(&c, 0);
    tap_diag("%s", errbuf);
    tap_ok(n == 1 && strstr(errbuf, strerror(EISDIR)), "a directory as secret file cannot be read");
    cfg_dispose(&c);

    /* Bigger than 64 KiB. */
    char *big = malloc(65537);
    memset(big, 'x', 65537);
    const char *bf = temp_file(3, big, 65537);
    setenv("DATABASE_URL_FILE", bf, 1);
    n = load(&c, 0);
    tap_ok(n == 1 && strstr(errbuf, "DATABASE_URL_FILE: ") && strstr(errbuf, "larger") &&
               !strstr(errbuf, "xxxx"),
           "a file over 64 KiB is refused without printing it");
    cfg_dispose(&c);
    unlink(bf);
    bf = temp_file(3, big, 65536);
    setenv("DATABASE_URL_FILE", bf, 1);
    n = load(&c, 0);
    tap_ok(n == 0 && c.database_url && strlen(c.database_url) == 65536, "a 64 KiB file is read");
    cfg_dispose(&c);
    unlink(bf);
    free(big);

    /* Empty files give an empty value, which no secret accepts. */
    clear_env();
    const char *ef = temp_file(0, "\n", 1);
    setenv("TELEGRAM_BOT_TOKEN_FILE", ef, 1);
    setenv("TELEGRAM_WEBHOOK_SECRET_FILE", ef, 1);
    setenv("DATABASE_URL_FILE", ef, 1);
    n = load(&c, 0);
    tap_ok(n == 3 && strstr(errbuf, "TELEGRAM_BOT_TOKEN: ") &&
               strstr(errbuf, "TELEGRAM_WEBHOOK_SECRET: ") && strstr(errbuf, "DATABASE_URL: "),
           "empty secret files are three problems");
    cfg_dispose(&c);
    unlink(ef);
}

static void test_no_secret_in_output(void) {
    cfg_t c;
    const char *bad_token = "123:LEAKLEAKLEAKLEAKLEAKLEAKLEAKLEAK!";
    const char *bad_secret = "LEAKsecret with space";
    clear_env();
    setenv("TELEGRAM_BOT_TOKEN", bad_token, 1);
    setenv("TELEGRAM_WEBHOOK_SECRET", bad_secret, 1);
    load(&c, 0);
    tap_ok(count_lines(errbuf) == 2 && !strstr(errbuf, "LEAK") && !strstr(errbuf, "with space"),
           "invalid token and secret are not printed");
    tap_diag("%s", errbuf);
    cfg_dispose(&c);

    /* From a file, with a second newline so the value is invalid. */
    clear_env();
    const char *sf = temp_file(0, "LEAKfile_secret\n\n", 17);
    setenv("TELEGRAM_WEBHOOK_SECRET_FILE", sf, 1);
    load(&c, 0);
    tap_ok(count_lines(errbuf) == 1 && !strstr(errbuf, "LEAK"),
           "a bad secret from a file is not printed");
    cfg_dispose(&c);
    unlink(sf);

    /* A bad plain value that embeds a secret: quoted, with the secret scrubbed. */
    clear_env();
    setenv("TELEGRAM_BOT_TOKEN", TOKEN, 1);
    setenv("TELEGRAM_WEBHOOK_SECRET", SECRET, 1);
    setenv("DATABASE_URL", DBURL, 1);
    setenv("TELEGRAM_WEBHOOK_URL", "http://bot.example.com/" TOKEN "?s=" SECRET, 1);
    setenv("TGRING_LISTEN", DBURL, 1);
    int n = load(&c, 0);
    tap_ok(n == 2 && !strstr(errbuf, TOKEN) && !strstr(errbuf, SECRET) &&
               !strstr(errbuf, "hunter2") &&
               strstr(errbuf, "\"http://bot.example.com/[redacted]?s=[redacted]\"") &&
               strstr(errbuf, "TGRING_LISTEN: ") && strstr(errbuf, "\"[redacted]\""),
           "secrets inside quoted plain values are replaced");
    tap_diag("%s", errbuf);
    cfg_dispose(&c);
}

/* A token at CFG_TOKEN_MAX fits every call's path; one character more is refused. */
static void test_token_length(void) {
    char token[CFG_TOKEN_MAX + 2];
    cfg_t c;
    clear_env();
    memcpy(token, "123456789:", 10);
    memset(token + 10, 'L', CFG_TOKEN_MAX - 10);
    token[CFG_TOKEN_MAX] = '\0';
    setenv("TELEGRAM_BOT_TOKEN", token, 1);
    tap_ok(load(&c, CFG_NEED_TOKEN) == 0 && errbuf[0] == '\0',
           "a token of %d characters is accepted", CFG_TOKEN_MAX);
    cfg_dispose(&c);

    token[CFG_TOKEN_MAX] = 'L';
    token[CFG_TOKEN_MAX + 1] = '\0';
    setenv("TELEGRAM_BOT_TOKEN", token, 1);
    int n = load(&c, CFG_NEED_TOKEN);
    tap_ok(n == 1 && strncmp(errbuf, "tgring: config: TELEGRAM_BOT_TOKEN: too long", 44) == 0 &&
               count_lines(errbuf) == 1 && !strstr(errbuf, "LLLL"),
           "a token of %d characters is refused, in one line that does not quote it",
           CFG_TOKEN_MAX + 1);
    tap_diag("%s", errbuf);
    cfg_dispose(&c);
}

static void test_rate_spec(void) {
    struct {
        const char *s;
        cfg_rate_t want;
    } good[] = {
        {"30/s", {30, 1000, 30}},
        {"1/s,burst=3", {1, 1000, 3}},
        {"20/min", {20, 60000, 20}},
        {"20/min,burst=1", {20, 60000, 1}},
        {"1000000/s,burst=1000000", {1000000, 1000, 1000000}},
        {"007/s", {7, 1000, 7}},
    };
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        cfg_rate_t sp;
        int rc = cfg_parse_rate(good[i].s, &sp);
        tap_ok(rc == 0 && sp.n == good[i].want.n && sp.period_ms == good[i].want.period_ms &&
                   sp.burst == good[i].want.burst,
               "parse \"%s\"", good[i].s);
    }
    const char *bad[] = {"",
                         "30",
                         "30/",
                         "/s",
                         "0/s",
                         "-1/s",
                         "+1/s",
                         " 30/s",
                         "30/s ",
                         "30 /s",
                         "30/h",
                         "30/sec",
                         "30/m",
                         "30/minute",
                         "30/S",
                         "30/s,",
                         "30/s,burst=",
                         "30/s,burst=0",
                         "30/s,burst=-1",
                         "30/s,burst=3,",
                         "30/s,burst=3x",
                         "30/s;burst=3",
                         "1000001/s",
                         "99999999999/s",
                         "30/s,burst=1000001",
                         "1.5/s",
                         "0x10/s",
                         "30/s,Burst=3"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        cfg_rate_t sp = {7, 7, 7};
        int rc = cfg_parse_rate(bad[i], &sp);
        tap_ok(rc == -EINVAL && sp.n == 7 && sp.period_ms == 7 && sp.burst == 7,
               "refuse \"%s\", output untouched", bad[i]);
    }
    tap_ok(cfg_parse_rate(NULL, &(cfg_rate_t){0}) == -EINVAL, "refuse NULL");
}

static void test_listen(void) {
    struct sockaddr_storage ss;
    socklen_t len = 0;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    tap_ok(cfg_parse_listen("127.0.0.1:8080", &ss, &len) == 0 && a4->sin_family == AF_INET &&
               ntohs(a4->sin_port) == 8080 && a4->sin_addr.s_addr == htonl(INADDR_LOOPBACK) &&
               len == sizeof(*a4),
           "127.0.0.1:8080");
    tap_ok(cfg_parse_listen(":8080", &ss, &len) == 0 && a4->sin_family == AF_INET &&
               ntohs(a4->sin_port) == 8080 && a4->sin_addr.s_addr == htonl(INADDR_ANY),
           ":8080 is all IPv4 interfaces");
    tap_ok(cfg_parse_listen("[::1]:8080", &ss, &len) == 0 && a6->sin6_family == AF_INET6 &&
               ntohs(a6->sin6_port) == 8080 && IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr) &&
               len == sizeof(*a6),
           "[::1]:8080");
    tap_ok(cfg_parse_listen("[::]:65535", &ss, &len) == 0 && a6->sin6_family == AF_INET6 &&
               ntohs(a6->sin6_port) == 65535 && IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr),
           "[::]:65535");
    tap_ok(cfg_parse_listen("localhost:1", &ss, &len) == 0 && a4->sin_family == AF_INET &&
               ntohs(a4->sin_port) == 1 && a4->sin_addr.s_addr == htonl(INADDR_LOOPBACK),
           "localhost:1");
    tap_ok(cfg_parse_listen("0.0.0.0:443", &ss, &len) == 0 && ntohs(a4->sin_port) == 443,
           "0.0.0.0:443");
    static const char *const bad[] = {
        "127.0.0.1",
        "127.0.0.1:",
        ":0",
        ":65536",
        ":99999999999999999999",
        "abc",
        "",
        ":",
        "[::1]",
        "[::1]8080",
        "[::1]:",
        "::1:8080",
        "[127.0.0.1]:80",
        "[::1:80",
        "example.com:80",
        "127.0.0.1:80x",
        "127.0.0.1:+80",
        "127.0.0.1: 80",
        " 127.0.0.1:80",
        "1.2.3:80",
        "256.1.1.1:80",
        "localhost:0",
        "127.0.0.1:-1",
    };
    int wrong = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&ss, 0x5a, sizeof(ss));
        len = 1234;
        if (cfg_parse_listen(bad[i], &ss, &len) != -EINVAL || len != 1234) {
            printf("# accepted \"%s\"\n", bad[i]);
            wrong++;
        }
    }
    tap_ok(wrong == 0, "%zu bad listen forms give -EINVAL and leave the output alone",
           sizeof(bad) / sizeof(bad[0]));
    tap_ok(cfg_parse_listen(NULL, &ss, &len) == -EINVAL, "NULL gives -EINVAL");
}

/* Whether name is the NAME_FILE form of another variable in all_vars. */
static bool is_file_form(const char *name) {
    size_t n = strlen(name);
    if (n <= 5 || strcmp(name + n - 5, "_FILE") != 0)
        return false;
    for (size_t i = 0; i < sizeof(all_vars) / sizeof(all_vars[0]); i++)
        if (strlen(all_vars[i]) == n - 5 && strncmp(all_vars[i], name, n - 5) == 0)
            return true;
    return false;
}

static void test_help(void) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cfg_print_help(f);
    fclose(f);
    int missing = 0, misaligned = 0;
    long def_col = -1, meaning_col = -1;
    /* Every variable has a line; a secret's NAME_FILE form is told on its line. */
    for (size_t i = 0; i < sizeof(all_vars) / sizeof(all_vars[0]); i++) {
        const char *name = all_vars[i];
        size_t n = strlen(name);
        if (is_file_form(name))
            continue;
        char key[64];
        snprintf(key, sizeof(key), "\n  %s ", name);
        const char *p = strstr(text, key);
        if (p == NULL) {
            printf("# missing %s\n", name);
            missing++;
            continue;
        }
        p += 1;
        /* Columns: the default starts after the name's padding, the meaning after the default's. */
        const char *q = p + 2 + n;
        while (*q == ' ')
            q++;
        const char *r = q;
        while (*r != '\n' && !(r[0] == ' ' && r[1] == ' '))
            r++;
        while (*r == ' ')
            r++;
        if (def_col < 0) {
            def_col = q - p;
            meaning_col = r - p;
        } else if (def_col != q - p || meaning_col != r - p) {
            printf("# %s is not aligned\n", name);
            misaligned++;
        }
        if (*r == '\n')
            misaligned++;
    }
    tap_ok(missing == 0, "help lists every variable");
    tap_ok(misaligned == 0, "help columns are aligned and every line has a meaning");
    tap_ok(strstr(text, "https://api.telegram.org") && strstr(text, "127.0.0.1:8080") &&
               strstr(text, "/webhook/telegram") && strstr(text, "16384") && strstr(text, "75000"),
           "help shows the defaults");
    int wide = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        if (nl - p > 100)
            wide++;
        p = nl + 1;
    }
    tap_ok(wide == 0, "help lines fit in 100 columns");
    free(text);
}

/* Captures fd 2 around one log line. */
static void test_redact_registered(void) {
    cfg_t c;
    clear_env();
    setenv("TELEGRAM_BOT_TOKEN", TOKEN, 1);
    setenv("TELEGRAM_WEBHOOK_SECRET", SECRET, 1);
    int n = load(&c, CFG_NEED_TOKEN | CFG_NEED_SECRET);
    char path[] = "/tmp/tgring-test-cfg-log-XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    int saved = dup(2);
    dup2(fd, 2);
    log_setup(LOG_INFO, LOG_FORMAT_TEXT);
    log_info("oops", "token %s secret %s", c.bot_token, c.webhook_secret);
    dup2(saved, 2);
    close(saved);
    char buf[4096];
    ssize_t len = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    buf[len > 0 ? len : 0] = '\0';
    tap_ok(n == 0 && len > 0 && !strstr(buf, TOKEN) && !strstr(buf, SECRET) &&
               strstr(buf, "token [redacted] secret [redacted]"),
           "after cfg_load the token and secret are scrubbed from log lines");
    cfg_dispose(&c);
}

/* The quit-smoking bot's settings, and cfg_parse_time(). */
static void test_bot(void) {
    cfg_t cfg;
    int64_t ms = 0;
    clear_env();
    tap_eq_int(cfg_load(&cfg, 0, NULL), 0, "bot: defaults load");
    tap_ok(cfg.bot_admin_count == 0 && cfg.bot_notify_hour == 9 &&
               strcmp(cfg.bot_timezone, "UTC") == 0 && !cfg.bot_now_set,
           "bot: no admins, hour 9, UTC, the real clock");
    cfg_dispose(&cfg);
    setenv("BOT_ADMIN_IDS", " 500, 9223372036854775807 ,7", 1);
    setenv("BOT_NOTIFY_HOUR", "23", 1);
    setenv("BOT_NOW", "2024-05-10T19:00:00+07:00", 1);
    tap_eq_int(cfg_load(&cfg, 0, NULL), 0, "bot: valid values load");
    tap_ok(cfg.bot_admin_count == 3 && cfg.bot_admin_ids[0] == 500 &&
               cfg.bot_admin_ids[1] == INT64_MAX && cfg.bot_admin_ids[2] == 7,
           "bot: three admin ids");
    tap_ok(cfg.bot_now_set && cfg.bot_now_ms == 1715342400000LL, "bot: BOT_NOW with an offset");
    cfg_dispose(&cfg);
    const char *bad[][2] = {{"BOT_ADMIN_IDS", "1,,2"},     {"BOT_ADMIN_IDS", "-1"},
                            {"BOT_ADMIN_IDS", "9223372036854775808"},
                            {"BOT_NOTIFY_HOUR", "24"},     {"BOT_NOW", "2024-05-10"},
                            {"BOT_NOW", "2023-02-29T00:00:00Z"},
                            {"BOT_TIMEZONE", "Etc/../../x"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        clear_env();
        setenv(bad[i][0], bad[i][1], 1);
        tap_eq_int(cfg_load(&cfg, 0, NULL), 1, "bot: %s=%s refused", bad[i][0], bad[i][1]);
        cfg_dispose(&cfg);
    }
    clear_env();
    tap_ok(cfg_parse_time("1970-01-01T00:00:00Z", &ms) == 0 && ms == 0, "time: the epoch");
    tap_ok(cfg_parse_time("2024-02-29t23:59:59.1234z", &ms) == 0 && ms == 1709251199123LL,
           "time: leap day, fraction cut to ms, lower case");
    tap_ok(cfg_parse_time("1969-12-31T23:00:00-01:00", &ms) == 0 && ms == 0, "time: an offset");
    tap_ok(cfg_parse_time("2024-05-10T24:00:00Z", &ms) < 0 &&
               cfg_parse_time("2024-05-10T12:00:00", &ms) < 0 &&
               cfg_parse_time("2024-05-10T12:00:00.Z", &ms) < 0 &&
               cfg_parse_time("2024-05-10T12:00:00Zx", &ms) < 0,
           "time: no hour 24, no missing zone, no empty fraction, nothing after");
    tap_eq_int(cfg_days_from_civil(2024, 5, 10), 19853, "days_from_civil(2024-05-10)");
}

int main(void) {
    test_defaults();
    test_all_valid();
    test_bad_values();
    test_required();
    test_files();
    test_no_secret_in_output();
    test_token_length();
    test_rate_spec();
    test_listen();
    test_help();
    test_redact_registered();
    test_bot();
    return tap_done();
}
