/* SPDX-License-Identifier: MIT */
/*
 * test_met.c - unit tests for the metrics: the fallback slot before
 * met_init(), histogram buckets, exact lines of met_render() for known
 * counts, the shape of the whole exposition, -ENOSPC, and the sum of two
 * slots written by two processes.
 */
#include "met.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char out[65536];

/* True if `text` holds `line` as a whole line. */
static int has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    }
    return 0;
}

/* The value of the sample line starting with `prefix` ("name{..} "), or -1. */
static double sample(const char *text, const char *prefix) {
    size_t n = strlen(prefix);
    for (const char *p = text; (p = strstr(p, prefix)) != NULL; p++) {
        if (p == text || p[-1] == '\n')
            return strtod(p + n, NULL);
    }
    return -1;
}

static int is_name_char(char c, int first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/*
 * Checks the text exposition format: every line is a HELP, a TYPE or a
 * sample `name{label="v",...} value`; every sample's family has HELP and TYPE
 * before it; histogram buckets are cumulative and _count equals le="+Inf".
 * Returns NULL or what is wrong.
 */
static const char *check_exposition(const char *text, int *nsamples) {
    static char why[1024];
    char family[128] = "", typed[128] = "", helped[128] = "";
    double last_bucket = -1, inf_bucket = -1;
    *nsamples = 0;
    if (text[0] == '\0' || text[strlen(text) - 1] != '\n')
        return "does not end in a newline";
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        size_t len = (size_t)(strchr(line, '\n') - line);
        char l[512];
        if (len >= sizeof(l))
            return "line too long";
        memcpy(l, line, len);
        l[len] = '\0';
        char name[128], type[32];
        if (strncmp(l, "# HELP ", 7) == 0) {
            if (sscanf(l + 7, "%127s", helped) != 1 || strlen(l) <= 8 + strlen(helped))
                return "HELP without text";
            continue;
        }
        if (strncmp(l, "# TYPE ", 7) == 0) {
            if (sscanf(l + 7, "%127s %31s", typed, type) != 2 ||
                (strcmp(type, "counter") && strcmp(type, "gauge") && strcmp(type, "histogram")))
                return "bad TYPE";
            if (strcmp(typed, helped) != 0)
                return "TYPE without HELP before it";
            snprintf(family, sizeof(family), "%s", typed);
            last_bucket = -1;
            continue;
        }
        size_t i = 0;
        while (is_name_char(l[i], i == 0))
            i++;
        if (i == 0 || i >= sizeof(name))
            return "sample without a name";
        memcpy(name, l, i);
        name[i] = '\0';
        int is_bucket = 0, is_count = 0, is_inf = 0;
        if (l[i] == '{') {
            const char *end = strchr(l + i, '}');
            if (end == NULL)
                return "unclosed labels";
            for (const char *p = l + i + 1; p < end;) {
                const char *eq = strchr(p, '=');
                if (eq == NULL || eq > end || eq[1] != '"' || !is_name_char(*p, 1))
                    return "bad label";
                const char *close = strchr(eq + 2, '"');
                if (close == NULL || close > end)
                    return "bad label value";
                if (strncmp(p, "le=\"+Inf\"", 9) == 0)
                    is_inf = 1;
                p = close + 1;
                if (*p == ',')
                    p++;
                else if (p != end)
                    return "bad label separator";
            }
            i = (size_t)(end - l) + 1;
        }
        if (l[i] != ' ')
            return "no space before the value";
        char *vend;
        double v = strtod(l + i + 1, &vend);
        if (vend == l + i + 1 || *vend != '\0') {
            snprintf(why, sizeof(why), "bad value in: %s", l);
            return why;
        }
        size_t fl = strlen(family);
        if (strncmp(name, family, fl) != 0 ||
            (name[fl] != '\0' && strcmp(name + fl, "_bucket") && strcmp(name + fl, "_sum") &&
             strcmp(name + fl, "_count"))) {
            snprintf(why, sizeof(why), "sample %s outside its family %s", name, family);
            return why;
        }
        is_bucket = strcmp(name + fl, "_bucket") == 0;
        is_count = strcmp(name + fl, "_count") == 0;
        if (is_bucket) {
            if (v < last_bucket)
                return "buckets are not cumulative";
            last_bucket = v;
            if (is_inf)
                inf_bucket = v;
        }
        if (is_count && v != inf_bucket)
            return "_count differs from the +Inf bucket";
        (*nsamples)++;
    }
    return NULL;
}

