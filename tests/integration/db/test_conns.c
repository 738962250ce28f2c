/* SPDX-License-Identifier: MIT */
/*
 * test_conns.c - the db module with several connections, against a real
 * PostgreSQL 15 (the throwaway cluster of pg_harness.c): updates arriving
 * over many turns spread over 2, 3 and 4 connections and stored once each,
 * in fewer transactions than updates, with batches in flight on different
 * backends at once; what waits while every connection is busy joins one
 * batch; a connection that loses its backend (pg_terminate_backend) or its
 * answer has its batch, or an ordered client's transactions, sent again on another and
 * nothing is lost or stored twice; readiness and the connected gauge while
 * one connection is down; deadlines, db_drain() and db_free() with batches
 * on several connections; the bounds of the option.
 *
 * It includes the module's private header to see which connection holds
 * what and to drop one at a chosen moment. Skips (exit 77) only when the
 * PostgreSQL binaries are not installed.
 */
#include "../../../src/db/db_private.h"
#include "log.h"
#include "met.h"
#include "pg_harness.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- updates ---- */

/* Stores a new update; one that db_store() refuses is marked done (no callback is owed). */
static int store_id(db_t *db, int64_t id)
{
    tu_t *t = mk(id);
    int r = store(db, t);
    if (r != 0)
        t->done = true;
    return r;
}

/* Stores ids [first, first + n) in this turn. */
static void store_n(db_t *db, int64_t first, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        store_id(db, first + i);
}

/* ---- databases and connections ---- */


static db_t *new_db(unsigned connections, unsigned queue_max, unsigned ack_ms)
{
    db_options_t o = {
        .conninfo = conninfo,
        .connections = connections,
        .queue_max = queue_max,
        .ack_timeout_ms = ack_ms,
        .max_batch = 512,
    };
    harness_db = db_new(&loop, &o);
    if (!run_until(all_ready, 5000))
        tap_bail("not every connection became ready");
    return harness_db;
}

static void free_db(db_t *db)
{
    db_free(db);
    run_for(20);
}

/* Connections with an inbox transaction in flight now. */
static unsigned busy_conns(const db_t *db)
{
    unsigned n = 0;
    for (unsigned i = 0; i < db->opt.connections; i++)
        n += db->in->flight[i] > 0;
    return n;
}

/* The inbox batch at the head of c's pipeline, or NULL. */
static db_batch_t *head_batch(db_t *db, db_conn_t *c)
{
    db_item_t *it = db_pipe_item(c->pipe.head);
    if (it == NULL || it->ops != db->in->batch[0].item.ops)
        return NULL;
    return container_of(it, db_batch_t, item);
}

/* Whether c's first batch holds exactly the updates ups[from, from + n). */
static bool batch_holds(db_t *db, db_conn_t *c, unsigned from, unsigned n)
{
    db_batch_t *b = head_batch(db, c);
    if (b == NULL || b->n != n)
        return false;
    for (unsigned i = 0; i < n; i++)
        if (b->u[i] != &ups[from + i].u)
            return false;
    return true;
}

/* Backends of ours whose insert waits for a lock now. */
static long long inserts_waiting(void)
{
    return q("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
             "query LIKE 'INSERT INTO updates%%'");
}

/* ---- the tests ---- */

/* Arrivals over many turns: a timer stores a handful each millisecond. */
static db_t *spread_db;
static rx_timer_t spread_timer;
static unsigned spread_left, spread_per_turn, spread_refused, spread_peak;
static int64_t spread_id;

static void on_spread(rx_loop_t *l, rx_timer_t *t)
{
    unsigned busy = busy_conns(spread_db);
    spread_peak = busy > spread_peak ? busy : spread_peak;
    for (unsigned i = 0; i < spread_per_turn; i++)
        if (store_id(spread_db, spread_id++) != 0)
            spread_refused++;
    if (--spread_left > 0)
        rx_timer_start(l, t, 1, on_spread);
}

