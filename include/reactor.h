/* SPDX-License-Identifier: MIT */
/*
 * reactor.h - the io_uring event loop: one ring, one thread, no locks.
 *
 * Everything that waits goes through the ring: sockets, libpq's socket (poll),
 * signals (signalfd read), timers (a binary heap of deadlines; the loop waits
 * with the earliest deadline as its timeout). Modules prepare their own SQEs
 * with liburing's io_uring_prep_* helpers on an SQE obtained from rx_sqe(),
 * which tags it with the op's pointer.
 *
 * Depends on core only.
 */
#ifndef TGRING_REACTOR_H
#define TGRING_REACTOR_H

#include "core.h"

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rx_loop rx_loop_t;
typedef struct rx_op rx_op_t;
typedef struct rx_timer rx_timer_t;
typedef struct rx_defer rx_defer_t;
typedef struct rx_bufring rx_bufring_t;

/*
 * Completion callback. `res` and `flags` are the CQE's. For multishot ops
 * (accept, recv, poll) IORING_CQE_F_MORE in `flags` says the op stays armed;
 * without it the op is finished and may be re-armed or freed by the callback.
 */
typedef void (*rx_op_cb)(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags);
typedef void (*rx_timer_cb)(rx_loop_t *loop, rx_timer_t *t);
typedef void (*rx_defer_cb)(rx_loop_t *loop, rx_defer_t *d);

/*
 * One outstanding (or re-armable) operation. Embed it in the object that owns
 * the I/O and find the object with container_of. `user_data` is the op
 * pointer, nothing more: no generation is needed, because of this rule.
 *
 * Ownership rule: an op has at most one SQE in flight, and is armed again
 * (rx_sqe) only once its final completion (one without IORING_CQE_F_MORE)
 * has been dispatched, which clears `armed`. A cancelled op is no exception:
 * its final completion (usually -ECANCELED) still comes to its callback, and
 * only then may it be armed again. Its owner is freed only while none of its
 * ops is armed. So every completion the loop dispatches belongs to the op's
 * current use, and no completion ever arrives for freed memory. rx_sqe()
 * asserts the first half of the rule.
 */
struct rx_op {
    rx_op_cb cb;
    bool armed; /* an SQE of this op is submitted and its final completion not yet dispatched */
};

/* A one-shot timer; embed it, rx_timer_start() arms it, it fires once. */
struct rx_timer {
    uint64_t deadline; /* ms on the loop's monotonic clock */
    uint32_t idx;      /* position in the heap + 1; 0 when not armed */
    rx_timer_cb cb;
};

/*
 * An end-of-turn callback: runs once after the loop has dispatched the
 * current batch of completions and before it submits and waits again. Used
 * for group commit (everything that arrived in one turn goes in one batch).
 */
struct rx_defer {
    rx_defer_cb cb;
    core_qlink_t link; /* in the loop's queue of end-of-turn callbacks */
    bool queued;
};

/* A registered provided-buffer ring (IORING_REGISTER_PBUF_RING). */
struct rx_bufring {
    struct io_uring_buf_ring *ring; /* shared with the kernel, page aligned */
    uint8_t *base;                  /* nbufs * size bytes of buffers */
    uint32_t nbufs;                 /* power of two */
    uint32_t size;                  /* bytes per buffer */
    uint16_t bgid;                  /* buffer group id */
    size_t ring_bytes;              /* mmap length of `ring` */
};

struct rx_loop {
    struct io_uring ring;
    uint64_t now;          /* cached monotonic ms, refreshed every turn */
    rx_timer_t **heap;     /* min-heap of armed timers by deadline */
    uint32_t heap_len;     /* armed timers */
    uint32_t heap_cap;     /* slots allocated in heap */
    core_queue_t defers;   /* end-of-turn callbacks, in the order queued */
    bool stopping;         /* rx_stop() was called: rx_run returns after this turn */
    unsigned pending_sqes; /* prepared but not yet submitted */
};

