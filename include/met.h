/* SPDX-License-Identifier: MIT */
/*
 * met.h - metrics: fixed counters, gauges and histograms in one struct per
 * worker process, kept in a shared anonymous mapping made before the workers
 * fork, so that any worker can render the sum of all of them for /metrics.
 * Each worker writes only its own slot (no locks; a reader may see a slot
 * mid-update, which Prometheus tolerates).
 */
#ifndef TGRING_MET_H
#define TGRING_MET_H

#include <stddef.h>
#include <stdint.h>

#define MET_LATENCY_BUCKETS 16 /* latencies, seconds: 0.0001 .. 10 */
#define MET_BATCH_BUCKETS 10   /* batch size: 1 .. 512 */

typedef struct met_hist {
    uint64_t bucket[MET_LATENCY_BUCKETS + 1]; /* non-cumulative counts per upper bound, last = +Inf */
    uint64_t count;
    double sum;
} met_hist_t;

/* One worker's metrics. Field names map to tgring_<name> in the output. */
typedef struct met_slot {
    uint64_t http_requests[600];      /* by status code: tgring_http_requests_total{code} */
    uint64_t http_connections_open;   /* gauge */
    uint64_t http_connections_total;  /* accepted */
    uint64_t http_send_timeouts;      /* closed: a response not taken in time */
    uint64_t http_accept_errors;      /* failed accepts (EMFILE, ENFILE...) */
    uint64_t updates_stored;          /* tgring_updates_stored_total */
    uint64_t updates_duplicate;       /* tgring_updates_duplicate_total */
    uint64_t updates_rejected;        /* rows the database refused */
    uint64_t updates_unavailable;     /* answered 503: queue full, database down, timeout */
    met_hist_t ack_latency;           /* seconds from request complete to response queued */
    met_hist_t db_batch_size;         /* updates per group-commit transaction */
    met_hist_t db_queue;              /* seconds an update waited before its transaction left */
    met_hist_t db_commit;             /* seconds from a transaction sent to its result */
    uint64_t db_reconnects;           /* tgring_db_reconnects_total */
    uint64_t db_connected;            /* gauge 0/1 */
    uint64_t db_queue_depth;          /* gauge: updates waiting or in flight */
    uint64_t db_inbox_slots;          /* gauge: group commits allowed in flight */
    uint64_t resident_memory_bytes;   /* gauge, refreshed by met_sample_rss() */
    uint64_t outbox_claimed;          /* rows claimed for sending */
    uint64_t outbox_handed;           /* rows taken from this process's commits, no claim */
    uint64_t outbox_sent;             /* tgring_outbox_sent_total */
    uint64_t outbox_retried;          /* rows put back with a delay */
    uint64_t outbox_failed;           /* rows marked failed */
    uint64_t outbox_migrated;         /* rows re-targeted to a supergroup */
    uint64_t outbox_limited;          /* 429 answers from the Bot API */
    uint64_t outbox_global_pauses;    /* of those, taken as the bot's global limit */
    uint64_t sender_leader;           /* gauge 0/1: this worker holds the bot's sender lock */
    uint64_t sender_takeovers;        /* times this worker became the bot's sender */
    uint64_t botapi_requests;         /* calls answered with a response, any status */
    uint64_t botapi_transport_errors; /* calls without an answer (timeouts, resets, TLS) */
    uint64_t botapi_timeouts;         /* of those, failed at a deadline (-ETIMEDOUT) */
    uint64_t botapi_stale_retries;    /* sent again after a stale kept-alive connection */
    uint64_t botapi_connects;         /* TCP connections opened */
    uint64_t botapi_connections_open; /* gauge: the HTTP client's connections open */
    uint64_t tls_handshakes_full;     /* counted by the HTTP client as they complete */
    uint64_t tls_handshakes_resumed;
    uint64_t tls_failures;          /* certificate or handshake failures */
    uint64_t updates_processed;     /* tgring_updates_processed_total: committed with effects */
    uint64_t updates_failed;        /* tgring_updates_failed_total: marked failed */
    uint64_t updates_lost;          /* processed mark refused: done already or elsewhere */
    uint64_t updates_pruned;        /* deleted by the retention */
    uint64_t processor_claims;      /* claim statements that came back (any number of rows) */
    uint64_t processor_claims_behind; /* claims sent behind a group commit (db_txn_submit_behind) */
    met_hist_t processor_claim;     /* seconds from a claim sent to its rows */
    met_hist_t processor_handle;    /* seconds from an update claimed to its commit sent */
    met_hist_t processor_commit;    /* seconds from a processing commit sent to its result */
    met_hist_t outbox_wait;         /* seconds from a row taken by the sender to its call sent */
    met_hist_t botapi_call;         /* seconds from a Bot API call sent to its answer */
    uint64_t processor_lag_seconds; /* gauge (housekeeping worker): oldest unprocessed update */
    uint64_t outbox_depth;          /* gauge (housekeeping worker): due unsent outbox rows */
    uint64_t bot_notifications;     /* tgring_bot_notifications_total: daily reminders queued */
    /* tgring_bot_broadcast_queued_total: messages queued by broadcasts, all time, sampled from
     * the database (housekeeping worker) */
    uint64_t bot_broadcast_queued;
    uint64_t bot_broadcast_pending; /* gauge (housekeeping worker): broadcast rows not sent yet */
    uint64_t pid;                   /* the worker's pid, 0 for an unused slot */
} met_slot_t;

/*
 * Maps `nslots` zeroed slots shared by all processes forked afterwards and
 * selects slot 0 (counts made before, in the fallback slot, are not carried
 * over). Calling it again replaces the mapping. Returns 0, -EINVAL for 0
 * slots, or -errno from mmap(2).
 */
int met_init(unsigned nslots);

/*
 * Selects the slot this process writes (call in each worker after fork) and
 * marks it used with our pid. A worker restarted into a slot keeps its
 * counters, so sums never go down, but its gauges start again at zero.
 * Without met_init(), or past nslots, the process-local fallback slot.
 */
void met_select(unsigned slot);

/* This process's slot; before met_init() a process-local fallback slot. Never NULL. */
met_slot_t *met_self(void);

/*
 * Adds one observation to the histogram (latency buckets or batch buckets).
 * A value on a bound counts in that bucket (le is inclusive); negative counts
 * as 0; NaN is dropped.
 */
void met_observe_latency(met_hist_t *h, double seconds);
void met_observe_batch(met_hist_t *h, double size);

/* Refreshes resident_memory_bytes of this process's slot from /proc/self/statm. */
void met_sample_rss(void);

/*
 * Renders the sum over all used slots (pid != 0) in the Prometheus text
 * format (version 0.0.4) into buf[0..cap), NUL-terminated. Returns the length
 * without the NUL, or -ENOSPC if cap is too small (8 KiB is always enough
 * with the fixed set above unless many status codes were seen; 64 KiB always
 * is).
 */
int met_render(char *buf, size_t cap);

#define MET_INC(field) (met_self()->field++)

#endif
