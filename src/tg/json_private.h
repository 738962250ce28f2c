/* SPDX-License-Identifier: MIT */
/*
 * json_private.h - what the tg module's two JSON readers share: update.c (the
 * strict check of a webhook body) and api.c (Bot API answers). Byte classes,
 * strict integers, \uXXXX escapes, and member lookup over jsmn tokens with
 * parent links (UTF-8 is core's: core_utf8_decode). Private to src/tg;
 * json.c has the code.
 *
 * Include <jsmn.h> in full before this header in the one file that compiles
 * jsmn (update.c): this header includes it with JSMN_HEADER, declarations only.
 */
#ifndef TGRING_TG_JSON_PRIVATE_H
#define TGRING_TG_JSON_PRIVATE_H

#define JSMN_HEADER
#include <jsmn.h>
#undef JSMN_HEADER

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* JSON's whitespace (RFC 8259): space, tab, LF, CR. */
static inline bool tg_json_is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline bool tg_json_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/*
 * The code unit of the \uXXXX escape at p[0..n), or -1 when p does not start
 * with a backslash, a 'u' and four hex digits.
 */
long tg_json_u_escape(const unsigned char *p, size_t n);

/*
 * Whether token t of text s is complete and its bytes are exactly lit. A
 * string token's bytes are its contents without the quotes, compared raw: a
 * key spelt with escapes does not match.
 */
bool tg_json_tok_eq(const char *s, const jsmntok_t *t, const char *lit);

/*
 * Reads token t of text s as an integer: a complete primitive that is
 * -?(0|[1-9][0-9]*) within int64_t, no fraction or exponent. Returns false
 * (and leaves *out alone) for anything else.
 */
bool tg_json_int(const char *s, const jsmntok_t *t, int64_t *out);

/*
 * The value token of the first member `key` of object token obj in
 * tok[0..count) (tokens of text s, with parent links), or -1 when obj is not
 * an object, or the member is not among the tokens filled, or its value was
 * not filled (a tokenization cut short). Keys are compared as by
 * tg_json_tok_eq. Linear in the object's tokens; nothing recurses.
 */
int tg_json_member(const char *s, const jsmntok_t *tok, int count, int obj, const char *key);

#endif
