/* SPDX-License-Identifier: MIT */
/*
 * fuzz_cfg.c - libFuzzer target for the configuration's values: the pure
 * parsers (TGRING_LISTEN, the TELEGRAM_RATE_* specs, BOT_NOW's RFC 3339
 * time) and cfg_load() with one plain variable set to the input.
 *
 * Input: the first byte chooses what reads the rest (a C string: it ends at
 * the first NUL, as an environment value does): 0 cfg_parse_listen, 1
 * cfg_parse_rate, 2 cfg_parse_time, anything else cfg_load() with the
 * variable fuzz_vars[(byte - 3) % count] set to it, next to a valid token,
 * webhook secret and DATABASE_URL.
 *
 * Aborts when a parser returns outside its documented set or breaks an
 * invariant: an accepted address has its family's length and a port; an
 * accepted rate is within its bounds; an accepted time lies within years
 * 0000..9999 give or take a day. cfg_load()'s problem lines must be single
 * lines of printable text that never hold the token, the secret or the
 * database URL, whatever the value they quote.
 */
#include "cfg.h"
#include "fuzz.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define FUZZ_TOKEN "123456789:AAEfuzzTokenValue_abcdefghijklmnopqrstuv"
#define FUZZ_SECRET "fuzzWebhookSecret-0123456789"
#define FUZZ_DB_URL "postgresql://tgring:fuzzDbPassw0rd@db.invalid/tgring"

/* The plain variables cfg_load() reads and quotes back when they are wrong. */
static const char *const fuzz_vars[] = {
    "TELEGRAM_WEBHOOK_URL",  "TELEGRAM_API_URL",      "TELEGRAM_CA_FILE",
    "TGRING_LISTEN",         "TGRING_WEBHOOK_PATH",   "TGRING_WORKERS",
    "TGRING_MAX_BODY",       "TGRING_MAX_CONNECTIONS", "TGRING_HANDLER_TIMEOUT_MS",
    "TELEGRAM_RATE_CHAT",    "TELEGRAM_ALLOWED_UPDATES", "BOT_ADMIN_IDS",
    "BOT_NOTIFY_HOUR",       "BOT_TIMEZONE",          "BOT_NOW",
    "LOG_LEVEL",             "LOG_FORMAT",
};

/* Year 0000-01-01 and 9999-12-31T23:59:59.999, each widened by a day of offsets. */
#define FUZZ_TIME_MIN (-62167219200000LL - 86400000LL)
#define FUZZ_TIME_MAX (253402300799999LL + 86400000LL)

/* Runs the chosen reader on s; returns its verdict and checks its invariants. */
static fuzz_verdict_t fuzz_cfg_run(unsigned char which, const char *s)
{
    switch (which) {
    case 0: {
        struct sockaddr_storage ss;
        socklen_t len = 0;
        int r = cfg_parse_listen(s, &ss, &len);
        CHECK(r == 0 || r == -EINVAL);
        if (r != 0)
            return FUZZ_REFUSED;
        if (ss.ss_family == AF_INET) {
            CHECK(len == sizeof(struct sockaddr_in));
            CHECK(((struct sockaddr_in *)&ss)->sin_port != 0);
        } else {
            CHECK(ss.ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6));
            CHECK(((struct sockaddr_in6 *)&ss)->sin6_port != 0);
        }
        return FUZZ_ACCEPTED;
    }
    case 1: {
        cfg_rate_t r;
        int rc = cfg_parse_rate(s, &r);
        CHECK(rc == 0 || rc == -EINVAL);
        if (rc != 0)
            return FUZZ_REFUSED;
        CHECK(r.n >= 1 && r.n <= 1000000 && r.burst >= 1 && r.burst <= 1000000);
        CHECK(r.period_ms == 1000 || r.period_ms == 60000);
        return FUZZ_ACCEPTED;
    }
    case 2: {
        int64_t ms = 0;
        int rc = cfg_parse_time(s, &ms);
        CHECK(rc == 0 || rc == -EINVAL);
        if (rc != 0)
            return FUZZ_REFUSED;
        CHECK(ms >= FUZZ_TIME_MIN && ms <= FUZZ_TIME_MAX);
        return FUZZ_ACCEPTED;
    }
    default:
        break;
    }
    const char *var = fuzz_vars[(which - 3u) % ARRAY_SIZE(fuzz_vars)];
    setenv("TELEGRAM_BOT_TOKEN", FUZZ_TOKEN, 1);
    setenv("TELEGRAM_WEBHOOK_SECRET", FUZZ_SECRET, 1);
    setenv("DATABASE_URL", FUZZ_DB_URL, 1);
    setenv(var, s, 1);
    char *out = NULL;
    size_t out_len = 0;
    FILE *err = open_memstream(&out, &out_len);
    CHECK(err != NULL);
    cfg_t cfg;
    int problems = cfg_load(&cfg, 0, err);
    CHECK(fclose(err) == 0);
    cfg_dispose(&cfg);
    unsetenv(var);
    CHECK(problems >= 0);
    CHECK((problems == 0) == (out_len == 0));
    /* One line per problem, each printable, none quoting a secret. */
    unsigned lines = 0;
    for (size_t i = 0; i < out_len; i++) {
        unsigned char ch = (unsigned char)out[i];
        CHECK(ch == '\n' || (ch >= 0x20 && ch != 0x7f));
        lines += ch == '\n';
    }
    CHECK(lines == (unsigned)problems);
    if (out != NULL) {
        CHECK(strstr(out, FUZZ_TOKEN) == NULL);
        CHECK(strstr(out, FUZZ_SECRET) == NULL);
        CHECK(strstr(out, FUZZ_DB_URL) == NULL);
    }
    free(out);
    return problems == 0 ? FUZZ_ACCEPTED : FUZZ_REFUSED;
}

fuzz_verdict_t fuzz_verdict(const uint8_t *data, size_t size)
{
    if (size == 0)
        return FUZZ_NONE;
    char *s = strndup((const char *)data + 1, size - 1);
    CHECK(s != NULL);
    fuzz_verdict_t v = fuzz_cfg_run(data[0], s);
    free(s);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_verdict(data, size);
    return 0;
}
