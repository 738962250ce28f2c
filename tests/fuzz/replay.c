/* SPDX-License-Identifier: MIT */
/*
 * replay.c - runs a libFuzzer target over files, without libFuzzer, and
 * checks each file's verdict.
 *
 * The normal test run links each fuzz target with this driver and replays its
 * corpus (and kept crashers) under the sanitizers, as TAP: one test per file.
 * Each input is an exact-size heap copy, so that ASan catches a read one past
 * the end. When a file's name promises a verdict (see fuzz.h), the target's
 * fuzz_verdict() must give that verdict too. Usage: replay DIR_OR_FILE...
 */
#include "fuzz.h"
#include "tap.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int n_judged; /* files whose name promised a verdict */

static void run_file(const char *path, const char *data, size_t len)
{
    LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    const char *slash = strrchr(path, '/');
    fuzz_verdict_t want = fuzz_expected_verdict(slash ? slash + 1 : path);
    if (want == FUZZ_NONE) {
        tap_ok(true, "%s: replayed", path);
        return;
    }
    n_judged++;
    fuzz_verdict_t got = fuzz_verdict((const uint8_t *)data, len);
    if (!tap_ok(got == want, "%s: %s", path, fuzz_verdict_name(want)))
        tap_diag("the parser's verdict: %s", fuzz_verdict_name(got));
}

int main(int argc, char **argv)
{
    int rc = tap_corpus(argc, argv, run_file);
    /* After the plan: TAP reads "#" lines anywhere. */
    tap_diag("%d of %d files had their verdict checked", n_judged, tap_n);
    return rc;
}
