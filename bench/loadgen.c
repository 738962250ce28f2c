/* SPDX-License-Identifier: MIT */
/*
 * loadgen.c - tgload, the constant-rate, open-loop HTTP/1.1 load generator of
 * bench/ (bench/run, bench/run-e2e and bench/ab-ingest drive it).
 *
 * Requests are scheduled at fixed intended times (request k at start + k/R)
 * and handed, in order, to whichever connection is free; a connection carries
 * one request at a time, as Telegram's webhook delivery does. Latency is
 * measured from the intended send time, so a request that waits because the
 * server is slow (all connections busy, backlog growing) is charged for the
 * wait: coordinated omission is corrected the way wrk2 does it, except that
 * the schedule is global instead of per connection. With -R 0 it runs closed
 * loop instead (each connection sends again as soon as it has its answer) and
 * latency counts from the actual send.
 *
 * Schedules. The global one above (default) models Telegram: its webhook
 * delivery keeps up to max_connections connections to the bot, each carrying
 * one request at a time, all fed from the bot's one queue of updates, so an
 * update waits for whichever connection frees first and a slow answer on one
 * connection delays the updates behind it only when every connection is busy.
 * --per-conn is wrk2's: each connection has its own schedule at rate/c and a
 * request waits for its own connection even while others idle, which charges
 * a stall more than Telegram's queue would. Either schedule spaces requests
 * evenly, or with --poisson draws exponential gaps (a seeded PRNG, --seed)
 * for arrivals of independent users. Requests that time out (-t), fail, or
 * are never sent go into the latency histogram at their age at the end of
 * the run (they were never answered by then), so nothing drops out of the
 * percentiles, and the run is marked "valid": false.
 *
 * Who was slow. Beside the latency from the intended time, each response's
 * service time (from its actual send) is what the server took, without the
 * generator's queue; each request's generator lag (actual send minus the
 * later of its due time and its connection coming free) is what tgload
 * itself took to send it. "generator_behind" is set when that lag's p99
 * exceeds 1 ms: the window then measured the generator. "target_backlog"
 * says every connection was busy at some moment, which is the target's
 * doing and charged to it, not a fault of the run.
 *
 * One thread, epoll, nonblocking sockets; responses must carry Content-Length
 * or chunked framing (or end at close). Built by meson as tgload
 * (bench/meson.build), installed nowhere.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/*
 * https goes through tgring's TLS module (src/tls), which meson links in and
 * says so with TGLOAD_TLS; compiled alone (cc -O2 bench/loadgen.c -lm, as
 * bench/Dockerfile.loadgen does) tgload speaks plain http only.
 */
#ifdef TGLOAD_TLS
#include "log.h"
#include "tls.h"
#else
typedef struct tls_conn tls_conn_t; /* never made in an http-only build */
#endif

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE (64 * 1024) /* one response, headers and body, must fit */
#define MAX_HEADERS 64        /* -H options */
#define BODY_MAX 2048         /* a scenario's update body, bytes */
#define MAX_COMMANDS 32       /* a scenario's commands */
#define NSEC 1000000000ull

/* ---- histogram ----
 *
 * HdrHistogram's log-linear layout with 128 linear sub-buckets per power of
 * two: values (ns) below 256 are exact, above that a bucket is at most 1/128
 * of its value wide, so any reported percentile is within 0.8% of the truth.
 * Values are clamped at 2^36 ns (68.7 s). 3968 counters, 31 KiB.
 */
#define H_SUB 128
#define H_MAXBITS 36
#define H_COUNT (H_SUB * (H_MAXBITS - 7) + 2 * H_SUB)

typedef struct hist {
    uint64_t counts[H_COUNT];
    uint64_t total; /* values recorded */
    uint64_t max;   /* largest value recorded, ns (exact) */
    uint64_t min;   /* smallest value recorded, ns (exact) */
    double sum;     /* for the mean, ns */
    double sumsq;   /* for the standard deviation, ns^2 */
} hist_t;

static unsigned hist_index(uint64_t v)
{
    if (v >= (1ull << H_MAXBITS))
        v = (1ull << H_MAXBITS) - 1;
    if (v < 2 * H_SUB)
        return (unsigned)v;
    unsigned b = (unsigned)(63 - __builtin_clzll(v)) - 7;
    return H_SUB * b + (unsigned)(v >> b);
}

/* Highest value that lands in bucket i: percentiles are reported pessimistically. */
static uint64_t hist_upper(unsigned i)
{
    if (i < 2 * H_SUB)
        return i;
    unsigned b = i / H_SUB - 1;
    uint64_t s = i - (uint64_t)H_SUB * b;
    return ((s + 1) << b) - 1;
}

static void hist_record(hist_t *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    if (h->total == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->total++;
    h->sum += (double)v;
    h->sumsq += (double)v * (double)v;
}

static double hist_mean(const hist_t *h)
{
    return h->total ? h->sum / (double)h->total : 0.0;
}

static double hist_stddev(const hist_t *h)
{
    if (h->total == 0)
        return 0.0;
    double m = hist_mean(h), var = h->sumsq / (double)h->total - m * m;
    return var > 0 ? sqrt(var) : 0.0;
}

/*
 * Writes h in HdrHistogram's percentile distribution text layout
 * (outputPercentileDistribution with 5 ticks per half distance), values in
 * ms, so that HdrHistogram's plotter reads it. Percentile levels come closer
 * to 100 in halving steps; each line is the first bucket whose cumulative
 * count reaches the level.
 */
static void hist_write_hgrm(const hist_t *h, FILE *f)
{
    fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
            "1/(1-Percentile)");
    double level = 0;
    uint64_t cum = 0;
    for (unsigned i = 0; i < H_COUNT && h->total > 0; i++) {
        if (h->counts[i] == 0)
            continue;
        cum += h->counts[i];
        uint64_t v = hist_upper(i) > h->max ? h->max : hist_upper(i);
        while (level < 100 && (double)cum >= ceil(level / 100.0 * (double)h->total)) {
            /* In the last bucket, the levels stop where one value is a whole step. */
            if (cum == h->total && (1.0 - level / 100.0) * (double)h->total < 1.0)
                break;
            fprintf(f, "%12.3f %2.12f %10" PRIu64 " %14.2f\n", (double)v / 1e6, level / 100.0,
                    cum, 1.0 / (1.0 - level / 100.0));
            double ticks = 5.0 * pow(2.0, floor(log2(100.0 / (100.0 - level))) + 1);
            level += 100.0 / ticks;
        }
    }
    if (h->total > 0)
        fprintf(f, "%12.3f %2.12f %10" PRIu64 "\n", (double)h->max / 1e6, 1.0, h->total);
    fprintf(f, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", hist_mean(h) / 1e6,
            hist_stddev(h) / 1e6);
    fprintf(f, "#[Max     = %12.3f, Total count    = %12" PRIu64 "]\n", (double)h->max / 1e6,
            h->total);
    fprintf(f, "#[Buckets = %12d, SubBuckets     = %12d]\n", H_COUNT / H_SUB - 1, 2 * H_SUB);
}

