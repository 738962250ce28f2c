/* SPDX-License-Identifier: MIT */
/*
 * test_jw.c - unit tests for the JSON writer and tg_utf8_decode: exact output
 * of request bodies, escaping, U+FFFD replacement of ill-formed UTF-8 (vectors
 * checked against CPython's "replace" handler), misuse, and overflow at every
 * capacity. Then the fuzz target's invariants (tests/fuzz/fuzz_jw.c, included
 * here with jansson as the reader) over random and UTF-8-shaped inputs.
 */
#define TG_FUZZ_JANSSON 1
#include "../../fuzz/fuzz_jw.c"
#include "tap.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes s[0..len) as a string; the text without quotes in out. Returns finish's result. */
static int str_body(const char *s, size_t len, char *out, size_t cap)
{
    char buf[1024];
    int n = write_str(buf, sizeof(buf), s, len);
    if (n < 2)
        return n;
    snprintf(out, cap, "%.*s", n - 2, buf + 1);
    return n;
}

static void test_send_message_body(void)
{
    char buf[512];
    tg_jw_t w;
    tg_jw_init(&w, buf, sizeof(buf));
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "chat_id");
    tg_jw_int(&w, -1001234567890);
    tg_jw_key(&w, "text");
    tg_jw_str(&w, "Day 3 \xf0\x9f\x9a\xad", 10);
    tg_jw_key(&w, "disable_notification");
    tg_jw_bool(&w, true);
    tg_jw_key(&w, "protect_content");
    tg_jw_bool(&w, false);
    tg_jw_key(&w, "reply_markup");
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "inline_keyboard");
    tg_jw_arr_begin(&w);
    tg_jw_arr_begin(&w);
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "text");
    tg_jw_str(&w, "Yes", 3);
    tg_jw_key(&w, "callback_data");
    tg_jw_str(&w, "y", 1);
    tg_jw_obj_end(&w);
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "text");
    tg_jw_str(&w, "No", 2);
    tg_jw_obj_end(&w);
    tg_jw_arr_end(&w);
    tg_jw_arr_end(&w);
    tg_jw_obj_end(&w);
    tg_jw_key(&w, "entities");
    tg_jw_raw(&w, "[{\"type\":\"bold\",\"offset\":0,\"length\":3}]", 39);
    tg_jw_key(&w, "reply_parameters");
    tg_jw_null(&w);
    tg_jw_obj_end(&w);
    int n = tg_jw_finish(&w);
    const char *want = "{\"chat_id\":-1001234567890,\"text\":\"Day 3 \xf0\x9f\x9a\xad\","
                       "\"disable_notification\":true,\"protect_content\":false,"
                       "\"reply_markup\":{\"inline_keyboard\":[[{\"text\":\"Yes\","
                       "\"callback_data\":\"y\"},{\"text\":\"No\"}]]},"
                       "\"entities\":[{\"type\":\"bold\",\"offset\":0,\"length\":3}],"
                       "\"reply_parameters\":null}";
    tap_ok(n == (int)strlen(want) && strcmp(buf, want) == 0, "sendMessage body, exact");

    tg_jw_init(&w, buf, sizeof(buf));
    tg_jw_arr_begin(&w);
    tg_jw_int(&w, INT64_MIN);
    tg_jw_int(&w, INT64_MAX);
    tg_jw_int(&w, 0);
    tg_jw_arr_begin(&w);
    tg_jw_arr_end(&w);
    tg_jw_obj_begin(&w);
    tg_jw_obj_end(&w);
    tg_jw_str(&w, "", 0);
    tg_jw_arr_end(&w);
    n = tg_jw_finish(&w);
    tap_ok(n > 0 && strcmp(buf, "[-9223372036854775808,9223372036854775807,0,[],{},\"\"]") == 0,
           "integers at the limits, empty containers and strings: %s", buf);

    tg_jw_init(&w, buf, sizeof(buf));
    tg_jw_int(&w, 5);
    tap_ok(tg_jw_finish(&w) == 1 && strcmp(buf, "5") == 0, "a top-level scalar");
    tg_jw_init(&w, buf, sizeof(buf));
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "a\"b\n");
    tg_jw_int(&w, 1);
    tg_jw_obj_end(&w);
    tap_ok(tg_jw_finish(&w) > 0 && strcmp(buf, "{\"a\\\"b\\n\":1}") == 0, "keys are escaped");
}

static void test_escapes(void)
{
    char out[256];
    str_body("\"\\\n\r\t\b\f\x01\x1f\x7f/", 11, out, sizeof(out));
    tap_ok(strcmp(out, "\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\x7f/") == 0,
           "quote, backslash, the short escapes, \\u00XX, DEL and / as they should be: %s", out);
    tap_ok(str_body("a\0b", 3, out, sizeof(out)) == 10 && strcmp(out, "a\\u0000b") == 0,
           "NUL becomes \\u0000");
    const char *u = "h\xc3\xa9llo \xe2\x80\xa8\xe2\x80\xa9 \xf0\x9f\x98\x80 \xef\xbf\xbd "
                    "\xf4\x8f\xbf\xbf \xed\x9f\xbf \xee\x80\x80";
    str_body(u, strlen(u), out, sizeof(out));
    tap_ok(strcmp(out, u) == 0, "well-formed UTF-8 passes, U+2028/2029, U+FFFD and U+10FFFF too");
}

