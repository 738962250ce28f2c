/* SPDX-License-Identifier: MIT */
/*
 * db_private.h - what the parts of the db module share; not part of its
 * interface. conn.c owns the connections (opt.connections of them, each its
 * own server backend) and their pipelines: per connection a FIFO of items,
 * each a few statements closed by its own sync, so that each is its own
 * transaction and an error in one aborts nothing past its sync. The users of
 * the connections are "parts" (db_part_t, an ops table in a registered list):
 * txn.c makes one per db_client_t, inbox.c one for the group commit; each
 * makes its own items and chooses the connection each goes on, and conn.c
 * knows none of them by name. db.c wires them together; migrate.c is the
 * blocking migration runner.
 */
#ifndef TGRING_DB_PRIVATE_H
#define TGRING_DB_PRIVATE_H

#include "core.h"
#include "db.h"

#include <libpq-fe.h>
#include <stddef.h>

/* Bytes for a flattened libpq message in a log line. */
#define DB_MSG_MAX 512

/*
 * Inbox transactions in flight on a connection. With several connections,
 * one each: a second one would wait behind the first in the same backend
 * instead of committing beside it on another, and what waits for an idle
 * connection joins a larger batch meanwhile (two each, tried at capacity:
 * batches of 19 instead of 30 and no higher rate, bench/RESULTS.md). A lone
 * connection keeps two, so that the next batch is already at the server when
 * the first one commits.
 */
#define DB_INFLIGHT_ONE 2

/*
 * The inbox's transactions in flight, over all connections (the rule is in
 * db.h): DB_INBOX_SLOTS_MIN (or fewer connections) as a rule, up to one per
 * connection while commits take DB_COMMIT_SLOW_NS or longer (the moving
 * average of the last ones, or the oldest in flight so far) and updates wait
 * for a slot; one fewer at a commit once commits are under half of that or no
 * update waited for a slot for DB_SLOTS_IDLE_NS.
 */
#define DB_INBOX_SLOTS_MIN 2
#define DB_COMMIT_SLOW_NS 1000000ull
#define DB_SLOTS_IDLE_NS 1000000000ull

/*
 * Connection keywords for PQconnect*Params with expand_dbname = 1: the
 * conninfo (a URI or key=value string) goes in as "dbname" and is expanded;
 * the entries before it are defaults that the conninfo may override.
 * OUT: keys and vals, each of DB_CONN_PARAMS entries (NULL-terminated).
 */
#define DB_CONN_PARAMS 4
void db_conn_params(const char *conninfo, const char *keys[DB_CONN_PARAMS],
                    const char *vals[DB_CONN_PARAMS]);

/*
 * Copies a libpq message (multi-line, ends in a newline) into out[0..cap) as
 * one line: runs of whitespace become one space, ends trimmed. Returns out.
 */
const char *db_flatten(const char *msg, char *out, size_t cap);

/* ---- pipeline items ---- */

typedef struct db_item db_item_t;
typedef struct db_conn db_conn_t;

/*
 * What an item does at each step; conn.c calls these, the item's module
 * implements them. `c` is the connection the item was pushed on.
 */
typedef struct db_item_ops {
    /*
     * Sends the item's statements (not the sync) on c->pg. Returns how many,
     * or -1 when libpq refused one (the connection broke).
     */
    int (*send)(db_conn_t *c, db_item_t *it);
    /*
     * One result of statement it->pos; it->pos == the number sent means an
     * error at the commit. Errors that end the connection never get here.
     * Returns true when it keeps `r` (and PQclear()s it later).
     */
    bool (*result)(db_conn_t *c, db_item_t *it, PGresult *r);
    /* Its sync arrived: the transaction is over. It is out of the pipeline already. */
    void (*done)(db_conn_t *c, db_item_t *it);
    /*
     * The connection was lost before its sync arrived (called newest item
     * first): queue it again or drop it. Must not send anything.
     */
    void (*lost)(db_conn_t *c, db_item_t *it);
} db_item_ops_t;

/* One transaction in the pipeline; embedded in what its module keeps for it. */
struct db_item {
    const db_item_ops_t *ops;
    core_qlink_t link; /* in its connection's pipeline */
    unsigned nstmt;    /* statements sent */
    unsigned pos;      /* statement whose results are read now; nstmt = the sync */
    bool got;          /* a result for `pos` arrived; the NULL that ends it is next */
    bool err;          /* an error result arrived: later statements were skipped */
    uint64_t sent_ms;  /* loop time it was sent, ms */
};

/* The item a pipeline link belongs to, or NULL: walk c->pipe from its head with it. */
static inline db_item_t *db_pipe_item(core_qlink_t *l)
{
    return l != NULL ? container_of(l, db_item_t, link) : NULL;
}

/* One user of the connections: the inbox, or a transaction client. */
typedef struct db_part db_part_t;

