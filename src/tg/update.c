/* SPDX-License-Identifier: MIT */
/*
 * update.c - the strict JSON check of a webhook body and the fields the inbox
 * stores beside it (update_id, type, chat, sender).
 *
 * A pure function over bytes with caller-owned tokens: jsmn tokenizes, then one
 * iterative walk over the tokens and the bytes between them enforces what jsmn's
 * strict mode lets through (missing or extra commas and colons, bad literals and
 * numbers, UTF-8, control bytes). This is also the one translation unit that
 * compiles jsmn's implementation; every other user includes it with JSMN_HEADER.
 */
#include <jsmn.h>

#include "core.h"
#include "json_private.h"
#include "tg.h"

#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static const char *const type_names[TG_UPDATE__COUNT] = {
    [TG_UPDATE_OTHER] = "other",
    [TG_UPDATE_MESSAGE] = "message",
    [TG_UPDATE_EDITED_MESSAGE] = "edited_message",
    [TG_UPDATE_CHANNEL_POST] = "channel_post",
    [TG_UPDATE_EDITED_CHANNEL_POST] = "edited_channel_post",
    [TG_UPDATE_BUSINESS_CONNECTION] = "business_connection",
    [TG_UPDATE_BUSINESS_MESSAGE] = "business_message",
    [TG_UPDATE_EDITED_BUSINESS_MESSAGE] = "edited_business_message",
    [TG_UPDATE_DELETED_BUSINESS_MESSAGES] = "deleted_business_messages",
    [TG_UPDATE_MESSAGE_REACTION] = "message_reaction",
    [TG_UPDATE_MESSAGE_REACTION_COUNT] = "message_reaction_count",
    [TG_UPDATE_INLINE_QUERY] = "inline_query",
    [TG_UPDATE_CHOSEN_INLINE_RESULT] = "chosen_inline_result",
    [TG_UPDATE_CALLBACK_QUERY] = "callback_query",
    [TG_UPDATE_SHIPPING_QUERY] = "shipping_query",
    [TG_UPDATE_PRE_CHECKOUT_QUERY] = "pre_checkout_query",
    [TG_UPDATE_PURCHASED_PAID_MEDIA] = "purchased_paid_media",
    [TG_UPDATE_POLL] = "poll",
    [TG_UPDATE_POLL_ANSWER] = "poll_answer",
    [TG_UPDATE_MY_CHAT_MEMBER] = "my_chat_member",
    [TG_UPDATE_CHAT_MEMBER] = "chat_member",
    [TG_UPDATE_CHAT_JOIN_REQUEST] = "chat_join_request",
    [TG_UPDATE_CHAT_BOOST] = "chat_boost",
    [TG_UPDATE_REMOVED_CHAT_BOOST] = "removed_chat_boost",
};

const char *tg_update_type_name(tg_update_type_t type)
{
    if ((unsigned)type >= TG_UPDATE__COUNT)
        return type_names[TG_UPDATE_OTHER];
    return type_names[type];
}

/*
 * The contents of a string token, between the quotes: no raw control bytes,
 * only the escapes RFC 8259 lists, and well-formed UTF-8 (RFC 3629: no
 * overlongs, no encoded surrogates, nothing above U+10FFFF, no truncated
 * sequence). \u0000 and unpaired \uD800-style escapes are valid JSON text by
 * the RFC's grammar and are accepted; what they decode to is the reader's
 * business, and the inbox stores the raw body.
 */
/*
 * Eight bytes at a time (SWAR): a mask whose lowest set bit is the high bit
 * of the first byte of v, in memory order (little-endian), that is below
 * 0x20, 0x80 or above, or a backslash (the bytes string_ok() must look at),
 * or 0 when there is none. Only the lowest set bit is exact: a borrow may set
 * bits above it, which the callers never read.
 */
