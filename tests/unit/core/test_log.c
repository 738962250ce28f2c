/* SPDX-License-Identifier: MIT */
/*
 * test_log.c - unit tests for the logger: JSON lines parse (checked with
 * jansson), escaping, the 4 KiB cut, redaction, the text format and level
 * filtering. stderr is pointed at a temporary file and read back.
 */
#include "log.h"
#include "tap.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Captured stderr: a temporary file dup2'd over fd 2. */
static int cap_fd = -1, saved_stderr = -1;

static void cap_start(void) {
    char path[] = "/tmp/tgring-test-log-XXXXXX";
    cap_fd = mkstemp(path);
    if (cap_fd < 0) {
        perror("mkstemp");
        exit(1);
    }
    unlink(path);
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(cap_fd, 2);
}

/* Stops capturing and returns what was written (caller frees). */
static char *cap_end(size_t *len) {
    dup2(saved_stderr, 2);
    close(saved_stderr);
    off_t n = lseek(cap_fd, 0, SEEK_END);
    char *buf = malloc((size_t)n + 1);
    if (pread(cap_fd, buf, (size_t)n, 0) != n) {
        perror("pread");
        exit(1);
    }
    buf[n] = '\0';
    close(cap_fd);
    if (len)
        *len = (size_t)n;
    return buf;
}