static unsigned spread_from, spread_to; /* the updates of this spread in ups[] */

static bool spread_over(void)
{
    unsigned busy = busy_conns(spread_db);
    spread_peak = busy > spread_peak ? busy : spread_peak;
    return spread_left == 0 && ndone_in(spread_from, spread_to) == spread_to - spread_from;
}

static void test_spread(unsigned n, int64_t first)
{
    enum { TURNS = 150, PER_TURN = 20, TOTAL = TURNS * PER_TURN };
    met_slot_t *m = met_self();
    db_t *db = new_db(n, 10000, 10000);
    uint64_t batches0 = m->db_batch_size.count;
    unsigned from = nups;

    int pids[DB_CONNECTIONS_MAX];
    bool distinct = true;
    for (unsigned i = 0; i < n; i++) {
        pids[i] = PQbackendPID(db->conns[i].pg);
        for (unsigned k = 0; k < i; k++)
            distinct = distinct && pids[k] != pids[i];
    }
    tap_ok(distinct && q("SELECT count(*) FROM pg_stat_activity WHERE pid IN (%d, %d, %d, %d)",
                         pids[0], pids[1], n > 2 ? pids[2] : 0, n > 3 ? pids[3] : 0) == n,
           "%u connections: %u distinct server backends", n, n);

    spread_db = db;
    spread_left = TURNS;
    spread_per_turn = PER_TURN;
    spread_refused = 0;
    spread_peak = 0;
    spread_id = first;
    spread_from = from;
    spread_to = from + TOTAL;
    rx_timer_start(&loop, &spread_timer, 0, on_spread);
    bool all = run_until(spread_over, 30000);
    tap_ok(all && spread_refused == 0 && nups - from == TOTAL,
           "%u connections: %d updates arriving over %d turns all answered", n, TOTAL, TURNS);
    tap_ok(count_status(from, nups, DB_STORED) == TOTAL, "%u connections: all stored (%u)", n,
           count_status(from, nups, DB_STORED));
    tap_ok(q("SELECT count(*) FROM updates WHERE update_id >= %lld AND update_id < %lld",
             (long long)first, (long long)first + TOTAL) == TOTAL,
           "%u connections: %d rows in the table, one per update", n, TOTAL);
    uint64_t batches = m->db_batch_size.count - batches0;
    tap_diag("%u connections: %llu transactions, %.1f updates each on average; at most %u "
             "in flight at once",
             n, (unsigned long long)batches, (double)TOTAL / (double)(batches ? batches : 1),
             spread_peak);
    tap_ok(batches > 0 && batches <= TURNS,
           "%u connections: in fewer transactions than updates, at most one per turn", n);
    unsigned used = 0;
    uint64_t sum = 0;
    char spread[128];
    size_t o = 0;
    for (unsigned i = 0; i < n; i++) {
        used += db->in->done[i] > 0;
        sum += db->in->done[i];
        o += (size_t)snprintf(spread + o, sizeof(spread) - o, "%s%llu", i ? ", " : "",
                              (unsigned long long)db->in->done[i]);
    }
    tap_ok(used == n && sum == batches, "%u connections: every one committed batches (%s)", n,
           spread);
    /*
     * How many were in flight at once depends on how fast this machine
     * commits (a quiet one finishes each batch within its turn), so it is only
     * reported above; test_side_by_side shows the overlap deterministically.
     */
    free_db(db);
}

/*
 * With inserts held by a lock, each connection takes one batch and the next
 * arrivals wait: every backend executes an insert at the same time, and what
 * arrived while all were busy goes in one transaction. Two batches are in
 * flight as a rule; the third connection gets one because the first two have
 * been out for more than a millisecond (include/db.h).
 */