#define SWAR_ONES 0x0101010101010101ull
#define SWAR_HIGH 0x8080808080808080ull
static inline uint64_t swar_load(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static inline uint64_t swar_zero(uint64_t v)
{
    return (v - SWAR_ONES) & ~v & SWAR_HIGH;
}

static inline uint64_t swar_string_special(uint64_t v)
{
    return ((v - 0x20 * SWAR_ONES) & ~v & SWAR_HIGH) | (v & SWAR_HIGH) |
           swar_zero(v ^ ('\\' * SWAR_ONES));
}

/* The first '"', '\\' or NUL in b[i..len), or len. */
static size_t span_to_quote(const unsigned char *b, size_t i, size_t len)
{
    for (; i + 8 <= len; i += 8) {
        uint64_t v = swar_load(b + i);
        uint64_t m = swar_zero(v ^ ('"' * SWAR_ONES)) | swar_zero(v ^ ('\\' * SWAR_ONES)) |
                     swar_zero(v);
        if (m != 0)
            return i + (size_t)__builtin_ctzll(m) / 8;
    }
    while (i < len && b[i] != '"' && b[i] != '\\' && b[i] != '\0')
        i++;
    return i;
}

static bool string_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* Plain ASCII goes eight bytes at a time. */
        while (i + 8 <= n) {
            uint64_t m = swar_string_special(swar_load(p + i));
            if (m != 0) {
                i += (size_t)__builtin_ctzll(m) / 8;
                break;
            }
            i += 8;
        }
        if (i >= n)
            break;
        unsigned char c = p[i];
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (i + 1 >= n)
                return false;
            switch (p[i + 1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                i += 2;
                continue;
            case 'u':
                if (tg_json_u_escape(p + i, n - i) < 0)
                    return false;
                i += 6;
                continue;
            default:
                return false;
            }
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int seq = core_utf8_decode((const char *)p + i, n - i, &cp);
        if (seq < 0)
            return false;
        i += (size_t)seq;
    }
    return true;
}

/* A primitive token is exactly a literal or a number of RFC 8259's grammar. */
static bool primitive_ok(const unsigned char *p, size_t n)
{
    if (n == 4 && memcmp(p, "true", 4) == 0)
        return true;
    if (n == 5 && memcmp(p, "false", 5) == 0)
        return true;
    if (n == 4 && memcmp(p, "null", 4) == 0)
        return true;
    size_t i = 0;
    if (i < n && p[i] == '-')
        i++;
    if (i < n && p[i] == '0') {
        i++;
    } else if (i < n && p[i] >= '1' && p[i] <= '9') {
        while (i < n && tg_json_is_digit(p[i]))
            i++;
    } else {
        return false;
    }
    if (i < n && p[i] == '.') {
        i++;
        if (i >= n || !tg_json_is_digit(p[i]))
            return false;
        while (i < n && tg_json_is_digit(p[i]))
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !tg_json_is_digit(p[i]))
            return false;
        while (i < n && tg_json_is_digit(p[i]))
            i++;
    }
    return i == n;
}

/*
 * Deepest nesting of objects and arrays accepted. RFC 8259 lets a parser limit
 * it; Bot API updates nest about ten deep. The cap is what keeps jsmn linear:
 * with parent links it finds the container a closing bracket ends by climbing
 * from the last token it made, so a text nested d deep costs O(d^2) there.
 */
#define MAX_DEPTH 64

/*
 * Whether jsmn would nest deeper than MAX_DEPTH reading body[0..len). The scan
 * follows jsmn's strict-mode lexing so that a bracket counts exactly when jsmn
 * would open or close a container on it: a string runs to the next unescaped
 * quote, a primitive to the next delimiter (a quote inside `1"` does not start
 * a string), and the scan stops where jsmn stops (a NUL byte, a byte it
 * refuses), as jsmn does no work past that point. Counting brackets outside
 * quotes alone would let `[1" ,[[[...` hide its depth.
 */
