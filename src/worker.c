/* SPDX-License-Identifier: MIT */
/*
 * worker.c - one reactor's lifecycle (see worker.h): set up the loop, the
 * listening socket, the signalfd, the database, the HTTP server with the
 * webhook endpoints, the processor running the application's handlers, the
 * Bot API pool and the sender; run; drain on a signal;
 * tear down in one place, whatever was set up. Also the readiness probe that
 * `tgring healthcheck` runs against a worker.
 */
#include "worker.h"

#include "bot.h"
#include "core.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "met.h"
#include "reactor.h"
#include "tg_commands.h"
#include "tg_processor.h"
#include "tg_sender.h"
#include "tg_webhook.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define RING_ENTRIES 1024
#define DB_MAX_BATCH 512
/*
 * Descriptors a worker needs besides its client connections: stdio, the
 * ring, the signalfd, the listening socket, files opened for a moment (the
 * CA bundle, /proc/self/statm), the sanitizers' own, and the advisory-lock
 * connections. The database connections (twice: a reconnect may overlap the
 * old socket) and the Bot API pool are added to it.
 */
#define NOFILE_RESERVE 32

/*
 * A worker's fixed memory, for worker_plan(): idle after start it is about 9 MB resident
 * (code, libraries, the 4 MiB receive ring, database and TLS buffers; bench/RESULTS.md), 16 MiB
 * leaves room for their peaks. An open connection costs about 0.6 KiB with no request in it
 * (bench: 10,000 idle connections add about 6 MB); a queued update's bookkeeping a few hundred
 * bytes.
 */
#define WORKER_BASE_BYTES (16u << 20)
#define WORKER_CONN_BYTES 1024u
#define WORKER_QUEUE_BYTES 256u
/* Below this many largest bodies at once a worker cannot serve: refused at start. */
#define WORKER_MIN_BODIES 4u
/*
 * After a burst, free memory goes back to the kernel: once request buffers are down to a
 * quarter of their peak, and the peak was at least TRIM_MIN_BYTES, malloc_trim() runs (on the
 * one-second timer). Buffers of TRIM_MMAP_BYTES and more are mmap'd and unmapped when freed.
 */
#define TRIM_MIN_BYTES (4u << 20)
#define TRIM_MMAP_BYTES (128u << 10)

/* One reactor's state. There is one per process. */
typedef struct worker {
    rx_loop_t loop;
    bool loop_up; /* loop initialised */
    const cfg_t *cfg;
    const worker_plan_t *plan;
    uint64_t buffered_peak; /* most bytes of request buffers since the last trim */
    int lfd;                /* listening socket until the http server owns it, else -1 */
    http_server_t *http;
    db_t *db;
    tg_webhook_t hook; /* the bot's endpoints; set up once db is */
    int sigfd;         /* -1 when not open */
    struct signalfd_siginfo siginfo;
    rx_op_t sig_op;
    rx_timer_t rss_timer;
    rx_timer_t grace_timer;
    bool stopping;
    bool supervised;   /* one of TGRING_WORKERS > 1 processes, under sup_run() */
    int forced;        /* the signal that cut the drain short, 0 when none did */
    bool tearing_down; /* teardown() runs: signals are no longer read */
    bool http_drained;
    bool sender_idle;
    bool proc_idle;
    tls_ctx_t *tls;      /* Bot API trust anchors; NULL without a token or for http:// */
    httpc_pool_t *api;   /* Bot API connections; NULL without a token */
    tg_sender_t *sender; /* the outbox sender: active while it holds the bot's lock */
    tg_proc_t *proc;     /* the processor: runs the application's handlers */
    bot_jobs_t *jobs;    /* the application's periodic jobs (worker 0 only), or NULL */
    tg_getme_t getme;    /* the getMe call made at start, and the bot's username */
} worker_t;