static void test_side_by_side(void)
{
    met_slot_t *m = met_self();
    db_t *db = new_db(3, 1000, 10000);
    tap_ok(db->in->slots == 2 && m->db_inbox_slots == 2,
           "3 connections, two group commits allowed in flight at first");
    PGconn *locker = lock_table("updates");
    uint64_t batches0 = m->db_batch_size.count;
    unsigned from = nups;

    for (int turn = 0; turn < 5; turn++) {
        store_n(db, 200000 + 10 * turn, 5);
        run_for(30);
    }
    tap_ok(db->in->slots == 3 && m->db_inbox_slots == 3,
           "the commits stalled and updates waited: a third allowed");
    tap_ok(busy_conns(db) == 3 && db->in->nflight == 3,
           "3 connections, inserts locked out: one batch in flight on each");
    tap_ok(batch_holds(db, &db->conns[0], from, 5) && batch_holds(db, &db->conns[1], from + 5, 5) &&
               batch_holds(db, &db->conns[2], from + 10, 5),
           "the batches of the first three turns, one per connection in turn");
    tap_ok(db_pending(db) == 25 && db->in->pending.head == &ups[from + 15].u.link,
           "the updates of the next two turns wait for an idle connection");
    long long waiting = inserts_waiting();
    tap_ok(waiting == 3, "the server has three inserts waiting for the lock at once (%lld)",
           waiting);
    unlock_table(locker);
    tap_ok(wait_range(from, nups, 10000) && count_status(from, nups, DB_STORED) == 25,
           "all 25 stored once the lock is gone");
    uint64_t batches = m->db_batch_size.count - batches0;
    tap_ok(batches == 4, "in 4 transactions: the 10 that waited went together (%llu)",
           (unsigned long long)batches);
    free_db(db);
}

/*
 * The backend of a connection with a batch in flight is terminated: the
 * batch goes out again at once on an idle connection, the db stays ready,
 * and the connection comes back by itself.
 */
static void test_terminated(void)
{
    met_slot_t *m = met_self();
    db_t *db = new_db(3, 1000, 10000);
    uint64_t reconnects0 = m->db_reconnects;
    PGconn *locker = lock_table("updates");
    unsigned from = nups;

    store_n(db, 300000, 5);
    run_for(30);
    store_n(db, 300010, 5);
    run_for(30);
    db_conn_t *a = &db->conns[0], *b = &db->conns[1], *c = &db->conns[2];
    tap_ok(batch_holds(db, a, from, 5) && batch_holds(db, b, from + 5, 5) && db->in->flight[c->idx] == 0,
           "batches in flight on connections 1 and 2, connection 3 idle");
    int pid = PQbackendPID(a->pg);
    tap_ok(q("SELECT pg_terminate_backend(%d)::int", pid) == 1,
           "connection 1's backend terminated (pid %d)", pid);
    bool moved = false;
    for (int i = 0; i < 500 && !moved; i++) {
        run_for(2);
        moved = a->state != DB_READY && batch_holds(db, c, from, 5);
    }
    tap_ok(moved, "its batch is in flight again on connection 3, before 1 has reconnected");
    tap_ok(db_ready(db) && m->db_connected == 1, "the db stays ready, db_connected stays 1");
    unsigned mid = nups;
    tap_ok(store_id(db, 300020) == 0, "and takes updates meanwhile");
    unlock_table(locker);
    bool answered = wait_range(from, nups, 10000);
    unsigned stored = count_status(from, nups, DB_STORED);
    tap_ok(answered && stored == 11,
           "all 11 stored once the lock is gone: the moved batch, the other, the new one (%u)",
           stored);
    tap_ok(q("SELECT count(*) FROM updates WHERE update_id >= 300000 AND update_id < 300030") == 11,
           "11 rows in the table, none twice");
    tap_ok(ups[mid].done && ups[mid].status == DB_STORED, "the update stored meanwhile too");
    tap_ok(run_until(all_ready, 5000), "connection 1 is back by itself");
    tap_ok(m->db_reconnects - reconnects0 == 1, "db_reconnects counted the loss (%llu)",
           (unsigned long long)(m->db_reconnects - reconnects0));
    free_db(db);
}

