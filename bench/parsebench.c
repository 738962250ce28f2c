/* SPDX-License-Identifier: MIT */
/*
 * parsebench - the CPU cost of the webhook's JSON check and update parse
 * (tg_update_parse: depth scan, jsmn, the strict-grammar walk, the update's
 * fields), alone, with no socket or kernel in the way.
 *
 *   build-bench/bench/parsebench [-n CALLS] [-r ROUNDS] [FILE]
 *
 * FILE is an update as bench/update.json ({{ID}} and {{CHAT}} become numbers;
 * default bench/update.json). Prints the nanoseconds per call of each round
 * and their median; the update must parse, or it exits 1.
 */
#include "tg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PB_BODY_MAX 65536
#define PB_TOKENS 1024
#define PB_ROUNDS_MAX 99

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* body with each {{NAME}} replaced by 1234567; returns its length. */
static size_t expand(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *end = i + 1 < n && in[i] == '{' && in[i + 1] == '{'
                              ? memmem(in + i, n - i, "}}", 2)
                              : NULL;
        if (end != NULL) {
            memcpy(out + o, "1234567", 7);
            o += 7;
            i = (size_t)(end - in) + 1;
            continue;
        }
        out[o++] = in[i];
    }
    return o;
}

int main(int argc, char **argv)
{
    long calls = 1000000, rounds = 5;
    const char *path = "bench/update.json";
    int opt;

    while ((opt = getopt(argc, argv, "n:r:h")) != -1) {
        switch (opt) {
        case 'n':
            calls = strtol(optarg, NULL, 10);
            break;
        case 'r':
            rounds = strtol(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "usage: parsebench [-n CALLS] [-r ROUNDS] [FILE]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (optind < argc)
        path = argv[optind];
    if (calls < 1 || rounds < 1 || rounds > PB_ROUNDS_MAX) {
        fprintf(stderr, "parsebench: -n must be >= 1, -r 1..%d\n", PB_ROUNDS_MAX);
        return 2;
    }
    static char raw[PB_BODY_MAX], body[2 * PB_BODY_MAX];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        return 2;
    }
    size_t n = fread(raw, 1, sizeof(raw), f);
    fclose(f);
    size_t len = expand(raw, n, body);

    static jsmntok_t tok[PB_TOKENS];
    tg_json_scratch_t s = {tok, PB_TOKENS};
    tg_update_info_t u;
    if (tg_update_parse(body, len, &s, &u) != 0) {
        fprintf(stderr, "parsebench: %s does not parse as an update\n", path);
        return 1;
    }
    double ns[PB_ROUNDS_MAX];
    long sink = 0;
    for (long r = 0; r < rounds; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long k = 0; k < calls; k++)
            sink += tg_update_parse(body, len, &s, &u) + u.update_id;
        clock_gettime(CLOCK_MONOTONIC, &b);
        ns[r] = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) /
                (double)calls;
        printf("round %ld: %.1f ns a parse\n", r + 1, ns[r]);
    }
    qsort(ns, (size_t)rounds, sizeof(ns[0]), cmp_double);
    printf("%s: %zu bytes, %ld calls x %ld rounds, median %.1f ns a parse (check %ld)\n", path,
           len, calls, rounds, ns[rounds / 2], sink % 10);
    return 0;
}