static void on_rss_timer(rx_loop_t *loop, rx_timer_t *t)
{
    worker_t *w = container_of(t, worker_t, rss_timer);
    uint64_t now = w->http != NULL ? http_server_buffered(w->http) : 0;
    if (now > w->buffered_peak)
        w->buffered_peak = now;
    else if (w->buffered_peak >= TRIM_MIN_BYTES && now <= w->buffered_peak / 4) {
        malloc_trim(0);
        log_debug("memory_trimmed",
                  "request buffers down to %llu bytes from a peak of %llu: "
                  "free memory returned",
                  (unsigned long long)now, (unsigned long long)w->buffered_peak);
        w->buffered_peak = now;
    }
    met_sample_rss();
    rx_timer_start(loop, t, 1000, on_rss_timer);
}

static void maybe_stop(worker_t *w)
{
    if (w->http_drained && w->sender_idle && w->proc_idle) {
        log_info("stopped", "all connections closed, updates in progress committed and sends "
                            "recorded");
        rx_stop(&w->loop);
    }
}

static void on_http_drained(void *arg)
{
    worker_t *w = arg;
    w->http_drained = true;
    maybe_stop(w);
}

static void on_sender_idle(void *arg)
{
    worker_t *w = arg;
    w->sender_idle = true;
    maybe_stop(w);
}

static void on_proc_idle(void *arg)
{
    worker_t *w = arg;
    w->proc_idle = true;
    maybe_stop(w);
}

static void on_grace(rx_loop_t *loop, rx_timer_t *t)
{
    worker_t *w = container_of(t, worker_t, grace_timer);
    /*
     * Requests still waiting for a commit are answered 503 by the teardown
     * after the loop (db_free cancels them), then their connections close.
     */
    log_warn("shutdown_timeout", "grace period over with %u connections open; closing them",
             http_server_connections(w->http));
    rx_stop(loop);
}

static void on_final(rx_loop_t *loop, rx_timer_t *t)
{
    rx_stop(loop);
}

static void begin_shutdown(worker_t *w, const char *why)
{
    if (w->stopping)
        return;
    w->stopping = true;
    tg_webhook_stop(&w->hook);
    log_info("stopping", "%s: no new connections; finishing requests in flight (up to %u ms)", why,
             w->cfg->shutdown_timeout_ms);
    rx_timer_stop(&w->loop, &w->rss_timer);
    rx_timer_start(&w->loop, &w->grace_timer, w->cfg->shutdown_timeout_ms, on_grace);
    http_server_drain(w->http, on_http_drained, w);
    if (w->proc != NULL)
        tg_proc_stop(w->proc, on_proc_idle, w);
    else
        w->proc_idle = true;
    bot_jobs_stop(w->jobs);
    if (w->sender != NULL)
        tg_sender_stop(w->sender, on_sender_idle, w);
    else
        w->sender_idle = true;
}

static void arm_signal(worker_t *w)
{
    struct io_uring_sqe *sqe = rx_sqe(&w->loop, &w->sig_op);
    io_uring_prep_read(sqe, w->sigfd, &w->siginfo, sizeof(w->siginfo), 0);
}

/*
 * Whether a signal cuts the drain short. A lone worker stops at once on the
 * second SIGTERM or SIGINT. A supervised one drains on any number of them
 * (the same stop reaches it directly and through the supervisor: Ctrl-C
 * signals the whole process group, systemd the whole cgroup) and stops at
 * once on its supervisor's SIGUSR1, sent when a second stop was asked of it.
 */
static bool stop_is_forced(worker_t *w)
{
    if (!w->supervised)
        return w->stopping;
    return w->siginfo.ssi_signo == SIGUSR1 && w->siginfo.ssi_pid == (uint32_t)getppid();
}

static void on_signal(rx_loop_t *loop, rx_op_t *op, int res, uint32_t flags)
{
    worker_t *w = container_of(op, worker_t, sig_op);
    if (w->tearing_down)
        return;
    if (res == (int)sizeof(w->siginfo)) {
        int sig = (int)w->siginfo.ssi_signo;
        const char *name = sig == SIGINT ? "SIGINT" : sig == SIGUSR1 ? "SIGUSR1" : "SIGTERM";
        if (sig == SIGUSR1 && !stop_is_forced(w)) {
            arm_signal(w); /* only its supervisor's means anything */
            return;
        }
        if (stop_is_forced(w)) {
            log_warn("shutdown_forced",
                     "%s again: not waiting for the drain; closing %u connections", name,
                     http_server_connections(w->http));
            w->forced = sig;
            rx_stop(loop);
            return;
        }
        begin_shutdown(w, name);
    }
    arm_signal(w);
}