/*
 * The connection is lost after the server committed its batch and before
 * the answer was read: sent again on another connection, the updates are
 * found stored (DB_DUPLICATE, which is a commit) and are in the table once.
 */
static void test_lost_answer(void)
{
    db_t *db = new_db(2, 1000, 10000);
    unsigned from = nups;

    store_n(db, 400000, 5);
    db_send_queued(db);
    db_conn_t *x = NULL;
    for (unsigned i = 0; i < 2; i++)
        if (batch_holds(db, &db->conns[i], from, 5))
            x = &db->conns[i];
    tap_ok(x != NULL, "a batch of 5 in flight on one connection");
    if (x == NULL)
        tap_bail("no batch in flight");
    db_conn_t *y = &db->conns[1 - x->idx];
    uint64_t x0 = db->in->done[x->idx], y0 = db->in->done[y->idx];
    usleep(300 * 1000);
    tap_ok(q("SELECT count(*) FROM updates WHERE update_id >= 400000 AND update_id < 400005") == 5,
           "the server committed it");
    db_lost(x, "dropped by the test");
    tap_ok(ndone_in(from, nups) == 0 && db_ready(db), "connection dropped, no answers yet");
    tap_ok(wait_range(from, nups, 5000) && count_status(from, nups, DB_DUPLICATE) == 5,
           "sent again, the 5 are found stored: DB_DUPLICATE");
    tap_ok(db->in->done[y->idx] == y0 + 1 && db->in->done[x->idx] == x0,
           "by the other connection, before the dropped one was back");
    tap_ok(q("SELECT count(*) FROM updates WHERE update_id >= 400000 AND update_id < 400005") == 5,
           "and they are in the table once");
    run_until(all_ready, 5000);
    free_db(db);
}

/* ---- an ordered client on several connections ---- */

static unsigned owed;

/* A lease on rows of a small table, claimed under a token, and a counter: two idempotent statements. */
static const uint32_t lane_types[2] = {DB_OID_INT8, DB_OID_INT8};
static const db_stmt_t lane_stmts[] = {
    {"test_lane_claim",
     "WITH c AS (UPDATE lane SET token = $2 WHERE id IN (SELECT id FROM lane WHERE token IS "
     "NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id) SELECT id FROM c ORDER BY id",
     2, lane_types},
    {"test_lane_reclaim",
     "WITH c AS (UPDATE lane SET token = $2 WHERE id IN (SELECT id FROM lane WHERE token IS "
     "NULL OR token = $2 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id) "
     "SELECT id FROM c ORDER BY id",
     2, lane_types},
    {"test_lane_bump", "UPDATE lane SET n = n + 1 WHERE id = $1 AND token IS NOT NULL AND n = 0",
     1, lane_types},
};

typedef struct lane_res {
    unsigned calls;
    int err;
    unsigned n;
    int64_t ids[8];
} lane_res_t;

static void on_lane(void *arg, int err, const db_result_t *const *res, unsigned n)
{
    lane_res_t *l = arg;
    l->calls++;
    l->err = err;
    l->n = 0;
    for (unsigned i = 0; err == 0 && i < db_res_rows(res[0]) && i < 8; i++)
        db_res_int(res[0], i, 0, &l->ids[l->n++]);
    owed--;
}

static int lane_claim(db_client_t *cl, lane_res_t *l, int64_t max, int64_t token)
{
    db_query_t qy = {.stmt = "test_lane_claim", .again = "test_lane_reclaim", .nparams = 2};
    qy.params[0] = db_param_int8(max);
    qy.params[1] = db_param_int8(token);
    memset(l, 0, sizeof(*l));
    owed++;
    return db_txn_submit(cl, &qy, 1, on_lane, l);
}

static int lane_bump(db_client_t *cl, lane_res_t *l, int64_t id)
{
    db_query_t qy = {.stmt = "test_lane_bump", .nparams = 1};
    qy.params[0] = db_param_int8(id);
    memset(l, 0, sizeof(*l));
    owed++;
    return db_txn_submit(cl, &qy, 1, on_lane, l);
}

