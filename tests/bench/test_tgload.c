/* SPDX-License-Identifier: MIT */
/*
 * test_tgload.c - unit tests of tgload's pure parts (bench/loadgen.c, included
 * with its main renamed): the latency histogram's error bound and
 * percentiles, its HdrHistogram text output, the scenario's Zipf ranks and
 * its parser's refusals.
 */
#define TGLOAD_TEST
#include "../../bench/loadgen.c"
#undef main

#include "tap.h"

#include <sys/wait.h>

static void test_error_bound(void)
{
    /* Every value comes back from its bucket no lower and at most 1/128 higher. */
    uint64_t x = 42, worst_ppm = 0;
    bool below = false;
    for (int i = 0; i < 200000; i++) {
        uint64_t v = splitmix64(&x) >> (28 + i % 36);
        uint64_t up = hist_upper(hist_index(v));
        if (up < v)
            below = true;
        uint64_t ppm = v ? (up - v) * 1000000 / v : up;
        if (ppm > worst_ppm)
            worst_ppm = ppm;
    }
    tap_ok(!below, "a bucket's upper edge is never below a value in it");
    tap_ok(worst_ppm <= 1000000 / 128, "relative error at most 1/128 (worst %" PRIu64 " ppm)",
           worst_ppm);
    for (uint64_t v = 0; v < 256; v++)
        if (hist_upper(hist_index(v)) != v) {
            tap_ok(false, "values below 256 are exact (%" PRIu64 ")", v);
            return;
        }
    tap_ok(true, "values below 256 are exact");
}

static bool near(uint64_t got, uint64_t want)
{
    double d = (double)got - (double)want;
    return fabs(d) <= (double)want / 128.0 + 1;
}

static void test_percentiles(void)
{
    static hist_t h;
    memset(&h, 0, sizeof(h));
    for (uint64_t i = 1; i <= 100000; i++)
        hist_record(&h, i * 1000);
    tap_ok(near(hist_percentile(&h, 50), 50000000), "uniform: p50 %" PRIu64,
           hist_percentile(&h, 50));
    tap_ok(near(hist_percentile(&h, 99), 99000000), "uniform: p99 %" PRIu64,
           hist_percentile(&h, 99));
    tap_ok(near(hist_percentile(&h, 99.9), 99900000), "uniform: p99.9 %" PRIu64,
           hist_percentile(&h, 99.9));
    tap_eq_int((long long)hist_percentile(&h, 100), 100000000, "uniform: p100 is the exact max");
    tap_ok(fabs(hist_mean(&h) - 50000500.0) < 1, "uniform: mean %.1f", hist_mean(&h));

    memset(&h, 0, sizeof(h));
    for (int i = 0; i < 1000; i++)
        hist_record(&h, 5000000);
    tap_eq_int((long long)hist_percentile(&h, 1), 5000000, "constant: p1 is the value");
    tap_eq_int((long long)hist_percentile(&h, 99.99), 5000000, "constant: p99.99 is the value");
    tap_ok(hist_stddev(&h) < 1e-3, "constant: no deviation");

    /* Two spikes: 900 at 1 ms, 100 at 100 ms. */
    memset(&h, 0, sizeof(h));
    for (int i = 0; i < 900; i++)
        hist_record(&h, 1000000);
    for (int i = 0; i < 100; i++)
        hist_record(&h, 100000000);
    tap_ok(near(hist_percentile(&h, 50), 1000000), "spikes: p50 on the low spike");
    tap_ok(near(hist_percentile(&h, 90), 1000000), "spikes: p90 still on the low spike");
    tap_ok(near(hist_percentile(&h, 90.1), 100000000), "spikes: p90.1 on the high spike");
    tap_ok(fabs(hist_mean(&h) - 10900000.0) < 1, "spikes: mean");
    tap_ok(fabs(hist_stddev(&h) - 29700000.0) < 1000, "spikes: stddev %.0f", hist_stddev(&h));
}

