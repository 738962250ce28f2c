/* SPDX-License-Identifier: MIT */
/*
 * fuzz_jw.c - libFuzzer target for the JSON writer: whatever bytes go into
 * tg_jw_str, the output is JSON whose string decodes to exactly the input with
 * each ill-formed UTF-8 subpart replaced by U+FFFD.
 *
 * Aborts when an invariant breaks: the decoded string equals ref_replace() of
 * the input (a table-driven second implementation of the replacement); text
 * that is valid UTF-8 with nothing to escape comes out verbatim; the output
 * has no raw control bytes; it fits a buffer of exactly its length plus one
 * and fails with -ENOSPC, leaving "", in one byte less; the same string as a
 * member, a key and inside an array reads back the same. The decoding is done by
 * tg_api_get_string (which turns U+0000 into U+FFFD) and, built with
 * -DTG_FUZZ_JANSSON and -ljansson, also by jansson. tests/unit/tg/test_jw.c
 * includes this file and drives it with random inputs under jansson.
 */
#include "fuzz.h"
#include "tg_api.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TG_FUZZ_JANSSON
#include <jansson.h>
#endif

static void check(bool cond)
{
    if (!cond)
        abort();
}

/*
 * Well-formed UTF-8 (Unicode Table 3-7): for each first-byte range, the range
 * of each following byte. A row matches as far as its ranges go; a partial
 * match is one maximal subpart.
 */
static const struct {
    unsigned char lo, hi;  /* first byte */
    unsigned char n;       /* following bytes */
    unsigned char r[3][2]; /* their ranges */
} utf8_rows[] = {
    {0x00, 0x7F, 0, {{0, 0}}},
    {0xC2, 0xDF, 1, {{0x80, 0xBF}}},
    {0xE0, 0xE0, 2, {{0xA0, 0xBF}, {0x80, 0xBF}}},
    {0xE1, 0xEC, 2, {{0x80, 0xBF}, {0x80, 0xBF}}},
    {0xED, 0xED, 2, {{0x80, 0x9F}, {0x80, 0xBF}}},
    {0xEE, 0xEF, 2, {{0x80, 0xBF}, {0x80, 0xBF}}},
    {0xF0, 0xF0, 3, {{0x90, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}}},
    {0xF1, 0xF3, 3, {{0x80, 0xBF}, {0x80, 0xBF}, {0x80, 0xBF}}},
    {0xF4, 0xF4, 3, {{0x80, 0x8F}, {0x80, 0xBF}, {0x80, 0xBF}}},
};

/*
 * Writes into out (room for 3 * len bytes) what in[0..len) reads as with each
 * maximal ill-formed subpart replaced by U+FFFD, NUL bytes too when nul_fffd.
 * Returns the length. Sets *plain when the input is well-formed and has no
 * byte that JSON escapes.
 */
static size_t ref_replace(const unsigned char *in, size_t len, unsigned char *out, bool nul_fffd,
                          bool *plain)
{
    size_t o = 0, i = 0;
    *plain = true;
    while (i < len) {
        size_t take = 0; /* bytes of a well-formed sequence, 0 if ill-formed */
        size_t skip = 1; /* bytes the subpart covers when ill-formed */
        for (size_t row = 0; row < sizeof(utf8_rows) / sizeof(utf8_rows[0]); row++) {
            if (in[i] < utf8_rows[row].lo || in[i] > utf8_rows[row].hi)
                continue;
            size_t k = 0;
            while (k < utf8_rows[row].n && i + 1 + k < len &&
                   in[i + 1 + k] >= utf8_rows[row].r[k][0] &&
                   in[i + 1 + k] <= utf8_rows[row].r[k][1])
                k++;
            if (k == utf8_rows[row].n)
                take = k + 1;
            else
                skip = k + 1;
            break;
        }
        if (take == 0 || (nul_fffd && in[i] == 0)) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += take ? take : skip;
            *plain = false;
            continue;
        }
        if (in[i] < 0x20 || in[i] == '"' || in[i] == '\\')
            *plain = false;
        memcpy(out + o, in + i, take);
        o += take;
        i += take;
    }
    return o;
}

/* Writes s[0..len) as a top-level string into buf[0..cap). */
static int write_str(char *buf, size_t cap, const char *s, size_t len)
{
    tg_jw_t w;
    tg_jw_init(&w, buf, cap);
    tg_jw_str(&w, s, len);
    return tg_jw_finish(&w);
}

#ifdef TG_FUZZ_JANSSON
/* jansson's reading of the JSON string json[0..len) must be want[0..wlen). */
static void check_jansson_str(const char *json, size_t len, const unsigned char *want, size_t wlen)
{
    json_error_t err;
    json_t *j = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    check(j != NULL && json_is_string(j));
    check(json_string_length(j) == wlen && memcmp(json_string_value(j), want, wlen) == 0);
    json_decref(j);
}
#endif