static int listen_socket(const cfg_t *cfg)
{
    int fd = socket(cfg->listen_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Several workers listen on one port; the kernel spreads connections. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&cfg->listen_addr, cfg->listen_addr_len) != 0 ||
        listen(fd, 4096) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* The Bot API pool, getMe and the sender. Failures are logged, not fatal. */
static void start_sending(worker_t *w, const tg_bot_t *bot)
{
    const cfg_t *cfg = w->cfg;
    if (bot->token == NULL) {
        log_info("sending_disabled", "TELEGRAM_BOT_TOKEN is not set: the outbox is not sent");
        return;
    }
    if (tg_pool_open(&w->loop, cfg, &w->tls, &w->api) < 0)
        return;
    tg_getme_start(&w->getme, w->api, bot->token);
    /*
     * Every worker runs a sender; the rate limits are the bot's, so only the
     * one holding the bot's lock in the database sends, across all replicas.
     */
    tg_sender_options_t so = {
        .token = bot->token,
        .http = w->api,
        .db = w->db,
        .rate = bot->rate,
        .max_attempts = cfg->send_attempts,
        .lease_ms = cfg->outbox_lease_ms,
        .max_calls = cfg->api_connections,
        .mark_delay_ms = 5,
        .lock_conninfo = cfg->database_url,
    };
    int r;
    w->sender = tg_sender_new(&w->loop, &so, &r);
    if (w->sender == NULL)
        log_error("sender_failed", "cannot start the outbox sender: %s", strerror(-r));
}

/* The processor queued Bot API calls: this worker's sender, if it leads, claims them now. */
static void on_outbox(void *arg)
{
    worker_t *w = arg;
    if (w->sender != NULL)
        tg_sender_kick(w->sender);
}

/* A commit of the processor is formed: this worker's sender, if it leads, has its calls leased. */
static int64_t on_handoff_token(void *arg, uint32_t *lease_ms)
{
    worker_t *w = arg;
    return w->sender != NULL ? tg_sender_handoff_token(w->sender, lease_ms) : 0;
}

/* That commit went through: the sender takes the calls without a claim. */
static void on_handoff(void *arg, const tg_outbox_row_t *rows, unsigned n, uint64_t leased_ms)
{
    worker_t *w = arg;
    if (w->sender != NULL)
        tg_sender_take(w->sender, rows, n, leased_ms);
}

/*
 * The processor with the application's handlers. Every worker runs one (the
 * claims keep them apart); worker 0 also prunes and samples the gauges.
 */
static void start_processing(worker_t *w, bot_app_t *app, unsigned index)
{
    const cfg_t *cfg = w->cfg;
    if (cfg->process_capacity == 0) {
        /* Store only: other replicas (or a later start) process, prune and notify. */
        if (index == 0)
            log_info("store_only", "TGRING_PROCESS_CAPACITY=0: updates are stored and answered, "
                     "not processed here (no handlers, retention or notifications)");
        return;
    }
    tg_proc_options_t po = {
        .db = w->db,
        .capacity = cfg->process_capacity,
        .poll_ms = cfg->process_poll_ms,
        .lease_ms = cfg->process_lease_ms,
        .handler_timeout_ms = cfg->handler_timeout_ms,
        .housekeeping = index == 0,
        .retention_hours = cfg->retention_hours,
        .username = w->getme.username,
        .on_outbox = on_outbox,
        .outbox_arg = w,
        .handoff_token = on_handoff_token,
        .on_handoff = on_handoff,
    };
    bot_app_proc_options(app, &po);
    w->proc = tg_proc_new(&w->loop, &po);
    w->hook.proc = w->proc;
    if (index == 0)
        w->jobs = bot_jobs_start(app, &w->loop, w->db);
}

/*
 * Fits TGRING_MAX_CONNECTIONS to the descriptor limit: raises the soft
 * RLIMIT_NOFILE to the hard one, and when the connections and the worker's
 * other descriptors still do not fit, lowers the cap with a warning (from
 * worker 0, since every worker has the same limit). Past the cap connections
 * are closed at accept, which is cheap; past the limit accept itself fails.
 * Returns the cap, or 0 (logged) when not a single connection fits.
 */
static unsigned fit_connections(const cfg_t *cfg, unsigned index)
{
    rlim_t reserve = NOFILE_RESERVE + 2 * (rlim_t)cfg->db_connections + cfg->api_connections;
    rlim_t want = (rlim_t)cfg->max_connections + reserve;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return cfg->max_connections;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
        /* An unlimited hard limit still has the kernel's nr_open above it: ask only for enough. */
        struct rlimit up = {rl.rlim_max != RLIM_INFINITY ? rl.rlim_max : want, rl.rlim_max};
        if (up.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
        return cfg->max_connections;
    if (rl.rlim_cur <= reserve) {
        log_error(
            "nofile_too_low",
            "the descriptor limit (RLIMIT_NOFILE) is %llu, not even one connection fits "
            "beside the %llu a worker needs for itself; raise it (ulimit -n, --ulimit nofile)",
            (unsigned long long)rl.rlim_cur, (unsigned long long)reserve);
        return 0;
    }
    unsigned fit = (unsigned)(rl.rlim_cur - reserve);
    if (index == 0)
        log_warn("max_connections_lowered",
                 "TGRING_MAX_CONNECTIONS=%u does not fit the descriptor limit (RLIMIT_NOFILE) of "
                 "%llu with the %llu a worker needs for itself: serving at most %u connections per "
                 "worker; raise the limit (ulimit -n, --ulimit nofile) or lower the setting",
                 cfg->max_connections, (unsigned long long)rl.rlim_cur, (unsigned long long)reserve,
                 fit);
    return fit;
}

/* Sets up everything but the run. Returns 0, or -1 with the reason logged. */
static int start(worker_t *w, const tg_bot_t *bot, bot_app_t *app, unsigned index,
                 const sigset_t *sigs)
{
    const cfg_t *cfg = w->cfg;
    /* Large request buffers are mapped on their own, so a burst's go back to the kernel when
     * freed; this also stops glibc raising the threshold (and the trim threshold) on its own. */
    mallopt(M_MMAP_THRESHOLD, TRIM_MMAP_BYTES);
    unsigned max_connections = fit_connections(cfg, index);
    if (max_connections == 0)
        return -1;
    int r = rx_loop_init(&w->loop, RING_ENTRIES);
    if (r < 0) {
        fprintf(stderr, "tgring: %s\n", rx_strerror_setup(r));
        log_error("io_uring_unavailable", "%s", rx_strerror_setup(r));
        return -1;
    }
    w->loop_up = true;
    w->lfd = listen_socket(cfg);
    if (w->lfd < 0) {
        log_error("listen_failed", "cannot listen on %s: %s", cfg->listen, strerror(-w->lfd));
        return -1;
    }
    w->sigfd = signalfd(-1, sigs, SFD_CLOEXEC);
    if (w->sigfd < 0) {
        log_error("signalfd_failed", "signalfd: %s", strerror(errno));
        return -1;
    }
    db_options_t dbo = {
        .conninfo = cfg->database_url,
        .connections = cfg->db_connections,
        .queue_max = cfg->queue_max,
        .ack_timeout_ms = cfg->ack_timeout_ms,
        .max_batch = DB_MAX_BATCH,
    };
    w->db = db_new(&w->loop, &dbo);
    tg_webhook_init(&w->hook, bot, w->db);
    start_processing(w, app, index);
    http_server_options_t ho = {
        .limits = HTTP_LIMITS_DEFAULT,
        .max_connections = max_connections,
        .buffer_budget = w->plan->buffer_budget,
        .header_timeout_ms = cfg->header_timeout_ms,
        .body_timeout_ms = cfg->body_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .send_timeout_ms = cfg->response_timeout_ms,
        .on_request = tg_webhook_on_request,
        .data = &w->hook,
    };
    ho.limits.max_body = cfg->max_body;
    w->http = http_server_new(&w->loop, w->lfd, &ho, &r);
    if (w->http == NULL) {
        log_error("http_failed", "cannot set up the receive buffer ring: %s", strerror(-r));
        return -1;
    }
    w->lfd = -1; /* the server's now */
    start_sending(w, bot);
    w->sig_op.cb = on_signal;
    arm_signal(w);
    met_sample_rss();
    rx_timer_start(&w->loop, &w->rss_timer, 1000, on_rss_timer);
    log_info("listening", "worker %u serving http://%s%s", index, cfg->listen, cfg->webhook_path);
#ifdef TGRING_BENCH_NODB
    log_error("bench_nodb", "built with -Dbench_nodb=true: updates are answered 200 and NOT "
              "stored; for benchmarks only");
#endif
    return 0;
}

/*
 * Frees whatever start() set up, after a run or a failed start. Order: the
 * sender releases the rows it holds and the pool fails what is still in
 * flight (the sender records those, and submits its marks that wait) while
 * the database is still there to take the writes; then the database answers whatever is left with
 * -ECANCELED (requests still waiting for a commit are answered 503: their
 * updates may or may not be stored; Telegram retries them and the inbox
 * dedupes). One more short run lets the cancelled database poll and the
 * closes of the remaining connections complete, so that nothing is in
 * flight when the ring goes away.
 */
static void teardown(worker_t *w)
{
    w->tearing_down = true;
    if (w->loop_up)
        rx_cancel(&w->loop, &w->sig_op);
    if (w->sender != NULL)
        tg_sender_stop(w->sender, NULL, NULL);
    if (w->api != NULL)
        httpc_pool_free(w->api);
    /* Its last marks go out before db_free() cancels them; it writes nothing after. */
    if (w->sender != NULL)
        tg_sender_detach(w->sender);
    /* Its cancelled transactions come back from db_free(): it submits nothing more. */
    if (w->proc != NULL)
        tg_proc_detach(w->proc);
    bot_jobs_stop(w->jobs);
    if (w->db != NULL)
        db_free(w->db);
    w->db = NULL;
    if (w->http != NULL)
        http_server_close_all(w->http);
    if (w->loop_up) {
        unsigned open = w->http != NULL ? http_server_connections(w->http) : 0;
        rx_timer_start(&w->loop, &w->grace_timer, open ? 1000 : 50, on_final);
        rx_run(&w->loop);
        rx_timer_stop(&w->loop, &w->grace_timer);
    }
    if (w->sender != NULL)
        tg_sender_free(w->sender);
    tg_proc_free(w->proc);
    bot_jobs_free(w->jobs);
    tls_ctx_free(w->tls);
    if (w->http != NULL)
        http_server_free(w->http);
    tg_webhook_dispose(&w->hook);
    if (w->lfd >= 0)
        close(w->lfd);
    if (w->sigfd >= 0)
        close(w->sigfd);
    if (w->loop_up)
        rx_loop_dispose(&w->loop);
}

/* "256 MiB"-style text for a log line; `buf` holds at least 32 bytes. */
static const char *fmt_bytes(uint64_t v, char *buf, size_t len)
{
    if (v >= (1u << 20) && v % (1u << 20) == 0)
        snprintf(buf, len, "%llu MiB", (unsigned long long)(v >> 20));
    else if (v >= (1u << 20))
        snprintf(buf, len, "%.1f MiB", (double)v / (1u << 20));
    else
        snprintf(buf, len, "%llu KiB", (unsigned long long)(v >> 10));
    return buf;
}

int worker_plan(const cfg_t *cfg, worker_plan_t *out)
{
    const char *from = "TGRING_MEMORY_LIMIT";
    uint64_t limit = cfg->memory_limit;
    if (limit == 0)
        core_memory_limit("/sys/fs/cgroup", &limit, &from);
    uint64_t dflt = 64 * cfg->max_body + (64u << 20);
    uint64_t fixed = WORKER_BASE_BYTES + (uint64_t)cfg->max_connections * WORKER_CONN_BYTES +
                     (uint64_t)cfg->queue_max * WORKER_QUEUE_BYTES;
    uint64_t least = WORKER_MIN_BODIES * cfg->max_body;
    char a[32], b[32], c[32], d[32];
    out->limit = limit;
    out->buffer_budget = dflt;
    if (limit == 0) {
        log_info("memory_budget",
                 "no memory limit (neither TGRING_MEMORY_LIMIT nor a cgroup sets one): request "
                 "buffers %s per worker",
                 fmt_bytes(dflt, a, sizeof(a)));
        return 0;
    }
    uint64_t share = limit / 4 * 3 / cfg->workers;
    if (share < fixed + least) {
        /* The limit at which `least` would just fit: (fixed + least) x workers x 4/3. */
        uint64_t need = ((fixed + least) * cfg->workers + 2) / 3 * 4;
        need = (need + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
        log_error("memory_too_small",
                  "the memory limit of %s (%s) is too small: each of %u worker(s) needs %s "
                  "(fixed costs for TGRING_MAX_CONNECTIONS=%u and TGRING_QUEUE_MAX=%u, plus "
                  "request buffers for 4 bodies of TGRING_MAX_BODY=%llu) and a quarter of the "
                  "limit is headroom; raise the limit to at least %s, or lower TGRING_WORKERS, "
                  "TGRING_MAX_CONNECTIONS, TGRING_QUEUE_MAX or TGRING_MAX_BODY",
                  fmt_bytes(limit, a, sizeof(a)), from, cfg->workers,
                  fmt_bytes(fixed + least, b, sizeof(b)), cfg->max_connections, cfg->queue_max,
                  (unsigned long long)cfg->max_body, fmt_bytes(need, c, sizeof(c)));
        return -1;
    }
    uint64_t budget = share - fixed;
    if (budget > dflt)
        budget = dflt;
    out->buffer_budget = budget;
    log_info("memory_budget",
             "memory limit %s (%s): request buffers %s per worker (%s available to each of "
             "%u worker(s); the most without a limit is %s)",
             fmt_bytes(limit, a, sizeof(a)), from, fmt_bytes(budget, b, sizeof(b)),
             fmt_bytes(share - fixed, c, sizeof(c)), cfg->workers, fmt_bytes(dflt, d, sizeof(d)));
    return 0;
}

int worker_run(const cfg_t *cfg, const worker_plan_t *plan, const tg_bot_t *bot, bot_app_t *app,
               unsigned index, const sigset_t *sigs)
{
    worker_t w;
    memset(&w, 0, sizeof(w));
    w.cfg = cfg;
    w.plan = plan;
    w.lfd = -1;
    w.sigfd = -1;
    w.supervised = cfg->workers > 1;
    met_select(index);

    int status = 1;
    if (start(&w, bot, app, index, sigs) == 0) {
        int r = rx_run(&w.loop);
        if (r < 0)
            log_error("ring_failed", "io_uring_enter: %s", strerror(-r));
        else
            status = w.forced != 0 ? 128 + w.forced : 0;
    }
    teardown(&w);
    if (status != 1)
        log_info("exit", "worker %u done (exit status %d)", index, status);
    return status;
}

int worker_healthcheck(const cfg_t *cfg)
{
    struct sockaddr_storage a = cfg->listen_addr;
    if (a.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&a;
        if (in->sin_addr.s_addr == htonl(INADDR_ANY))
            in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (a.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
            in6->sin6_addr = in6addr_loopback;
    }
    int fd = socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 1;
    struct pollfd p = {fd, POLLOUT, 0};
    if (connect(fd, (struct sockaddr *)&a, cfg->listen_addr_len) != 0 && errno != EINPROGRESS)
        goto fail;
    if (poll(&p, 1, 2000) != 1)
        goto fail;
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0)
        goto fail;
    static const char req[] = "GET /health/ready HTTP/1.1\r\nHost: localhost\r\n"
                              "Connection: close\r\n\r\n";
    if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1))
        goto fail;
    char buf[64];
    size_t got = 0;
    p.events = POLLIN;
    while (got < 12) {
        if (poll(&p, 1, 2000) != 1)
            goto fail;
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            goto fail;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    if (strncmp(buf, "HTTP/1.1 200", 12) == 0)
        return 0;
    fprintf(stderr, "tgring: healthcheck: not ready\n");
    return 1;
fail:
    fprintf(stderr, "tgring: healthcheck: cannot reach %s\n", cfg->listen);
    close(fd);
    return 1;
}