typedef struct db_part_ops {
    /*
     * Pushes queued work on ready connections while its caps allow (a
     * connection that breaks meanwhile has given its part back). The caller
     * flushes.
     */
    void (*send)(db_part_t *p);
    /* Answers what waited past its deadline, queued or in flight, with -ETIMEDOUT. */
    void (*expire)(db_part_t *p, uint64_t now);
    /*
     * db_free(): answers everything queued with -ECANCELED (the pipelines
     * were given back to the queues first) and frees the part.
     */
    void (*cancel)(db_part_t *p);
} db_part_ops_t;

struct db_part {
    const db_part_ops_t *ops;
    db_t *db;
    const db_stmt_t *stmts; /* prepared on every (re)connection */
    unsigned nstmts;
    unsigned count;      /* callbacks owed: queued and in flight */
    uint64_t timeout_ms; /* its longest deadline, ms: sets how long a silent connection may be */
    db_part_t *next;     /* registration order */
};

/*
 * Registers p (its fields set): its statements are prepared on the
 * connections that are up (with a prepare item) and on every later setup.
 */
void db_part_add(db_t *db, db_part_t *p);

/* ---- the connections (conn.c) ---- */

typedef enum db_state {
    DB_DOWN,        /* no connection; its timer runs to the next attempt */
    DB_CONNECTING,  /* PQconnectPoll in progress */
    DB_SETUP,       /* in pipeline mode; schema check and prepares sent */
    DB_WAIT_SCHEMA, /* connected, schema not migrated; its timer runs to the next check */
    DB_READY,       /* taking transactions */
    DB_CLOSED,      /* db_free() was called */
} db_state_t;

/* A one-shot poll on libpq's socket. */
typedef struct db_poll {
    rx_op_t op;
    db_conn_t *c;
    uint32_t epoch; /* session it was armed for; an older one's completion is ignored */
    short want;     /* events to poll once the previous session's poll has completed */
} db_poll_t;

/*
 * One connection: a libpq session (replaced on every reconnect), its poll
 * ops, its pipeline and its own reconnect schedule. The db_t holds an array
 * of these; each fails, reconnects and passes its setup on its own.
 */
struct db_conn {
    db_t *db;
    unsigned idx; /* position in db->conns; log lines count from 1 */
    PGconn *pg;   /* NULL while DB_DOWN or DB_CLOSED */
    db_state_t state;
    uint32_t epoch;      /* bumped when a session is closed */
    db_poll_t rd;        /* POLLIN, always armed while connected (POLLOUT while connecting) */
    db_poll_t wr;        /* POLLOUT while libpq has output it could not write */
    rx_timer_t timer;    /* reconnect backoff, connect and setup deadline, schema retry */
    unsigned backoff_ms; /* delay before the next connection attempt */

    core_queue_t pipe; /* the pipeline: items sent, oldest first (db_item_t.link) */
    unsigned depth;    /* items in it: the parts send where it is shortest (db_conn_pick) */

    /* The setup item: schema check, then (when needed) the prepares, then a sync. */
    db_item_t setup;
    bool setup_prepare; /* the prepares were sent in this setup */
    bool prepared;      /* every statement is prepared on this session */
    uint32_t prep_gen;  /* db->stmt_gen when the setup's prepares were sent */
    bool schema_ok;     /* the check found every compiled-in migration */
    int schema_version; /* newest applied, 0 = none or unknown */
    bool was_connected; /* a session was up since the last loss: next loss counts */
};

/* Why an inbox transaction failed, which decides what happens to its updates. */
typedef enum db_fail {
    DB_FAIL_NONE,
    DB_FAIL_ROW,       /* the row at fail_idx was refused for its content: -EBADMSG */
    DB_FAIL_ROW_RETRY, /* the row at fail_idx failed for a passing reason: it is retried */
    DB_FAIL_TXN,       /* the transaction failed as a whole (commit): all are retried */
    DB_FAIL_ISOLATE,   /* a multi-row insert was refused for a row: sent again row by row */
} db_fail_t;

/* One inbox transaction. The arrays are allocated once, max_batch long. */
typedef struct db_batch {
    db_item_t item;
    uint32_t id;       /* nonzero while in flight */
    unsigned n;        /* updates in it */
    bool many;         /* one multi-row insert; else one insert per update */
    db_fail_t fail;    /* first failure seen */
    unsigned fail_idx; /* its statement (its update) for DB_FAIL_ROW and DB_FAIL_ROW_RETRY */
    db_update_t **u;   /* [max_batch]; NULL once that update had its callback */
    uint8_t *out;      /* [max_batch] per-update outcome, inbox.c's DB_OUT_* */
    uint64_t sent_ns;  /* core_mono_ns() when it was sent: tgring_db_commit_seconds */
} db_batch_t;

