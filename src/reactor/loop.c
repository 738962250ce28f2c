/* SPDX-License-Identifier: MIT */
/*
 * loop.c - the io_uring event loop: submission tagging, completion dispatch,
 * a binary heap of timers, end-of-turn callbacks and provided-buffer rings.
 *
 * One turn: run deferred callbacks, submit and wait (bounded by the earliest
 * timer), dispatch the completions that arrived, fire due timers.
 */
#include "reactor.h"

#include "core.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define RX_CQE_BATCH 64

int rx_loop_init(rx_loop_t *loop, unsigned entries)
{
    struct io_uring_params p;
    int ret;

    memset(loop, 0, sizeof(*loop));
    memset(&p, 0, sizeof(p));
    /*
     * Multishot accept and recv can post many completions per submission,
     * so the completion queue is made larger than the submission queue; the
     * kernel does not drop completions on overflow (IORING_FEAT_NODROP) but
     * overflow is slow.
     */
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 8;
    ret = io_uring_queue_init_params(entries, &loop->ring, &p);
    if (ret < 0)
        return ret;
    if (!(p.features & IORING_FEAT_NODROP) || !(p.features & IORING_FEAT_EXT_ARG)) {
        io_uring_queue_exit(&loop->ring);
        return -EINVAL;
    }
    loop->heap_cap = 64;
    loop->heap = xcalloc(loop->heap_cap, sizeof(*loop->heap));
    rx_update_time(loop);
    return 0;
}

void rx_loop_dispose(rx_loop_t *loop)
{
    io_uring_queue_exit(&loop->ring);
    free(loop->heap);
    loop->heap = NULL;
    loop->heap_len = loop->heap_cap = 0;
}

const char *rx_strerror_setup(int err)
{
    switch (err) {
    case -EPERM:
        return "io_uring is not permitted (EPERM): a seccomp profile (Docker's default blocks "
               "io_uring) or kernel.io_uring_disabled forbids it; run the container with "
               "security_opt seccomp=seccomp/tgring.json (shipped with tgring) and set "
               "sysctl kernel.io_uring_disabled=0 on the host";
    case -ENOSYS:
        return "io_uring is not available (ENOSYS): the kernel lacks it or a seccomp filter "
               "(Podman's default) hides it; run with --security-opt "
               "seccomp=seccomp/tgring.json on Linux 6.1 or newer";
    case -EINVAL:
        return "io_uring setup rejected (EINVAL): tgring needs Linux 6.1 or newer "
               "(IORING_SETUP_SINGLE_ISSUER and DEFER_TASKRUN)";
    case -ENOMEM:
        return "io_uring setup failed (ENOMEM): raise the locked-memory limit (ulimit -l) "
               "or use Linux 5.12 or newer, which accounts rings to memory cgroups";
    default:
        return "io_uring setup failed";
    }
}

uint64_t rx_update_time(rx_loop_t *loop)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    loop->now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    return loop->now;
}

struct io_uring_sqe *rx_sqe(rx_loop_t *loop, rx_op_t *op)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);
    while (sqe == NULL) {
        /* The SQ is full: submit what is there to make room. */
        int ret = io_uring_submit(&loop->ring);
        if (ret < 0 && ret != -EBUSY && ret != -EAGAIN && ret != -EINTR)
            abort();
        sqe = io_uring_get_sqe(&loop->ring);
    }
    if (op != NULL) {
        /* One SQE in flight per op: the first one's completion would pass for the second's. */
        assert(!op->armed);
        op->armed = true;
    }
    io_uring_sqe_set_data(sqe, op);
    loop->pending_sqes++;
    return sqe;
}