/* Ill-formed UTF-8: input hex, expected output hex, from bytes.decode('utf-8', 'replace'). */
static const struct {
    const char *in, *want;
} vectors[] = {
    {"61f18080e180c262806380bf64", "61efbfbdefbfbdefbfbd62efbfbd63efbfbdefbfbd64"},
    {"c0af", "efbfbdefbfbd"},
    {"eda080", "efbfbdefbfbdefbfbd"},
    {"f4908080", "efbfbdefbfbdefbfbdefbfbd"},
    {"e080", "efbfbdefbfbd"},
    {"f09f98", "efbfbd"},
    {"e282", "efbfbd"},
    {"ff", "efbfbd"},
    {"f09f988080", "f09f9880efbfbd"},
    {"e0a0", "efbfbd"},
    {"f888808080", "efbfbdefbfbdefbfbdefbfbdefbfbd"},
    {"c2", "efbfbd"},
    {"c1bf", "efbfbdefbfbd"},
    {"f580", "efbfbdefbfbd"},
    {"e2822241", "efbfbd5c2241"}, /* the subpart ends before the quote, which is escaped */
};

static size_t unhex(const char *h, char *out)
{
    size_t n = 0;
    for (; h[0] && h[1]; h += 2)
        out[n++] = (char)strtol((char[]){h[0], h[1], 0}, NULL, 16);
    return n;
}

static void test_replacement(void)
{
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        char in[64], want[128], out[256];
        size_t il = unhex(vectors[i].in, in), wl = unhex(vectors[i].want, want);
        want[wl] = '\0';
        str_body(in, il, out, sizeof(out));
        tap_ok(strcmp(out, want) == 0, "ill-formed %s", vectors[i].in);
    }
    uint32_t cp;
    tap_ok(tg_utf8_decode("\xf0\x9f\x98\x80", 4, &cp) == 4 && cp == 0x1F600, "decode: 4 bytes");
    tap_ok(tg_utf8_decode("\xf0\x9f\x98\x80", 3, &cp) == 3 && cp == 0xFFFD,
           "decode: a cut sequence is one subpart");
    tap_ok(tg_utf8_decode("\xe0\x9f\x80", 3, &cp) == 1 && cp == 0xFFFD, "decode: overlong E0");
    tap_ok(tg_utf8_decode("\xc3\xa9", 2, &cp) == 2 && cp == 0xE9, "decode: 2 bytes");
    tap_ok(tg_utf8_decode("\x80", 1, &cp) == 1 && cp == 0xFFFD, "decode: a lone continuation");
}

static void test_misuse(void)
{
    char buf[64];
    tg_jw_t w;
#define MISUSE(name, calls)                                                                        \
    do {                                                                                           \
        tg_jw_init(&w, buf, sizeof(buf));                                                          \
        calls;                                                                                     \
        tap_ok(tg_jw_finish(&w) == -EINVAL && buf[0] == '\0', "misuse: %s", name);                 \
    } while (0)
    MISUSE("nothing written", (void)0);
    MISUSE("a value where a key is due",
           (tg_jw_obj_begin(&w), tg_jw_int(&w, 1), tg_jw_obj_end(&w)));
    MISUSE("a key in an array", (tg_jw_arr_begin(&w), tg_jw_key(&w, "a"), tg_jw_arr_end(&w)));
    MISUSE("a key at the top", tg_jw_key(&w, "a"));
    MISUSE("a key without a value", (tg_jw_obj_begin(&w), tg_jw_key(&w, "a"), tg_jw_obj_end(&w)));
    MISUSE("two keys in a row", (tg_jw_obj_begin(&w), tg_jw_key(&w, "a"), tg_jw_key(&w, "b"),
                                 tg_jw_int(&w, 1), tg_jw_obj_end(&w)));
    MISUSE("obj_end in an array", (tg_jw_arr_begin(&w), tg_jw_obj_end(&w)));
    MISUSE("arr_end in an object", (tg_jw_obj_begin(&w), tg_jw_arr_end(&w)));
    MISUSE("an end at the top", tg_jw_obj_end(&w));
    MISUSE("an open object", tg_jw_obj_begin(&w));
    MISUSE("two top-level values", (tg_jw_int(&w, 1), tg_jw_int(&w, 2)));
    MISUSE("a value after a closed object",
           (tg_jw_obj_begin(&w), tg_jw_obj_end(&w), tg_jw_str(&w, "x", 1)));
    /* The error sticks: what follows changes nothing. */
    MISUSE("a correct end after a misuse",
           (tg_jw_arr_begin(&w), tg_jw_key(&w, "a"), tg_jw_arr_end(&w), tg_jw_int(&w, 1)));

    char deep[128];
    tg_jw_init(&w, deep, sizeof(deep));
    for (int i = 0; i < TG_JW_MAX_DEPTH; i++)
        tg_jw_arr_begin(&w);
    for (int i = 0; i < TG_JW_MAX_DEPTH; i++)
        tg_jw_arr_end(&w);
    tap_ok(tg_jw_finish(&w) == 2 * TG_JW_MAX_DEPTH, "nesting TG_JW_MAX_DEPTH deep works");
    tg_jw_init(&w, deep, sizeof(deep));
    for (int i = 0; i <= TG_JW_MAX_DEPTH; i++)
        tg_jw_arr_begin(&w);
    for (int i = 0; i <= TG_JW_MAX_DEPTH; i++)
        tg_jw_arr_end(&w);
    tap_ok(tg_jw_finish(&w) == -EINVAL, "one deeper is misuse");

    /* Objects and arrays nested alternately keep their own comma state. */
    tg_jw_init(&w, buf, sizeof(buf));
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "a");
    tg_jw_arr_begin(&w);
    tg_jw_obj_begin(&w);
    tg_jw_obj_end(&w);
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "b");
    tg_jw_arr_begin(&w);
    tg_jw_arr_end(&w);
    tg_jw_obj_end(&w);
    tg_jw_arr_end(&w);
    tg_jw_key(&w, "c");
    tg_jw_int(&w, 1);
    tg_jw_obj_end(&w);
    tap_ok(tg_jw_finish(&w) > 0 && strcmp(buf, "{\"a\":[{},{\"b\":[]}],\"c\":1}") == 0,
           "commas per level: %s", buf);
}