static bool too_deep(const unsigned char *b, size_t len)
{
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        switch (b[i]) {
        case '{':
        case '[':
            if (++depth > MAX_DEPTH)
                return true;
            break;
        case '}':
        case ']':
            depth--;
            break;
        case '"':
            for (i = span_to_quote(b, i + 1, len); i < len && b[i] != '"';
                 i = span_to_quote(b, i + 2, len)) {
                if (b[i] == '\0')
                    return false;
                /* A backslash: the byte after it is skipped. */
            }
            break;
        case '\t':
        case '\r':
        case '\n':
        case ' ':
        case ',':
        case ':':
            break;
        case '-':
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7':
        case '8':
        case '9':
        case 't':
        case 'f':
        case 'n':
            /* The delimiter that ends the primitive is read by the next turn. */
            for (; i + 1 < len; i++) {
                unsigned char c = b[i + 1];
                if (c == '\t' || c == '\r' || c == '\n' || c == ' ' || c == ',' || c == ']' ||
                    c == '}')
                    break;
                if (c < 0x20 || c >= 0x7F)
                    return false;
            }
            break;
        default:
            return false;
        }
    }
    return false;
}

/*
 * Whether body[0..len) holds more than MAX_DEPTH bytes that are '{' or '['
 * anywhere, strings included: only then can it nest deeper than MAX_DEPTH,
 * so only then does too_deep() have to lex it. An update has a dozen or so.
 * Eight bytes at a time; swar_zero() may also flag a byte above a real match,
 * which only counts too many and sends the text to the exact scan.
 */
static bool brackets_over_depth(const unsigned char *b, size_t len)
{
    size_t n = 0, i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v = swar_load(b + i);
        uint64_t m = swar_zero(v ^ ('{' * SWAR_ONES)) | swar_zero(v ^ ('[' * SWAR_ONES));
        /* At most one bit per byte, at bit 7 of it: summed into the top byte. */
        n += (size_t)(((m >> 7) * SWAR_ONES) >> 56);
        if (n > MAX_DEPTH)
            return true;
    }
    for (; i < len; i++)
        n += b[i] == '{' || b[i] == '[';
    return n > MAX_DEPTH;
}

/* Where the walk is in the grammar, i.e. what may come next. */
enum walk_state {
    W_TOP,         /* the one top-level value */
    W_OBJ_FIRST,   /* just after '{': a key or '}' */
    W_KEY,         /* after ',' in an object: a key */
    W_COLON,       /* after a key: ':' */
    W_VALUE,       /* after ':' or after ',' in an array: a value */
    W_ARR_FIRST,   /* just after '[': a value or ']' */
    W_AFTER_VALUE, /* after a member or element: ',' or the closing bracket */
    W_END,         /* after the top-level value: whitespace only */
};

/*
 * Checks that body[0..len) is one strict JSON text whose value is an object or
 * an array, tokenized into tok[0..ntok). Returns the token count; -EBADMSG if
 * the text is not valid JSON; -ELOOP if it is nested deeper than MAX_DEPTH;
 * -E2BIG if it has more than ntok tokens.
 *
 * A bare scalar at the top level is refused: jsmn's strict mode cannot end a
 * primitive at the end of input, and an update is an object anyway.
 *
 * jsmn accepts some invalid texts in strict mode (`{"a" "b"}`, `{"a":1,}`,
 * `[1 2]`, `{"a":tru}`, `{"a":01}`, `[,1]`, `{} {}`, a NUL byte ending the
 * input early) and checks neither UTF-8 nor control bytes in strings. So the
 * walk below re-reads the text as the sequence jsmn's tokens and the bytes
 * between them form, and runs it through JSON's grammar. The walk keeps no
 * stack of its own: the stack of open containers is the chain of parent links,
 * which it checks against the grammar as it goes. So nothing here recurses
 * whatever the depth; MAX_DEPTH is there for jsmn's sake.
 */