static void test_before_init(void) {
    met_slot_t *m = met_self();
    tap_ok(m != NULL, "met_self() works before met_init()");
    m->updates_stored += 2;
    MET_INC(updates_duplicate);
    int n = met_render(out, sizeof(out));
    tap_ok(n > 0 && has_line(out, "tgring_updates_stored_total 2") &&
               has_line(out, "tgring_updates_duplicate_total 1") &&
               has_line(out, "tgring_workers 1"),
           "render before met_init() shows the fallback slot");
}

static void test_render(void) {
    tap_ok(met_init(3) == 0, "met_init(3)");
    met_slot_t *m = met_self();
    tap_ok(m->updates_stored == 0 && m->pid == (uint64_t)getpid(), "slot 0 is fresh and ours");
    for (int i = 0; i < 3; i++)
        MET_INC(updates_stored);
    m->http_requests[200] = 5;
    m->http_requests[503] = 2;
    m->http_connections_open = 4;
    m->http_connections_total = 9;
    m->http_send_timeouts = 36;
    m->http_accept_errors = 37;
    m->updates_unavailable = 1;
    m->db_connected = 1;
    m->db_queue_depth = 17;
    m->resident_memory_bytes = 1000;
    /* Distinct values, so that a family reading another's field shows. */
    m->outbox_claimed = 21;
    m->outbox_sent = 22;
    m->outbox_retried = 23;
    m->outbox_failed = 24;
    m->outbox_migrated = 25;
    m->outbox_limited = 26;
    m->outbox_global_pauses = 27;
    m->sender_leader = 1;
    m->sender_takeovers = 28;
    m->botapi_requests = 31;
    m->botapi_transport_errors = 32;
    m->botapi_timeouts = 33;
    m->botapi_stale_retries = 34;
    m->botapi_connects = 35;
    met_observe_latency(&m->ack_latency, 0.0004);
    met_observe_latency(&m->ack_latency, 0.0005); /* on a bound: le is inclusive */
    met_observe_latency(&m->ack_latency, 0.003);
    met_observe_latency(&m->ack_latency, 0.003);
    met_observe_latency(&m->ack_latency, 20);
    met_observe_batch(&m->db_batch_size, 1);
    met_observe_batch(&m->db_batch_size, 3);
    met_observe_batch(&m->db_batch_size, 600);
    tap_ok(m->ack_latency.count == 5 && m->ack_latency.bucket[2] == 2 &&
               m->ack_latency.bucket[5] == 2 && m->ack_latency.bucket[MET_LATENCY_BUCKETS] == 1,
           "latency observations land in their buckets");
    tap_ok(m->db_batch_size.bucket[0] == 1 && m->db_batch_size.bucket[2] == 1 &&
               m->db_batch_size.bucket[MET_BATCH_BUCKETS] == 1,
           "batch observations land in their buckets");

    int n = met_render(out, sizeof(out));
    tap_ok(n > 0 && (size_t)n == strlen(out), "render returns the length of a NUL-terminated text");
    printf("# %d bytes\n", n);
    int nsamples;
    const char *why = check_exposition(out, &nsamples);
    tap_ok(why == NULL, "exposition is well formed%s%s", why ? ": " : "", why ? why : "");
    static const char *const lines[] = {
        "# TYPE tgring_http_requests_total counter",
        "tgring_http_requests_total{code=\"200\"} 5",
        "tgring_http_requests_total{code=\"503\"} 2",
        "# TYPE tgring_http_connections_open gauge",
        "tgring_http_connections_open 4",
        "# TYPE tgring_http_connections_total counter",
        "tgring_http_connections_total 9",
        "# TYPE tgring_http_send_timeouts_total counter",
        "tgring_http_send_timeouts_total 36",
        "# TYPE tgring_http_accept_errors_total counter",
        "tgring_http_accept_errors_total 37",
        "# TYPE tgring_updates_stored_total counter",
        "tgring_updates_stored_total 3",
        "# TYPE tgring_updates_duplicate_total counter",
        "tgring_updates_duplicate_total 0",
        "# TYPE tgring_updates_rejected_total counter",
        "tgring_updates_rejected_total 0",
        "# TYPE tgring_updates_unavailable_total counter",
        "tgring_updates_unavailable_total 1",
        "# TYPE tgring_ack_latency_seconds histogram",
        "tgring_ack_latency_seconds_bucket{le=\"0.0001\"} 0",
        "tgring_ack_latency_seconds_bucket{le=\"0.00025\"} 0",
        "tgring_ack_latency_seconds_bucket{le=\"0.0005\"} 2",
        "tgring_ack_latency_seconds_bucket{le=\"0.001\"} 2",
        "tgring_ack_latency_seconds_bucket{le=\"0.002\"} 2",
        "tgring_ack_latency_seconds_bucket{le=\"0.005\"} 4",
        "tgring_ack_latency_seconds_bucket{le=\"0.01\"} 4",
        "tgring_ack_latency_seconds_bucket{le=\"2.5\"} 4",
        "tgring_ack_latency_seconds_bucket{le=\"10\"} 4",
        "tgring_ack_latency_seconds_bucket{le=\"+Inf\"} 5",
        "tgring_ack_latency_seconds_count 5",
        "# TYPE tgring_db_batch_size histogram",
        "tgring_db_batch_size_bucket{le=\"1\"} 1",
        "tgring_db_batch_size_bucket{le=\"2\"} 1",
        "tgring_db_batch_size_bucket{le=\"4\"} 2",
        "tgring_db_batch_size_bucket{le=\"512\"} 2",
        "tgring_db_batch_size_bucket{le=\"+Inf\"} 3",
        "tgring_db_batch_size_sum 604",
        "tgring_db_batch_size_count 3",
        "# TYPE tgring_db_reconnects_total counter",
        "tgring_db_reconnects_total 0",
        "# TYPE tgring_db_connected gauge",
        "tgring_db_connected 1",
        "# TYPE tgring_db_queue_depth gauge",
        "tgring_db_queue_depth 17",
        "# TYPE tgring_process_resident_memory_bytes gauge",
        "tgring_process_resident_memory_bytes 1000",
        "# TYPE tgring_outbox_claimed_total counter",
        "tgring_outbox_claimed_total 21",
        "# TYPE tgring_outbox_sent_total counter",
        "tgring_outbox_sent_total 22",
        "# TYPE tgring_outbox_retried_total counter",
        "tgring_outbox_retried_total 23",
        "# TYPE tgring_outbox_failed_total counter",
        "tgring_outbox_failed_total 24",
        "# TYPE tgring_outbox_migrated_total counter",
        "tgring_outbox_migrated_total 25",
        "# TYPE tgring_outbox_limited_total counter",
        "tgring_outbox_limited_total 26",
        "# TYPE tgring_outbox_global_pauses_total counter",
        "tgring_outbox_global_pauses_total 27",
        "# TYPE tgring_sender_leader gauge",
        "tgring_sender_leader 1",
        "# TYPE tgring_sender_takeovers_total counter",
        "tgring_sender_takeovers_total 28",
        "# TYPE tgring_botapi_requests_total counter",
        "tgring_botapi_requests_total 31",
        "# TYPE tgring_botapi_transport_errors_total counter",
        "tgring_botapi_transport_errors_total 32",
        "# TYPE tgring_botapi_timeouts_total counter",
        "tgring_botapi_timeouts_total 33",
        "# TYPE tgring_botapi_stale_retries_total counter",
        "tgring_botapi_stale_retries_total 34",
        "# TYPE tgring_botapi_connects_total counter",
        "tgring_botapi_connects_total 35",
        "# TYPE tgring_workers gauge",
        "tgring_workers 1",
    };
    int missing = 0;
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        if (!has_line(out, lines[i])) {
            printf("# missing: %s\n", lines[i]);
            missing++;
        }
    }
    tap_ok(missing == 0, "all %zu expected lines are present", sizeof(lines) / sizeof(lines[0]));
    tap_ok(strstr(out, "code=\"404\"") == NULL && strstr(out, "code=\"0\"") == NULL,
           "status codes never seen are not emitted");
    double sum = sample(out, "tgring_ack_latency_seconds_sum ");
    tap_ok(sum > 20.00689 && sum < 20.00691, "latency _sum is 20.0069 (%.17g)", sum);
    /*
     * The http server's 2 families (send timeouts, accept errors), the
     * processor's 8, the sender's 2, the quit bot's 3, the hand-off's 1,
     * the inbox's slots 1 and the 5 stage histograms after the group commit
     * came after the fixed set.
     */
    tap_ok(nsamples == 2 + 6 + 17 + 2 + 11 + 2 + 2 * (17 + 2) + 5 + 16 + 8 + 2 + 3 + 2 + 1 + 1 +
                           5 * (17 + 2),
           "%d samples: the fixed set plus two codes", nsamples);

    tap_ok(met_render(out, 100) == -ENOSPC, "a small buffer gives -ENOSPC");
    tap_ok(met_render(out, (size_t)n) == -ENOSPC, "no room for the NUL gives -ENOSPC");
    tap_ok(met_render(out, (size_t)n + 1) == n, "exactly enough room works");
    tap_ok(met_render(out, 0) == -ENOSPC, "cap 0 gives -ENOSPC");
    tap_ok(met_render(out, 20480) > 0, "20 KiB is enough for the fixed set");

    for (unsigned c = 0; c < 600; c++)
        m->http_requests[c] = UINT64_MAX / 4;
    m->ack_latency.sum = 1e300;
    n = met_render(out, sizeof(out));
    tap_ok(n > 0, "64 KiB is enough with every status code seen (%d bytes)", n);
    tap_ok(check_exposition(out, &nsamples) == NULL &&
               nsamples == 600 + 6 + 17 + 2 + 11 + 2 + 2 * (17 + 2) + 5 + 16 + 8 + 2 + 3 + 2 + 1 +
                               1 + 5 * (17 + 2),
           "and it is well formed");
    memset(m->http_requests, 0, sizeof(m->http_requests));
    m->ack_latency.sum = 20.0069;

    met_sample_rss();
    tap_ok(m->resident_memory_bytes > 100000, "met_sample_rss() reads the resident set (%llu)",
           (unsigned long long)m->resident_memory_bytes);
}

