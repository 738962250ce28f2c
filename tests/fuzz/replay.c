/* SPDX-License-Identifier: MIT */
/*
 * replay.c - runs a libFuzzer target over files, without libFuzzer.
 *
 * The normal test run links each fuzz target with this driver and replays its
 * corpus (and kept crashers) under the sanitizers, as TAP: one test per file.
 * Each input is an exact-size heap copy, so that ASan catches a read one past
 * the end. Usage: replay DIR_OR_FILE...
 */
#include "tap.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run_file(const char *path, const char *data, size_t len)
{
    LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    tap_ok(true, "%s", path);
}

int main(int argc, char **argv) { return tap_corpus(argc, argv, run_file); }