static int json_check(const char *body, size_t len, jsmntok_t *tok, unsigned ntok)
{
    const unsigned char *b = (const unsigned char *)body;

    /* jsmn keeps offsets in int and its position in unsigned int. */
    if (len > INT_MAX)
        return -E2BIG;
    if (ntok > INT_MAX)
        ntok = INT_MAX;
    if (tok == NULL || ntok == 0)
        return -E2BIG;
    if (brackets_over_depth(b, len) && too_deep(b, len))
        return -ELOOP;

    jsmn_parser p;
    jsmn_init(&p);
    int count = jsmn_parse(&p, body, len, tok, ntok);
    if (count == JSMN_ERROR_NOMEM)
        return -E2BIG;
    if (count <= 0)
        return -EBADMSG;

    enum walk_state st = W_TOP;
    int cur = -1; /* innermost open container */
    int key = -1; /* the key whose value comes next, in W_VALUE inside an object */
    int i = 0;    /* next token */
    size_t pos = 0;
    for (;;) {
        while (pos < len && tg_json_is_ws(b[pos]))
            pos++;
        if (pos == len)
            break;
        unsigned char c = b[pos];
        bool in_obj = cur >= 0 && tok[cur].type == JSMN_OBJECT;

        if (c == ',') {
            if (st != W_AFTER_VALUE)
                return -EBADMSG;
            st = in_obj ? W_KEY : W_VALUE;
            pos++;
            continue;
        }
        if (c == ':') {
            if (st != W_COLON)
                return -EBADMSG;
            st = W_VALUE;
            pos++;
            continue;
        }
        if (c == '}' || c == ']') {
            jsmntype_t want = c == '}' ? JSMN_OBJECT : JSMN_ARRAY;
            if (cur < 0 || tok[cur].type != want || (size_t)tok[cur].end != pos + 1)
                return -EBADMSG;
            if (st != W_AFTER_VALUE && st != (c == '}' ? W_OBJ_FIRST : W_ARR_FIRST))
                return -EBADMSG;
            /* Pop: a value inside an object hangs off its key, the key off the object. */
            cur = tok[cur].parent;
            if (cur >= 0 && tok[cur].type == JSMN_STRING)
                cur = tok[cur].parent;
            st = cur < 0 ? W_END : W_AFTER_VALUE;
            pos++;
            continue;
        }

        /* Anything else must be where the next token starts. */
        if (i >= count)
            return -EBADMSG;
        const jsmntok_t *t = &tok[i];
        size_t start = t->type == JSMN_STRING ? (size_t)t->start - 1 : (size_t)t->start;
        if (t->start < 0 || t->end < t->start || start != pos)
            return -EBADMSG;

        int parent;
        switch (st) {
        case W_TOP:
            if (t->type != JSMN_OBJECT && t->type != JSMN_ARRAY)
                return -EBADMSG;
            parent = -1;
            break;
        case W_OBJ_FIRST:
        case W_KEY:
            if (t->type != JSMN_STRING)
                return -EBADMSG;
            parent = cur;
            break;
        case W_VALUE:
            parent = in_obj ? key : cur;
            break;
        case W_ARR_FIRST:
            parent = cur;
            break;
        default:
            return -EBADMSG;
        }
        if (t->parent != parent)
            return -EBADMSG;

        bool is_key = st == W_OBJ_FIRST || st == W_KEY;
        switch (t->type) {
        case JSMN_OBJECT:
        case JSMN_ARRAY:
            cur = i;
            st = t->type == JSMN_OBJECT ? W_OBJ_FIRST : W_ARR_FIRST;
            pos++;
            break;
        case JSMN_STRING:
            if ((size_t)t->end >= len || b[t->end] != '"' ||
                !string_ok(b + t->start, (size_t)(t->end - t->start)))
                return -EBADMSG;
            if (is_key)
                key = i;
            st = is_key ? W_COLON : W_AFTER_VALUE;
            pos = (size_t)t->end + 1;
            break;
        case JSMN_PRIMITIVE:
            if (!primitive_ok(b + t->start, (size_t)(t->end - t->start)))
                return -EBADMSG;
            st = W_AFTER_VALUE;
            pos = (size_t)t->end;
            break;
        default:
            return -EBADMSG;
        }
        i++;
    }
    if (st != W_END || i != count)
        return -EBADMSG;
    return count;
}

