/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h - what every fuzz target offers the corpus replay besides
 * LLVMFuzzerTestOneInput: its parser's verdict on one whole input, which
 * replay.c compares with the verdict the file's name promises.
 *
 * A corpus file's name starts with its expected verdict (see
 * fuzz_expected_verdict): "ok-" accepted, "bad-" refused, "err-" a
 * well-formed answer that reports a failure, "incomplete" needs more bytes,
 * "too-big" over a cap. Files with any other name (kept crashers, files
 * libFuzzer named by their hash, "big-", "deep", ...) are replayed for
 * crashes and broken invariants only.
 */
#ifndef TGRING_TESTS_FUZZ_H
#define TGRING_TESTS_FUZZ_H

#include "core.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* What a target's parser made of one whole input. */
typedef enum fuzz_verdict {
    FUZZ_NONE,       /* no verdict: the name promises nothing, or the target judges nothing */
    FUZZ_ACCEPTED,   /* parsed and accepted */
    FUZZ_REFUSED,    /* refused as malformed */
    FUZZ_ERROR,      /* parsed: a well-formed answer that reports a failure (ok:false) */
    FUZZ_INCOMPLETE, /* no fault so far, but the input ends before the parser could decide */
    FUZZ_TOO_BIG,    /* over one of the parser's caps */
} fuzz_verdict_t;

/*
 * Defined by each target: the verdict of the target's parser on
 * data[0..size), under the limits the target states. The input is an
 * exact-size copy; the function may not keep it.
 */
fuzz_verdict_t fuzz_verdict(const uint8_t *data, size_t size);

static const struct {
    const char *prefix;
    fuzz_verdict_t verdict;
} fuzz_prefixes[] = {
    {"ok-", FUZZ_ACCEPTED},          {"bad-", FUZZ_REFUSED},    {"err-", FUZZ_ERROR},
    {"incomplete", FUZZ_INCOMPLETE}, {"too-big", FUZZ_TOO_BIG},
};

/* The verdict a corpus file's base name promises, FUZZ_NONE when it promises none. */
static inline fuzz_verdict_t fuzz_expected_verdict(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(fuzz_prefixes); i++)
        if (strncmp(name, fuzz_prefixes[i].prefix, strlen(fuzz_prefixes[i].prefix)) == 0)
            return fuzz_prefixes[i].verdict;
    return FUZZ_NONE;
}

static inline const char *fuzz_verdict_name(fuzz_verdict_t v)
{
    static const char *const names[] = {"none",     "accepted",   "refused",
                                        "an error", "incomplete", "too big"};
    return (unsigned)v < ARRAY_SIZE(names) ? names[v] : "unknown";
}

#endif
