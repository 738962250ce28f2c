/* SPDX-License-Identifier: MIT */
/*
 * test_loop.c - the reactor: timer heap order and removal, end-of-turn
 * callbacks, multishot recv through the provided-buffer ring (including
 * running the ring dry: -ENOBUFS ends the multishot and is re-armed), and
 * the ownership rule that lets user_data be a bare op pointer: a cancelled
 * op gets its final completion and only then is reused, and arming an op
 * that is still armed aborts.
 */
#include "reactor.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- timers ---- */

#define NT 200
static rx_timer_t timers[NT];
static uint64_t fired_deadline[NT];
static int nfired;
static int order_ok = 1;

static void on_t(rx_loop_t *loop, rx_timer_t *t)
{
    if (nfired > 0 && t->deadline < fired_deadline[nfired - 1])
        order_ok = 0;
    fired_deadline[nfired++] = t->deadline;
    if (nfired == NT / 2)
        rx_stop(loop);
}

static void test_timers(void)
{
    rx_loop_t loop;
    tap_eq_int(rx_loop_init(&loop, 64), 0, "loop init");
    srand(7);
    for (int i = 0; i < NT; i++)
        rx_timer_start(&loop, &timers[i], (uint64_t)(rand() % 50), on_t);
    /* Stop every other one: half must fire, in deadline order. */
    for (int i = 0; i < NT; i += 2)
        rx_timer_stop(&loop, &timers[i]);
    int inactive = 1;
    for (int i = 0; i < NT; i += 2)
        inactive &= !rx_timer_active(&timers[i]);
    tap_ok(inactive, "stopped timers are inactive");
    tap_eq_int(loop.heap_len, NT / 2, "heap holds the armed half");
    rx_run(&loop);
    tap_eq_int(nfired, NT / 2, "every armed timer fired once");
    tap_ok(order_ok, "timers fired in deadline order");
    tap_eq_int(loop.heap_len, 0, "heap empty after firing");
    rx_loop_dispose(&loop);
}

/* ---- defers ---- */

static int defer_runs;
static void on_defer(rx_loop_t *loop, rx_defer_t *d)
{
    defer_runs++;
}
static void on_stop_timer(rx_loop_t *loop, rx_timer_t *t)
{
    rx_stop(loop);
}

static void test_defer(void)
{
    rx_loop_t loop;
    rx_defer_t d = {0};
    rx_timer_t t = {0};
    rx_loop_init(&loop, 64);
    rx_defer(&loop, &d, on_defer);
    rx_defer(&loop, &d, on_defer); /* queued once */
    rx_timer_start(&loop, &t, 5, on_stop_timer);
    rx_run(&loop);
    tap_eq_int(defer_runs, 1, "a defer queued twice in one turn runs once");
    rx_loop_dispose(&loop);
}

/* ---- recv multishot with the buffer ring ---- */

typedef struct reader {
    rx_op_t op;
    rx_bufring_t *br;
    int fd;
    size_t got;
    unsigned rearms;
    unsigned enobufs;
    unsigned char sum;
    uint16_t held[64];
    int nheld;
    bool released;
} reader_t;

static rx_loop_t rloop;

static void arm(reader_t *r)
{
    struct io_uring_sqe *sqe = rx_sqe(&rloop, &r->op);
    io_uring_prep_recv_multishot(sqe, r->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = r->br->bgid;
}

static void on_recv(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    reader_t *r = container_of(op, reader_t, op);
    if (res > 0) {
        uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);
        unsigned char *p = rx_bufring_buf(r->br, bid);
        for (int i = 0; i < res; i++)
            r->sum += p[i];
        r->got += (size_t)res;
        /* Hold the first buffers to run the ring dry, then give them all back. */
        if (!r->released && r->nheld < 4)
            r->held[r->nheld++] = bid;
        else
            rx_bufring_recycle(r->br, bid);
    } else if (res == -ENOBUFS) {
        r->enobufs++;
        for (int i = 0; i < r->nheld; i++)
            rx_bufring_recycle(r->br, r->held[i]);
        r->nheld = 0;
        r->released = true; /* never hold again */
    }
    if (!(flags & IORING_CQE_F_MORE) && res != 0) {
        r->rearms++;
        arm(r);
    }
    if (res == 0)
        rx_stop(loop);
}