void rx_cancel(rx_loop_t *loop, rx_op_t *op)
{
    if (!op->armed)
        return;
    struct io_uring_sqe *sqe = rx_sqe(loop, NULL);
    io_uring_prep_cancel(sqe, op, 0);
    /* Only a failed cancel is worth a completion; success shows on the op itself. */
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

int rx_submit(rx_loop_t *loop)
{
    int ret = io_uring_submit(&loop->ring);
    if (ret >= 0)
        loop->pending_sqes = 0;
    return ret;
}

void rx_stop(rx_loop_t *loop)
{
    loop->stopping = true;
}

/* ---- timers: a binary min-heap of pointers; t->idx is its slot + 1 ---- */

static inline void heap_set(rx_loop_t *loop, uint32_t i, rx_timer_t *t)
{
    loop->heap[i] = t;
    t->idx = i + 1;
}

static void heap_up(rx_loop_t *loop, uint32_t i)
{
    rx_timer_t *t = loop->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (loop->heap[parent]->deadline <= t->deadline)
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(rx_loop_t *loop, uint32_t i)
{
    rx_timer_t *t = loop->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len &&
            loop->heap[child + 1]->deadline < loop->heap[child]->deadline)
            child++;
        if (t->deadline <= loop->heap[child]->deadline)
            break;
        heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    heap_set(loop, i, t);
}

void rx_timer_stop(rx_loop_t *loop, rx_timer_t *t)
{
    if (t->idx == 0)
        return;
    uint32_t i = t->idx - 1;
    t->idx = 0;
    loop->heap_len--;
    if (i == loop->heap_len)
        return;
    rx_timer_t *last = loop->heap[loop->heap_len];
    loop->heap[i] = last;
    last->idx = i + 1;
    if (i > 0 && loop->heap[(i - 1) / 2]->deadline > last->deadline)
        heap_up(loop, i);
    else
        heap_down(loop, i);
}

void rx_timer_start(rx_loop_t *loop, rx_timer_t *t, uint64_t after_ms, rx_timer_cb cb)
{
    rx_timer_stop(loop, t);
    t->deadline = loop->now + after_ms;
    t->cb = cb;
    if (loop->heap_len == loop->heap_cap) {
        loop->heap_cap *= 2;
        loop->heap = xrealloc(loop->heap, loop->heap_cap * sizeof(*loop->heap));
    }
    loop->heap[loop->heap_len] = t;
    t->idx = ++loop->heap_len;
    heap_up(loop, loop->heap_len - 1);
}

static void run_timers(rx_loop_t *loop)
{
    while (loop->heap_len > 0 && loop->heap[0]->deadline <= loop->now) {
        rx_timer_t *t = loop->heap[0];
        rx_timer_stop(loop, t);
        t->cb(loop, t);
    }
}

/* ---- end-of-turn callbacks ---- */

void rx_defer(rx_loop_t *loop, rx_defer_t *d, rx_defer_cb cb)
{
    if (d->queued)
        return;
    d->cb = cb;
    d->queued = true;
    core_queue_push(&loop->defers, &d->link);
}

static void run_defers(rx_loop_t *loop)
{
    /* Callbacks may queue more; those run in this same pass. */
    core_qlink_t *l;
    while ((l = core_queue_pop(&loop->defers)) != NULL) {
        rx_defer_t *d = container_of(l, rx_defer_t, link);
        d->queued = false;
        d->cb(loop, d);
    }
}

/* ---- the loop ---- */

static void dispatch(rx_loop_t *loop, uint64_t ud, int res, uint32_t flags)
{
    rx_op_t *op = (rx_op_t *)(uintptr_t)ud;
    if (op == NULL)
        return; /* fire-and-forget SQEs (cancels) carry no op */
    assert(op->armed);
    if (!(flags & IORING_CQE_F_MORE))
        op->armed = false;
    op->cb(loop, op, res, flags);
}

int rx_run(rx_loop_t *loop)
{
    struct io_uring_cqe *cqes[RX_CQE_BATCH];
    struct {
        uint64_t ud;
        int res;
        uint32_t flags;
    } batch[RX_CQE_BATCH];

    loop->stopping = false;
    while (!loop->stopping) {
        run_defers(loop);
        if (loop->stopping)
            break;

        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts, *tsp = NULL;
        if (loop->heap_len > 0) {
            rx_update_time(loop);
            uint64_t wait = 0;
            if (loop->heap[0]->deadline > loop->now)
                wait = loop->heap[0]->deadline - loop->now;
            ts.tv_sec = (long long)(wait / 1000);
            ts.tv_nsec = (long long)(wait % 1000) * 1000000;
            tsp = &ts;
        }
        int ret = io_uring_submit_and_wait_timeout(&loop->ring, &cqe, 1, tsp, NULL);
        loop->pending_sqes = 0;
        if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
            return ret;
        rx_update_time(loop);

        /*
         * Copy completions out and advance the CQ before dispatching, so that
         * callbacks are free to submit (which may enter the kernel) without
         * holding pointers into the CQ ring.
         */
        unsigned n;
        while ((n = io_uring_peek_batch_cqe(&loop->ring, cqes, RX_CQE_BATCH)) > 0) {
            for (unsigned i = 0; i < n; i++) {
                batch[i].ud = cqes[i]->user_data;
                batch[i].res = cqes[i]->res;
                batch[i].flags = cqes[i]->flags;
            }
            io_uring_cq_advance(&loop->ring, n);
            for (unsigned i = 0; i < n; i++)
                dispatch(loop, batch[i].ud, batch[i].res, batch[i].flags);
            if (n < RX_CQE_BATCH)
                break;
        }
        run_timers(loop);
    }
    run_defers(loop);
    return 0;
}

/* ---- provided-buffer rings ---- */

int rx_bufring_init(rx_loop_t *loop, rx_bufring_t *br, uint16_t bgid, uint32_t nbufs, uint32_t size)
{
    struct io_uring_buf_reg reg;
    int ret;

    memset(br, 0, sizeof(*br));
    if (nbufs == 0 || (nbufs & (nbufs - 1)) != 0 || nbufs > 32768)
        return -EINVAL;
    /*
     * liburing 2.3 has no io_uring_setup_buf_ring(): map the ring ourselves.
     * It must be page aligned, which mmap guarantees.
     */
    br->ring_bytes = (size_t)nbufs * sizeof(struct io_uring_buf);
    void *mem =
        mmap(NULL, br->ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -ENOMEM;
    br->ring = mem;
    br->base = aligned_alloc(64, (size_t)nbufs * size);
    if (br->base == NULL)
        abort();
    br->nbufs = nbufs;
    br->size = size;
    br->bgid = bgid;
    io_uring_buf_ring_init(br->ring);

    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br->ring;
    reg.ring_entries = nbufs;
    reg.bgid = bgid;
    ret = io_uring_register_buf_ring(&loop->ring, &reg, 0);
    if (ret < 0) {
        munmap(br->ring, br->ring_bytes);
        free(br->base);
        memset(br, 0, sizeof(*br));
        return ret;
    }
    int mask = io_uring_buf_ring_mask(nbufs);
    for (uint32_t i = 0; i < nbufs; i++)
        io_uring_buf_ring_add(br->ring, rx_bufring_buf(br, (uint16_t)i), size, (uint16_t)i, mask,
                              (int)i);
    io_uring_buf_ring_advance(br->ring, (int)nbufs);
    return 0;
}

void rx_bufring_dispose(rx_loop_t *loop, rx_bufring_t *br)
{
    if (br->ring == NULL)
        return;
    io_uring_unregister_buf_ring(&loop->ring, br->bgid);
    munmap(br->ring, br->ring_bytes);
    free(br->base);
    memset(br, 0, sizeof(*br));
}

void rx_bufring_recycle(rx_bufring_t *br, uint16_t bid)
{
    io_uring_buf_ring_add(br->ring, rx_bufring_buf(br, bid), br->size, bid,
                          io_uring_buf_ring_mask(br->nbufs), 0);
    io_uring_buf_ring_advance(br->ring, 1);
}