static void test_observe_edges(void) {
    met_hist_t h;
    memset(&h, 0, sizeof(h));
    met_observe_latency(&h, 10);
    met_observe_latency(&h, 10.0001);
    met_observe_latency(&h, -1);
    met_observe_latency(&h, 0.0 / 0.0);
    tap_ok(h.bucket[MET_LATENCY_BUCKETS - 1] == 1 && h.bucket[MET_LATENCY_BUCKETS] == 1 &&
               h.bucket[0] == 1 && h.count == 3 && h.sum > 20.00009 && h.sum < 20.00011,
           "10 is le=10, above is +Inf, negative counts as 0, NaN is dropped");
    met_observe_batch(&h, 512);
    met_observe_batch(&h, 513);
    tap_ok(h.bucket[MET_BATCH_BUCKETS - 1] == 1 && h.bucket[MET_BATCH_BUCKETS] == 1,
           "batch 512 is le=512, 513 is +Inf");
}

static void test_fork(void) {
    tap_ok(met_init(2) == 0, "met_init(2) maps fresh slots");
    met_slot_t *m = met_self();
    tap_ok(m->updates_stored == 0, "slot 0 starts at zero again");
    for (int i = 0; i < 3; i++)
        MET_INC(updates_stored);
    m->http_requests[200] = 1;
    met_observe_latency(&m->ack_latency, 0.004);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        met_select(1);
        met_slot_t *c = met_self();
        int bad = c == m || c->pid != (uint64_t)getpid();
        for (int i = 0; i < 4; i++)
            MET_INC(updates_stored);
        c->http_requests[200] = 2;
        c->http_requests[429] = 1;
        c->db_connected = 1;
        met_observe_latency(&c->ack_latency, 0.2);
        met_observe_batch(&c->db_batch_size, 8);
        _exit(bad);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child selected its own slot");
    int n = met_render(out, sizeof(out));
    int nsamples;
    tap_ok(n > 0 && check_exposition(out, &nsamples) == NULL, "render after fork is well formed");
    tap_ok(has_line(out, "tgring_updates_stored_total 7"), "stored sums both slots: 3 + 4");
    tap_ok(has_line(out, "tgring_http_requests_total{code=\"200\"} 3") &&
               has_line(out, "tgring_http_requests_total{code=\"429\"} 1"),
           "per-code counts sum both slots");
    tap_ok(has_line(out, "tgring_workers 2") && has_line(out, "tgring_db_connected 1"),
           "workers 2, db_connected summed");
    tap_ok(has_line(out, "tgring_ack_latency_seconds_bucket{le=\"0.005\"} 1") &&
               has_line(out, "tgring_ack_latency_seconds_bucket{le=\"0.25\"} 2") &&
               has_line(out, "tgring_ack_latency_seconds_count 2") &&
               has_line(out, "tgring_db_batch_size_bucket{le=\"8\"} 1"),
           "histograms sum both slots");
    double sum = sample(out, "tgring_ack_latency_seconds_sum ");
    tap_ok(sum > 0.2039 && sum < 0.2041, "latency sums add (%.17g)", sum);

    /* A worker restarted into slot 1 keeps its counters but not its gauges. */
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        met_select(1);
        _exit(met_self()->updates_stored == 4 && met_self()->db_connected == 0 ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    met_render(out, sizeof(out));
    tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
               has_line(out, "tgring_updates_stored_total 7") &&
               has_line(out, "tgring_db_connected 0") && has_line(out, "tgring_workers 2"),
           "a restarted worker keeps the slot's counters and zeroes its gauges");
}

int main(void) {
    test_before_init();
    test_render();
    test_observe_edges();
    test_fork();
    tap_ok(met_init(0) == -EINVAL, "met_init(0) is refused");
    return tap_done();
}
