/* SPDX-License-Identifier: MIT */
/*
 * sendbench.c - the sending side's benchmark: Bot API calls made with
 * tg_call_start() through one httpc pool on one reactor, against an origin
 * that bench/run-send provides (nginx answering every call like Telegram).
 *
 *   throughput  K sendMessage calls kept in flight over N kept-alive
 *               connections for D seconds after a warm-up: calls/s, errors,
 *               latency percentiles (from the call's start to its callback,
 *               queueing in the pool included), CPU time per call.
 *   handshake   one call per connection (the origin answers
 *               "Connection: close"), one at a time: connections/s and CPU
 *               per connection, with the session cache flushed before every
 *               call (full handshakes) or kept (resumed ones). Against an
 *               http:// origin the same loop gives the cost of a connection
 *               without TLS, to subtract.
 *   memory      M connections opened and left idle: resident memory and heap
 *               in use per connection, next to tls_conn_memory().
 *
 * Results go to stdout as one JSON object; progress and errors to stderr.
 */
#include "httpc.h"
#include "log.h"
#include "met.h"
#include "reactor.h"
#include "tg_sender.h"
#include "tls.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define CALL_TIMEOUT_MS 10000
#define MAX_INFLIGHT 4096

/* A test token: the Bot API's shape, not a real bot. */
static const char bench_token[] = "5012345678:BENCHnotARealToken0BENCHnotARealTok";

/*
 * A sendMessage body of the size a bot typically sends (about 200 bytes):
 * chat, text with an entity-free link, parse mode and a one-button keyboard.
 */
static const char bench_body[] =
    "{\"chat_id\":123456789,\"text\":\"Your order #48213 has shipped and should arrive on "
    "Thursday. Track it here.\",\"parse_mode\":\"HTML\",\"disable_web_page_preview\":true,"
    "\"reply_markup\":{\"inline_keyboard\":[[{\"text\":\"Track\",\"callback_data\":\"t:48213\"}]]}"
    "}";

enum mode { MODE_THROUGHPUT, MODE_HANDSHAKE, MODE_MEMORY };

typedef struct bench_call {
    tg_call_t call;
    uint64_t start_ns; /* CLOCK_MONOTONIC when the call was started */
} bench_call_t;

/* A snapshot of the process's time and its metrics (the pool counts into them). */
typedef struct snap {
    uint64_t wall_ns; /* CLOCK_MONOTONIC */
    uint64_t cpu_ns;  /* user + system time of the process */
    uint64_t user_ns;
    uint64_t sys_ns;
    met_slot_t met; /* connects, retries, TLS handshakes and failures */
} snap_t;

static struct {
    enum mode mode;
    const char *url;
    const char *ca;
    unsigned conns;      /* pool size (throughput), idle connections (memory) */
    unsigned inflight;   /* calls kept in flight (throughput) */
    double duration_s;   /* measured seconds */
    double warmup_s;     /* seconds before measuring */
    bool flush_sessions; /* handshake: full handshakes */
} opt = {
    .mode = MODE_THROUGHPUT,
    .conns = 8,
    .inflight = 64,
    .duration_s = 10,
    .warmup_s = 2,
};

static rx_loop_t loop;
static tls_ctx_t *tls;
static httpc_pool_t *pool;
static bool counting;   /* completions are counted (the measured window) */
static bool restarting; /* a completed call is started again */
static bool measuring;  /* the timer's next firing ends the measured window */
static unsigned inflight;
static rx_timer_t phase_timer;
static snap_t snap_begin, snap_end;

/* Completions counted while measuring. */
static uint64_t n_ok, n_transport, n_api;
static int first_err; /* first transport error seen, for the report */
static int first_api_status;
/* Latencies of measured calls, ns; sorted at the end. */
static uint64_t *lat;
static size_t lat_len, lat_cap;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t tv_ns(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000000000u + (uint64_t)tv.tv_usec * 1000u;
}

static void take_snap(snap_t *s)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    s->wall_ns = now_ns();
    s->user_ns = tv_ns(ru.ru_utime);
    s->sys_ns = tv_ns(ru.ru_stime);
    s->cpu_ns = s->user_ns + s->sys_ns;
    s->met = *met_self();
}