/*
 * Sets up the ring with IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
 * (and COOP_TASKRUN). `entries` is the SQ size (a power of two, e.g. 1024).
 * Returns 0, or -errno: -EPERM (seccomp forbids io_uring, e.g. Docker's
 * default profile), -ENOSYS (not in kernel or filtered, e.g. Podman),
 * -EINVAL (kernel too old for these flags), -ENOMEM.
 * rx_strerror_setup() gives the one-line explanation to print for these.
 */
int rx_loop_init(rx_loop_t *loop, unsigned entries);

/* Releases the ring and the timer heap. Nothing may be in flight. */
void rx_loop_dispose(rx_loop_t *loop);

/* A one-line, operator-facing explanation of an rx_loop_init() failure, naming the fix. */
const char *rx_strerror_setup(int err);

/*
 * Returns an SQE tagged for `op` (op->armed set, user_data = op), or for no
 * op when `op` is NULL (a fire-and-forget SQE whose completion is ignored).
 * `op` must not be armed (asserted; see struct rx_op). When the SQ is full it
 * submits first; it never returns NULL. The SQE is submitted at the end of
 * the current turn (or earlier by rx_submit()).
 */
struct io_uring_sqe *rx_sqe(rx_loop_t *loop, rx_op_t *op);

/*
 * Asks the kernel to cancel `op`'s armed SQE (a no-op when it is not armed).
 * The op's callback still runs for its final completion (usually -ECANCELED,
 * or the op's own result when it finished first); only then is the op free
 * to reuse. Never synchronous.
 */
void rx_cancel(rx_loop_t *loop, rx_op_t *op);

/* Submits prepared SQEs now. Returns the number submitted or -errno. */
int rx_submit(rx_loop_t *loop);

/*
 * Runs the loop until rx_stop(): submit, wait for at least one completion or
 * the earliest timer, dispatch completions, fire due timers, run deferred
 * callbacks. Returns 0 or -errno on a ring failure.
 */
int rx_run(rx_loop_t *loop);

/* Makes rx_run() return at the end of the current turn. */
void rx_stop(rx_loop_t *loop);

/* Cached monotonic time in ms (CLOCK_MONOTONIC), refreshed each turn. */
static inline uint64_t rx_now(const rx_loop_t *loop)
{
    return loop->now;
}

/* Reads CLOCK_MONOTONIC in ms and refreshes the cache. */
uint64_t rx_update_time(rx_loop_t *loop);

/* Arms (or re-arms) `t` to fire `after_ms` from now. O(log n). */
void rx_timer_start(rx_loop_t *loop, rx_timer_t *t, uint64_t after_ms, rx_timer_cb cb);

/* Disarms `t` if armed. O(log n). Safe to call on a disarmed timer. */
void rx_timer_stop(rx_loop_t *loop, rx_timer_t *t);

static inline bool rx_timer_active(const rx_timer_t *t)
{
    return t->idx != 0;
}

/* Queues `d` to run at the end of this turn; a queued defer is not queued twice. */
void rx_defer(rx_loop_t *loop, rx_defer_t *d, rx_defer_cb cb);

/*
 * Registers a provided-buffer ring of `nbufs` (power of two) buffers of
 * `size` bytes under group `bgid`, all handed to the kernel.
 * Returns 0 or -errno.
 */
int rx_bufring_init(rx_loop_t *loop, rx_bufring_t *br, uint16_t bgid, uint32_t nbufs,
                    uint32_t size);

/* Unregisters and frees the ring. */
void rx_bufring_dispose(rx_loop_t *loop, rx_bufring_t *br);

/* The buffer with id `bid` (from a CQE's flags >> IORING_CQE_BUFFER_SHIFT). */
static inline uint8_t *rx_bufring_buf(const rx_bufring_t *br, uint16_t bid)
{
    return br->base + (size_t)bid * br->size;
}

/* Gives buffer `bid` back to the kernel once its bytes have been consumed. */
void rx_bufring_recycle(rx_bufring_t *br, uint16_t bid);

#endif