static bool nothing_owed(void) { return owed == 0; }

/*
 * The ordered client's connection is dropped after the server ran a claim
 * and a bump: both go out again on the other connection at once, the claim
 * (as its `again` statement) gets the rows its first attempt leased and the
 * bump counts once.
 */
static void test_lane_moves(void)
{
    db_t *db = new_db(2, 1000, 10000);
    db_client_options_t co = {.name = "lane", .stmts = lane_stmts, .nstmts = 3, .ordered = true};
    lane_res_t first, c, bumped;

    q("DROP TABLE IF EXISTS lane");
    q("CREATE TABLE lane (id bigint PRIMARY KEY, token bigint, n int NOT NULL DEFAULT 0)");
    q("INSERT INTO lane (id) SELECT generate_series(1, 3)");
    /* Registered while both connections are ready: prepared on each by a prepare item. */
    db_client_t *cl = db_client_new(db, &co);
    lane_claim(cl, &first, 1, 100);
    tap_ok(run_until(nothing_owed, 3000) && first.err == 0 && first.n == 1 && first.ids[0] == 1,
           "row 1 claimed");
    /*
     * The client's statements were prepared on each connection by an item of
     * its own; the other connection's may still be in its pipeline. Wait for
     * it, so that what is counted below is only the claim and the bump.
     */
    harness_db = db;
    tap_ok(run_until(pipes_empty, 3000), "the prepares are done on both connections");

    lane_claim(cl, &c, 2, 200);
    lane_bump(cl, &bumped, 1);
    db_send_queued(db);
    db_conn_t *x = NULL;
    for (unsigned i = 0; i < 2; i++)
        if (client_items(db, &db->conns[i]) == 2)
            x = &db->conns[i];
    tap_ok(x != NULL && client_items(db, &db->conns[0]) + client_items(db, &db->conns[1]) == 2,
           "claim and bump in flight on one connection");
    if (x == NULL)
        tap_bail("no client connection");
    usleep(300 * 1000);
    tap_ok(q("SELECT count(*) FROM lane WHERE token = 200 AND id IN (2, 3)") == 2 &&
               q("SELECT n FROM lane WHERE id = 1") == 1,
           "the server ran both");
    db_lost(x, "dropped by the test");
    tap_ok(client_items(db, x) == 0 && db_client_pending(cl) == 2 && c.calls == 0 &&
               bumped.calls == 0,
           "connection dropped: both back in the queue, unanswered");
    db_send_queued(db);
    tap_ok(client_items(db, &db->conns[1 - x->idx]) == 2, "sent again at once on the other connection");
    tap_ok(run_until(nothing_owed, 5000) && c.err == 0 && c.n == 2 && c.ids[0] == 2 &&
               c.ids[1] == 3,
           "the claim returns the rows its first attempt leased");
    tap_ok(bumped.err == 0 && q("SELECT n FROM lane WHERE id = 1") == 1,
           "and the bump did not count twice");
    run_until(all_ready, 5000);
    free_db(db);
}

/* ---- deadlines, drain and free with batches on several connections ---- */

static bool idle_flag;
static void on_idle(void *arg) { *(bool *)arg = true; }
static bool idle_seen(void) { return idle_flag; }

static void test_deadlines(void)
{
    db_t *db = new_db(2, 1000, 300);
    PGconn *locker = lock_table("updates");
    unsigned from = nups;

    for (int turn = 0; turn < 3; turn++) {
        store_n(db, 500000 + 10 * turn, 4);
        run_for(20);
    }
    tap_ok(busy_conns(db) == 2 && !core_queue_empty(&db->in->pending),
           "ack timeout 300 ms: batches in flight on both connections, more waiting");
    tap_ok(wait_range(from, nups, 2000) && count_status(from, nups, -ETIMEDOUT) == 12 &&
               db_pending(db) == 0,
           "all 12 answered -ETIMEDOUT, in flight or waiting");
    unlock_table(locker);
    run_for(200);
    tap_ok(db_ready(db) && store_id(db, 500100) == 0 && wait_range(nups - 1, nups, 3000) &&
               ups[nups - 1].status == DB_STORED,
           "the late results are ignored and the next update is stored");
    free_db(db);
}