/* VmRSS of this process in kB, from /proc/self/status. */
static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void lat_push(uint64_t ns)
{
    if (lat_len == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1u << 16;
        lat = realloc(lat, lat_cap * sizeof(*lat));
        if (lat == NULL)
            abort();
    }
    lat[lat_len++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of the sorted latencies, in µs (nearest rank). */
static double lat_q(double q)
{
    if (lat_len == 0)
        return 0;
    size_t i = (size_t)(q * (double)lat_len);
    if (i >= lat_len)
        i = lat_len - 1;
    return (double)lat[i] / 1000.0;
}

/* ---- calls ---- */

static void on_call(tg_call_t *call, int err, const tg_api_result_t *res);

static int call_start(bench_call_t *bc)
{
    bc->start_ns = now_ns();
    int r = tg_call_start(&bc->call, pool, bench_token, "sendMessage", bench_body,
                          sizeof(bench_body) - 1, CALL_TIMEOUT_MS, on_call);
    if (r < 0) {
        fprintf(stderr, "sendbench: tg_call_start: %s\n", strerror(-r));
        exit(1);
    }
    inflight++;
    return r;
}

static void on_call(tg_call_t *call, int err, const tg_api_result_t *res)
{
    bench_call_t *bc = container_of(call, bench_call_t, call);
    uint64_t t = now_ns();
    inflight--;
    if (counting) {
        if (err != 0) {
            n_transport++;
            if (first_err == 0)
                first_err = err;
        } else if (!res->ok) {
            n_api++;
            if (first_api_status == 0)
                first_api_status = res->http_status;
        } else {
            n_ok++;
        }
        if (opt.mode == MODE_THROUGHPUT)
            lat_push(t - bc->start_ns);
    }
    if (!restarting) {
        if (inflight == 0)
            rx_stop(&loop);
        return;
    }
    if (opt.mode == MODE_HANDSHAKE && opt.flush_sessions)
        tls_ctx_flush_sessions(tls);
    call_start(bc);
}

static void on_phase(rx_loop_t *l, rx_timer_t *t)
{
    if (!measuring) {
        measuring = counting = true;
        take_snap(&snap_begin);
        rx_update_time(&loop);
        rx_timer_start(&loop, &phase_timer, (uint64_t)(opt.duration_s * 1000), on_phase);
        return;
    }
    take_snap(&snap_end);
    counting = restarting = false;
    if (inflight == 0)
        rx_stop(&loop);
}

static void on_stop(rx_loop_t *l, rx_timer_t *t) { rx_stop(l); }

/* Runs the loop through the warm-up and the measured window, then until every call is back. */
static void run_timed(bench_call_t *calls, unsigned n)
{
    restarting = true;
    for (unsigned i = 0; i < n; i++)
        call_start(&calls[i]);
    rx_update_time(&loop);
    rx_timer_start(&loop, &phase_timer, (uint64_t)(opt.warmup_s * 1000), on_phase);
    int r = rx_run(&loop);
    if (r < 0) {
        fprintf(stderr, "sendbench: rx_run: %s\n", strerror(-r));
        exit(1);
    }
}

static void print_common(const snap_t *a, const snap_t *b, uint64_t done)
{
    double wall = (double)(b->wall_ns - a->wall_ns) / 1e9;
    double cpu = (double)(b->cpu_ns - a->cpu_ns) / 1e9;
    printf("\"url\":\"%s\",\"wall_s\":%.3f,\"completed\":%llu,\"ok\":%llu,"
           "\"transport_errors\":%llu,\"api_errors\":%llu,\"first_error\":\"%s\","
           "\"first_api_status\":%d,\"per_s\":%.1f,\"cpu_s\":%.3f,\"user_s\":%.3f,\"sys_s\":%.3f,"
           "\"cpu_util\":%.3f,\"cpu_us_per_op\":%.2f,\"connects\":%llu,\"handshakes_full\":%llu,"
           "\"handshakes_resumed\":%llu,\"tls_failures\":%llu,\"retries\":%llu",
           opt.url, wall, (unsigned long long)done, (unsigned long long)n_ok,
           (unsigned long long)n_transport, (unsigned long long)n_api,
           first_err ? strerror(-first_err) : "", first_api_status, (double)done / wall, cpu,
           (double)(b->user_ns - a->user_ns) / 1e9, (double)(b->sys_ns - a->sys_ns) / 1e9,
           cpu / wall, done ? cpu * 1e6 / (double)done : 0,
           (unsigned long long)(b->met.botapi_connects - a->met.botapi_connects),
           (unsigned long long)(b->met.tls_handshakes_full - a->met.tls_handshakes_full),
           (unsigned long long)(b->met.tls_handshakes_resumed - a->met.tls_handshakes_resumed),
           (unsigned long long)(b->met.tls_failures - a->met.tls_failures),
           (unsigned long long)(b->met.botapi_stale_retries - a->met.botapi_stale_retries));
}

/* ---- modes ---- */

static void bench_throughput(void)
{
    bench_call_t *calls = calloc(opt.inflight, sizeof(*calls));
    if (calls == NULL)
        abort();
    run_timed(calls, opt.inflight);
    uint64_t done = n_ok + n_transport + n_api;
    qsort(lat, lat_len, sizeof(*lat), cmp_u64);
    printf("{\"mode\":\"throughput\",\"conns\":%u,\"inflight\":%u,\"body_bytes\":%zu,", opt.conns,
           opt.inflight, sizeof(bench_body) - 1);
    print_common(&snap_begin, &snap_end, done);
    printf(",\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}\n",
           lat_q(0.50), lat_q(0.90), lat_q(0.99), lat_q(0.999), lat_q(1.0));
    free(calls);
}

static void bench_handshake(void)
{
    bench_call_t call;
    memset(&call, 0, sizeof(call));
    if (tls != NULL && opt.flush_sessions)
        tls_ctx_flush_sessions(tls);
    run_timed(&call, 1);
    uint64_t done = n_ok + n_transport + n_api;
    printf("{\"mode\":\"handshake\",\"sessions\":\"%s\",\"tls\":%s,",
           opt.flush_sessions ? "flush" : "keep", tls != NULL ? "true" : "false");
    print_common(&snap_begin, &snap_end, done);
    printf("}\n");
}

/* Starts n calls at once and runs the loop until all are back. */
static void mem_run(bench_call_t *calls, unsigned n)
{
    counting = true;
    restarting = false;
    for (unsigned i = 0; i < n; i++)
        call_start(&calls[i]);
    int r = rx_run(&loop);
    if (r < 0) {
        fprintf(stderr, "sendbench: rx_run: %s\n", strerror(-r));
        exit(1);
    }
}

static void bench_memory(void)
{
    /* One more than measured: the warm-up connection is reused by the first of the n calls. */
    unsigned n = opt.conns + 1;
    bench_call_t *calls = calloc(n, sizeof(*calls));
    if (calls == NULL)
        abort();
    /*
     * Warm-up: one connection opened, used and left idle, so that code
     * pages, the loop's first allocations and malloc's arenas are already
     * resident before the "before" reading.
     */
    mem_run(calls, 1);
    uint64_t open0 = met_self()->botapi_connections_open;
    long rss0 = rss_kb();
    struct mallinfo2 mi0 = mallinfo2();
    mem_run(calls, n);
    uint64_t open1 = met_self()->botapi_connections_open;
    long rss1 = rss_kb();
    struct mallinfo2 mi1 = mallinfo2();
    uint64_t added = open1 - open0;
    double rss_per = added ? (double)(rss1 - rss0) * 1024.0 / (double)added : 0;
    double heap_per = added ? ((double)mi1.uordblks + (double)mi1.hblkhd - (double)mi0.uordblks -
                               (double)mi0.hblkhd) /
                                  (double)added
                            : 0;
    printf("{\"mode\":\"memory\",\"url\":\"%s\",\"conns_added\":%llu,\"open\":%llu,"
           "\"ok\":%llu,\"errors\":%llu,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,"
           "\"rss_per_conn_bytes\":%.0f,\"heap_per_conn_bytes\":%.0f,\"tls_conn_memory\":%zu,"
           "\"handshakes_full\":%llu,\"handshakes_resumed\":%llu}\n",
           opt.url, (unsigned long long)added, (unsigned long long)open1, (unsigned long long)n_ok,
           (unsigned long long)(n_transport + n_api), rss0, rss1, rss_per, heap_per,
           tls_conn_memory(), (unsigned long long)met_self()->tls_handshakes_full,
           (unsigned long long)met_self()->tls_handshakes_resumed);
    free(calls);
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: sendbench --url URL [--ca FILE] [--mode throughput|handshake|memory]\n"
               "                 [--conns N] [--inflight K] [--duration S] [--warmup S]\n"
               "                 [--sessions flush|keep]\n"
               "       sendbench --wrk-script   (the same call as a wrk Lua script)\n"
               "  throughput: K calls in flight over N connections (8, 64), measured for S\n"
               "              seconds (10) after a warm-up (2)\n"
               "  handshake:  one call per connection, sessions flushed (full handshakes) or\n"
               "              kept (resumed); the origin must answer Connection: close\n"
               "  memory:     N connections (64) opened and left idle; RSS per connection\n");
}

/* The call this benchmark makes, as a wrk script, so that the peer sends the same bytes. */
static void print_wrk_script(void)
{
    printf("-- Made by sendbench --wrk-script: the call sendbench makes.\n"
           "wrk.method = \"POST\"\n"
           "wrk.path = \"/bot%s/sendMessage\"\n"
           "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
           "wrk.body = [==[%s]==]\n",
           bench_token, bench_body);
}

static double parse_num(const char *s, const char *what, double min, double max)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "sendbench: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},
        {"ca", required_argument, NULL, 'c'},
        {"mode", required_argument, NULL, 'm'},
        {"conns", required_argument, NULL, 'n'},
        {"inflight", required_argument, NULL, 'k'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"sessions", required_argument, NULL, 's'},
        {"wrk-script", no_argument, NULL, 'W'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool inflight_set = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "u:c:m:n:k:d:w:s:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            opt.url = optarg;
            break;
        case 'c':
            opt.ca = optarg;
            break;
        case 'm':
            if (strcmp(optarg, "throughput") == 0)
                opt.mode = MODE_THROUGHPUT;
            else if (strcmp(optarg, "handshake") == 0)
                opt.mode = MODE_HANDSHAKE;
            else if (strcmp(optarg, "memory") == 0)
                opt.mode = MODE_MEMORY;
            else {
                usage(stderr);
                return 2;
            }
            break;
        case 'n':
            opt.conns = (unsigned)parse_num(optarg, "--conns", 1, 4096);
            break;
        case 'k':
            opt.inflight = (unsigned)parse_num(optarg, "--inflight", 1, MAX_INFLIGHT);
            inflight_set = true;
            break;
        case 'd':
            opt.duration_s = parse_num(optarg, "--duration", 0.1, 3600);
            break;
        case 'w':
            opt.warmup_s = parse_num(optarg, "--warmup", 0, 3600);
            break;
        case 's':
            if (strcmp(optarg, "flush") != 0 && strcmp(optarg, "keep") != 0) {
                usage(stderr);
                return 2;
            }
            opt.flush_sessions = strcmp(optarg, "flush") == 0;
            break;
        case 'W':
            print_wrk_script();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (opt.url == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (opt.mode == MODE_MEMORY && !inflight_set && opt.conns == 8)
        opt.conns = 64;
    if (opt.mode == MODE_THROUGHPUT && opt.inflight < opt.conns)
        fprintf(stderr, "sendbench: warning: %u calls in flight cannot keep %u connections busy\n",
                opt.inflight, opt.conns);

    log_setup(LOG_WARN, LOG_FORMAT_TEXT);
    int r = rx_loop_init(&loop, 1024);
    if (r < 0) {
        fprintf(stderr, "sendbench: %s\n", rx_strerror_setup(r));
        return 1;
    }
    int err = 0;
    if (strncmp(opt.url, "https://", 8) == 0) {
        tls = tls_ctx_new(opt.ca, &err);
        if (tls == NULL) {
            fprintf(stderr, "sendbench: CA bundle %s: %s\n", opt.ca ? opt.ca : TLS_DEFAULT_CA_FILE,
                    strerror(-err));
            return 1;
        }
    }
    httpc_options_t ho = {
        .url = opt.url,
        .tls = tls,
        .max_conns = opt.mode == MODE_HANDSHAKE ? 1
                     : opt.mode == MODE_MEMORY  ? opt.conns + 1
                                                : opt.conns,
        .max_queue = MAX_INFLIGHT,
        /* Memory mode must not see connections closed under it while it reads RSS. */
        .idle_timeout_ms = 600000,
    };
    pool = httpc_pool_new(&loop, &ho, &err);
    if (pool == NULL) {
        fprintf(stderr, "sendbench: %s: %s\n", opt.url, strerror(-err));
        return 1;
    }

    switch (opt.mode) {
    case MODE_THROUGHPUT:
        bench_throughput();
        break;
    case MODE_HANDSHAKE:
        bench_handshake();
        break;
    case MODE_MEMORY:
        bench_memory();
        break;
    }
    fflush(stdout);

    /* Let the pool's cancelled I/O complete so that it frees itself, then free the rest. */
    httpc_pool_free(pool);
    rx_update_time(&loop);
    rx_timer_start(&loop, &phase_timer, 100, on_stop);
    rx_run(&loop);
    tls_ctx_free(tls);
    rx_loop_dispose(&loop);
    free(lat);
    return 0;
}
