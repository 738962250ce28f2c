/* SPDX-License-Identifier: MIT */
/*
 * test_toolkit.c - the core toolkit: the UTF-8 decoder against every class
 * of RFC 3629 sequence (cross-checked by brute force over all 1- to 3-byte
 * inputs against a plain reference), the intrusive queue, x*alloc.
 */
#include "core.h"
#include "tap.h"

#include <stdbool.h>
#include <string.h>

typedef struct item {
    int v;
    core_qlink_t link;
} item_t;

/* Independent reference: the code point of a well-formed sequence, or -1. */
static long ref_decode(const unsigned char *s, size_t len, int *used)
{
    long v;
    int n;
    if (s[0] < 0x80) {
        *used = 1;
        return s[0];
    }
    if ((s[0] & 0xE0) == 0xC0) {
        n = 2;
        v = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3;
        v = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4;
        v = s[0] & 0x07;
    } else {
        return -1;
    }
    if ((size_t)n > len)
        return -1;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return -1;
        v = v << 6 | (s[i] & 0x3F);
    }
    static const long min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return -1;
    *used = n;
    return v;
}

static void test_utf8_cases(void)
{
    static const struct {
        const char *s;
        size_t len;
        int ret;
        uint32_t cp;
    } cases[] = {
        {"A", 1, 1, 'A'},
        {"\0", 1, 1, 0},
        {"\xC3\xA9", 2, 2, 0xE9},
        {"\xE2\x82\xAC", 3, 3, 0x20AC},
        {"\xF0\x9F\x98\x80", 4, 4, 0x1F600},
        {"\xF4\x8F\xBF\xBF", 4, 4, 0x10FFFF},
        {"\xC0\x80", 2, -1, CORE_UTF8_BAD},     /* overlong NUL */
        {"\xC1\xBF", 2, -1, CORE_UTF8_BAD},     /* overlong */
        {"\xE0\x9F\xBF", 3, -1, CORE_UTF8_BAD}, /* overlong 3-byte */
        {"\xED\xA0\x80", 3, -1, CORE_UTF8_BAD}, /* surrogate */
        {"\xF4\x90\x80\x80", 4, -1, CORE_UTF8_BAD}, /* past U+10FFFF */
        {"\xF5\x80\x80\x80", 4, -1, CORE_UTF8_BAD},
        {"\x80", 1, -1, CORE_UTF8_BAD},         /* lone continuation */
        {"\xE2\x82", 2, -2, CORE_UTF8_BAD},     /* truncated: maximal subpart of 2 */
        {"\xF0\x9F\x98", 3, -3, CORE_UTF8_BAD}, /* truncated 4-byte */
        {"\xE2\x82\x41", 3, -2, CORE_UTF8_BAD}, /* bad third byte */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        uint32_t cp = 1234;
        int r = core_utf8_decode(cases[i].s, cases[i].len, &cp);
        tap_ok(r == cases[i].ret && cp == cases[i].cp, "case %zu: ret %d cp U+%04X", i, r,
               (unsigned)cp);
    }
}

/* Every input of up to three bytes (and each 4-byte lead with every second byte). */
static void test_utf8_exhaustive(void)
{
    unsigned long checked = 0, bad = 0;
    unsigned char s[4];
    for (unsigned a = 0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++)
            for (unsigned c = 0; c < 256; c++) {
                s[0] = (unsigned char)a;
                s[1] = (unsigned char)b;
                s[2] = (unsigned char)c;
                s[3] = 0x80;
                for (size_t len = 1; len <= 4; len++) {
                    if (len == 4 && a < 0xF0)
                        continue;
                    uint32_t cp;
                    int used = 0;
                    int r = core_utf8_decode((const char *)s, len, &cp);
                    long want = ref_decode(s, len, &used);
                    bool ok = want >= 0 ? (r == used && cp == (uint32_t)want)
                                        : (r < 0 && r >= -3 && cp == CORE_UTF8_BAD &&
                                           (size_t)-r <= len);
                    checked++;
                    if (!ok && bad++ < 5)
                        tap_diag("mismatch at %02X %02X %02X len %zu: ret %d", a, b, c, len, r);
                }
            }
    tap_ok(bad == 0, "decoder agrees with the reference on %lu inputs", checked);
    tap_ok(core_utf8_valid("h\xC3\xA9llo", 6), "valid string accepted");
    tap_ok(!core_utf8_valid("h\xC3", 2), "truncated string refused");
    tap_ok(core_utf8_valid("", 0), "empty string is valid");
}

static void test_queue(void)
{
    core_queue_t q;
    item_t it[4];
    core_queue_init(&q);
    tap_ok(core_queue_empty(&q) && core_queue_pop(&q) == NULL, "new queue is empty");
    for (int i = 0; i < 4; i++) {
        it[i].v = i;
        core_queue_push(&q, &it[i].link);
    }
    core_qlink_t *l = core_queue_pop(&q);
    if (l == NULL)
        tap_bail("pop from a queue of four returned NULL");
    tap_eq_int(container_of(l, item_t, link)->v, 0, "FIFO order: oldest first");
    core_queue_push_head(&q, l);
    /* remove the tail (3), whose predecessor is 2 */
    core_queue_remove_after(&q, &it[2].link, &it[3].link);
    core_queue_push(&q, &it[3].link);
    int order[8], n = 0;
    while ((l = core_queue_pop(&q)) != NULL && n < 8)
        order[n++] = container_of(l, item_t, link)->v;
    tap_ok(n == 4 && order[0] == 0 && order[1] == 1 && order[2] == 2 && order[3] == 3,
           "push_head and remove_after keep the order (got %d items)", n);
    core_queue_push(&q, &it[1].link);
    core_queue_remove_after(&q, NULL, &it[1].link);
    tap_ok(core_queue_empty(&q), "removing the only element empties the queue");
    core_queue_push(&q, &it[2].link);
    tap_ok(q.head == &it[2].link && q.tail == &it[2].link, "push after emptying sets head and tail");
}

static void test_alloc(void)
{
    char *s = xstrndup("abcdef", 3);
    tap_ok(strcmp(s, "abc") == 0, "xstrndup copies and terminates");
    free(s);
    int *z = xcalloc(16, sizeof(int));
    bool zero = true;
    for (int i = 0; i < 16; i++)
        zero = zero && z[i] == 0;
    tap_ok(zero, "xcalloc zeroes");
    z = xrealloc(z, 64 * sizeof(int));
    tap_ok(z[15] == 0, "xrealloc keeps the contents");
    free(z);
    void *e = xmalloc(0);
    tap_ok(e != NULL, "xmalloc(0) returns a pointer");
    free(e);
    s = xstrdup("tgring");
    tap_ok(strcmp(s, "tgring") == 0, "xstrdup");
    free(s);
    tap_eq_int((long long)ARRAY_SIZE(((int[7]){0})), 7, "ARRAY_SIZE");
}

int main(void)
{
    test_utf8_cases();
    test_utf8_exhaustive();
    test_queue();
    test_alloc();
    return tap_done();
}