static void test_recv(void)
{
    int sv[2];
    rx_bufring_t br;
    reader_t r;
    memset(&r, 0, sizeof(r));
    tap_eq_int(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0, "socketpair");
    tap_eq_int(rx_loop_init(&rloop, 64), 0, "loop init for recv");
    tap_eq_int(rx_bufring_init(&rloop, &br, 3, 4, 256), 0, "buffer ring of 4 x 256 registered");
    tap_ok(rx_bufring_init(&rloop, &(rx_bufring_t){0}, 4, 3, 256) == -EINVAL,
           "a ring size that is not a power of two is refused");
    r.op.cb = on_recv;
    r.br = &br;
    r.fd = sv[0];
    arm(&r);
    rx_submit(&rloop);
    unsigned char want = 0;
    size_t total = 0;
    unsigned char chunk[300];
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < sizeof(chunk); i++) {
            chunk[i] = (unsigned char)(round * 31 + i);
            want += chunk[i];
        }
        if (write(sv[1], chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
            abort();
        total += sizeof(chunk);
        if (round == 10)
            shutdown(sv[1], SHUT_WR);
        if (round == 10)
            break;
    }
    rx_run(&rloop);
    tap_eq_int(r.got, total, "every byte arrived through the buffer ring");
    tap_eq_int(r.sum, want, "bytes intact");
    tap_ok(r.enobufs >= 1, "running the ring dry gave -ENOBUFS");
    tap_ok(r.rearms >= 1, "the multishot recv was re-armed after it ended");
    rx_bufring_dispose(&rloop, &br);
    rx_loop_dispose(&rloop);
    close(sv[0]);
    close(sv[1]);
}

/* ---- the ownership rule: one SQE in flight per op, reused after its final completion ---- */

typedef struct canceller {
    rx_op_t op;
    int fd;
    char byte;
    int calls;
    int results[4];
    bool armed_in_cb; /* op->armed as the callback saw it */
} canceller_t;

static void on_cancelled_recv(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    canceller_t *c = container_of(op, canceller_t, op);
    if (c->calls < 4)
        c->results[c->calls] = res;
    c->calls++;
    c->armed_in_cb = op->armed;
    if (res == -ECANCELED) {
        /* The final completion of the cancelled use: the op is free to arm again. */
        io_uring_prep_recv(rx_sqe(loop, op), c->fd, &c->byte, 1, 0);
        return;
    }
    rx_stop(loop);
}

/* Writes one byte to fd when the timer fires. */
typedef struct writer {
    rx_timer_t t;
    int fd;
} writer_t;

static void on_send_byte(rx_loop_t *loop, rx_timer_t *t)
{
    if (write(container_of(t, writer_t, t)->fd, "z", 1) != 1)
        tap_bail("cannot write the socketpair");
}

static void on_nop_op(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags) {}

static void test_cancel_reuse(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        tap_bail("socketpair");
    rx_loop_t loop;
    canceller_t c = {.op = {.cb = on_cancelled_recv}, .fd = sv[0]};
    writer_t later = {.fd = sv[1]};
    rx_loop_init(&loop, 64);
    io_uring_prep_recv(rx_sqe(&loop, &c.op), c.fd, &c.byte, 1, 0);
    rx_submit(&loop);
    rx_cancel(&loop, &c.op);
    tap_ok(c.op.armed, "a cancelled op stays armed until its final completion");
    rx_timer_start(&loop, &later.t, 20, on_send_byte);
    rx_run(&loop);
    tap_eq_int(c.calls, 2, "one completion per use: the cancelled one, then the new one");
    tap_eq_int(c.results[0], -ECANCELED, "the cancelled use ends in -ECANCELED, to its callback");
    tap_eq_int(c.results[1], 1, "the use armed from that callback gets the byte");
    tap_ok(!c.armed_in_cb && !c.op.armed, "the op is disarmed for its final completion");
    rx_timer_stop(&loop, &later.t);
    rx_loop_dispose(&loop);
    close(sv[0]);
    close(sv[1]);
}

/* Arming an op that is still armed breaks the rule: rx_sqe() asserts (debug and CI builds). */
static void test_rearm_armed(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        tap_bail("fork");
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDERR_FILENO);
        rx_loop_t loop;
        rx_op_t op = {.cb = on_nop_op};
        rx_loop_init(&loop, 64);
        io_uring_prep_nop(rx_sqe(&loop, &op));
        io_uring_prep_nop(rx_sqe(&loop, &op));
        _exit(0);
    }
    int ws = 0;
    waitpid(pid, &ws, 0);
    tap_ok(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGABRT,
           "rx_sqe() on an op still armed aborts (exit status %d)", ws);
}

int main(void)
{
    test_timers();
    test_defer();
    test_recv();
    test_cancel_reuse();
    test_rearm_armed();
    return tap_done();
}