/* The inbox's state (inbox.c). */
typedef struct db_inbox {
    db_part_t part;
    core_queue_t pending; /* db_update_t.link, oldest first; not sent or to be sent again */
    db_batch_t *batch;    /* [nbatch] transactions; id 0 = free slot */
    unsigned nbatch;      /* as many as all connections may have in flight */
    unsigned nflight;     /* slots in flight, on all connections */
    unsigned per_conn;    /* transactions in flight per connection at most */
    unsigned slots;       /* transactions in flight now allowed, over all connections */
    unsigned slots_min;   /* ... as a rule */
    uint64_t commit_ns;   /* moving average (1/8) of a commit's latency */
    uint64_t waited_ns;   /* core_mono_ns() when an update last waited for a slot */
    unsigned next_conn;   /* where db_conn_pick() starts among equals: round robin */
    uint32_t next_id;     /* batch ids, never 0 */
    unsigned *flight;     /* [connections] transactions in flight on each */
    uint64_t *done;       /* [connections] transactions answered on each: how the load spreads */
    unsigned isolate;     /* updates at the front of pending to send one insert each */
    db_array_t arr[5];    /* the multi-row insert's array parameters */
} db_inbox_t;

struct db {
    rx_loop_t *loop;
    db_options_t opt;      /* connections: 1..DB_CONNECTIONS_MAX, the length of conns */
    char *conninfo;        /* owned copy */
    db_conn_t *conns;      /* [opt.connections] */
    bool closed;           /* db_free() was called */
    rx_timer_t tick;       /* deadlines and stall detection, while anything is pending */
    rx_defer_t send_defer; /* sends what is queued at the end of the turn */
    rx_defer_t idle_defer; /* runs on_idle after db_drain() */
    uint64_t stall_ms;     /* a transaction unanswered this long breaks its connection */
    int need_version;      /* newest migration compiled in */
    db_part_t *parts;      /* every user of the connections, registration order */
    uint32_t stmt_gen;     /* bumped when a part registers statements */
    bool schema_logged;    /* "not migrated" was said since a connection was last ready */

    db_inbox_t *in; /* the group commit behind db_store() (inbox.c) */
    void (*batch_hook)(void *arg, int64_t low_id); /* db_set_batch_hook() */
    void *batch_arg;
    db_conn_t *behind; /* while batch_hook runs: the connection of the batch just sent */

    bool draining;
    void (*on_idle)(void *arg);
    void *idle_arg;

    uint64_t warn_ms;      /* loop time of the last rate-limited warning */
    unsigned warn_skipped; /* warnings suppressed since then */
};

/*
 * The ready connection, among those `ok` accepts (NULL: any), with the
 * fewest items in its pipeline; of those the first from *next on, which then
 * moves past it (round robin). NULL when none. A transaction sent where the
 * pipeline is shortest waits behind the fewest others in its backend: an
 * inbox batch is not held up by a long processor commit while another
 * backend is idle, nor the reverse.
 */
db_conn_t *db_conn_pick(db_t *db, unsigned *next, bool (*ok)(const db_conn_t *c, void *arg),
                        void *arg);

/*
 * Appends `it` to c's pipeline: its statements, then a sync. Only while
 * DB_READY (or for the setup item). Returns false when the connection broke
 * meanwhile: db_lost() has run, it->ops->lost included.
 */
bool db_item_push(db_conn_t *c, db_item_t *it);

/* Something was queued: sends it at the end of the turn and keeps the deadline tick running. */
void db_kick(db_t *db);

/*
 * Sends what every part has queued on the connections that can take it,
 * now; the end-of-turn callback calls it.
 */
void db_send_queued(db_t *db);

/*
 * Closes a broken connection, gives the items in its pipeline back to their
 * parts and schedules its reconnect; what they queue again goes out at the
 * end of the turn on another connection that is ready, if there is one.
 */
void db_lost(db_conn_t *c, const char *why);

/* Schedules on_idle when db_drain() was called and nothing is owed any more. */
void db_check_idle(db_t *db);

/* Warnings that could repeat in a tight loop: at most one per second, the rest counted. */
void db_warn_limited(db_t *db, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The severity and primary message of a result's error, without DETAIL: for
 * a refused row that holds the row's values, i.e. the user's message text,
 * which has no place in logs.
 */
const char *db_result_msg(const PGresult *r, char *buf, size_t cap);

/* True for an SQLSTATE that blames the row's content: retrying the same row cannot help. */
bool db_is_row_error(const char *state);

/*
 * Moves the links of q that have waited timeout_ms or longer by `now` to the
 * end of `out`, in order; since(l) is when l's wait began (loop ms).
 */
void db_take_expired(core_queue_t *q, core_queue_t *out, uint64_t now, uint64_t timeout_ms,
                     uint64_t (*since)(const core_qlink_t *l));

/* ---- wiring (conn.c, called by db.c) ---- */

/* Allocates the db and its connections (not connecting yet). */
db_t *db_conns_new(rx_loop_t *loop, const db_options_t *opt);

/* Starts connecting every connection. */
void db_conns_start(db_t *db);

/*
 * Closes every connection, gives back what their pipelines held, lets every
 * part cancel what it owes and free itself, and frees the db (or leaves the
 * rest to the loop's next turn, see db_free()).
 */
void db_conns_free(db_t *db);

/* The inbox (inbox.c): registers itself as a part of db. */
db_inbox_t *db_inbox_new(db_t *db);

#endif