/* The writer takes any bytes: accepted when it writes them as a string in the worst-case room. */
fuzz_verdict_t fuzz_verdict(const uint8_t *data, size_t size)
{
    size_t cap = 6 * size + 3;
    char *buf = malloc(cap);
    check(buf != NULL);
    int n = write_str(buf, cap, (const char *)data, size);
    free(buf);
    return n >= 2 ? FUZZ_ACCEPTED : FUZZ_REFUSED;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    /* Worst case: every byte a control character, six bytes each. */
    size_t cap = 6 * size + 3;
    char *buf = malloc(cap);
    unsigned char *want = malloc(3 * size + 1);
    unsigned char *want_nul = malloc(3 * size + 1);
    char *got = malloc(3 * size + 1);
    check(buf && want && want_nul && got);

    bool plain, plain2;
    size_t wnlen = ref_replace(data, size, want_nul, true, &plain2);
#ifdef TG_FUZZ_JANSSON
    size_t wlen = ref_replace(data, size, want, false, &plain);
#else
    ref_replace(data, size, want, false, &plain);
#endif

    int n = write_str(buf, cap, in, size);
    check(n >= 2 && (size_t)n < cap && buf[n] == '\0');
    size_t len = (size_t)n;
    for (size_t i = 0; i < len; i++)
        check((unsigned char)buf[i] >= 0x20);
    if (plain)
        check(len == size + 2 && buf[0] == '"' && memcmp(buf + 1, in, size) == 0 &&
              buf[len - 1] == '"');

#ifdef TG_FUZZ_JANSSON
    check_jansson_str(buf, len, want, wlen);
#endif

    /* Exact capacity, on the heap so that a write past it is caught by ASan. */
    char *exact = malloc(len + 1);
    check(exact != NULL);
    check(write_str(exact, len + 1, in, size) == n && memcmp(exact, buf, len + 1) == 0);
    check(write_str(exact, len, in, size) == -ENOSPC && exact[0] == '\0');
    free(exact);

    /* The same string as a member, in an array and, up to its first NUL and behind a "k"
     * that keeps it apart from the other keys, as a key. */
    char *key = malloc(size + 2);
    check(key != NULL);
    key[0] = 'k';
    memcpy(key + 1, in, size);
    key[size + 1] = '\0';
    size_t ocap = 3 * cap + 64;
    char *obj = malloc(ocap);
    check(obj != NULL);
    tg_jw_t w;
    tg_jw_init(&w, obj, ocap);
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "s");
    tg_jw_str(&w, in, size);
    tg_jw_key(&w, "a");
    tg_jw_arr_begin(&w);
    tg_jw_str(&w, in, size);
    tg_jw_int(&w, (int64_t)size);
    tg_jw_bool(&w, true);
    tg_jw_null(&w);
    tg_jw_arr_end(&w);
    tg_jw_key(&w, key);
    tg_jw_int(&w, -1);
    tg_jw_obj_end(&w);
    int on = tg_jw_finish(&w);
    check(on > 0);

    int g = tg_api_get_string(obj, (size_t)on, "s", got, 3 * size + 1);
    check(g >= 0 && (size_t)g == wnlen && memcmp(got, want_nul, wnlen) == 0);
    const char *v;
    size_t vlen;
    check(tg_api_get_raw(obj, (size_t)on, "s", &v, &vlen) == 0 && vlen == len &&
          memcmp(v, buf, len) == 0);

#ifdef TG_FUZZ_JANSSON
    json_error_t err;
    json_t *j = json_loadb(obj, (size_t)on, JSON_ALLOW_NUL, &err);
    check(j != NULL);
    json_t *a = json_object_get(j, "a");
    check(json_is_array(a) && json_array_size(a) == 4);
    json_t *s0 = json_array_get(a, 0);
    check(json_string_length(s0) == wlen && memcmp(json_string_value(s0), want, wlen) == 0);
    check(json_integer_value(json_array_get(a, 1)) == (json_int_t)size);
    check(json_is_true(json_array_get(a, 2)) && json_is_null(json_array_get(a, 3)));
    /* The key, decoded: its bytes up to the first NUL, replaced the same way. */
    size_t klen = strlen(key);
    unsigned char *kwant = malloc(3 * klen + 1);
    check(kwant != NULL);
    size_t kwlen = ref_replace((const unsigned char *)key, klen, kwant, false, &plain);
    kwant[kwlen] = '\0';
    bool found = false;
    const char *k;
    json_t *val;
    json_object_foreach(j, k, val)
    {
        if (strlen(k) == kwlen && memcmp(k, kwant, kwlen) == 0)
            found = true;
    }
    check(found);
    free(kwant);
    json_decref(j);
#endif

    free(obj);
    free(key);
    free(got);
    free(want_nul);
    free(want);
    free(buf);
    return 0;
}
