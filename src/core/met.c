/* SPDX-License-Identifier: MIT */
/*
 * met.c - metrics slots in a shared anonymous mapping, and their rendering
 * as Prometheus text (exposition format 0.0.4) summed over all workers.
 *
 * Workers only ever add to their own slot, with plain stores: no locks and
 * no atomics on the hot path. A render may see a slot mid-update; counters
 * then lag by an event, which Prometheus tolerates.
 */
#include "met.h"

#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Upper bounds of the buckets, as numbers for met_observe_*() and as the exact
 * le="" label text, so the output never depends on float formatting. */
static const double met_latency_bounds[MET_LATENCY_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,     2.5,   5,    10};
static const char *const met_latency_le[MET_LATENCY_BUCKETS + 1] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.002", "0.005", "0.01", "0.025", "0.05",
    "0.1",    "0.25",    "0.5",    "1",     "2.5",   "5",     "10",   "+Inf"};
static const double met_batch_bounds[MET_BATCH_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
static const char *const met_batch_le[MET_BATCH_BUCKETS + 1] = {
    "1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "+Inf"};

/* Until met_init() maps the shared slots, updates land here. */
static met_slot_t met_fallback;
static met_slot_t *met_slots;
static unsigned met_nslots;
static met_slot_t *met_current = &met_fallback;

int met_init(unsigned nslots)
{
    if (nslots == 0)
        return -EINVAL;
    size_t size = (size_t)nslots * sizeof(met_slot_t);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    if (met_slots != NULL)
        munmap(met_slots, (size_t)met_nslots * sizeof(met_slot_t));
    met_slots = p;
    met_nslots = nslots;
    met_select(0);
    return 0;
}

void met_select(unsigned slot)
{
    met_slot_t *m = met_slots != NULL && slot < met_nslots ? &met_slots[slot] : &met_fallback;
    /* A restarted worker inherits its predecessor's slot: counters carry on so
     * that sums stay monotonic, but what the dead process held open is gone. */
    m->http_connections_open = 0;
    m->db_connected = 0;
    m->db_queue_depth = 0;
    m->db_inbox_slots = 0;
    m->resident_memory_bytes = 0;
    m->botapi_connections_open = 0;
    m->processor_lag_seconds = 0;
    m->outbox_depth = 0;
    m->bot_broadcast_queued = 0;
    m->bot_broadcast_pending = 0;
    m->pid = (uint64_t)getpid();
    met_current = m;
}

met_slot_t *met_self(void)
{
    return met_current;
}

static void met_observe(met_hist_t *h, const double *bounds, unsigned nbounds, double v)
{
    if (v != v)
        return; /* NaN: no bucket fits and it would poison the sum. */
    if (v < 0)
        v = 0;
    unsigned i = 0;
    while (i < nbounds && v > bounds[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum += v;
}

void met_observe_latency(met_hist_t *h, double seconds)
{
    met_observe(h, met_latency_bounds, MET_LATENCY_BUCKETS, seconds);
}

void met_observe_batch(met_hist_t *h, double size)
{
    met_observe(h, met_batch_bounds, MET_BATCH_BUCKETS, size);
}

void met_sample_rss(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    /* statm: size resident shared text lib data dt, in pages. */
    unsigned long long size, resident;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return;
    long page = sysconf(_SC_PAGESIZE);
    met_self()->resident_memory_bytes = resident * (uint64_t)(page > 0 ? page : 4096);
}

/* Output cursor over the caller's buffer; `over` is sticky once it fills. */
typedef struct met_out {
    char *buf;
    size_t cap, len;
    int over;
} met_out_t;

static void met_printf(met_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void met_printf(met_out_t *o, const char *fmt, ...)
{
    if (o->over)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->over = 1;
        return;
    }
    o->len += (size_t)n;
}

static void met_head(met_out_t *o, const char *name, const char *type, const char *help)
{
    met_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void met_scalar(met_out_t *o, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    met_head(o, name, type, help);
    met_printf(o, "%s %" PRIu64 "\n", name, v);
}

static void met_add_hist(met_hist_t *sum, const met_hist_t *h)
{
    for (unsigned i = 0; i < ARRAY_SIZE(sum->bucket); i++)
        sum->bucket[i] += h->bucket[i];
    sum->count += h->count;
    sum->sum += h->sum;
}

static void met_hist(met_out_t *o, const char *name, const char *help, const met_hist_t *h,
                     const char *const *le, unsigned nbounds)
{
    met_head(o, name, "histogram", help);
    /* _count is the +Inf bucket rather than h->count, so that the two agree
     * even when a slot was read mid-update. */
    uint64_t cum = 0;
    for (unsigned i = 0; i <= nbounds; i++) {
        cum += h->bucket[i];
        met_printf(o, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, le[i], cum);
    }
    met_printf(o, "%s_sum %.17g\n", name, h->sum);
    met_printf(o, "%s_count %" PRIu64 "\n", name, cum);
}

/*
 * The families after tgring_http_requests_total, in output order. One list
 * drives both the sum over the slots and the rendering, so a field added to
 * met_slot_t is summed exactly when it is shown.
 */
typedef struct met_family {
    const char *name;
    const char *type; /* "counter", "gauge" or "histogram" */
    const char *help;
    size_t off;            /* of the field in met_slot_t: uint64_t, or met_hist_t */
    const char *const *le; /* histograms: the le="" labels, then "+Inf" */
    unsigned nbounds;      /* histograms: buckets before +Inf */
} met_family_t;

#define MET_AT(field) offsetof(met_slot_t, field)

static const met_family_t met_families[] = {
    {"tgring_http_connections_open", "gauge", "Client connections open now.",
     MET_AT(http_connections_open), NULL, 0},
    {"tgring_http_connections_total", "counter", "Client connections accepted.",
     MET_AT(http_connections_total), NULL, 0},
    {"tgring_http_send_timeouts_total", "counter",
     "Connections closed because the client took none of a response in time (it stopped reading).",
     MET_AT(http_send_timeouts), NULL, 0},
    {"tgring_http_accept_errors_total", "counter",
     "Failed accepts (out of descriptors or memory); accepting resumes after a back-off.",
     MET_AT(http_accept_errors), NULL, 0},
    {"tgring_updates_stored_total", "counter", "Updates committed to the database.",
     MET_AT(updates_stored), NULL, 0},
    {"tgring_updates_duplicate_total", "counter", "Updates received again after they were stored.",
     MET_AT(updates_duplicate), NULL, 0},
    {"tgring_updates_rejected_total", "counter", "Updates the database refused to store.",
     MET_AT(updates_rejected), NULL, 0},
    {"tgring_updates_unavailable_total", "counter",
     "Updates answered 503: queue full, database down or commit too slow.",
     MET_AT(updates_unavailable), NULL, 0},
    {"tgring_ack_latency_seconds", "histogram",
     "Seconds from a complete webhook request to its response being queued.", MET_AT(ack_latency),
     met_latency_le, MET_LATENCY_BUCKETS},
    {"tgring_db_batch_size", "histogram", "Updates per group-commit transaction.",
     MET_AT(db_batch_size), met_batch_le, MET_BATCH_BUCKETS},
    {"tgring_db_queue_seconds", "histogram",
     "Seconds an update waited in the inbox before its group-commit transaction was sent.",
     MET_AT(db_queue), met_latency_le, MET_LATENCY_BUCKETS},
    {"tgring_db_commit_seconds", "histogram",
     "Seconds from a group-commit transaction sent to PostgreSQL to its result (insert and "
     "commit).",
     MET_AT(db_commit), met_latency_le, MET_LATENCY_BUCKETS},
    {"tgring_db_reconnects_total", "counter", "Database reconnections.", MET_AT(db_reconnects),
     NULL, 0},
    {"tgring_db_connected", "gauge", "Workers connected to the database now.", MET_AT(db_connected),
     NULL, 0},
    {"tgring_db_queue_depth", "gauge", "Updates waiting for or in a commit.",
     MET_AT(db_queue_depth), NULL, 0},
    {"tgring_db_inbox_slots", "gauge",
     "Group-commit transactions the workers allow in flight now (2 each as a rule; up to "
     "TGRING_DB_CONNECTIONS while commits are slow).",
     MET_AT(db_inbox_slots), NULL, 0},
    {"tgring_process_resident_memory_bytes", "gauge", "Resident memory of all workers in bytes.",
     MET_AT(resident_memory_bytes), NULL, 0},
    {"tgring_outbox_claimed_total", "counter", "Outbox rows claimed for sending.",
     MET_AT(outbox_claimed), NULL, 0},
    {"tgring_outbox_handed_over_total", "counter",
     "Outbox rows the sender took straight from this process's commits, without a claim.",
     MET_AT(outbox_handed), NULL, 0},
    {"tgring_outbox_sent_total", "counter", "Outbox rows sent to the Bot API.", MET_AT(outbox_sent),
     NULL, 0},
    {"tgring_outbox_retried_total", "counter",
     "Outbox rows put back with a delay (5xx, transport errors, long 429s).",
     MET_AT(outbox_retried), NULL, 0},
    {"tgring_outbox_failed_total", "counter",
     "Outbox rows marked failed (final 4xx or attempts used up).", MET_AT(outbox_failed), NULL, 0},
    {"tgring_outbox_migrated_total", "counter",
     "Outbox rows re-targeted to the supergroup their chat became.", MET_AT(outbox_migrated),
     NULL, 0},
    {"tgring_outbox_limited_total", "counter", "429 Too Many Requests answers from the Bot API.",
     MET_AT(outbox_limited), NULL, 0},
    {"tgring_outbox_global_pauses_total", "counter",
     "429 answers taken as the bot's global limit: all chats paused.",
     MET_AT(outbox_global_pauses), NULL, 0},
    {"tgring_sender_leader", "gauge",
     "Workers that are the bot's active sender now (1 in one process across all replicas).",
     MET_AT(sender_leader), NULL, 0},
    {"tgring_sender_takeovers_total", "counter",
     "Times a worker became the bot's active sender (its start, or taking over from another).",
     MET_AT(sender_takeovers), NULL, 0},
    {"tgring_botapi_requests_total", "counter",
     "Bot API calls answered with a response, whatever its status.", MET_AT(botapi_requests),
     NULL, 0},
    {"tgring_botapi_transport_errors_total", "counter",
     "Bot API calls that got no answer (timeout, reset, TLS failure).",
     MET_AT(botapi_transport_errors), NULL, 0},
    {"tgring_botapi_timeouts_total", "counter",
     "Bot API calls that failed at a deadline (also in transport errors).",
     MET_AT(botapi_timeouts), NULL, 0},
    {"tgring_botapi_stale_retries_total", "counter",
     "Bot API calls sent again after a kept-alive connection turned out closed.",
     MET_AT(botapi_stale_retries), NULL, 0},
    {"tgring_botapi_connects_total", "counter", "TCP connections opened to the Bot API.",
     MET_AT(botapi_connects), NULL, 0},
    {"tgring_botapi_connections_open", "gauge", "Connections to the Bot API open now.",
     MET_AT(botapi_connections_open), NULL, 0},
    {"tgring_tls_handshakes_full_total", "counter", "Full TLS handshakes with the Bot API.",
     MET_AT(tls_handshakes_full), NULL, 0},
    {"tgring_tls_handshakes_resumed_total", "counter", "Resumed TLS handshakes with the Bot API.",
     MET_AT(tls_handshakes_resumed), NULL, 0},
    {"tgring_tls_failures_total", "counter",
     "TLS certificate or handshake failures with the Bot API.", MET_AT(tls_failures), NULL, 0},
    {"tgring_updates_processed_total", "counter",
     "Updates processed: handler effects and processed mark committed.", MET_AT(updates_processed),
     NULL, 0},
    {"tgring_updates_failed_total", "counter",
     "Updates marked failed (handler failure, timeout, refused write), without effects.",
     MET_AT(updates_failed), NULL, 0},
    {"tgring_updates_lost_total", "counter",
     "Updates whose processed mark was refused: committed already or claimed by another process.",
     MET_AT(updates_lost), NULL, 0},
    {"tgring_updates_pruned_total", "counter",
     "Processed updates deleted after TGRING_RETENTION_HOURS.", MET_AT(updates_pruned), NULL, 0},
    {"tgring_processor_claims_total", "counter",
     "Claims of unprocessed updates answered (one statement each, however many they took).",
     MET_AT(processor_claims), NULL, 0},
    {"tgring_processor_claims_behind_total", "counter",
     "Claims sent right behind a group commit on its connection, run as soon as it committed.",
     MET_AT(processor_claims_behind), NULL, 0},
    {"tgring_processor_claim_seconds", "histogram",
     "Seconds from a claim of unprocessed updates sent to PostgreSQL to its rows.",
     MET_AT(processor_claim), met_latency_le, MET_LATENCY_BUCKETS},
    {"tgring_processor_handle_seconds", "histogram",
     "Seconds from an update's claim answered to its commit sent: the handler, its reads and "
     "the wait for a commit.",
     MET_AT(processor_handle), met_latency_le, MET_LATENCY_BUCKETS},
    {"tgring_processor_commit_seconds", "histogram",
     "Seconds from a processing commit (processed marks, effects, Bot API calls) sent to its "
     "result.",
     MET_AT(processor_commit), met_latency_le, MET_LATENCY_BUCKETS},
    {"tgring_outbox_wait_seconds", "histogram",
     "Seconds from an outbox row taken by the sender (handed over or claimed) to its call sent: "
     "its chat's earlier rows, the rate limits, a free connection.",
     MET_AT(outbox_wait), met_latency_le, MET_LATENCY_BUCKETS},
    {"tgring_botapi_call_seconds", "histogram",
     "Seconds from a Bot API call sent to its answer (connection, TLS, request and response).",
     MET_AT(botapi_call), met_latency_le, MET_LATENCY_BUCKETS},
    {"tgring_processor_lag_seconds", "gauge",
     "Age of the oldest unprocessed update in whole seconds (0 when none).",
     MET_AT(processor_lag_seconds), NULL, 0},
    {"tgring_outbox_depth", "gauge", "Outbox rows due and not sent yet.", MET_AT(outbox_depth),
     NULL, 0},
    {"tgring_bot_notifications_total", "counter",
     "Daily reminders the quit-smoking bot queued in the outbox.", MET_AT(bot_notifications), NULL,
     0},
    {"tgring_bot_broadcast_queued_total", "counter",
     "Messages queued by broadcasts, all time (sampled from the database).",
     MET_AT(bot_broadcast_queued), NULL, 0},
    {"tgring_bot_broadcast_pending", "gauge",
     "Broadcast messages in the outbox not sent or failed yet.", MET_AT(bot_broadcast_pending),
     NULL, 0},
};

#define MET_NFAMILIES ARRAY_SIZE(met_families)

int met_render(char *buf, size_t cap)
{
    met_slot_t total;
    met_slot_t *sum = &total;
    memset(sum, 0, sizeof(*sum));
    uint64_t workers = 0;
    const met_slot_t *slots = met_slots != NULL ? met_slots : &met_fallback;
    unsigned nslots = met_slots != NULL ? met_nslots : 1;
    for (unsigned s = 0; s < nslots; s++) {
        const met_slot_t *m = &slots[s];
        /* Before met_init() the fallback slot is this process's, pid or not. */
        if (m->pid == 0 && m != &met_fallback)
            continue;
        workers++;
        for (unsigned c = 0; c < ARRAY_SIZE(m->http_requests); c++)
            sum->http_requests[c] += m->http_requests[c];
        for (const met_family_t *f = met_families; f < met_families + MET_NFAMILIES; f++) {
            char *to = (char *)sum + f->off;
            const char *from = (const char *)m + f->off;
            if (f->le != NULL)
                met_add_hist((met_hist_t *)to, (const met_hist_t *)from);
            else
                *(uint64_t *)to += *(const uint64_t *)from;
        }
    }

    met_out_t o = {.buf = buf, .cap = cap, .len = 0, .over = cap == 0};
    met_head(&o, "tgring_http_requests_total", "counter", "HTTP responses sent, by status code.");
    for (unsigned c = 0; c < ARRAY_SIZE(sum->http_requests); c++) {
        if (sum->http_requests[c] != 0)
            met_printf(&o, "tgring_http_requests_total{code=\"%u\"} %" PRIu64 "\n", c,
                       sum->http_requests[c]);
    }
    for (const met_family_t *f = met_families; f < met_families + MET_NFAMILIES; f++) {
        const char *at = (const char *)sum + f->off;
        if (f->le != NULL)
            met_hist(&o, f->name, f->help, (const met_hist_t *)at, f->le, f->nbounds);
        else
            met_scalar(&o, f->name, f->type, f->help, *(const uint64_t *)at);
    }
    met_scalar(&o, "tgring_workers", "gauge", "Worker processes.", workers);
    return o.over ? -ENOSPC : (int)o.len;
}