static uint64_t hist_percentile(const hist_t *h, double p)
{
    if (h->total == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->total);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_COUNT; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = hist_upper(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- pseudo-random numbers (splitmix64) ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1), 53 bits. */
static double rand01(uint64_t *x)
{
    return (double)(splitmix64(x) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- configuration ---- */

/* One piece of the body template: literal text or a placeholder. */
typedef struct piece {
    const char *text; /* literal bytes (not NUL-terminated), NULL for a placeholder */
    size_t len;       /* literal length, bytes */
    int kind;         /* 1 = {{ID}}, 2 = {{CHAT}} when text is NULL */
} piece_t;

typedef struct opts {
    char host[256];   /* target host (name or address) */
    char port[16];    /* target port */
    const char *path; /* request target */
    const char *method;
    const char *headers[MAX_HEADERS]; /* extra header lines, "Name: value" */
    int nheaders;
    piece_t *pieces; /* body template, NULL for no body */
    int npieces;
    unsigned conns;      /* connections */
    double rate;         /* intended requests/s, 0 = closed loop */
    double duration;     /* measured seconds */
    double warmup;       /* seconds before measuring (requests sent, not recorded) */
    double timeout;      /* seconds a request may take before its connection is dropped */
    uint64_t start_id;   /* first {{ID}} */
    uint64_t chats;      /* {{CHAT}} = id % chats */
    const char *json;    /* file to write the JSON summary to, or NULL */
    const char *timeline; /* file for per-second lines, or NULL */
    const char *label;   /* free text copied into the JSON */
    const char *sendlog; /* file for one line per request: id, intended time, status; or NULL */
    const char *hgrm;    /* file for the all-responses percentile distribution, or NULL */
    bool per_conn;       /* each connection its own schedule at rate/conns (wrk2's) */
    bool poisson;        /* exponential inter-arrival times instead of even spacing */
    uint64_t seed;       /* seeds the arrival times and the scenario's choices */
    bool tls;            /* https: BearSSL, SNI and certificate name = host */
    const char *cafile;  /* trust anchors for https (NULL: the system bundle) */
} opts_t;

static opts_t o = {
    .host = "127.0.0.1",
    .port = "8080",
    .path = "/",
    .method = "GET",
    .conns = 10,
    .rate = 1000,
    .duration = 10,
    .warmup = 2,
    .timeout = 10,
    .start_id = 1,
    .chats = 1000,
    .seed = 1,
};

/* ---- connections ---- */

enum { C_DOWN, C_CONNECTING, C_HANDSHAKE, C_IDLE, C_WRITING, C_READING };

/*
 * A stream of intended send times: request k of the stream at `at`. Even
 * spacing computes at = offset + k * gap (no rounding drift); Poisson adds
 * exponential gaps drawn from the stream's own PRNG, so a copy of the stream
 * replays the same times (the backlog is counted with a second copy that
 * runs ahead to the present).
 */
typedef struct sched {
    uint64_t rng;  /* splitmix64 state (Poisson) */
    uint64_t k;    /* requests of this stream before `at` */
    double offset; /* first request, ns after the start */
    double at;     /* intended time of request k, ns after the start */
} sched_t;

typedef struct conn {
    int fd;
    int state;
    uint64_t intended;  /* when the current request should have been sent, ns */
    uint64_t id;        /* the current request's {{ID}} */
    uint64_t sent;      /* when it was actually sent, ns */
    uint64_t idle_at;   /* when it last became free for a request, ns */
    uint64_t retry_at;  /* earliest reconnect after a failed connect, ns */
    char *wbuf;         /* the current request */
    size_t wlen, woff;  /* its length and how much is written, bytes */
    char *rbuf;         /* response bytes so far */
    size_t rlen;        /* bytes in rbuf */
    uint64_t since;     /* when the pending connect started, ns */
    uint32_t gen;       /* bumped per socket: events of a closed socket are ignored */
    uint32_t events;    /* the epoll interest registered for the socket */
    tls_conn_t *tls;    /* https: the connection's TLS engine, NULL otherwise */
    unsigned idx;       /* index in the conns array */
    sched_t send;       /* --per-conn: this connection's schedule, next request to send */
    sched_t front;      /* --per-conn: the same schedule, first request not yet due */
} conn_t;

static conn_t *conns;
static int ep;
static char *req_head; /* request line and fixed headers, without Content-Length */
static size_t req_head_len;
static size_t wbuf_cap;
static struct addrinfo *target_ai;

/* ---- counters ---- */

static hist_t hist;                 /* latency of recorded requests, every one accounted for */
static hist_t hist_2xx;             /* latency of the recorded 2xx responses only */
static hist_t hist_lag;             /* actual send - intended send of the recorded requests */
static hist_t hist_service;         /* response - actual send of the recorded responses */
static hist_t hist_gen_lag; /* send - max(intended, connection free): the generator's own delay */
static uint64_t status_counts[600]; /* recorded responses by status */
static uint64_t status_all[600];    /* every response, warm-up and drain included */
static uint64_t n_issued;           /* requests taken off the schedule (ids used) */
static uint64_t n_recorded;         /* responses in the measured window */
static uint64_t n_in_window;        /* responses completed inside the window (throughput) */
static uint64_t err_connect, err_read, err_write, err_parse, err_closed, err_timeout;
static uint64_t err_tls;   /* TLS handshakes or sessions that failed */
static uint64_t n_responses; /* every response, for the progress line */
static uint64_t n_dups;      /* requests that re-sent an earlier update_id on purpose */
static uint64_t n_reconnects;
static uint64_t n_unsent; /* scheduled in the window but never sent before the drain deadline */
static uint64_t max_backlog; /* most requests due and waiting for a free connection */
static uint64_t n_failed_rec; /* requests of the window without a response, in hist at the end */
static uint64_t *failed_from; /* their intended (closed loop: actual) send times, ns */
static size_t failed_cap;     /* room in failed_from, entries */
static uint64_t n_unsent_rec; /* unsent requests of the window, in hist at their age at the end */

static uint64_t t_start, t_measure, t_end, t_deadline;

/*
 * -S: one line per request that was sent, "id intended_unix_ns status", for
 * matching each request to an effect seen elsewhere on this machine (the
 * end-to-end bench joins it with the Bot API stand-in's log). The intended
 * time is converted from CLOCK_MONOTONIC to CLOCK_REALTIME with one offset
 * taken at the start, so both sides compare on the realtime clock. Status 0:
 * no response (error or timeout).
 */
static FILE *sendlog;
static int64_t realtime_offset; /* CLOCK_REALTIME - CLOCK_MONOTONIC at the start, ns */

static void sendlog_write(const conn_t *c, int status)
{
    if (sendlog != NULL)
        fprintf(sendlog, "%" PRIu64 " %" PRId64 " %d\n", c->id,
                (int64_t)c->intended + realtime_offset, status);
}

/*
 * Per-second timeline, by completion time from the start of the schedule: a
 * stall shows as one bad second, a server that falls behind as a run of them.
 */
typedef struct second {
    uint64_t done;    /* responses completed in this second */
    uint64_t max;     /* largest latency among them, ns */
    uint64_t backlog; /* most requests due and waiting for a connection, at any moment */
} second_t;

static second_t *timeline;
static size_t timeline_len;

static second_t *second_at(uint64_t now)
{
    if (timeline == NULL || now < t_start)
        return NULL;
    uint64_t i = (now - t_start) / NSEC;
    return i < timeline_len ? &timeline[i] : NULL;
}
static volatile sig_atomic_t interrupted;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tgload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        die("out of memory");
    return p;
}

/* ---- body template ---- */

static void load_template(const char *file)
{
    FILE *f = fopen(file, "rb");
    if (f == NULL)
        die("%s: %s", file, strerror(errno));
    size_t cap = 4096, len = 0;
    char *t = xmalloc(cap);
    size_t n;
    while ((n = fread(t + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap)
            t = realloc(t, cap *= 2);
        if (t == NULL)
            die("out of memory");
    }
    fclose(f);
    /* A trailing newline from an editor is not part of the body. */
    while (len > 0 && (t[len - 1] == '\n' || t[len - 1] == '\r'))
        len--;

    o.pieces = xmalloc(sizeof(piece_t) * (len + 1));
    size_t lit = 0;
    for (size_t i = 0; i <= len;) {
        int kind = 0;
        size_t skip = 0;
        if (i + 6 <= len && memcmp(t + i, "{{ID}}", 6) == 0)
            kind = 1, skip = 6;
        else if (i + 8 <= len && memcmp(t + i, "{{CHAT}}", 8) == 0)
            kind = 2, skip = 8;
        if (kind != 0 || i == len) {
            if (i > lit)
                o.pieces[o.npieces++] = (piece_t){t + lit, i - lit, 0};
            if (kind == 0)
                break;
            o.pieces[o.npieces++] = (piece_t){NULL, 0, kind};
            i += skip;
            lit = i;
        } else {
            i++;
        }
    }
}

/* ---- scenario ----
 *
 * --scenario FILE: the traffic of a bot, as updates Telegram would deliver
 * to its webhook. One directive a line, '#' starts a comment:
 *
 *   chats N         distinct private chats (default 1000); the chat of an
 *                   update is drawn by rank 1..N
 *   zipf S          rank r has weight 1/r^S (default 1.0; 0 = uniform), so
 *                   a few chats carry most of the traffic
 *   mix K W ...     update types and their weights, K one of message (a text
 *                   message), command (a message whose text is a command),
 *                   callback (a callback_query with data), edited (an
 *                   edited_message); default "message 100"
 *   commands C ...  the commands a command picks from (default /start /help)
 *   duplicates P    percent of requests that re-send one of the last 1000
 *                   update_ids (Telegram's redelivery after a lost answer)
 *
 * Every new request takes the next update_id; what the update looks like
 * (type, chat, text) follows from the id and --seed alone, so a duplicate
 * re-sends exactly the body it had the first time.
 */
enum { K_MESSAGE, K_COMMAND, K_CALLBACK, K_EDITED, K_KINDS };
static const char *const kind_names[K_KINDS] = {"message", "command", "callback", "edited"};

typedef struct scenario {
    const char *file;                  /* the scenario file, NULL without --scenario */
    uint64_t chats;                    /* chats, ranks 1..chats */
    double zipf;                       /* Zipf exponent of the chat ranks */
    double *cdf;                       /* cdf[r - 1] = P(rank <= r), chats entries */
    double mix_cdf[K_KINDS];           /* cumulative type shares, the last one 1 */
    char *commands[MAX_COMMANDS];      /* command texts, each "/name" */
    int ncommands;
    double duplicates;                 /* percent of requests that repeat an update_id */
} scenario_t;

static scenario_t sc = {.chats = 1000, .zipf = 1.0};
static uint64_t n_new_ids; /* update_ids handed out so far */
static uint64_t dup_rng;   /* PRNG for the duplicate choices */
static time_t sc_date;     /* "date" of the updates: the start of the run, s */

static void scenario_load(const char *file)
{
    FILE *f = fopen(file, "r");
    if (f == NULL)
        die("%s: %s", file, strerror(errno));
    double mix[K_KINDS] = {0};
    bool mix_set = false;
    char line[1024];
    for (int ln = 1; fgets(line, sizeof(line), f) != NULL; ln++) {
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        char *save, *key = strtok_r(line, " \t\r\n", &save);
        if (key == NULL)
            continue;
        char *arg = strtok_r(NULL, " \t\r\n", &save);
        if (arg == NULL)
            die("%s:%d: %s needs a value", file, ln, key);
        char *e;
        if (strcmp(key, "chats") == 0) {
            unsigned long long n = strtoull(arg, &e, 10);
            if (*e != '\0' || n == 0 || n > 10000000)
                die("%s:%d: chats must be 1..10000000", file, ln);
            sc.chats = n;
        } else if (strcmp(key, "zipf") == 0) {
            sc.zipf = strtod(arg, &e);
            if (*e != '\0' || !(sc.zipf >= 0 && sc.zipf <= 10))
                die("%s:%d: zipf must be 0..10", file, ln);
        } else if (strcmp(key, "duplicates") == 0) {
            sc.duplicates = strtod(arg, &e);
            if (*e != '\0' || !(sc.duplicates >= 0 && sc.duplicates <= 50))
                die("%s:%d: duplicates must be 0..50 (percent)", file, ln);
        } else if (strcmp(key, "mix") == 0) {
            mix_set = true;
            for (; arg != NULL; arg = strtok_r(NULL, " \t\r\n", &save)) {
                int k = 0;
                while (k < K_KINDS && strcmp(arg, kind_names[k]) != 0)
                    k++;
                char *w = strtok_r(NULL, " \t\r\n", &save);
                if (k == K_KINDS || w == NULL)
                    die("%s:%d: mix wants pairs of message|command|callback|edited and a weight",
                        file, ln);
                mix[k] = strtod(w, &e);
                if (*e != '\0' || !(mix[k] >= 0 && isfinite(mix[k])))
                    die("%s:%d: bad weight \"%s\"", file, ln, w);
            }
        } else if (strcmp(key, "commands") == 0) {
            for (; arg != NULL; arg = strtok_r(NULL, " \t\r\n", &save)) {
                /* The text goes into JSON as it is: only characters that need no escaping. */
                size_t n = strlen(arg);
                if (arg[0] != '/' || n < 2 || n > 64 || strspn(arg + 1,
                        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@") != n - 1)
                    die("%s:%d: a command is / and up to 63 letters, digits, _ or @", file, ln);
                if (sc.ncommands == MAX_COMMANDS)
                    die("%s:%d: more than %d commands", file, ln, MAX_COMMANDS);
                sc.commands[sc.ncommands++] = strdup(arg);
            }
        } else {
            die("%s:%d: unknown directive \"%s\"", file, ln, key);
        }
        if (strcmp(key, "mix") != 0 && strcmp(key, "commands") != 0 &&
            strtok_r(NULL, " \t\r\n", &save) != NULL)
            die("%s:%d: %s takes one value", file, ln, key);
    }
    fclose(f);
    if (!mix_set)
        mix[K_MESSAGE] = 1;
    double total = 0, acc = 0;
    for (int k = 0; k < K_KINDS; k++)
        total += mix[k];
    if (total <= 0)
        die("%s: the mix has no weight", file);
    for (int k = 0; k < K_KINDS; k++)
        sc.mix_cdf[k] = (acc += mix[k]) / total;
    sc.mix_cdf[K_KINDS - 1] = 1.0;
    if (sc.ncommands == 0) {
        sc.commands[sc.ncommands++] = strdup("/start");
        sc.commands[sc.ncommands++] = strdup("/help");
    }
    sc.cdf = xmalloc(sizeof(double) * sc.chats);
    double sum = 0;
    for (uint64_t r = 1; r <= sc.chats; r++)
        sc.cdf[r - 1] = (sum += pow((double)r, -sc.zipf));
    for (uint64_t r = 0; r < sc.chats; r++)
        sc.cdf[r] /= sum;
    sc.cdf[sc.chats - 1] = 1.0;
    sc.file = file;
}

/* The chat rank (1..chats) that u in [0, 1) falls on: the first with cdf >= u. */
static uint64_t zipf_rank(double u)
{
    uint64_t lo = 0, hi = sc.chats - 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (sc.cdf[mid] >= u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo + 1;
}

/*
 * The update_id of the next request: the next new one, or (with the
 * scenario's duplicates share) one of the last 1000 handed out.
 */
static uint64_t next_id(void)
{
    if (sc.duplicates > 0 && n_new_ids > 0 && rand01(&dup_rng) * 100.0 < sc.duplicates) {
        uint64_t window = n_new_ids < 1000 ? n_new_ids : 1000;
        n_dups++;
        return o.start_id + n_new_ids - 1 - splitmix64(&dup_rng) % window;
    }
    return o.start_id + n_new_ids++;
}

/* Writes the update for id into out (BODY_MAX bytes); returns its length. */
static size_t scenario_body(char *out, uint64_t id)
{
    uint64_t x = o.seed ^ (id * 0x9e3779b97f4a7c15ull) ^ 0x5ce7a210ull;
    double u = rand01(&x);
    int kind = 0;
    while (kind < K_KINDS - 1 && u >= sc.mix_cdf[kind])
        kind++;
    /* Private chats: the chat id is the user's id. */
    uint64_t chat = 100000000 + zipf_rank(rand01(&x));
    uint64_t msg_id = id % 1000000000 + 1;
    long long date = (long long)sc_date;
    char user[160], chat_obj[128];
    snprintf(user, sizeof(user),
             "{\"id\":%" PRIu64 ",\"is_bot\":false,\"first_name\":\"User %" PRIu64
             "\",\"language_code\":\"en\"}", chat, chat);
    snprintf(chat_obj, sizeof(chat_obj),
             "{\"id\":%" PRIu64 ",\"first_name\":\"User %" PRIu64 "\",\"type\":\"private\"}",
             chat, chat);
    int n;
    switch (kind) {
    case K_COMMAND: {
        const char *cmd = sc.commands[splitmix64(&x) % (uint64_t)sc.ncommands];
        n = snprintf(out, BODY_MAX,
                     "{\"update_id\":%" PRIu64 ",\"message\":{\"message_id\":%" PRIu64
                     ",\"from\":%s,\"chat\":%s,\"date\":%lld,\"text\":\"%s\",\"entities\":"
                     "[{\"offset\":0,\"length\":%zu,\"type\":\"bot_command\"}]}}",
                     id, msg_id, user, chat_obj, date, cmd, strlen(cmd));
        break;
    }
    case K_CALLBACK:
        n = snprintf(out, BODY_MAX,
                     "{\"update_id\":%" PRIu64 ",\"callback_query\":{\"id\":\"%" PRIu64
                     "\",\"from\":%s,\"message\":{\"message_id\":%" PRIu64
                     ",\"from\":{\"id\":1,\"is_bot\":true,\"first_name\":\"Bot\"},\"chat\":%s,"
                     "\"date\":%lld,\"text\":\"Choose\"},\"chat_instance\":\"%" PRIu64
                     "\",\"data\":\"button:%u\"}}",
                     id, splitmix64(&x) >> 1, user, msg_id, chat_obj, date, chat * 7919,
                     (unsigned)(splitmix64(&x) % 8));
        break;
    case K_EDITED:
        n = snprintf(out, BODY_MAX,
                     "{\"update_id\":%" PRIu64 ",\"edited_message\":{\"message_id\":%" PRIu64
                     ",\"from\":%s,\"chat\":%s,\"date\":%lld,\"edit_date\":%lld,"
                     "\"text\":\"edited text %" PRIu64 "\"}}",
                     id, msg_id, user, chat_obj, date - 60, date, id);
        break;
    default:
        n = snprintf(out, BODY_MAX,
                     "{\"update_id\":%" PRIu64 ",\"message\":{\"message_id\":%" PRIu64
                     ",\"from\":%s,\"chat\":%s,\"date\":%lld,\"text\":\"hello number %" PRIu64
                     "\"}}",
                     id, msg_id, user, chat_obj, date, id);
        break;
    }
    if (n < 0 || n >= BODY_MAX)
        die("an update body outgrew %d bytes", BODY_MAX);
    return (size_t)n;
}

/* Builds the request for id into c->wbuf. */
static void build_request(conn_t *c, uint64_t id)
{
    char *p = c->wbuf;
    memcpy(p, req_head, req_head_len);
    p += req_head_len;
    if (sc.file != NULL) {
        char body[BODY_MAX];
        size_t blen = scenario_body(body, id);
        p += sprintf(p, "Content-Length: %zu\r\n\r\n", blen);
        memcpy(p, body, blen);
        c->wlen = (size_t)(p + blen - c->wbuf);
        return;
    }
    if (o.pieces == NULL) {
        memcpy(p, "\r\n", 2);
        c->wlen = req_head_len + 2;
        return;
    }
    /* The body first, past room for the Content-Length line, then the head is moved up. */
    char body_tmp[64];
    size_t blen = 0;
    for (int i = 0; i < o.npieces; i++) {
        const piece_t *pc = &o.pieces[i];
        blen += pc->text ? pc->len
                         : (size_t)snprintf(body_tmp, sizeof(body_tmp), "%" PRIu64,
                                            pc->kind == 1 ? id : id % o.chats);
    }
    p += sprintf(p, "Content-Length: %zu\r\n\r\n", blen);
    for (int i = 0; i < o.npieces; i++) {
        const piece_t *pc = &o.pieces[i];
        if (pc->text) {
            memcpy(p, pc->text, pc->len);
            p += pc->len;
        } else {
            p += sprintf(p, "%" PRIu64, pc->kind == 1 ? id : id % o.chats);
        }
    }
    c->wlen = (size_t)(p - c->wbuf);
}

/* ---- connection handling ---- */

static bool conn_tls_pending(conn_t *c);
static void conn_tls_free(conn_t *c);

/* The events the connection waits for, registered only when they change. */
static void conn_interest(conn_t *c)
{
    uint32_t ev = EPOLLIN;
    if (c->state == C_CONNECTING)
        ev = EPOLLOUT;
    else if ((c->state == C_WRITING && c->woff < c->wlen) ||
             (c->tls != NULL && conn_tls_pending(c)))
        ev |= EPOLLOUT;
    if (ev == c->events)
        return;
    struct epoll_event e = {.events = ev, .data.u64 = (uint64_t)c->gen << 32 | c->idx};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) != 0)
        die("epoll_ctl: %s", strerror(errno));
    c->events = ev;
}

static void conn_open(conn_t *c, uint64_t now)
{
    c->fd = socket(target_ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s (raise ulimit -n?)", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->rlen = 0;
    c->gen++;
    c->since = now;
    if (connect(c->fd, target_ai->ai_addr, target_ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        err_connect++;
        close(c->fd);
        c->fd = -1;
        c->state = C_DOWN;
        c->retry_at = now + 10 * 1000000ull;
        return;
    }
    c->state = C_CONNECTING;
    c->events = EPOLLOUT;
    struct epoll_event e = {.events = c->events, .data.u64 = (uint64_t)c->gen << 32 | c->idx};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) != 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void conn_close(conn_t *c)
{
    if (c->tls != NULL)
        conn_tls_free(c);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = C_DOWN;
}

/* Drops the connection (the request on it, if any, is already counted) and reconnects. */
static void conn_reset(conn_t *c, uint64_t now)
{
    conn_close(c);
    n_reconnects++;
    conn_open(c, now);
}

/*
 * A request that ends without a response (timeout, error, the end of the
 * run) still counts: its send time is kept, and at the end of the run it
 * goes into the all-responses histogram at its age then (failed_record).
 */
static void account_failure(const conn_t *c)
{
    uint64_t from = o.rate == 0 ? c->sent : c->intended;
    if (from >= t_measure && from < t_end) {
        if (n_failed_rec == failed_cap) {
            failed_cap = failed_cap ? 2 * failed_cap : 1024;
            failed_from = realloc(failed_from, failed_cap * sizeof(*failed_from));
            if (failed_from == NULL)
                die("out of memory");
        }
        failed_from[n_failed_rec++] = from;
    }
    sendlog_write(c, 0);
}

/* The end of the run: the requests that were never answered, at their age now. */
static void failed_record(uint64_t now)
{
    for (uint64_t i = 0; i < n_failed_rec; i++)
        hist_record(&hist, now - failed_from[i]);
    free(failed_from);
    failed_from = NULL;
}

static void conn_fail(conn_t *c, uint64_t *counter, uint64_t now)
{
    if (c->state == C_WRITING || c->state == C_READING) {
        (*counter)++;
        account_failure(c);
    } else if (c->state == C_CONNECTING) {
        err_connect++;
    } else if (c->state == C_HANDSHAKE) {
        err_tls++;
    }
    conn_reset(c, now);
}

/* ---- TLS (https) ----
 *
 * tgring's own TLS module (src/tls) drives BearSSL through zero-copy record
 * windows; here the windows are filled and drained with plain nonblocking
 * send and recv. tls_send and tls_recv behave like send and recv (-1 with
 * errno EAGAIN when the socket or the engine has to wait).
 */

#ifdef TGLOAD_TLS
static tls_ctx_t *tls_ctx;
static int tls_last_error; /* BearSSL's code for the last TLS failure */

/* Loads the trust anchors (--cafile, else the system bundle) for the run. */
static void tls_setup(void)
{
    /* The TLS module's own lines (skipped CA certificates, errors) as plain text. */
    log_setup(LOG_WARN, LOG_FORMAT_TEXT);
    int err;
    tls_ctx = tls_ctx_new(o.cafile, &err);
    if (tls_ctx == NULL)
        die("%s: cannot load CA certificates: %s", o.cafile ? o.cafile : TLS_DEFAULT_CA_FILE,
            strerror(-err));
}

/* Not one connection got through its handshake: a setup error (wrong CA, wrong name). */
static void tls_refused(void)
{
    die("https://%s:%s: TLS handshake failed: %s (%d): %s", o.host, o.port,
        tls_error_name(tls_last_error), tls_last_error, tls_error_text(tls_last_error));
}

static bool conn_tls_pending(conn_t *c)
{
    return (tls_conn_state(c->tls) & TLS_SENDREC) != 0;
}

static void conn_tls_free(conn_t *c)
{
    tls_conn_free(c->tls);
    c->tls = NULL;
}

/* Sends the records the engine has ready. Returns 0, or -1 with errno (EAGAIN: socket full). */
static int tls_flush_records(conn_t *c)
{
    size_t len;
    unsigned char *b;
    while ((b = tls_conn_sendrec_buf(c->tls, &len)) != NULL) {
        ssize_t n = send(c->fd, b, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        tls_conn_sendrec_ack(c->tls, (size_t)n);
        tls_conn_state(c->tls);
    }
    return 0;
}

/* Feeds the engine the records the socket has. Returns > 0, 0 at EOF, or -1 with errno. */
static ssize_t tls_pull_records(conn_t *c)
{
    size_t len;
    unsigned char *b = tls_conn_recvrec_buf(c->tls, &len);
    if (b == NULL) {
        errno = (tls_conn_state(c->tls) & TLS_CLOSED) ? EPROTO : EAGAIN;
        return -1;
    }
    ssize_t n;
    while ((n = recv(c->fd, b, len, 0)) < 0 && errno == EINTR)
        ;
    if (n > 0) {
        tls_conn_recvrec_ack(c->tls, (size_t)n);
        tls_conn_state(c->tls);
    }
    return n;
}

static ssize_t tls_send(conn_t *c, const char *buf, size_t len)
{
    if (tls_flush_records(c) < 0 && errno != EAGAIN)
        return -1;
    size_t room;
    unsigned char *w = tls_conn_sendapp_buf(c->tls, &room);
    if (w == NULL) {
        errno = (tls_conn_state(c->tls) & TLS_CLOSED) ? EPROTO : EAGAIN;
        return -1;
    }
    size_t n = len < room ? len : room;
    memcpy(w, buf, n);
    tls_conn_sendapp_ack(c->tls, n);
    tls_conn_flush(c->tls);
    tls_conn_state(c->tls);
    if (tls_flush_records(c) < 0 && errno != EAGAIN)
        return -1;
    return (ssize_t)n;
}

static ssize_t tls_recv(conn_t *c, char *buf, size_t cap)
{
    for (;;) {
        size_t avail;
        unsigned char *r = tls_conn_recvapp_buf(c->tls, &avail);
        if (r != NULL) {
            size_t n = avail < cap ? avail : cap;
            memcpy(buf, r, n);
            tls_conn_recvapp_ack(c->tls, n);
            tls_conn_state(c->tls);
            return (ssize_t)n;
        }
        if (tls_conn_state(c->tls) & TLS_CLOSED) {
            if (tls_conn_error(c->tls) == 0)
                return 0;
            tls_last_error = tls_conn_error(c->tls);
            errno = EPROTO;
            return -1;
        }
        if (tls_flush_records(c) < 0 && errno != EAGAIN)
            return -1;
        ssize_t n = tls_pull_records(c);
        if (n <= 0)
            return n;
    }
}

static ssize_t io_send(conn_t *c, const char *buf, size_t len)
{
    return c->tls ? tls_send(c, buf, len) : send(c->fd, buf, len, MSG_NOSIGNAL);
}

static ssize_t io_recv(conn_t *c, char *buf, size_t cap)
{
    return c->tls ? tls_recv(c, buf, cap) : recv(c->fd, buf, cap, 0);
}

/* Moves the handshake on; the connection is idle once it is complete. */
static void conn_handshake(conn_t *c, uint64_t now)
{
    for (;;) {
        unsigned st = tls_conn_state(c->tls);
        if (st & TLS_CLOSED) {
            tls_last_error = tls_conn_error(c->tls);
            conn_fail(c, &err_tls, now);
            return;
        }
        if (tls_conn_ready(c->tls)) {
            c->state = C_IDLE;
            c->idle_at = now;
            break;
        }
        if (st & TLS_SENDREC) {
            if (tls_flush_records(c) == 0)
                continue;
            if (errno == EAGAIN)
                break;
            conn_fail(c, &err_tls, now);
            return;
        }
        ssize_t n = tls_pull_records(c);
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            conn_fail(c, &err_tls, now);
            return;
        }
    }
    conn_interest(c);
}

/* The TCP connection is up: the handshake starts. */
static void conn_tls_start(conn_t *c, uint64_t now)
{
    int err;
    c->tls = tls_conn_new(tls_ctx, o.host, (uint16_t)atoi(o.port), &err);
    if (c->tls == NULL)
        die("TLS to %s: %s", o.host, strerror(-err));
    c->state = C_HANDSHAKE;
    conn_handshake(c, now);
}
#else
static void tls_setup(void)
{
    die("https needs tgload as meson builds it (with tgring's TLS module)");
}
/* Never called: without TLS no connection has an engine or reaches C_HANDSHAKE. */
static void tls_refused(void) {}
static bool conn_tls_pending(conn_t *c) { return (void)c, false; }
static void conn_tls_free(conn_t *c) { (void)c; }
static int tls_flush_records(conn_t *c) { return (void)c, 0; }
static void conn_handshake(conn_t *c, uint64_t now) { (void)c, (void)now; }
static void conn_tls_start(conn_t *c, uint64_t now) { (void)c, (void)now; }
static ssize_t io_send(conn_t *c, const char *buf, size_t len)
{
    return send(c->fd, buf, len, MSG_NOSIGNAL);
}
static ssize_t io_recv(conn_t *c, char *buf, size_t cap) { return recv(c->fd, buf, cap, 0); }
#endif

static void conn_write(conn_t *c, uint64_t now)
{
    while (c->woff < c->wlen) {
        ssize_t n = io_send(c, c->wbuf + c->woff, c->wlen - c->woff);
        if (n < 0) {
            if (errno == EAGAIN)
                break;
            if (errno == EINTR)
                continue;
            conn_fail(c, &err_write, now);
            return;
        }
        c->woff += (size_t)n;
    }
    if (c->state == C_WRITING && c->woff == c->wlen)
        c->state = C_READING;
    conn_interest(c);
}

static void conn_send(conn_t *c, uint64_t intended, uint64_t now)
{
    c->id = next_id();
    build_request(c, c->id);
    n_issued++;
    if (o.rate > 0 && intended >= t_measure && intended < t_end) {
        hist_record(&hist_lag, now - intended);
        /* Past the later of its due time and its connection coming free, a
         * request waits for nobody but the generator. */
        uint64_t ready = intended > c->idle_at ? intended : c->idle_at;
        hist_record(&hist_gen_lag, now > ready ? now - ready : 0);
    }
    c->intended = intended;
    c->sent = now;
    c->woff = 0;
    c->state = C_WRITING;
    conn_write(c, now);
}

/* The nonblocking connect finished, one way or the other. */
static void conn_connected(conn_t *c, uint64_t now)
{
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
        err_connect++;
        close(c->fd);
        c->fd = -1;
        c->state = C_DOWN;
        c->retry_at = now + 10 * 1000000ull;
        return;
    }
    if (!o.tls) {
        c->state = C_IDLE;
        c->idle_at = now;
        conn_interest(c);
        return;
    }
    conn_tls_start(c, now);
}

/* The connection an event is for, or NULL when it is about an earlier socket. */
static conn_t *event_conn(const struct epoll_event *ev)
{
    conn_t *c = &conns[(uint32_t)ev->data.u64];
    if (c->fd < 0 || c->gen != (uint32_t)(ev->data.u64 >> 32))
        return NULL;
    return c;
}

/* ---- response parsing ---- */

/* Case-insensitive header name match at line start; returns the value or NULL. */
static const char *header_value(const char *line, const char *end, const char *name)
{
    size_t nl = strlen(name);
    if ((size_t)(end - line) <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return NULL;
    const char *v = line + nl + 1;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    return v;
}

/*
 * Looks for one complete response in c->rbuf. Returns 1 and sets *status and
 * *close_after when it is complete, 0 when more bytes are needed, -1 when the
 * bytes are not HTTP/1.1. eof says the peer closed (ends a body without framing).
 */
static int parse_response(conn_t *c, bool eof, int *status, bool *close_after)
{
    char *b = c->rbuf;
    size_t len = c->rlen;
    char *hend = memmem(b, len, "\r\n\r\n", 4);
    if (hend == NULL)
        return len >= RBUF_SIZE ? -1 : 0;
    if (len < 12 || memcmp(b, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)b[9]) ||
        !isdigit((unsigned char)b[10]) || !isdigit((unsigned char)b[11]))
        return -1;
    int st = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    if (st < 100 || st > 599)
        return -1;
    bool http10 = b[7] == '0';
    long long clen = -1;
    bool chunked = false, conn_close = http10, conn_keep = false;
    /* The status line's CRLF may be the first half of the blank line's CRLFCRLF. */
    char *line = (char *)memchr(b, '\n', (size_t)(hend + 2 - b)) + 1;
    while (line < hend + 2) {
        char *eol = memchr(line, '\r', (size_t)(hend + 2 - line));
        if (eol == NULL)
            break;
        const char *v;
        if ((v = header_value(line, eol, "Content-Length")) != NULL) {
            char *e;
            clen = strtoll(v, &e, 10);
            if (e == v || clen < 0)
                return -1;
        } else if ((v = header_value(line, eol, "Transfer-Encoding")) != NULL) {
            chunked = memmem(v, (size_t)(eol - v), "chunked", 7) != NULL;
        } else if ((v = header_value(line, eol, "Connection")) != NULL) {
            if (strncasecmp(v, "close", 5) == 0)
                conn_close = true;
            else if (strncasecmp(v, "keep-alive", 10) == 0)
                conn_keep = true;
        }
        line = eol + 2;
    }
    if (http10 && conn_keep)
        conn_close = false;
    size_t body_at = (size_t)(hend + 4 - b);
    size_t need;
    if (st < 200 || st == 204 || st == 304 || strcmp(o.method, "HEAD") == 0) {
        need = body_at;
    } else if (chunked) {
        size_t p = body_at;
        for (;;) {
            char *crlf = memmem(b + p, len - p, "\r\n", 2);
            if (crlf == NULL)
                return 0;
            char *e;
            unsigned long long sz = strtoull(b + p, &e, 16);
            if (e == b + p)
                return -1;
            p = (size_t)(crlf + 2 - b);
            if (sz == 0) {
                /* Trailers, then an empty line. */
                for (;;) {
                    char *t = memmem(b + p, len - p, "\r\n", 2);
                    if (t == NULL)
                        return 0;
                    size_t l = (size_t)(t - (b + p));
                    p = (size_t)(t + 2 - b);
                    if (l == 0)
                        break;
                }
                need = p;
                break;
            }
            if (len - p < sz + 2)
                return len >= RBUF_SIZE ? -1 : 0;
            p += sz + 2;
        }
    } else if (clen >= 0) {
        need = body_at + (size_t)clen;
        if (need > RBUF_SIZE)
            return -1;
    } else {
        /* Body until close. */
        if (!eof)
            return len >= RBUF_SIZE ? -1 : 0;
        need = len;
        conn_close = true;
    }
    if (len < need)
        return 0;
    if (len > need)
        return -1; /* nothing was pipelined, so nothing may follow */
    *status = st;
    *close_after = conn_close;
    return 1;
}

static void on_response(conn_t *c, int status, uint64_t now)
{
    status_all[status]++;
    n_responses++;
    sendlog_write(c, status);
    bool closed_loop = o.rate == 0;
    uint64_t from = closed_loop ? c->sent : c->intended;
    second_t *sec = second_at(now);
    if (sec != NULL) {
        sec->done++;
        if (now - from > sec->max)
            sec->max = now - from;
    }
    if (from >= t_measure && from < t_end) {
        hist_record(&hist, now - from);
        if (status >= 200 && status < 300)
            hist_record(&hist_2xx, now - from);
        hist_record(&hist_service, now - c->sent);
        status_counts[status]++;
        n_recorded++;
    }
    if (now >= t_measure && now < t_end)
        n_in_window++;
}

static void conn_read(conn_t *c, uint64_t now)
{
    for (;;) {
        ssize_t n = io_recv(c, c->rbuf + c->rlen, RBUF_SIZE - c->rlen);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            if (errno == EINTR)
                continue;
            conn_fail(c, &err_read, now);
            return;
        }
        if (c->state != C_READING) {
            /* Bytes (or a close) while no request is out: the server closed an idle conn. */
            if (n > 0)
                err_parse++;
            conn_reset(c, now);
            return;
        }
        bool eof = n == 0;
        c->rlen += (size_t)n;
        int status;
        bool close_after;
        int r = parse_response(c, eof, &status, &close_after);
        if (r < 0) {
            conn_fail(c, &err_parse, now);
            return;
        }
        if (r == 0) {
            if (eof)
                conn_fail(c, &err_closed, now);
            else if (c->rlen == RBUF_SIZE)
                conn_fail(c, &err_parse, now);
            else
                continue;
            return;
        }
        on_response(c, status, now);
        c->rlen = 0;
        if (close_after || eof) {
            conn_reset(c, now);
            return;
        }
        c->state = C_IDLE;
        c->idle_at = now;
        conn_interest(c);
        return;
    }
}

/* ---- scheduling ---- */

static double sched_gap; /* mean gap between two requests of one stream, ns */
static sched_t gsend;    /* the global schedule: next request to send */
static sched_t gfront;   /* the same schedule: first request not yet due */

static void sched_init(sched_t *st, uint64_t stream, double offset)
{
    uint64_t x = o.seed ^ (stream * 0xd1342543de82ef95ull);
    st->rng = splitmix64(&x);
    st->k = 0;
    st->offset = offset;
    st->at = offset;
    if (o.poisson)
        st->at -= sched_gap * log(1.0 - rand01(&st->rng));
}

static void sched_next(sched_t *st)
{
    st->k++;
    if (o.poisson)
        st->at -= sched_gap * log(1.0 - rand01(&st->rng));
    else
        st->at = st->offset + (double)st->k * sched_gap;
}

static uint64_t sched_due(const sched_t *st)
{
    return t_start + (uint64_t)st->at;
}

/* Requests of the stream that are due at `now` (inside the window) and not sent yet. */
static uint64_t sched_backlog(const sched_t *send, sched_t *front, uint64_t now)
{
    uint64_t lim = now < t_end ? now : t_end - 1;
    while (sched_due(front) <= lim)
        sched_next(front);
    return front->k > send->k ? front->k - send->k : 0;
}

static void note_backlog(uint64_t backlog, uint64_t now)
{
    if (backlog > max_backlog)
        max_backlog = backlog;
    second_t *sec = second_at(now);
    if (sec != NULL && backlog > sec->backlog)
        sec->backlog = backlog;
}

/*
 * Hands due requests to idle connections; returns the time of the next due
 * request, UINT64_MAX when a response has to free a connection first.
 */
static uint64_t dispatch(uint64_t now)
{
    static unsigned rr; /* round-robin start, so that every connection gets used */
    if (o.rate == 0) {
        if (now >= t_end)
            return UINT64_MAX;
        for (unsigned i = 0; i < o.conns; i++)
            if (conns[i].state == C_IDLE)
                conn_send(&conns[i], now, now);
        return UINT64_MAX;
    }
    if (o.per_conn) {
        /* wrk2: a connection's request waits for that connection, however idle the others. */
        uint64_t next = UINT64_MAX, backlog = 0;
        for (unsigned i = 0; i < o.conns; i++) {
            conn_t *c = &conns[i];
            uint64_t due = sched_due(&c->send);
            if (c->state == C_IDLE && due <= now && due < t_end) {
                conn_send(c, due, now);
                sched_next(&c->send);
                due = sched_due(&c->send);
            }
            if (due >= t_end)
                continue;
            if (due <= now)
                backlog += sched_backlog(&c->send, &c->front, now);
            else if (c->state == C_IDLE && due < next)
                next = due;
        }
        if (backlog > 0)
            note_backlog(backlog, now);
        return next;
    }
    uint64_t due = sched_due(&gsend);
    unsigned scanned = 0;
    while (due <= now && due < t_end && scanned < o.conns) {
        conn_t *c = &conns[rr];
        rr = (rr + 1) % o.conns;
        scanned++;
        if (c->state != C_IDLE)
            continue;
        conn_send(c, due, now);
        sched_next(&gsend);
        scanned = 0;
        due = sched_due(&gsend);
    }
    if (due <= now && due < t_end) {
        note_backlog(sched_backlog(&gsend, &gfront, now), now);
        return UINT64_MAX; /* woken by the next response */
    }
    return due < t_end ? due : UINT64_MAX;
}

/* True when every request intended before the end of the window has been sent. */
static bool sched_done(void)
{
    if (!o.per_conn)
        return sched_due(&gsend) >= t_end;
    for (unsigned i = 0; i < o.conns; i++)
        if (sched_due(&conns[i].send) < t_end)
            return false;
    return true;
}

/* Counts the requests left unsent in the stream; those of the window go into hist. */
static void sched_drain(sched_t *st, uint64_t now)
{
    for (uint64_t due; (due = sched_due(st)) < t_end; sched_next(st)) {
        n_unsent++;
        if (due >= t_measure) {
            hist_record(&hist, now > due ? now - due : 0);
            n_unsent_rec++;
        }
    }
}

static void check_timeouts(uint64_t now)
{
    uint64_t limit = (uint64_t)(o.timeout * (double)NSEC);
    for (unsigned i = 0; i < o.conns; i++) {
        conn_t *c = &conns[i];
        if ((c->state == C_READING || c->state == C_WRITING) && now - c->sent > limit)
            conn_fail(c, &err_timeout, now);
        else if ((c->state == C_CONNECTING || c->state == C_HANDSHAKE) && now - c->since > limit)
            conn_fail(c, &err_connect, now);
        else if (c->state == C_DOWN && now >= c->retry_at)
            conn_open(c, now);
    }
}

static bool all_quiet(void)
{
    for (unsigned i = 0; i < o.conns; i++)
        if (conns[i].state == C_WRITING || conns[i].state == C_READING)
            return false;
    return true;
}

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- output ---- */

static double ms(uint64_t ns) { return (double)ns / 1e6; }

/* Writes s as a JSON string: quotes, backslashes and control characters escaped. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void report(void)
{
    double secs = o.duration;
    static const double ps[] = {50, 90, 99, 99.9, 99.99};
    static const char *pn[] = {"p50", "p90", "p99", "p99.9", "p99.99"};
    uint64_t errors =
        err_connect + err_read + err_write + err_parse + err_closed + err_timeout + err_tls;
    uint64_t ok2xx = 0, ok2xx_all = 0;
    for (int s = 200; s < 300; s++) {
        ok2xx += status_counts[s];
        ok2xx_all += status_all[s];
    }

    printf("target   %s:%s %s %s, %u connections, %s %.0f req/s, %.1f s (+%.1f s warm-up)\n",
           o.host, o.port, o.method, o.path, o.conns, o.rate == 0 ? "closed loop" : "open loop",
           o.rate, o.duration, o.warmup);
    printf("rate     %.1f responses/s completed in the window (%" PRIu64 " recorded)\n",
           (double)n_in_window / secs, n_recorded);
    printf("latency  (from the %s send time)\n", o.rate == 0 ? "actual" : "intended");
    for (int i = 0; i < 5; i++)
        printf("  %-7s %10.3f ms\n", pn[i], ms(hist_percentile(&hist, ps[i])));
    printf("  %-7s %10.3f ms\n  %-7s %10.3f ms\n", "max", ms(hist.max), "mean",
           hist.total ? hist.sum / (double)hist.total / 1e6 : 0.0);
    printf("status  ");
    for (int s = 0; s < 600; s++)
        if (status_counts[s])
            printf(" %d:%" PRIu64, s, status_counts[s]);
    printf("  (all phases:");
    for (int s = 0; s < 600; s++)
        if (status_all[s])
            printf(" %d:%" PRIu64, s, status_all[s]);
    printf(")\n");
    /* The worst second inside the measured window. */
    size_t first = (size_t)((t_measure - t_start) / NSEC), worst = first;
    size_t last = (size_t)((t_end - t_start) / NSEC);
    for (size_t i = first; i < last && i < timeline_len; i++)
        if (timeline[i].max > timeline[worst].max)
            worst = i;
    uint64_t worst_max = worst < timeline_len ? timeline[worst].max : 0;
    double worst_t = (double)worst - (double)first;
    printf("worst s  at %.0f s into the window: max %.3f ms, %" PRIu64 " responses, backlog %" PRIu64
           "\n",
           worst_t, ms(worst_max), worst < timeline_len ? timeline[worst].done : 0,
           worst < timeline_len ? timeline[worst].backlog : 0);
    printf("errors   connect %" PRIu64 ", read %" PRIu64 ", write %" PRIu64 ", parse %" PRIu64
           ", closed %" PRIu64 ", timeout %" PRIu64 ", unsent %" PRIu64 "; reconnects %" PRIu64
           "; max backlog %" PRIu64 "\n",
           err_connect, err_read, err_write, err_parse, err_closed, err_timeout, n_unsent,
           n_reconnects, max_backlog);
    printf("2xx      p50 %.3f ms, p99 %.3f ms, p99.99 %.3f ms, max %.3f ms (%" PRIu64
           " responses)\n",
           ms(hist_percentile(&hist_2xx, 50)), ms(hist_percentile(&hist_2xx, 99)),
           ms(hist_percentile(&hist_2xx, 99.99)), ms(hist_2xx.max), hist_2xx.total);
    uint64_t lag99 = hist_percentile(&hist_lag, 99);
    printf("send lag p50 %.3f ms, p99 %.3f ms, max %.3f ms (actual - intended send)\n",
           ms(hist_percentile(&hist_lag, 50)), ms(lag99), ms(hist_lag.max));
    printf("service  p50 %.3f ms, p99 %.3f ms, max %.3f ms (response - actual send: the "
           "server's time, not the generator's queue)\n",
           ms(hist_percentile(&hist_service, 50)), ms(hist_percentile(&hist_service, 99)),
           ms(hist_service.max));
    uint64_t gen99 = hist_percentile(&hist_gen_lag, 99);
    printf("gen lag  p99 %.3f ms, max %.3f ms (send - the later of due time and a free "
           "connection: tgload's own delay)\n",
           ms(gen99), ms(hist_gen_lag.max));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double cpu_sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("cpu      tgload itself: user %.3f s, sys %.3f s\n", cpu_user, cpu_sys);
    /*
     * Behind: the generator itself kept its schedule late (it woke past its due
     * times: a busy CPU, a slow loop), so the window measured the generator.
     * A backlog (every connection busy when a request was due) is the target's
     * doing: those requests are charged from their intended time, as they
     * should be, and the run stays a measurement of the target.
     */
    bool behind = o.rate > 0 && gen99 > 1000000;
    bool target_backlog = o.rate > 0 && max_backlog > 0;
    const char *behind_why = behind ? "tgload sent more than 1 ms late by its own doing (p99)" : "";
    if (behind)
        printf("behind   the generator fell behind its schedule: %s\n", behind_why);
    if (target_backlog)
        printf("backlog  every connection was busy at times: requests waited for one, charged "
               "from their intended send\n");
    /* Valid: every request of the window was sent and answered. */
    uint64_t lost = err_read + err_write + err_parse + err_closed + err_timeout + err_tls;
    char why[256] = "";
    if (interrupted)
        snprintf(why, sizeof(why), "interrupted");
    else if (err_timeout > 0 || n_unsent > 0 || lost > 0)
        snprintf(why, sizeof(why),
                 "%" PRIu64 " timeouts, %" PRIu64 " unsent, %" PRIu64
                 " other requests without a response",
                 err_timeout, n_unsent, lost - err_timeout);
    bool valid = why[0] == '\0';
    if (!valid)
        printf("INVALID  %s (counted in the latencies at their age)\n", why);

    /* The JSON summary, in memory that grows as needed (no buffer to outgrow), strings escaped. */
    char *json = NULL;
    size_t json_len = 0;
    FILE *js = open_memstream(&json, &json_len);
    if (js == NULL)
        die("open_memstream: %s", strerror(errno));
    fprintf(js, "{\"label\":");
    json_string(js, o.label ? o.label : "");
    fprintf(js, ",\"target\":");
    char target[512];
    snprintf(target, sizeof(target), "%s:%s", o.host, o.port);
    json_string(js, target);
    fprintf(js, ",\"path\":");
    json_string(js, o.path);
    fprintf(js, ",\"connections\":%u,\"intended_rate\":%.1f,\"duration_s\":%.3f,\"warmup_s\":%.3f,"
           "\"rate\":%.1f,\"recorded\":%" PRIu64 ",\"issued\":%" PRIu64
           ",\"first_id\":%" PRIu64 ",\"ok_2xx\":%" PRIu64 ",\"ok_2xx_all\":%" PRIu64
           ",\"latency_ms\":{",
           o.conns, o.rate, o.duration, o.warmup, (double)n_in_window / secs, n_recorded,
           n_issued, o.start_id, ok2xx, ok2xx_all);
    for (int i = 0; i < 5; i++)
        fprintf(js, "\"%s\":%.3f,", pn[i], ms(hist_percentile(&hist, ps[i])));
    fprintf(js, "\"max\":%.3f,\"mean\":%.3f},\"status\":{", ms(hist.max),
           hist.total ? hist.sum / (double)hist.total / 1e6 : 0.0);
    const char *sep = "";
    for (int s = 0; s < 600; s++)
        if (status_all[s]) {
            fprintf(js, "%s\"%d\":%" PRIu64, sep, s, status_all[s]);
            sep = ",";
        }
    fprintf(js, "},\"errors\":%" PRIu64 ",\"timeouts\":%" PRIu64 ",\"unsent\":%" PRIu64
           ",\"reconnects\":%" PRIu64 ",\"max_backlog\":%" PRIu64
           ",\"worst_second\":{\"t\":%.0f,\"max_ms\":%.3f}}",
           errors, err_timeout, n_unsent, n_reconnects, max_backlog, worst_t, ms(worst_max));
    /* Added keys: the closing brace above is taken back. */
    fseek(js, -1, SEEK_CUR);
    fprintf(js, ",\"valid\":%s,\"invalid_reason\":", valid ? "true" : "false");
    json_string(js, why);
    fprintf(js, ",\"accounted\":%" PRIu64 ",\"failed_recorded\":%" PRIu64
            ",\"unsent_recorded\":%" PRIu64 ",\"achieved_rate\":%.1f",
            hist.total, n_failed_rec, n_unsent_rec, (double)n_in_window / secs);
    fprintf(js, ",\"errors_by_kind\":{\"connect\":%" PRIu64 ",\"read\":%" PRIu64
            ",\"write\":%" PRIu64 ",\"parse\":%" PRIu64 ",\"closed\":%" PRIu64
            ",\"timeout\":%" PRIu64 ",\"tls\":%" PRIu64 "}",
            err_connect, err_read, err_write, err_parse, err_closed, err_timeout, err_tls);
    fprintf(js, ",\"status_class\":{");
    for (int k = 1; k <= 5; k++) {
        uint64_t n = 0;
        for (int st = k * 100; st < k * 100 + 100; st++)
            n += status_counts[st];
        fprintf(js, "%s\"%dxx\":%" PRIu64, k > 1 ? "," : "", k, n);
    }
    const hist_t *more[] = {&hist_2xx, &hist_lag, &hist_service, &hist_gen_lag};
    const char *more_names[] = {"latency_2xx_ms", "send_lag_ms", "service_ms", "gen_lag_ms"};
    for (int m = 0; m < 4; m++) {
        fprintf(js, "},\"%s\":{", more_names[m]);
        for (int i = 0; i < 5; i++)
            fprintf(js, "\"%s\":%.3f,", pn[i], ms(hist_percentile(more[m], ps[i])));
        fprintf(js, "\"max\":%.3f,\"mean\":%.3f,\"count\":%" PRIu64, ms(more[m]->max),
                hist_mean(more[m]) / 1e6, more[m]->total);
    }
    fprintf(js, "},\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"generator_behind\":%s,"
            "\"target_backlog\":%s,\"behind_reason\":\"%s\",\"schedule\":\"%s\",\"arrivals\":\"%s\",\"seed\":%" PRIu64
            ",\"duplicates_sent\":%" PRIu64 ",\"scenario\":",
            cpu_user, cpu_sys, behind ? "true" : "false", target_backlog ? "true" : "false",
            behind_why,
            o.rate == 0 ? "closed" : o.per_conn ? "per-conn" : "global",
            o.poisson ? "poisson" : "even", o.seed, n_dups);
    json_string(js, sc.file ? sc.file : "");
    fprintf(js, "}");
    if (fclose(js) != 0)
        die("the JSON summary: %s", strerror(errno));
    printf("%s\n", json);
    if (o.timeline) {
        FILE *f = fopen(o.timeline, "w");
        if (f == NULL)
            die("%s: %s", o.timeline, strerror(errno));
        fprintf(f, "# second (0 = end of warm-up), responses, max latency ms, max backlog\n");
        for (size_t i = 0; i < timeline_len; i++)
            fprintf(f, "%.0f %" PRIu64 " %.3f %" PRIu64 "\n", (double)i - (double)first,
                    timeline[i].done, ms(timeline[i].max), timeline[i].backlog);
        if (fclose(f) != 0)
            die("%s: cannot write", o.timeline);
    }
    if (o.hgrm) {
        /* FILE and FILE with .2xx before the extension (or at the end). */
        const char *slash = strrchr(o.hgrm, '/'), *dot = strrchr(o.hgrm, '.');
        size_t cut = dot != NULL && (slash == NULL || dot > slash) ? (size_t)(dot - o.hgrm)
                                                                    : strlen(o.hgrm);
        char *name2 = NULL;
        if (asprintf(&name2, "%.*s.2xx%s", (int)cut, o.hgrm, o.hgrm + cut) < 0)
            die("out of memory");
        const char *names[] = {o.hgrm, name2};
        const hist_t *hs[] = {&hist, &hist_2xx};
        for (int i = 0; i < 2; i++) {
            FILE *f = fopen(names[i], "w");
            if (f == NULL)
                die("%s: %s", names[i], strerror(errno));
            hist_write_hgrm(hs[i], f);
            if (fclose(f) != 0)
                die("%s: cannot write", names[i]);
        }
        free(name2);
    }
    if (o.json) {
        FILE *f = fopen(o.json, "w");
        if (f == NULL || fprintf(f, "%s\n", json) < 0 || fclose(f) != 0)
            die("%s: cannot write", o.json);
    }
    free(json);
}

/* ---- main ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tgload [options] host:port\n"
            "       tgload [options] -u URL\n"
            "  -u URL      target as http://host:port/path or https://host:port/path\n"
            "  -P PATH     request target (default /, or the URL's path)\n"
            "  -m METHOD   request method (default GET, POST with -b)\n"
            "  -H LINE     extra header \"Name: value\" (repeatable)\n"
            "  -b FILE     body template; {{ID}} becomes a unique increasing id,\n"
            "              {{CHAT}} becomes id %% chats\n"
            "  -i N        first id (default 1)\n"
            "  -C N        chats for {{CHAT}} (default 1000)\n"
            "  -c N        connections, each with one request in flight (default 10)\n"
            "  -R N        intended requests/s, spread evenly; 0 = closed loop (default 1000)\n"
            "  -d SECONDS  measured duration (default 10)\n"
            "  -w SECONDS  warm-up before measuring (default 2)\n"
            "  -t SECONDS  request timeout; the connection is dropped (default 10)\n"
            "  -j FILE     also write the JSON summary line to FILE\n"
            "  -T FILE     write per-second lines to FILE: responses, max latency, backlog\n"
            "  -l TEXT     label copied into the JSON\n"
            "  -S FILE     write \"id intended_unix_ns status\" per request sent (status 0:\n"
            "              no response); the intended time on CLOCK_REALTIME\n"
            "  --hgrm FILE write the all-responses latency distribution in HdrHistogram's\n"
            "              text layout (ms) to FILE, the 2xx one to FILE with .2xx before\n"
            "              the extension (out.hgrm: out.2xx.hgrm)\n"
            "  --per-conn  each connection its own schedule at rate/connections (wrk2's);\n"
            "              default: one global schedule feeding whichever connection is free\n"
            "  --poisson   exponential inter-arrival times (mean 1/rate) instead of even ones\n"
            "  --seed N    seeds --poisson and the scenario's choices (default 1)\n"
            "  --scenario FILE  Telegram updates instead of -b: chats, Zipf skew, type mix,\n"
            "              commands, duplicate update_ids (format: bench/loadgen.c, scenario)\n"
            "  --secret S  send X-Telegram-Bot-Api-Secret-Token: S\n"
            "  --cafile FILE  CA bundle (PEM) for https (default: the system bundle)\n"
            "Latency is measured from the intended send time (open loop) or the\n"
            "actual send time (-R 0); requests never answered (timeout, error, unsent)\n"
            "count at their age at the end of the run. The last stdout line is the JSON\n"
            "summary. Runs longer than 30 s print a progress line per second on stderr.\n");
}

static void parse_target(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0')
        die("target must be host:port, got \"%s\"", s);
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']')
        h++, hl -= 2;
    if (hl >= sizeof(o.host) || strlen(colon + 1) >= sizeof(o.port))
        die("target too long");
    memcpy(o.host, h, hl);
    o.host[hl] = '\0';
    strcpy(o.port, colon + 1);
}

/* -u: http[s]://host[:port][/path]; the host may be an [IPv6] literal. */
static void parse_url(const char *url)
{
    const char *p;
    if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
        o.tls = false;
    } else if (strncmp(url, "https://", 8) == 0) {
        p = url + 8;
        o.tls = true;
    } else {
        die("-u wants http:// or https://, got \"%s\"", url);
    }
    const char *slash = strchr(p, '/');
    size_t al = slash ? (size_t)(slash - p) : strlen(p);
    o.path = slash ? slash : "/";
    const char *hend = p + al, *colon = NULL;
    if (p[0] == '[') {
        const char *rb = memchr(p, ']', al);
        if (rb == NULL)
            die("bad host in \"%s\"", url);
        colon = rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
        hend = rb + 1;
    } else {
        colon = memchr(p, ':', al);
        if (colon != NULL)
            hend = colon;
    }
    const char *h = p;
    size_t hl = (size_t)(hend - p);
    if (h[0] == '[')
        h++, hl -= 2;
    const char *port = colon ? colon + 1 : (o.tls ? "443" : "80");
    size_t pl = colon ? (size_t)(p + al - port) : strlen(port);
    if (hl == 0 || hl >= sizeof(o.host) || pl == 0 || pl >= sizeof(o.port))
        die("bad host or port in \"%s\"", url);
    memcpy(o.host, h, hl);
    o.host[hl] = '\0';
    memcpy(o.port, port, pl);
    o.port[pl] = '\0';
}

static double num(const char *s, const char *what)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e != '\0' || v < 0 || !isfinite(v))
        die("bad %s \"%s\"", what, s);
    return v;
}