static void test_drain_free(void)
{
    db_t *db = new_db(2, 1000, 10000);
    PGconn *locker = lock_table("updates");
    unsigned from = nups;

    store_n(db, 600000, 3);
    run_for(20);
    store_n(db, 600010, 3);
    run_for(20);
    store_n(db, 600020, 3);
    idle_flag = false;
    db_drain(db, on_idle, &idle_flag);
    tap_ok(store_id(db, 600100) == -EAGAIN && busy_conns(db) == 2,
           "after db_drain, with batches on both connections: db_store gives -EAGAIN");
    run_for(100);
    tap_ok(!idle_flag, "on_idle waits while they are in flight");
    unlock_table(locker);
    tap_ok(run_until(idle_seen, 5000) && count_status(from, from + 9, DB_STORED) == 9,
           "on_idle runs once all 9 are stored");
    free_db(db);

    db = new_db(2, 1000, 10000);
    locker = lock_table("updates");
    from = nups;
    store_n(db, 610000, 3);
    run_for(20);
    store_n(db, 610010, 3);
    run_for(20);
    store_n(db, 610020, 3);
    tap_ok(busy_conns(db) == 2 && db_pending(db) == 9, "batches on both connections, 3 waiting");
    db_free(db);
    tap_ok(count_status(from, from + 9, -ECANCELED) == 9,
           "db_free answers all 9 -ECANCELED, synchronously");
    run_for(20);
    unlock_table(locker);
}

static void test_options(void)
{
    db_options_t o = {.conninfo = conninfo};
    db_t *db = db_new(&loop, &o);
    tap_ok(db->opt.connections == 2, "connections 0 means the default, 2");
    db_free(db);
    run_for(20);

    o.connections = 99;
    db = harness_db = db_new(&loop, &o);
    tap_ok(db->opt.connections == DB_CONNECTIONS_MAX, "connections 99 is reduced to %d",
           DB_CONNECTIONS_MAX);
    tap_ok(run_until(all_ready, 10000), "and all %d become ready", DB_CONNECTIONS_MAX);
    free_db(db);

    db = new_db(2, 3, 10000);
    unsigned from = nups;
    int r[4];
    for (int i = 0; i < 4; i++)
        r[i] = store_id(db, 620000 + i);
    tap_ok(r[0] == 0 && r[1] == 0 && r[2] == 0 && r[3] == -EAGAIN,
           "queue_max 3 counts over both connections: the fourth gives -EAGAIN");
    tap_ok(wait_range(from, from + 3, 5000) && count_status(from, from + 3, DB_STORED) == 3,
           "the three accepted are stored");
    free_db(db);
}

int main(void)
{
    harness_start();
    if (db_migrate(conninfo) != (int)db_migrations_count)
        tap_bail("db_migrate");

    test_spread(2, 1000000);
    test_spread(3, 2000000);
    test_spread(4, 3000000);
    test_side_by_side();
    test_terminated();
    test_lost_answer();
    test_lane_moves();
    test_deadlines();
    test_drain_free();
    test_options();

    unsigned missing = 0;
    for (unsigned i = 0; i < nups; i++)
        missing += !ups[i].done;
    tap_ok(missing == 0 && twice == 0 && sync_cb == 0 && owed == 0,
           "every accepted call had exactly one callback, never from inside the call "
           "(%u missing, %u twice, %u synchronous)",
           missing, twice, sync_cb);
    tap_ok(loop.heap_len == 0, "no timer left armed");
    harness_end();
    return tap_done();
}