/* Builds the sendMessage-like body into buf[0..cap). */
static int build(char *buf, size_t cap)
{
    tg_jw_t w;
    tg_jw_init(&w, buf, cap);
    tg_jw_obj_begin(&w);
    tg_jw_key(&w, "chat_id");
    tg_jw_int(&w, 5);
    tg_jw_key(&w, "text");
    tg_jw_str(&w, "a\nb\xff", 4);
    tg_jw_key(&w, "x");
    tg_jw_arr_begin(&w);
    tg_jw_bool(&w, true);
    tg_jw_raw(&w, "{}", 2);
    tg_jw_null(&w);
    tg_jw_arr_end(&w);
    tg_jw_obj_end(&w);
    return tg_jw_finish(&w);
}

static void test_overflow(void)
{
    char ref[256];
    int n = build(ref, sizeof(ref));
    tap_ok(n == 49 &&
               strcmp(ref, "{\"chat_id\":5,\"text\":\"a\\nb\xef\xbf\xbd\",\"x\":[true,{},null]}") ==
                   0,
           "the reference body: %s", ref);
    int bad = 0;
    for (size_t cap = 0; cap <= (size_t)n + 1; cap++) {
        char buf[300];
        memset(buf, '#', sizeof(buf));
        int r = build(buf, cap);
        bool want_ok = cap >= (size_t)n + 1;
        if (want_ok ? (r != n || strcmp(buf, ref) != 0) : (r != -ENOSPC || (cap && buf[0])))
            bad++;
        for (size_t i = cap; i < sizeof(buf); i++)
            if (buf[i] != '#')
                bad++;
    }
    tap_ok(bad == 0, "at every capacity: -ENOSPC, \"\" and nothing past cap until it fits (%d)",
           bad);
}

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

/* Random inputs, mostly UTF-8 pieces, some cut or broken, some control bytes. */
static size_t random_input(unsigned char *s, size_t max)
{
    static const char *const pieces[] = {"a",
                                         "\"",
                                         "\\",
                                         "\n",
                                         "\x01",
                                         "\x7f",
                                         "\xc3\xa9",
                                         "\xe2\x80\xa8",
                                         "\xf0\x9f\x98\x80",
                                         "\xed\xa0\x80",
                                         "\xc0",
                                         "\xe0\x80",
                                         "\xf4\x90",
                                         "\xef\xbf\xbd",
                                         "\x80",
                                         "\xff",
                                         "\0"};
    size_t n = 0, want = next() % max;
    while (n < want) {
        if (next() % 4 == 0) {
            s[n++] = (unsigned char)next();
            continue;
        }
        const char *p = pieces[next() % (sizeof(pieces) / sizeof(pieces[0]))];
        size_t pl = p[0] ? strlen(p) : 1;
        if (next() % 8 == 0 && pl > 1)
            pl--; /* cut a sequence */
        if (n + pl > max)
            break;
        memcpy(s + n, p, pl);
        n += pl;
    }
    return n;
}

int main(void)
{
    test_send_message_body();
    test_escapes();
    test_replacement();
    test_misuse();
    test_overflow();

    /* The fuzz invariants abort on failure; a crash fails this test. */
    unsigned char in[200];
    unsigned runs = 0;
    for (int i = 0; i < 20000; i++) {
        size_t n = random_input(in, sizeof(in));
        LLVMFuzzerTestOneInput(in, n);
        runs++;
    }
    for (unsigned b = 0; b < 256; b++) {
        in[0] = (unsigned char)b;
        LLVMFuzzerTestOneInput(in, 1);
        runs++;
    }
    tap_ok(runs == 20256, "fuzz_jw invariants hold for %u random inputs and every single byte",
           runs);

    return tap_done();
}
