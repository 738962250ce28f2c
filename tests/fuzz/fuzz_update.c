/* SPDX-License-Identifier: MIT */
/*
 * fuzz_update.c - libFuzzer target for tg_update_parse, the webhook body check.
 *
 * Aborts when an invariant breaks: the result is 0, -EBADMSG or -E2BIG, and
 * -E2BIG only when the tokens can run out; parsing twice gives the same answer;
 * a smaller token array changes nothing but may turn the answer into -E2BIG;
 * whitespace around the body changes nothing; on success update_id is in
 * [0, 2^53), the type agrees with its name, and every view lies inside the
 * input between quotes; on failure the output is cleared.
 *
 * The target includes update.c, and json.c with the helpers it calls, rather
 * than calling them through tg_lib, so that libFuzzer's coverage
 * instrumentation, which only the target's own translation unit gets, sees
 * the code under test. Built by hand with
 * -DTG_FUZZ_JANSSON and -ljansson, it also checks that the JSON verdict agrees
 * with jansson's (see tests/unit/tg/test_update_jansson.c):
 *   clang -g -O1 -DJSMN_STRICT -DJSMN_PARENT_LINKS -DTG_FUZZ_JANSSON -Iinclude \
 *     -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_update.c -ljansson
 */
#include "../../src/tg/update.c"
/* After update.c, which compiles jsmn: json.c includes jsmn.h for declarations only. */
#include "../../src/tg/json.c"

#ifdef TG_FUZZ_JANSSON
#include <jansson.h>
#endif

#include "fuzz.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BIG_NTOK (1u << 16)
#define SMALL_NTOK 8u
#define PAD 2

static jsmntok_t big[BIG_NTOK], small[SMALL_NTOK];
static char wrapped[BIG_NTOK + 2 * PAD];

static void check(bool cond)
{
    if (!cond)
        abort();
}

static ptrdiff_t off(const char *view, const char *base)
{
    return view ? view - base : -1;
}

/* Same result, with views at the same offsets from their bodies (shifted by `shift`). */
static bool same(const tg_update_info_t *a, const char *abase, const tg_update_info_t *b,
                 const char *bbase, ptrdiff_t shift)
{
    ptrdiff_t atn = off(a->type_name, abase), btn = off(b->type_name, bbase);
    ptrdiff_t act = off(a->chat_type, abase), bct = off(b->chat_type, bbase);
    return a->update_id == b->update_id && a->type == b->type &&
           (atn < 0 ? btn < 0 : btn == atn + shift) && a->type_name_len == b->type_name_len &&
           a->has_chat == b->has_chat && a->chat_id == b->chat_id &&
           (act < 0 ? bct < 0 : bct == act + shift) && a->chat_type_len == b->chat_type_len &&
           a->has_from == b->has_from && a->from_id == b->from_id;
}

/* A view into data of a string token's contents: inside, and between quotes. */
static bool quoted_view(const char *v, size_t vlen, const char *data, size_t size)
{
    if (v < data || (size_t)(v - data) < 1 || vlen > size || (size_t)(v - data) > size - vlen - 1)
        return false;
    return v[-1] == '"' && v[vlen] == '"';
}

static void check_info(int rc, const tg_update_info_t *u, const char *data, size_t size)
{
    if (rc != 0) {
        static const tg_update_info_t zero;
        check(same(u, data, &zero, NULL, 0) && u->type_name_len == 0 && u->chat_type_len == 0);
        return;
    }
    check(u->update_id >= 0 && u->update_id < (INT64_C(1) << 53));
    check((unsigned)u->type < TG_UPDATE__COUNT);
    if (u->type_name == NULL) {
        check(u->type == TG_UPDATE_OTHER && u->type_name_len == 0);
    } else {
        check(quoted_view(u->type_name, u->type_name_len, data, size));
        bool known = false;
        for (int t = TG_UPDATE_OTHER + 1; t < TG_UPDATE__COUNT; t++) {
            const char *name = tg_update_type_name((tg_update_type_t)t);
            if (strlen(name) == u->type_name_len &&
                memcmp(name, u->type_name, u->type_name_len) == 0) {
                check(u->type == (tg_update_type_t)t);
                known = true;
            }
        }
        check(known == (u->type != TG_UPDATE_OTHER));
    }
    if (u->chat_type != NULL)
        check(u->has_chat && quoted_view(u->chat_type, u->chat_type_len, data, size));
    else
        check(u->chat_type_len == 0);
    if (!u->has_chat)
        check(u->chat_id == 0 && u->chat_type == NULL);
    if (!u->has_from)
        check(u->from_id == 0);
}

