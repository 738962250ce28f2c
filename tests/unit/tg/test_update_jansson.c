/* SPDX-License-Identifier: MIT */
/*
 * test_update_jansson.c - jansson as a second opinion on the JSON check.
 *
 * Every file of the update fuzz corpus, and every truncation, single-byte
 * deletion and single-byte substitution of it, goes through json_check() (the
 * JSON half of tg_update_parse, without the update_id rules) and through
 * jansson's json_loadb(); both must call it valid or both invalid. Flags:
 * no JSON_DECODE_ANY (both want an object or array at the top), no
 * JSON_REJECT_DUPLICATES (duplicate keys are valid JSON), and JSON_ALLOW_NUL
 * because "\u0000" is valid JSON.
 *
 * jansson refuses a few texts that RFC 8259's grammar allows: unpaired
 * surrogate escapes, integers beyond 64 bits, reals beyond double, nesting
 * beyond 2048, "\u0000" in a key. When it gives one of those reasons its verdict says nothing
 * about the grammar, so that input is skipped (and counted); test_update.c
 * checks that such texts are accepted. So are texts nested deeper than our
 * own cap, and texts with a raw NUL byte right after a number or a literal,
 * which jansson silently drops.
 *
 * Usage: test_update_jansson DIR
 */
#include "../../../src/tg/update.c"
/* After update.c, which compiles jsmn: json.c includes jsmn.h for declarations only. */
#include "../../../src/tg/json.c"
#include "tap.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static jsmntok_t *toks;
static size_t ntoks;
static long skipped;

enum verdict { AGREE, DISAGREE, SKIP };

/*
 * jansson drops a raw NUL byte that follows a number or a literal (it takes
 * the byte for the end of its lookahead buffer), so such a text proves nothing.
 */
static bool nul_after_primitive(const char *s, size_t len)
{
    for (const char *p = s; (p = memchr(p, '\0', len - (size_t)(p - s))) != NULL; p++)
        if (p > s && ((p[-1] >= '0' && p[-1] <= '9') || (p[-1] >= 'a' && p[-1] <= 'z')))
            return true;
    return false;
}

static bool jansson_stricter(const char *why)
{
    return strncmp(why, "invalid Unicode", 15) == 0 || strncmp(why, "too big ", 8) == 0 ||
           strncmp(why, "real number overflow", 20) == 0 ||
           strncmp(why, "maximum parsing depth", 21) == 0 ||
           strncmp(why, "NUL byte in object key", 22) == 0;
}

static enum verdict judge(const char *s, size_t len, int *ours, char *why, size_t whylen)
{
    /* A text of len bytes has at most len tokens, so -E2BIG would be a bug here. */
    if (len + 1 > ntoks) {
        ntoks = len + 1;
        toks = realloc(toks, ntoks * sizeof(*toks));
        if (toks == NULL)
            abort();
    }
    *ours = json_check(s, len, toks, (unsigned)ntoks);
    json_error_t err;
    json_t *j = json_loadb(s, len, JSON_ALLOW_NUL, &err);
    bool valid = j != NULL;
    json_decref(j);
    snprintf(why, whylen, "%s", valid ? "valid" : err.text);
    if (*ours == -E2BIG)
        return DISAGREE;
    if ((!valid && jansson_stricter(err.text)) || (valid && nul_after_primitive(s, len))) {
        skipped++;
        return SKIP;
    }
    /* Our own limit, which RFC 8259 allows; test_update.c checks it. */
    if (*ours == -ELOOP) {
        skipped++;
        return SKIP;
    }
    return (*ours >= 0) == valid ? AGREE : DISAGREE;
}

static const unsigned char subst[] = {',', ':', '"',  '{', '}', '[',  ']',  '0',  '-',  '.',
                                      'e', ' ', '\\', 'u', 'x', 0x00, 0x1f, 0x80, 0xC3, 0xFF};

/* Files whose verdicts agree, by that verdict. */
static long n_valid, n_invalid;

static void check_file(const char *path, void *arg)
{
    size_t len = 0;
    char *buf = tap_read_file(path, &len);
    if (!tap_ok(buf != NULL, "%s: read", path))
        return;
    char why[JSON_ERROR_TEXT_LENGTH + 8];
    int ours;
    enum verdict v = judge(buf, len, &ours, why, sizeof(why));
    if (v == SKIP)
        tap_ok(true, "%s # SKIP jansson: %s", path, why);
    else
        tap_ok(v == AGREE, "%s: ours %d, jansson %s", path, ours, why);
    if (v == AGREE)
        (*(ours >= 0 ? &n_valid : &n_invalid))++;

    /* Mutations: the first disagreement is reported, the count of the rest. */
    char *m = malloc(len + 1);
    long bad = 0, total = 0;
    char first[256] = "";
    for (size_t cut = 0; cut <= len; cut++) {
        for (int kind = 0; kind < 2 + (int)sizeof(subst); kind++) {
            size_t mlen;
            if (kind == 0) { /* truncation */
                memcpy(m, buf, cut);
                mlen = cut;
            } else if (kind == 1) { /* deletion */
                if (cut == len)
                    continue;
                memcpy(m, buf, cut);
                memcpy(m + cut, buf + cut + 1, len - cut - 1);
                mlen = len - 1;
            } else { /* substitution */
                if (cut == len || (unsigned char)buf[cut] == subst[kind - 2])
                    continue;
                memcpy(m, buf, len);
                m[cut] = (char)subst[kind - 2];
                mlen = len;
            }
            total++;
            if (judge(m, mlen, &ours, why, sizeof(why)) == DISAGREE) {
                if (bad++ == 0)
                    snprintf(first, sizeof(first), "kind %d at %zu: ours %d, jansson %s", kind, cut,
                             ours, why);
            }
        }
    }
    if (!tap_ok(bad == 0, "%s: %ld mutations agree", path, total))
        tap_diag("%ld disagree, first: %s", bad, first);
    free(m);
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    tap_walk(argv[1], check_file, NULL);
    free(toks);
    /* A corpus with only one kind of file would make the agreement above hollow. */
    tap_ok(n_valid >= 20 && n_invalid >= 20, "the corpus has valid (%ld) and invalid (%ld) JSON",
           n_valid, n_invalid);
    tap_diag("%ld inputs skipped where jansson is stricter than RFC 8259", skipped);
    return tap_done();
}
