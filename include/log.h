/* SPDX-License-Identifier: MIT */
/*
 * log.h - one line per event on stderr, as JSON (default) or text.
 *
 * JSON: {"ts":"2026-11-22T10:00:00.123Z","level":"info","pid":123,"event":"listening","msg":"..."}
 * text: 2026-11-22T10:00:00.123Z info listening: ...
 *
 * Secrets registered with log_redact() are replaced by "[redacted]" in every
 * line before it is written, as a second line of defence: callers never pass
 * the bot token or the webhook secret to the logger in the first place.
 *
 * Invalid UTF-8 in a message becomes U+FFFD; in text mode control characters
 * are shown as \n or \xNN, so an event is always one line. Logging never
 * changes errno.
 */
#ifndef TGRING_LOG_H
#define TGRING_LOG_H

#include <stdarg.h>

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF } log_level_t;
typedef enum log_format { LOG_FORMAT_JSON = 0, LOG_FORMAT_TEXT } log_format_t;

/* Sets the threshold and format. Before the first call: info, json. */
void log_setup(log_level_t level, log_format_t format);

/* Parses "debug", "info", "warn", "error" (any case). Returns 0 or -EINVAL. */
int log_parse_level(const char *s, log_level_t *out);

/* Parses "json" or "text". Returns 0 or -EINVAL. */
int log_parse_format(const char *s, log_format_t *out);

/*
 * Adds a secret to scrub from every line (at most 8, further ones ignored;
 * NULL, empty strings and repeats ignored). The string is copied.
 */
void log_redact(const char *secret);

/* True if a line at `level` would be written. */
int log_enabled(log_level_t level);

/*
 * Writes one line: `event` is a short snake_case name ("update_stored"), the
 * message is printf-formatted (JSON-escaped in JSON mode). Lines longer than
 * 4 KiB are cut. One write(2) per line, so lines of several processes
 * sharing stderr do not interleave.
 */
void log_msg(log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(log_level_t level, const char *event, const char *fmt, va_list ap);

#define log_debug(ev, ...)                                                                         \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, ev, __VA_ARGS__);                                                   \
    } while (0)
#define log_info(ev, ...) log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)

#endif