static tg_update_type_t type_of(const char *body, const jsmntok_t *k)
{
    for (int ty = TG_UPDATE_OTHER + 1; ty < TG_UPDATE__COUNT; ty++)
        if (tg_json_tok_eq(body, k, type_names[ty]))
            return (tg_update_type_t)ty;
    return TG_UPDATE_OTHER;
}

/* tg_update_parse without the promise that *out is cleared on failure. */
static int update_parse(const char *body, size_t len, tg_json_scratch_t *s, tg_update_info_t *out)
{
    int count = json_check(body, len, s->tok, s->ntok);
    if (count == -ELOOP)
        return -EBADMSG;
    if (count < 0)
        return count;
    const jsmntok_t *tok = s->tok;
    if (tok[0].type != JSMN_OBJECT)
        return -EBADMSG;

    /*
     * One pass over the top-level members. Duplicate keys are valid JSON; for
     * update_id every occurrence must be a valid id and all must agree, since
     * readers differ in which duplicate they keep.
     */
    bool have_id = false;
    int payload = -1;
    for (int j = 1; j < count; j++) {
        if (tok[j].parent != 0)
            continue;
        const jsmntok_t *v = &tok[j + 1];
        if (tg_json_tok_eq(body, &tok[j], "update_id")) {
            int64_t id;
            if (body[v->start] == '-' || !tg_json_int(body, v, &id) || id >= (INT64_C(1) << 53))
                return -EBADMSG;
            if (have_id && id != out->update_id)
                return -EBADMSG;
            out->update_id = id;
            have_id = true;
        } else if (payload < 0 && v->type == JSMN_OBJECT) {
            payload = j + 1;
            out->type = type_of(body, &tok[j]);
            out->type_name = body + tok[j].start;
            out->type_name_len = (size_t)(tok[j].end - tok[j].start);
        }
    }
    if (!have_id)
        return -EBADMSG;
    out->ntok = count;
    if (payload < 0)
        return 0;

    /*
     * Where the chat and the sender sit depends on the type; any type not named
     * here, including ones newer than this code, is read like a message.
     */
    int chat_holder = payload;
    if (out->type == TG_UPDATE_CALLBACK_QUERY)
        chat_holder = tg_json_member(body, tok, count, payload, "message");
    int chat = tg_json_member(body, tok, count, chat_holder, "chat");
    int chat_id = tg_json_member(body, tok, count, chat, "id");
    if (chat_id >= 0 && tg_json_int(body, &tok[chat_id], &out->chat_id)) {
        out->has_chat = true;
        int ct = tg_json_member(body, tok, count, chat, "type");
        if (ct >= 0 && tok[ct].type == JSMN_STRING) {
            out->chat_type = body + tok[ct].start;
            out->chat_type_len = (size_t)(tok[ct].end - tok[ct].start);
        }
    }

    const char *sender = "from";
    if (out->type == TG_UPDATE_POLL_ANSWER || out->type == TG_UPDATE_MESSAGE_REACTION)
        sender = "user";
    int from = tg_json_member(body, tok, count, payload, sender);
    int from_id = tg_json_member(body, tok, count, from, "id");
    if (from_id >= 0 && tg_json_int(body, &tok[from_id], &out->from_id))
        out->has_from = true;
    return 0;
}

int tg_update_parse(const char *body, size_t len, tg_json_scratch_t *s, tg_update_info_t *out)
{
    memset(out, 0, sizeof(*out));
    int rc = update_parse(body, len, s, out);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}