#ifdef TG_FUZZ_JANSSON
/* The skips of tests/unit/tg/test_update_jansson.c, which says why. */
static bool jansson_says_nothing(const char *data, size_t size, bool valid, const char *why)
{
    if (!valid)
        return strncmp(why, "invalid Unicode", 15) == 0 || strncmp(why, "too big ", 8) == 0 ||
               strncmp(why, "real number overflow", 20) == 0 ||
               strncmp(why, "maximum parsing depth", 21) == 0 ||
               strncmp(why, "NUL byte in object key", 22) == 0;
    for (const char *p = data; (p = memchr(p, '\0', size - (size_t)(p - data))) != NULL; p++)
        if (p > data && ((p[-1] >= '0' && p[-1] <= '9') || (p[-1] >= 'a' && p[-1] <= 'z')))
            return true;
    return false;
}

static void check_jansson(const char *data, size_t size)
{
    if (size >= BIG_NTOK)
        return;
    int ours = json_check(data, size, big, BIG_NTOK);
    json_error_t err;
    json_t *j = json_loadb(data, size, JSON_ALLOW_NUL, &err);
    bool valid = j != NULL;
    json_decref(j);
    if (ours == -ELOOP || jansson_says_nothing(data, size, valid, err.text))
        return;
    check(ours != -E2BIG && (ours >= 0) == valid);
}
#endif

/* The verdict on the input as a webhook body, with 65,536 tokens. */
fuzz_verdict_t fuzz_verdict(const uint8_t *data, size_t size)
{
    tg_json_scratch_t sb = {big, BIG_NTOK};
    tg_update_info_t u;
    int rc = tg_update_parse((const char *)data, size, &sb, &u);
    return rc == 0 ? FUZZ_ACCEPTED : rc == -E2BIG ? FUZZ_TOO_BIG : FUZZ_REFUSED;
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
    const char *data = (const char *)bytes;
    tg_json_scratch_t sb = {big, BIG_NTOK}, ss = {small, SMALL_NTOK};
    tg_update_info_t a, b;

    int rc = tg_update_parse(data, size, &sb, &a);
    check(rc == 0 || rc == -EBADMSG || rc == -E2BIG);
    /* A text has at most one token per byte. */
    check(rc != -E2BIG || size > BIG_NTOK);
    check_info(rc, &a, data, size);

    check(tg_update_parse(data, size, &sb, &b) == rc && same(&a, data, &b, data, 0));

    int rs = tg_update_parse(data, size, &ss, &b);
    if (rs != -E2BIG)
        check(rs == rc && same(&a, data, &b, data, 0));
    else
        check(size > SMALL_NTOK);
    check_info(rs, &b, data, size);

    if (size <= BIG_NTOK) {
        memcpy(wrapped, " \r", PAD);
        memcpy(wrapped + PAD, data, size);
        memcpy(wrapped + PAD + size, "\n\t", PAD);
        int rw = tg_update_parse(wrapped, size + 2 * PAD, &sb, &b);
        check(rw == rc && same(&a, data, &b, wrapped, PAD));
    }
#ifdef TG_FUZZ_JANSSON
    check_jansson(data, size);
#endif
    return 0;
}
