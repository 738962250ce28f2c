/* SPDX-License-Identifier: MIT */
/*
 * tg_api.h - Telegram, the Bot API side: the pure pieces the outbox sender and
 * the webhook subcommands build on. A parser and classifier for Bot API
 * answers, a JSON writer for request bodies, and the rate limiter (token
 * buckets, pauses for retry_after). None of them does I/O or reads the clock:
 * bytes and times in, results out. The update side is in tg.h.
 *
 * Depends on core only (cfg for the rate specs; jsmn for parsing, as tg.h).
 */
#ifndef TGRING_TG_API_H
#define TGRING_TG_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/*
 * core_utf8_decode() for those who only need to step over a sequence: a
 * well-formed sequence at s[0..len), len > 0, gives its code point in *cp;
 * an ill-formed one gives *cp = U+FFFD and covers its maximal subpart (the
 * longest prefix that could start a well-formed sequence, at least one byte),
 * which is what browsers and CPython's "replace" handler do. Returns the
 * bytes covered, 1..4.
 */
size_t tg_utf8_decode(const char *s, size_t len, uint32_t *cp);

/* ---- Bot API answers ------------------------------------------------------------------ */

/* Tokens a Bot API answer (or an object view given to tg_api_get_*) may have; on the stack. */
#define TG_API_MAX_TOKENS 1024

/* Bytes kept of an error's description, with its NUL. */
#define TG_API_DESC_MAX 256

/* What an answer means for the request that got it. */
typedef enum tg_api_class {
    TG_API_OK = 0,      /* done */
    TG_API_RETRY_AFTER, /* 429: wait retry_after seconds (chat or all, the caller knows which) */
    TG_API_MIGRATE,     /* the group became a supergroup: resend to migrate_to_chat_id */
    TG_API_RETRY,       /* 5xx, or not a Bot API answer (a proxy's page): retry with backoff */
    TG_API_FINAL,       /* other 4xx (bad request, chat not found, bad token, blocked): give up */
} tg_api_class_t;

/* One parsed answer. Views point into the body given to tg_api_parse(). */
typedef struct tg_api_result {
    bool json;                  /* the body was a JSON object with a boolean "ok" */
    bool ok;                    /* "ok" (false when !json) */
    int http_status;            /* as given */
    int error_code;             /* "error_code"; the HTTP status when absent or not an int */
    int64_t retry_after;        /* seconds: parameters.retry_after, else the header, else -1 */
    bool has_migrate;           /* parameters.migrate_to_chat_id was present */
    int64_t migrate_to_chat_id; /* the chat's new id (0 unless has_migrate) */
    const char *result;         /* raw JSON text of "result", NULL when absent or unreadable */
    size_t result_len;          /* bytes */
    /* "description", unescaped, invalid UTF-8 and unpaired surrogates as U+FFFD, cut at a
     * character boundary to fit, NUL-terminated; "" when absent. Not sanitized further:
     * control characters stay (the logger escapes them). */
    char description[TG_API_DESC_MAX];
    size_t description_len; /* bytes in description, without the NUL */
    bool description_cut;   /* the description was longer than what is kept */
} tg_api_result_t;

/*
 * Parses a Bot API answer: body[0..len) (need not be NUL-terminated) as
 * received with HTTP status `http_status` and Retry-After header value
 * `retry_after_header` (seconds, < 0 when absent). Reads "ok", "error_code",
 * "description", "result" and "parameters" {"retry_after", "migrate_to_chat_id"}
 * at the top level; the first of repeated keys wins, keys spelt with escapes
 * are not recognized, other keys are ignored. retry_after is taken only in
 * 0..INT32_MAX. No allocation; work linear in len, at most TG_API_MAX_TOKENS
 * tokens on the stack. This is a reader, not a validator: jsmn's strict mode
 * lets a few malformed texts through, and what they yield is still bounded
 * and safe.
 * OUT: out, always fully set (also on failure).
 * Returns 0 when the body is a JSON object with a boolean "ok";
 * -EBADMSG when it is not (empty, HTML, truncated, another JSON value): out
 * then holds the HTTP status as error_code and the header's retry_after;
 * -E2BIG when the body has more than TG_API_MAX_TOKENS tokens: the top-level
 * members that come before the cut are still read (Telegram sends "ok" and the
 * error fields first), so out is as for 0 but `result` is NULL; when "ok" comes
 * too late, out is as for -EBADMSG except that ok is taken from a 2xx status
 * (Telegram answers 200 exactly when ok is true).
 */
int tg_api_parse(const char *body, size_t len, int http_status, int64_t retry_after_header,
                 tg_api_result_t *out);