static void test_hgrm(void)
{
    static hist_t h;
    memset(&h, 0, sizeof(h));
    for (int i = 0; i < 900; i++)
        hist_record(&h, 1000000);
    for (int i = 0; i < 100; i++)
        hist_record(&h, 100000000);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    hist_write_hgrm(&h, f);
    fclose(f);
    static const char head[] = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n";
    tap_ok(strncmp(text, head, sizeof(head) - 1) == 0, "hgrm: HdrHistogram's header");
    tap_ok(strstr(text, "#[Max     =      100.000, Total count    =         1000]") != NULL,
           "hgrm: max and total in the footer");
    tap_ok(strstr(text, "#[Mean    =       10.900, StdDeviation   =       29.700]") != NULL,
           "hgrm: mean and deviation in the footer");
    tap_ok(strstr(text, "     100.000 1.000000000000       1000\n") != NULL,
           "hgrm: the 100%% line");
    /* Counts never go down and every line's value matches its count's side of the spikes. */
    bool ok = true;
    uint64_t last = 0;
    int lines = 0;
    for (char *l = strchr(text, '\n') + 2; *l != '#'; l = strchr(l, '\n') + 1) {
        double v, p;
        unsigned long long n;
        if (sscanf(l, "%lf %lf %llu", &v, &p, &n) != 3 || n < last || (n <= 900) != (v < 2.0))
            ok = false;
        last = n;
        lines++;
    }
    tap_ok(ok && lines > 10, "hgrm: %d lines, counts rising, values on their spike", lines);
    free(text);
}

static void test_zipf(void)
{
    char path[] = "/tmp/tgload-test-XXXXXX";
    int fd = mkstemp(path);
    const char *scn = "# test\nchats 100\nzipf 1.0\nmix message 1 callback 1\n";
    if (fd < 0 || write(fd, scn, strlen(scn)) != (ssize_t)strlen(scn))
        tap_bail("cannot write a scenario file");
    close(fd);
    scenario_load(path);
    unlink(path);
    double h = 0;
    for (int r = 1; r <= 100; r++)
        h += 1.0 / r;
    /* The share of [0, 1) that maps to each rank is its Zipf probability. */
    int n = 1000000, top = 0, second = 0, last = 0;
    for (int i = 0; i < n; i++) {
        uint64_t r = zipf_rank((i + 0.5) / n);
        top += r == 1, second += r == 2, last += r == 100;
    }
    tap_ok(fabs((double)top / n - 1 / h) < 1e-4, "zipf: rank 1 share %.4f (want %.4f)",
           (double)top / n, 1 / h);
    tap_ok(fabs((double)second / n - 0.5 / h) < 1e-4, "zipf: rank 2 share");
    tap_ok(fabs((double)last / n - 0.01 / h) < 1e-4, "zipf: rank 100 share");
    tap_ok(zipf_rank(0) == 1 && zipf_rank(0.9999999999) == 100, "zipf: the ends");
    tap_ok(fabs(sc.mix_cdf[K_MESSAGE] - 0.5) < 1e-9 && sc.mix_cdf[K_CALLBACK] == 1.0,
           "mix: cumulative shares");
    free(sc.cdf);
    for (int i = 0; i < sc.ncommands; i++)
        free(sc.commands[i]);
}

/* A scenario the parser must refuse: tgload exits 2 with the file and line. */
static void test_refused(const char *scn, const char *what)
{
    char path[] = "/tmp/tgload-test-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, scn, strlen(scn)) != (ssize_t)strlen(scn))
        tap_bail("cannot write a scenario file");
    close(fd);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        scenario_load(path);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    unlink(path);
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 2, "scenario refused: %s", what);
}

int main(void)
{
    test_error_bound();
    test_percentiles();
    test_hgrm();
    test_zipf();
    test_refused("chats 0\n", "no chats");
    test_refused("mix message 70 bogus 30\n", "unknown update type");
    test_refused("commands start\n", "a command without /");
    test_refused("commands /a\"b\n", "a command that would need escaping");
    test_refused("duplicates 80\n", "duplicates over 50%");
    test_refused("color blue\n", "unknown directive");
    return tap_done();
}