static size_t count_lines(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Parses one JSON line (without its newline) and checks the fixed fields. */
static json_t *parse_line(const char *line, size_t len) {
    json_error_t e;
    json_t *j = json_loadb(line, len, 0, &e);
    if (j == NULL)
        printf("# json error: %s at %d: %.*s\n", e.text, e.position, (int)(len > 200 ? 200 : len),
               line);
    return j;
}

static int ts_valid(const char *ts) {
    const char *pat = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (strlen(ts) != strlen(pat))
        return 0;
    for (size_t i = 0; pat[i]; i++) {
        if (pat[i] == 'd' ? (ts[i] < '0' || ts[i] > '9') : ts[i] != pat[i])
            return 0;
    }
    return 1;
}

static void test_defaults(void) {
    tap_ok(!log_enabled(LOG_DEBUG) && log_enabled(LOG_INFO) && log_enabled(LOG_ERROR),
           "before log_setup the threshold is info");
    cap_start();
    log_info("default_format", "hello");
    char *out = cap_end(NULL);
    tap_ok(out[0] == '{', "before log_setup the format is json");
    free(out);
}

static void test_parse(void) {
    log_level_t l = LOG_OFF;
    tap_ok(log_parse_level("debug", &l) == 0 && l == LOG_DEBUG, "level debug");
    tap_ok(log_parse_level("INFO", &l) == 0 && l == LOG_INFO, "level INFO (any case)");
    tap_ok(log_parse_level("Warn", &l) == 0 && l == LOG_WARN, "level Warn");
    tap_ok(log_parse_level("error", &l) == 0 && l == LOG_ERROR, "level error");
    l = LOG_DEBUG;
    tap_ok(log_parse_level("verbose", &l) == -EINVAL && l == LOG_DEBUG, "level verbose is refused");
    tap_ok(log_parse_level("", &l) == -EINVAL, "empty level is refused");
    log_format_t f = LOG_FORMAT_TEXT;
    tap_ok(log_parse_format("json", &f) == 0 && f == LOG_FORMAT_JSON, "format json");
    tap_ok(log_parse_format("TEXT", &f) == 0 && f == LOG_FORMAT_TEXT, "format TEXT");
    tap_ok(log_parse_format("xml", &f) == -EINVAL, "format xml is refused");
}

static void test_json(void) {
    log_setup(LOG_DEBUG, LOG_FORMAT_JSON);
    const char *msg = "q\"b\\s\n\t\x01\x1f del\x7f utf8 h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80";
    cap_start();
    log_msg(LOG_WARN, "ev_name", "%s", msg);
    log_msg(LOG_INFO, "bad_utf8",
            "a\xff"
            "b\xc3"
            "c\xed\xa0\x80"
            "d");
    size_t len;
    char *out = cap_end(&len);
    tap_ok(count_lines(out) == 2 && out[len - 1] == '\n', "two events are two lines");
    char *nl = strchr(out, '\n');
    json_t *j = parse_line(out, (size_t)(nl - out));
    tap_ok(j != NULL, "JSON line parses");
    if (j) {
        tap_ok(json_is_string(json_object_get(j, "ts")) &&
                   ts_valid(json_string_value(json_object_get(j, "ts"))),
               "ts is ISO-8601 UTC with milliseconds: %s",
               json_string_value(json_object_get(j, "ts")));
        tap_ok(json_is_string(json_object_get(j, "level")) &&
                   strcmp(json_string_value(json_object_get(j, "level")), "warn") == 0,
               "level is warn");
        tap_ok(json_is_integer(json_object_get(j, "pid")) &&
                   json_integer_value(json_object_get(j, "pid")) == getpid(),
               "pid is ours");
        tap_ok(json_is_string(json_object_get(j, "event")) &&
                   strcmp(json_string_value(json_object_get(j, "event")), "ev_name") == 0,
               "event is kept");
        tap_ok(json_is_string(json_object_get(j, "msg")) &&
                   strcmp(json_string_value(json_object_get(j, "msg")), msg) == 0,
               "msg round-trips: quotes, backslash, control characters, UTF-8");
        tap_ok(json_object_size(j) == 5, "exactly five fields");
        json_decref(j);
    }
    tap_ok(strstr(out, "\\u0001") != NULL && strstr(out, "\\u001f") != NULL,
           "control characters are written as \\u00XX");
    tap_ok(strstr(out, "h\xc3\xa9llo \xe2\x9c\x93") != NULL,
           "valid UTF-8 passes through unescaped");
    json_t *j2 = parse_line(nl + 1, len - (size_t)(nl + 1 - out) - 1);
    tap_ok(j2 != NULL, "a line with invalid UTF-8 still parses");
    if (j2) {
        const char *m = json_string_value(json_object_get(j2, "msg"));
        tap_ok(m && strcmp(m, "a\xef\xbf\xbd"
                              "b\xef\xbf\xbd"
                              "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                              "d") == 0,
               "invalid bytes become U+FFFD");
        json_decref(j2);
    }
    free(out);
}

static void test_cut(void) {
    log_setup(LOG_DEBUG, LOG_FORMAT_JSON);
    /* Plain bytes, bytes that escape to six, and multi-byte UTF-8. */
    static const char fill[] = {'x', '\x01', '\xe2'};
    for (int k = 0; k < 3; k++) {
        char *big = malloc(10001);
        for (int i = 0; i < 10000; i++)
            big[i] = fill[k] == '\xe2' ? "\xe2\x9c\x93"[i % 3] : fill[k];
        big[10000] = '\0';
        cap_start();
        log_info("big", "%s", big);
        size_t len;
        char *out = cap_end(&len);
        tap_ok(count_lines(out) == 1 && len <= 4096, "long message %d cut to one line of %zu bytes",
               k, len);
        json_t *j = parse_line(out, len - 1);
        tap_ok(j != NULL && json_string_value(json_object_get(j, "msg")) != NULL &&
                   strlen(json_string_value(json_object_get(j, "msg"))) > 600 &&
                   strncmp(json_string_value(json_object_get(j, "msg")), big,
                           strlen(json_string_value(json_object_get(j, "msg")))) == 0,
               "cut line %d is valid JSON holding a prefix of the message", k);
        json_decref(j);
        free(out);
        free(big);
    }
}

static void test_redact(void) {
    log_setup(LOG_DEBUG, LOG_FORMAT_JSON);
    const char *token = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    const char *quoted = "se\"cr\\et";
    log_redact(token);
    log_redact(quoted);
    log_redact("");
    log_redact(NULL);
    cap_start();
    log_info("leak", "url https://api.telegram.org/bot%s/getMe and again %s!", token, token);
    log_warn("leak_quoted", "value=%s", quoted);
    log_warn(token, "in the event name");
    size_t len;
    char *out = cap_end(&len);
    tap_ok(strstr(out, token) == NULL && strstr(out, "AAHdqTcvCH1vGWJx") == NULL,
           "registered token never appears");
    tap_ok(strstr(out, "bot[redacted]/getMe and again [redacted]!") != NULL,
           "each occurrence is replaced by [redacted]");
    tap_ok(strstr(out, quoted) == NULL && strstr(out, "se\\\"cr\\\\et") == NULL &&
               strstr(out, "value=[redacted]") != NULL,
           "a secret with characters that escape is removed before escaping");
    tap_ok(count_lines(out) == 3 && strstr(out, "\"event\":\"[redacted]\"") != NULL,
           "the event name is scrubbed too");
    free(out);

    /* A 256-byte secret placed across the point where a long message is cut:
     * no stump of it (16+ bytes) may be left in any line. */
    char secret[257];
    for (int i = 0; i < 256; i++)
        secret[i] = "Zq9_-Kx"[i % 7];
    memcpy(secret, "STUMPSTUMPSTUMP!", 16);
    secret[256] = '\0';
    log_redact(secret);
    char *pre = malloc(5000);
    memset(pre, 'a', 5000);
    int leaks = 0, lines = 0;
    for (int fmtk = 0; fmtk < 2; fmtk++) {
        log_setup(LOG_DEBUG, fmtk ? LOG_FORMAT_TEXT : LOG_FORMAT_JSON);
        for (int n = 3700; n < 4200; n += 3) {
            cap_start();
            log_info("stump", "%.*s%s", n, pre, secret);
            char *o = cap_end(NULL);
            leaks += strstr(o, "STUMPSTUMPSTUMP") != NULL;
            lines += (int)count_lines(o);
            free(o);
        }
    }
    tap_ok(leaks == 0 && lines == 334, "no stump of a secret cut at the end of a long message (%d)",
           leaks);
    free(pre);
}

static void test_text(void) {
    log_setup(LOG_DEBUG, LOG_FORMAT_TEXT);
    cap_start();
    log_info("listening", "on %s:%d", "127.0.0.1", 8080);
    log_error("multi", "a\nb\x01");
    size_t len;
    char *out = cap_end(&len);
    tap_ok(count_lines(out) == 2, "text: two events are two lines");
    tap_ok(len > 25 && out[24] == ' ', "text: ts then a space");
    char ts[25];
    memcpy(ts, out, 24);
    ts[24] = '\0';
    tap_ok(ts_valid(ts), "text: ts is ISO-8601 UTC with milliseconds");
    tap_ok(strstr(out, " info listening: on 127.0.0.1:8080\n") == out + 24,
           "text: '<ts> info listening: on 127.0.0.1:8080'");
    char *second = strchr(out, '\n') + 1;
    tap_ok(strcmp(second + 24, " error multi: a\\nb\\x01\n") == 0,
           "text: control characters are escaped, the event stays on one line");
    free(out);
}

static int side_effects;

static int bump(void) { return ++side_effects; }

static void test_levels(void) {
    log_setup(LOG_WARN, LOG_FORMAT_JSON);
    tap_ok(!log_enabled(LOG_DEBUG) && !log_enabled(LOG_INFO) && log_enabled(LOG_WARN) &&
               log_enabled(LOG_ERROR),
           "threshold warn enables warn and error only");
    cap_start();
    log_debug("d", "debug %d", bump());
    log_info("i", "info");
    log_warn("w", "warn");
    log_error("e", "error");
    char *out = cap_end(NULL);
    tap_ok(count_lines(out) == 2 && strstr(out, "\"level\":\"warn\"") &&
               strstr(out, "\"level\":\"error\"") && !strstr(out, "\"level\":\"info\""),
           "only warn and error lines are written");
    tap_ok(side_effects == 0, "log_debug does not evaluate its arguments when disabled");
    free(out);

    log_setup(LOG_OFF, LOG_FORMAT_JSON);
    cap_start();
    log_error("e", "error");
    out = cap_end(NULL);
    tap_ok(out[0] == '\0' && !log_enabled(LOG_ERROR), "LOG_OFF writes nothing");
    free(out);

    log_setup(LOG_DEBUG, LOG_FORMAT_JSON);
    cap_start();
    log_debug("d", "debug %d", bump());
    log_msg(LOG_OFF, "off", "a line at LOG_OFF is never written");
    out = cap_end(NULL);
    tap_ok(count_lines(out) == 1 && side_effects == 1, "threshold debug writes debug lines");
    free(out);
}

int main(void) {
    test_defaults();
    test_parse();
    test_json();
    test_cut();
    test_text();
    test_levels();
    test_redact();
    return tap_done();
}
