/* SPDX-License-Identifier: MIT */
/*
 * tg.h - Telegram: the per-bot structure, and what tgring reads out of an
 * update. The webhook endpoint is in tg_webhook.h, the Bot API's pure pieces
 * in tg_api.h, the subcommands in tg_commands.h, the sender in tg_sender.h.
 *
 * Depends on core (cfg) and tg_api.h.
 */
#ifndef TGRING_TG_H
#define TGRING_TG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSMN_HEADER
#include <jsmn.h>
#undef JSMN_HEADER

#include "cfg.h"
#include "tg_api.h"

/*
 * Everything that belongs to one bot: its token, its webhook's secret and
 * path, and its rate limits. Passed explicitly to the webhook endpoint, the
 * subcommands and the sender, never kept in globals, so that one server can
 * later hold several bots.
 */
typedef struct tg_bot {
    const char *token;          /* TELEGRAM_BOT_TOKEN; NULL: nothing is sent */
    const char *webhook_secret; /* TELEGRAM_WEBHOOK_SECRET; NULL when unset */
    size_t webhook_secret_len;  /* bytes, 0 when unset */
    const char *webhook_path;   /* TGRING_WEBHOOK_PATH, e.g. "/webhook/telegram" */
    size_t webhook_path_len;    /* bytes */
    tg_rate_config_t rate;      /* the sender's token buckets */
} tg_bot_t;

/*
 * Fills `bot` from a loaded configuration: views of its strings (so `cfg`
 * must outlive `bot`) and the limiter configuration built from its
 * TELEGRAM_RATE_* numbers on top of tg_rate_config_default().
 */
void tg_bot_init(tg_bot_t *bot, const cfg_t *cfg);

/* The update types the Bot API defines, plus OTHER for a key we do not know. */
typedef enum tg_update_type {
    TG_UPDATE_OTHER = 0,
    TG_UPDATE_MESSAGE,
    TG_UPDATE_EDITED_MESSAGE,
    TG_UPDATE_CHANNEL_POST,
    TG_UPDATE_EDITED_CHANNEL_POST,
    TG_UPDATE_BUSINESS_CONNECTION,
    TG_UPDATE_BUSINESS_MESSAGE,
    TG_UPDATE_EDITED_BUSINESS_MESSAGE,
    TG_UPDATE_DELETED_BUSINESS_MESSAGES,
    TG_UPDATE_MESSAGE_REACTION,
    TG_UPDATE_MESSAGE_REACTION_COUNT,
    TG_UPDATE_INLINE_QUERY,
    TG_UPDATE_CHOSEN_INLINE_RESULT,
    TG_UPDATE_CALLBACK_QUERY,
    TG_UPDATE_SHIPPING_QUERY,
    TG_UPDATE_PRE_CHECKOUT_QUERY,
    TG_UPDATE_PURCHASED_PAID_MEDIA,
    TG_UPDATE_POLL,
    TG_UPDATE_POLL_ANSWER,
    TG_UPDATE_MY_CHAT_MEMBER,
    TG_UPDATE_CHAT_MEMBER,
    TG_UPDATE_CHAT_JOIN_REQUEST,
    TG_UPDATE_CHAT_BOOST,
    TG_UPDATE_REMOVED_CHAT_BOOST,
    TG_UPDATE__COUNT
} tg_update_type_t;

/* What the inbox stores beside the raw body. Views point into the body. */
typedef struct tg_update_info {
    int64_t update_id; /* >= 0; the Bot API's ids fit in 52 bits */
    tg_update_type_t type;
    const char *type_name; /* the update's payload key as sent, e.g. "message" */
    size_t type_name_len;
    bool has_chat;
    int64_t chat_id;       /* payload.chat.id (callback_query: message.chat.id) */
    const char *chat_type; /* "private", "group", "supergroup", "channel"; NULL if none */
    size_t chat_type_len;
    bool has_from;
    int64_t from_id; /* payload.from.id (poll_answer, message_reaction: user.id) */
    int ntok;        /* the tokens the body parsed into, in s->tok[0..ntok) */
} tg_update_info_t;

/* Scratch space for the JSON tokenizer, owned by the caller and reused. */
typedef struct tg_json_scratch {
    jsmntok_t *tok; /* caller-provided array */
    unsigned ntok;  /* its length */
} tg_json_scratch_t;

/*
 * Checks that body[0..len) is one strict JSON value (RFC 8259: valid UTF-8,
 * no control bytes in strings, valid escapes, numbers and literals, nothing
 * after the value but whitespace), nested at most 64 deep, that it is an
 * object with an integer "update_id" in [0, 2^53), and extracts `out`.
 * Keys are compared as raw bytes: a key spelt with escapes is not recognised.
 * No heap allocation; work linear in len.
 * Returns 0; -EBADMSG for malformed JSON, nesting deeper than 64 or a
 * missing/invalid update_id; -E2BIG when the body has more tokens than
 * s->ntok, len > INT_MAX or there is no token array (the caller answers 413).
 * On failure *out is cleared.
 */
int tg_update_parse(const char *body, size_t len, tg_json_scratch_t *s, tg_update_info_t *out);

/* The Bot API name of `type` ("message", ...); "other" for TG_UPDATE_OTHER. */
const char *tg_update_type_name(tg_update_type_t type);

/*
 * Readers over the tokens tg_update_parse() filled (tok[0..count) of text s,
 * with parent links), for code above tg that looks into an update.
 *
 * tg_json_find: the value token of the first member `key` (compared as raw
 * bytes) of object token obj, or -1 when obj is not an object or has no such
 * member. Linear in the object's tokens.
 */
int tg_json_find(const char *s, const jsmntok_t *tok, int count, int obj, const char *key);

/* Token i as an integer (-?digits within int64_t). Returns false (*out untouched) otherwise. */
bool tg_json_tok_int(const char *s, const jsmntok_t *tok, int i, int64_t *out);

/*
 * String token i unescaped into buf (invalid UTF-8, unpaired surrogates and
 * \u0000 as U+FFFD), cut at a character boundary to fit and NUL-terminated
 * (when cap > 0). Returns the full unescaped length in bytes (>= cap: it was
 * cut), or -EINVAL when token i is not a string.
 */
int tg_json_tok_string(const char *s, const jsmntok_t *tok, int i, char *buf, size_t cap);

#endif