/*
 * Classifies a parsed answer, in this order: ok -> TG_API_OK; 429 ->
 * TG_API_RETRY_AFTER (retry_after may be -1: the caller picks a backoff);
 * migrate_to_chat_id -> TG_API_MIGRATE; not JSON (any status: a proxy, a
 * captive portal, a truncated answer) -> TG_API_RETRY; error_code 400..499 ->
 * TG_API_FINAL; anything else (5xx, an ok:false 2xx, odd codes) -> TG_API_RETRY.
 * retry_after, when >= 0, is also the delay to use for TG_API_RETRY.
 */
tg_api_class_t tg_api_classify(const tg_api_result_t *r);

/* "ok", "retry_after", "migrate", "retry", "final" (for logs and metrics). */
const char *tg_api_class_name(tg_api_class_t c);

/*
 * Finds top-level member `key` (NUL-terminated, compared as raw bytes) of the
 * JSON object obj[0..len) (e.g. a result view) and gives its raw JSON text.
 * OUT: *val, *val_len (a view into obj; a string keeps its quotes).
 * Returns 0; -ENOENT when there is no such member; -EINVAL when obj is not a
 * JSON object (or has more than TG_API_MAX_TOKENS tokens before the member).
 */
int tg_api_get_raw(const char *obj, size_t len, const char *key, const char **val, size_t *val_len);

/*
 * Reads top-level member `key` of the object obj[0..len) as a string,
 * unescaped (invalid UTF-8 and unpaired surrogates as U+FFFD) into buf, cut at
 * a character boundary to fit and NUL-terminated (when cap > 0).
 * Returns, like snprintf, the full unescaped length in bytes (>= cap means it
 * was cut); -ENOENT when absent (or null); -EINVAL when obj is not an object
 * or the member is not a string.
 */
int tg_api_get_string(const char *obj, size_t len, const char *key, char *buf, size_t cap);

/*
 * Reads top-level member `key` of the object obj[0..len) as an integer
 * (-?digits, no fraction or exponent, within int64_t). OUT: *out.
 * Returns 0; -ENOENT when absent (or null); -EINVAL when obj is not an object or
 * the member is not such an integer (*out untouched).
 */
int tg_api_get_int(const char *obj, size_t len, const char *key, int64_t *out);

/* Reads member `key` as true/false. Returns 0, -ENOENT (absent or null) or -EINVAL. */
int tg_api_get_bool(const char *obj, size_t len, const char *key, bool *out);

/* ---- JSON writer ---------------------------------------------------------------------- */

/* Deepest nesting of objects and arrays tg_jw_t tracks. */
#define TG_JW_MAX_DEPTH 31

/*
 * Writes JSON into a caller buffer; commas and colons are automatic. The first
 * error sticks and every later call does nothing: -ENOSPC when the text (and
 * its NUL) does not fit, -EINVAL on misuse (a value where a key is due, a key
 * in an array, an unbalanced end, nesting past TG_JW_MAX_DEPTH, two top-level
 * values). One place checks tg_jw_finish().
 */
typedef struct tg_jw {
    char *buf;         /* caller's */
    size_t cap;        /* bytes of buf, including room for the NUL */
    size_t len;        /* bytes written so far */
    int err;           /* first error, 0 while none */
    unsigned depth;    /* open containers */
    uint32_t is_obj;   /* bit d: the container at depth d (1-based) is an object */
    uint32_t has_item; /* bit d: the container at depth d has a member already */
    bool want_value;   /* a key was written, its value is due */
    bool done;         /* the top-level value is complete */
} tg_jw_t;

/* Starts writing into buf[0..cap). */
void tg_jw_init(tg_jw_t *w, char *buf, size_t cap);

void tg_jw_obj_begin(tg_jw_t *w);
void tg_jw_obj_end(tg_jw_t *w);
void tg_jw_arr_begin(tg_jw_t *w);
void tg_jw_arr_end(tg_jw_t *w);

/* A member's key (NUL-terminated, escaped like a string); a value must follow. */
void tg_jw_key(tg_jw_t *w, const char *key);

/*
 * A string value s[0..len): UTF-8 passes unchanged (U+2028/2029 and DEL too),
 * `"` and `\` are escaped, control characters below 0x20 become \n \r \t \b \f
 * or \u00XX, and each ill-formed UTF-8 subpart (see tg_utf8_decode) becomes
 * U+FFFD, so the output is always valid JSON.
 */
void tg_jw_str(tg_jw_t *w, const char *s, size_t len);