/* The unit tests (tests/bench) include this file and call main under another name. */
#ifdef TGLOAD_TEST
#define main tgload_main
#endif
int main(int argc, char **argv)
{
    enum { O_HGRM = 256, O_PER_CONN, O_POISSON, O_SEED, O_SCENARIO, O_SECRET, O_CAFILE };
    static const struct option longopts[] = {
        {"hgrm", required_argument, NULL, O_HGRM},
        {"per-conn", no_argument, NULL, O_PER_CONN},
        {"poisson", no_argument, NULL, O_POISSON},
        {"seed", required_argument, NULL, O_SEED},
        {"scenario", required_argument, NULL, O_SCENARIO},
        {"secret", required_argument, NULL, O_SECRET},
        {"cafile", required_argument, NULL, O_CAFILE},
        {"url", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool method_set = false, url_set = false;
    const char *path_opt = NULL, *scenario_file = NULL;
    char *secret_header = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "u:P:m:H:b:i:C:c:R:d:w:t:j:T:l:S:h", longopts,
                              NULL)) != -1) {
        switch (opt) {
        case 'u': parse_url(optarg), url_set = true; break;
        case 'P': path_opt = optarg; break;
        case O_HGRM: o.hgrm = optarg; break;
        case O_PER_CONN: o.per_conn = true; break;
        case O_POISSON: o.poisson = true; break;
        case O_SEED: o.seed = (uint64_t)num(optarg, "--seed"); break;
        case O_SCENARIO: scenario_file = optarg; break;
        case O_CAFILE: o.cafile = optarg; break;
        case O_SECRET:
            if (o.nheaders == MAX_HEADERS)
                die("too many -H");
            free(secret_header);
            if (asprintf(&secret_header, "X-Telegram-Bot-Api-Secret-Token: %s", optarg) < 0)
                die("out of memory");
            o.headers[o.nheaders++] = secret_header;
            break;
        case 'm': o.method = optarg, method_set = true; break;
        case 'H':
            if (o.nheaders == MAX_HEADERS)
                die("too many -H");
            o.headers[o.nheaders++] = optarg;
            break;
        case 'b': load_template(optarg); break;
        case 'i': o.start_id = (uint64_t)num(optarg, "-i"); break;
        case 'C': o.chats = (uint64_t)num(optarg, "-C"); break;
        case 'c': o.conns = (unsigned)num(optarg, "-c"); break;
        case 'R': o.rate = num(optarg, "-R"); break;
        case 'd': o.duration = num(optarg, "-d"); break;
        case 'w': o.warmup = num(optarg, "-w"); break;
        case 't': o.timeout = num(optarg, "-t"); break;
        case 'j': o.json = optarg; break;
        case 'T': o.timeline = optarg; break;
        case 'l': o.label = optarg; break;
        case 'S': o.sendlog = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - (url_set ? 0 : 1)) {
        usage(stderr);
        return 2;
    }
    if (!url_set)
        parse_target(argv[optind]);
    if (path_opt != NULL)
        o.path = path_opt;
    if (scenario_file != NULL) {
        if (o.pieces != NULL)
            die("-b and --scenario exclude each other");
        scenario_load(scenario_file);
        uint64_t x = o.seed ^ 0xd0b1e5ull;
        dup_rng = splitmix64(&x);
        sc_date = time(NULL);
    }
    if (o.tls)
        tls_setup();
    if (o.conns == 0 || o.duration <= 0 || o.chats == 0 || o.timeout <= 0)
        die("-c, -d, -C and -t must be positive");
    if ((o.pieces || sc.file) && !method_set)
        o.method = "POST";
    bool has_ctype = false;
    for (int i = 0; i < o.nheaders; i++)
        has_ctype |= strncasecmp(o.headers[i], "Content-Type:", 13) == 0;
    if (sc.file && !has_ctype) {
        if (o.nheaders == MAX_HEADERS)
            die("too many -H");
        o.headers[o.nheaders++] = "Content-Type: application/json";
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int gr = getaddrinfo(o.host, o.port, &hints, &target_ai);
    if (gr != 0)
        die("%s:%s: %s", o.host, o.port, gai_strerror(gr));

    /* Request head: fixed part, built once. */
    size_t cap = 256 + strlen(o.path) + strlen(o.host) + strlen(o.method);
    for (int i = 0; i < o.nheaders; i++)
        cap += strlen(o.headers[i]) + 2;
    req_head = xmalloc(cap);
    int hl = snprintf(req_head, cap, "%s %s HTTP/1.1\r\nHost: %s:%s\r\n", o.method, o.path,
                      o.host, o.port);
    for (int i = 0; i < o.nheaders; i++)
        hl += snprintf(req_head + hl, cap - (size_t)hl, "%s\r\n", o.headers[i]);
    req_head_len = (size_t)hl;
    size_t body_max = 0;
    for (int i = 0; i < o.npieces; i++)
        body_max += o.pieces[i].text ? o.pieces[i].len : 24;
    if (sc.file != NULL)
        body_max = BODY_MAX;
    wbuf_cap = req_head_len + 64 + body_max;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < o.conns + 64) {
        rl.rlim_cur = rl.rlim_max < o.conns + 64 ? rl.rlim_max : o.conns + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Wake-ups for the schedule should be on time to the microsecond, not 50 us late (ns). */
    prctl(PR_SET_TIMERSLACK, 1000UL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    conns = calloc(o.conns, sizeof(conn_t));
    if (conns == NULL)
        die("out of memory");
    uint64_t now = now_ns();
    for (unsigned i = 0; i < o.conns; i++) {
        conns[i].idx = i;
        conns[i].fd = -1;
        conns[i].wbuf = xmalloc(wbuf_cap);
        conns[i].rbuf = xmalloc(RBUF_SIZE);
        conns[i].retry_at = now;
        conn_open(&conns[i], now);
    }

    /* Let the connections come up before the schedule starts (not counted). */
    struct epoll_event evs[256];
    uint64_t up_deadline = now + 5 * NSEC;
    for (;;) {
        unsigned up = 0;
        for (unsigned i = 0; i < o.conns; i++)
            up += conns[i].state == C_IDLE;
        if (up == o.conns || now_ns() > up_deadline || interrupted ||
            (up == 0 && err_tls >= o.conns))
            break;
        int n = epoll_wait(ep, evs, 256, 10);
        for (int i = 0; i < n; i++) {
            conn_t *c = event_conn(&evs[i]);
            if (c != NULL && c->state == C_CONNECTING)
                conn_connected(c, now_ns());
            else if (c != NULL && c->state == C_HANDSHAKE)
                conn_handshake(c, now_ns());
            else if (c != NULL && c->state == C_IDLE)
                conn_read(c, now_ns());
        }
        now = now_ns();
        for (unsigned i = 0; i < o.conns; i++)
            if (conns[i].state == C_DOWN && now >= conns[i].retry_at)
                conn_open(&conns[i], now);
    }
    unsigned up = 0;
    for (unsigned i = 0; i < o.conns; i++)
        up += conns[i].state == C_IDLE;
    /* A target that refuses every handshake (wrong CA, wrong name) is a setup error. */
    if (o.tls && up == 0 && err_tls > 0)
        tls_refused();
    err_connect = 0; /* refusals while the server comes up are not the server's errors */
    err_tls = 0;

    t_start = now_ns();
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    realtime_offset = (int64_t)((uint64_t)rt.tv_sec * NSEC + (uint64_t)rt.tv_nsec) -
                      (int64_t)now_ns();
    t_measure = t_start + (uint64_t)(o.warmup * (double)NSEC);
    t_end = t_measure + (uint64_t)(o.duration * (double)NSEC);
    t_deadline = t_end + (uint64_t)(o.timeout * (double)NSEC);
    if (o.rate > 0) {
        /* Per connection: rate/conns each, staggered by the global gap so that they interleave. */
        sched_gap = (double)NSEC / o.rate * (o.per_conn ? (double)o.conns : 1.0);
        sched_init(&gsend, 0, 0);
        gfront = gsend;
        for (unsigned i = 0; i < o.conns; i++) {
            sched_init(&conns[i].send, i + 1, o.poisson ? 0 : (double)i * (double)NSEC / o.rate);
            conns[i].front = conns[i].send;
        }
    }
    timeline_len = (size_t)ceil(o.warmup + o.duration + o.timeout) + 2;
    timeline = calloc(timeline_len, sizeof(second_t));
    if (timeline == NULL)
        die("out of memory");
    uint64_t next_timeout_scan = t_start;
    /* Long runs say how they are going, once a second, on stderr. */
    bool progress = o.warmup + o.duration > 30;
    uint64_t next_progress = t_start + NSEC;
    if (o.sendlog != NULL) {
        sendlog = fopen(o.sendlog, "w");
        if (sendlog == NULL)
            die("%s: %s", o.sendlog, strerror(errno));
        setvbuf(sendlog, NULL, _IOFBF, 1 << 20);
        fprintf(sendlog,
                "# id intended_unix_ns status (0: no response); window_unix_ns %" PRId64
                " %" PRId64 "\n",
                (int64_t)t_measure + realtime_offset, (int64_t)t_end + realtime_offset);
    }

    for (;;) {
        now = now_ns();
        if (interrupted)
            break;
        if (now >= t_end && all_quiet()) {
            /* Open loop: requests scheduled in the window but still unsent wait their turn. */
            if (o.rate == 0 || sched_done())
                break;
        }
        if (now >= t_deadline)
            break;
        uint64_t next = dispatch(now);
        if (now >= next_timeout_scan) {
            check_timeouts(now);
            next_timeout_scan = now + 10 * 1000000ull;
        }
        if (progress && now >= next_progress) {
            uint64_t backlog = o.per_conn || o.rate == 0 ? 0 : sched_backlog(&gsend, &gfront, now);
            fprintf(stderr,
                    "tgload: %4.0f s  sent %" PRIu64 "  responses %" PRIu64 "  errors %" PRIu64
                    "  timeouts %" PRIu64 "  backlog %" PRIu64 "\n",
                    (double)(now - t_start) / NSEC, n_issued, n_responses,
                    err_connect + err_read + err_write + err_parse + err_closed + err_tls,
                    err_timeout, backlog);
            next_progress += NSEC;
        }
        uint64_t wake = next_timeout_scan;
        if (progress && next_progress < wake)
            wake = next_progress;
        if (next < wake)
            wake = next;
        if (t_end > now && t_end < wake)
            wake = t_end;
        now = now_ns();
        uint64_t wait = wake > now ? wake - now : 0;
        struct timespec ts = {(time_t)(wait / NSEC), (long)(wait % NSEC)};
        int n = epoll_pwait2(ep, evs, 256, &ts, NULL);
        if (n < 0 && errno != EINTR)
            die("epoll_pwait2: %s", strerror(errno));
        now = now_ns();
        for (int i = 0; i < n; i++) {
            conn_t *c = event_conn(&evs[i]);
            uint32_t e = evs[i].events;
            if (c == NULL)
                continue;
            if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) {
                if (c->state == C_CONNECTING)
                    conn_connected(c, now);
                else
                    conn_handshake(c, now);
                if (c->state == C_IDLE)
                    dispatch(now);
                continue;
            }
            if ((e & EPOLLOUT) && c->state == C_WRITING) {
                conn_write(c, now);
            } else if ((e & EPOLLOUT) && c->tls != NULL) {
                /* Records of a request already handed to the engine. */
                if (tls_flush_records(c) < 0 && errno != EAGAIN)
                    conn_fail(c, &err_tls, now);
                else
                    conn_interest(c);
            }
            if ((e & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->fd >= 0)
                conn_read(c, now);
            /* A connection freed by this response takes the next due request at once. */
            if (c->state == C_IDLE && (o.rate == 0 ? now < t_end : true))
                dispatch(now);
        }
    }
    /* Requests that were scheduled inside the window but never sent. */
    now = now_ns();
    if (o.rate > 0 && !o.per_conn)
        sched_drain(&gsend, now);
    for (unsigned i = 0; o.rate > 0 && o.per_conn && i < o.conns; i++)
        sched_drain(&conns[i].send, now);
    for (unsigned i = 0; i < o.conns; i++)
        if (conns[i].state == C_WRITING || conns[i].state == C_READING) {
            err_timeout++;
            account_failure(&conns[i]);
        }
    failed_record(now);
    if (sendlog != NULL && fclose(sendlog) != 0)
        die("%s: cannot write", o.sendlog);
    report();
    return interrupted ? 130 : 0;
}