void tg_jw_int(tg_jw_t *w, int64_t v);
void tg_jw_bool(tg_jw_t *w, bool v);
void tg_jw_null(tg_jw_t *w);

/* A value given as JSON text json[0..len), copied as is (not checked). */
void tg_jw_raw(tg_jw_t *w, const char *json, size_t len);

/*
 * Ends writing: NUL-terminates the text. Returns its length in bytes (without
 * the NUL); -ENOSPC if it did not fit (or is over INT_MAX); -EINVAL on misuse,
 * including a text with open containers or no value at all. On failure buf
 * holds "" (when cap > 0), so half a body cannot be sent by mistake.
 */
int tg_jw_finish(tg_jw_t *w);

/* ---- Rate limiter --------------------------------------------------------------------- */

/*
 * One token bucket: `n` tokens per `period_ms`, holding at most `burst`; the
 * numbers cfg_load() reads from a TELEGRAM_RATE_* spec (cfg_parse_rate()).
 */
typedef cfg_rate_t tg_rate_spec_t;

typedef struct tg_rate_config {
    tg_rate_spec_t global; /* every message: default 30/s, burst 30 */
    tg_rate_spec_t chat;   /* per chat: default 1/s, burst 3 */
    tg_rate_spec_t group;  /* also per chat with a negative id: default 20/min, burst 20 */
    uint32_t table_size;   /* per-chat entries, a power of two 64..2^24; default 65536 */
} tg_rate_config_t;

typedef struct tg_rate tg_rate_t;

/* Counters for metrics and tests. */
typedef struct tg_rate_stats {
    uint64_t granted;      /* tg_rate_try() calls that passed */
    uint64_t refused;      /* that had to wait */
    uint64_t refused_full; /* of those, because the chat table had no room */
    uint64_t reclaimed;    /* entries of idle chats reused for another chat */
    uint32_t entries;      /* table slots that hold a chat */
} tg_rate_stats_t;

/* The defaults above. */
void tg_rate_config_default(tg_rate_config_t *c);

/*
 * Makes a limiter (module-allocated: table_size * 40 bytes, 2.5 MiB by
 * default, all at once; it never grows). Every bucket starts full.
 * Returns NULL with *err = -EINVAL for a bad config; allocation failure aborts.
 */
tg_rate_t *tg_rate_new(const tg_rate_config_t *cfg, int *err);

void tg_rate_free(tg_rate_t *r);

/*
 * Asks to send one message to chat_id at now_ms (any monotonic clock in ms;
 * a time before the last one seen counts as that one). chat_id 0 means no chat:
 * only the global bucket and pause apply. A message passes when nothing is
 * paused (all, or this chat) and the global bucket, the chat's bucket and, for
 * a negative chat_id (groups, supergroups, channels), the chat's group bucket
 * each hold a token; then it takes one from each and returns true. Otherwise it
 * takes nothing and returns false with *wait_ms (if not NULL) = the time from
 * now until all of them would pass, at least 1.
 *
 * Guarantee: in any window of T ms a bucket with rate n/period and burst b
 * grants at most b + floor(n * (T - 1) / period) messages, e.g. per chat with
 * the defaults at most 3 in any second and 62 in any minute; per group at most
 * 39 in any minute (20 at once, then one every 3 s).
 *
 * Chats live in a fixed table probed linearly at most 32 slots from their home
 * slot. A chat whose buckets are full and whose pause is over holds nothing
 * worth keeping, so its slot is reused by the next new chat that needs one.
 * When every slot in reach belongs to a busy chat, a new chat is refused with
 * *wait_ms = when the first of them becomes reusable (counted in refused_full):
 * the table never grows and never forgets a chat that is being limited.
 */
bool tg_rate_try(tg_rate_t *r, int64_t chat_id, int64_t now_ms, int64_t *wait_ms);

/*
 * Pauses one chat until until_ms (from a 429 with retry_after): tg_rate_try()
 * refuses it before then. A pause is only ever extended, never shortened. A
 * chat not yet in the table takes a slot as in tg_rate_try(), judging the
 * other chats' idleness at the latest time tg_rate_try() was given.
 * Returns 0; -ENOSPC when the table has no room for the chat (then pause all,
 * or retry the pause later); -EINVAL for chat_id 0.
 */
int tg_rate_pause_chat(tg_rate_t *r, int64_t chat_id, int64_t until_ms);

/* Pauses every chat until until_ms (a 429 that is not about one chat); only extends. */
void tg_rate_pause_all(tg_rate_t *r, int64_t until_ms);

/* OUT: *st, the counters as of now. */
void tg_rate_stats(const tg_rate_t *r, tg_rate_stats_t *st);

#endif
