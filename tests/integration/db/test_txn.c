/* SPDX-License-Identifier: MIT */
/*
 * test_txn.c - the generic transaction API of db.h through a client of its
 * own (not the inbox), against a real PostgreSQL 15 (the throwaway cluster
 * of pg_harness.c): a multi-statement transaction with text and binary
 * parameters and per-statement results; a refused statement that aborts its
 * own transaction only; a passing failure retried DB_TRIES_MAX times; a
 * transaction sent again (with its `again` statement) after its backend was
 * terminated; -ETIMEDOUT, -ECANCELED, -EAGAIN; an unordered client spread
 * over the connections; each transaction and inbox batch sent where the
 * pipeline is shortest; db_drain() waiting for a client; every callback
 * exactly once and never from inside the submit.
 *
 * It includes the module's private header to see the connections'
 * pipelines. Skips (exit 77) only when the PostgreSQL binaries are not
 * installed.
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

/* ---- the client's statements ---- */

static const uint32_t kv_types[2] = {DB_OID_INT8, DB_OID_TEXT};
static const db_stmt_t kv_stmts[] = {
    {"test_kv_put",
     "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", 2,
     kv_types},
    /* The same, marking the value: shows that a transaction sent again used it. */
    {"test_kv_put_again",
     "INSERT INTO kv (k, v) VALUES ($1, $2 || '+again') ON CONFLICT (k) DO UPDATE "
     "SET v = EXCLUDED.v",
     2, kv_types},
    {"test_kv_get", "SELECT k, v FROM kv WHERE k >= $1 AND k < $1 + 100 ORDER BY k", 1, kv_types},
    {"test_kv_passing", "SELECT kv_passing()", 0, NULL},
    {"test_upd_count", "SELECT count(*) FROM updates WHERE update_id >= $1", 1, kv_types},
};

/* ---- callbacks ---- */

static bool in_submit;   /* inside db_txn_submit(): a callback now would be synchronous */
static unsigned owed;    /* accepted transactions whose callback has not run */
static unsigned sync_cbs; /* callbacks from inside the submit */
static unsigned cb_twice; /* callbacks that ran twice for one transaction */

typedef struct res {
    unsigned calls;
    int err;
    unsigned n;
    bool present[4];     /* res[i] != NULL */
    uint64_t affected[4];
    unsigned rows[4];
    char text[4][64];    /* statement i, row 0, column 1 (or 0 when it has one) */
    int64_t k[4][4];     /* statement i, rows 0..3, column 0 */
    char state[4][8];    /* SQLSTATE of statement i, "" when it succeeded */
} res_t;

static void on_txn(void *arg, int err, const db_result_t *const *res, unsigned n)
{
    res_t *r = arg;
    if (in_submit)
        sync_cbs++;
    if (r->calls++ > 0)
        cb_twice++;
    owed--;
    r->err = err;
    r->n = n;
    for (unsigned i = 0; i < n && i < 4; i++) {
        const db_result_t *x = res[i];
        r->present[i] = x != NULL;
        if (x == NULL)
            continue;
        r->affected[i] = db_res_affected(x);
        r->rows[i] = db_res_rows(x);
        const char *s = db_res_sqlstate(x);
        snprintf(r->state[i], sizeof(r->state[i]), "%s", s != NULL ? s : "");
        unsigned col = db_res_cols(x) > 1 ? 1 : 0;
        snprintf(r->text[i], sizeof(r->text[i]), "%s", db_res_value(x, 0, col, NULL));
        for (unsigned row = 0; row < r->rows[i] && row < 4; row++)
            db_res_int(x, row, 0, &r->k[i][row]);
    }
}

static db_query_t put(int64_t k, const char *v)
{
    db_query_t q = {.stmt = "test_kv_put", .nparams = 2};
    q.params[0] = db_param_int8(k);
    q.params[1] = db_param_text(v, strlen(v));
    return q;
}

static db_query_t get(int64_t from, bool binary)
{
    db_query_t q = {.stmt = "test_kv_get", .nparams = 1, .binary = binary};
    q.params[0] = db_param_int8(from);
    return q;
}

static int submit(db_client_t *cl, res_t *r, const db_query_t *q, unsigned nq)
{
    memset(r, 0, sizeof(*r));
    in_submit = true;
    int rc = db_txn_submit(cl, q, nq, on_txn, r);
    in_submit = false;
    if (rc == 0)
        owed++;
    return rc;
}

static bool nothing_owed(void) { return owed == 0; }
static bool settle(unsigned ms) { return run_until(nothing_owed, ms); }

/* ---- databases ---- */


static db_client_t *new_client(db_t *db, unsigned timeout_ms, unsigned max_pending, bool ordered)
{
    db_client_options_t co = {
        .name = "test",
        .stmts = kv_stmts,
        .nstmts = 5,
        .timeout_ms = timeout_ms,
        .max_pending = max_pending,
        .ordered = ordered,
    };
    return db_client_new(db, &co);
}

static db_t *new_db(unsigned connections)
{
    db_options_t o = {.conninfo = conninfo, .connections = connections};
    harness_db = db_new(&loop, &o);
    return harness_db;
}

static void wait_ready(db_t *db)
{
    harness_db = db;
    if (!run_until(all_ready, 5000))
        tap_bail("not every connection became ready");
}

static void free_db(db_t *db)
{
    db_free(db);
    run_for(20);
}

/* ---- the tests ---- */

static void test_multi(db_client_t *cl)
{
    res_t r;
    db_query_t qs4[4] = {put(1, "one"), put(2, "two"), get(1, false), get(1, true)};

    q("TRUNCATE kv");
    tap_ok(submit(cl, &r, qs4, 4) == 0 && r.calls == 0,
           "a transaction of 4 statements accepted; no callback from inside the submit");
    tap_ok(settle(3000) && r.err == 0 && r.n == 4, "committed: err 0, 4 results (err %d, n %u)",
           r.err, r.n);
    tap_ok(r.affected[0] == 1 && r.affected[1] == 1 && r.state[0][0] == '\0',
           "each insert affected one row, no SQLSTATE");
    tap_ok(r.rows[2] == 2 && strcmp(r.text[2], "one") == 0 && r.k[2][0] == 1 && r.k[2][1] == 2,
           "the select sees the transaction's own rows (text results: %u rows, \"%s\")", r.rows[2],
           r.text[2]);
    tap_ok(r.rows[3] == 2 && r.k[3][0] == 1 && r.k[3][1] == 2 && strcmp(r.text[3], "one") == 0,
           "binary results: int8 keys decoded, text as is");
    tap_ok(q("SELECT count(*) FROM kv") == 2, "the rows are in the table");
}

/*
 * A refused statement in the middle of one transaction, pipelined before
 * another on the same connection: the first is rolled back as a whole, the
 * second commits.
 */
static void test_refused(db_client_t *cl)
{
    res_t a, b;
    db_query_t qa[3] = {put(10, "x"), put(13, "refused"), put(11, "y")};
    db_query_t qb[1] = {put(20, "z")};

    submit(cl, &a, qa, 3);
    submit(cl, &b, qb, 1);
    tap_ok(settle(3000), "both answered");
    tap_ok(a.err == -EBADMSG && a.n == 3 && a.present[0] && a.present[1] && !a.present[2],
           "the one with a refused statement: -EBADMSG, results up to the refused one (%d)",
           a.err);
    tap_ok(strcmp(a.state[1], "23514") == 0 && a.state[0][0] == '\0',
           "the refused statement carries its SQLSTATE (%s)", a.state[1]);
    tap_ok(q("SELECT count(*) FROM kv WHERE k IN (10, 11, 13)") == 0,
           "and nothing of it stayed");
    tap_ok(b.err == 0 && q("SELECT count(*) FROM kv WHERE k = 20") == 1,
           "the transaction behind it committed");
}

static void test_passing(db_client_t *cl)
{
    res_t r;
    db_query_t qp = {.stmt = "test_kv_passing"};

    q("SELECT setval('kv_tries', 1, false)");
    submit(cl, &r, &qp, 1);
    tap_ok(settle(5000) && r.err == -ECONNRESET && r.n == 0,
           "a statement failing for a passing reason (40001): -ECONNRESET (%d)", r.err);
    tap_ok(q("SELECT last_value FROM kv_tries") == DB_TRIES_MAX,
           "after %d attempts (%lld)", DB_TRIES_MAX, q("SELECT last_value FROM kv_tries"));
}

/*
 * The backend holding a transaction is terminated: it is sent again after
 * the reconnect, with its `again` statement, and answered once.
 */
static void test_resend(db_client_t *cl, db_t *db)
{
    res_t r;
    db_query_t qa = put(30, "v");
    qa.again = "test_kv_put_again";
    PGconn *locker = lock_table("kv");

    submit(cl, &r, &qa, 1);
    run_for(50);
    tap_ok(client_items(db, &db->conns[0]) == 1 && r.calls == 0,
           "the transaction waits for the lock in the pipeline");
    int pid = PQbackendPID(db->conns[0].pg);
    tap_ok(q("SELECT pg_terminate_backend(%d)::int", pid) == 1, "its backend terminated (pid %d)",
           pid);
    run_for(100);
    tap_ok(r.calls == 0, "no answer for it yet");
    unlock_table(locker);
    char v[64];
    tap_ok(settle(5000) && r.err == 0 && r.calls == 1, "after the reconnect: committed, once");
    qs(NULL, v, sizeof(v), "SELECT v FROM kv WHERE k = 30");
    tap_ok(strcmp(v, "v+again") == 0, "sent again with its `again` statement (%s)", v);
}

static void test_timeout_cancel(void)
{
    db_t *db = new_db(1);
    db_client_t *cl = new_client(db, 300, 2, true);
    res_t r[3], late;

    wait_ready(db);
    PGconn *locker = lock_table("kv");
    db_query_t qa = put(40, "late");
    tap_ok(submit(cl, &r[0], &qa, 1) == 0 && submit(cl, &r[1], &qa, 1) == 0 &&
               submit(cl, &r[2], &qa, 1) == -EAGAIN,
           "max_pending 2: the third submit gives -EAGAIN");
    tap_ok(settle(3000) && r[0].err == -ETIMEDOUT && r[1].err == -ETIMEDOUT,
           "timeout 300 ms: both -ETIMEDOUT while the lock holds");
    unlock_table(locker);
    run_for(200);
    tap_ok(r[0].calls == 1 && r[1].calls == 1, "the late results are dropped: one callback each");
    tap_ok(submit(cl, &late, &qa, 1) == 0 && settle(3000) && late.err == 0,
           "and the next transaction commits");

    locker = lock_table("kv");
    submit(cl, &r[0], &qa, 1);
    run_for(30);
    submit(cl, &r[1], &qa, 1);
    db_free(db);
    tap_ok(r[0].calls == 1 && r[0].err == -ECANCELED && r[1].calls == 1 &&
               r[1].err == -ECANCELED,
           "db_free answers the one in flight and the queued one -ECANCELED, synchronously");
    run_for(20);
    unlock_table(locker);

    db = new_db(1);
    cl = new_client(db, 0, 0, false);
    tap_ok(submit(cl, &r[0], &qa, 1) == -EAGAIN, "before a connection is ready: -EAGAIN");
    free_db(db);
}

static bool idle_flag;
static void on_idle(void *arg) { *(bool *)arg = true; }
static bool idle_seen(void) { return idle_flag; }

/* Not ordered: spread round robin over the connections; db_drain() waits for them. */
static void test_spread_drain(void)
{
    db_t *db = new_db(2);
    db_client_t *cl = new_client(db, 0, 0, false);
    res_t r[4];
    db_query_t qa = put(50, "s");

    wait_ready(db);
    PGconn *locker = lock_table("kv");
    for (int i = 0; i < 4; i++)
        submit(cl, &r[i], &qa, 1);
    run_for(50);
    tap_ok(client_items(db, &db->conns[0]) == 2 && client_items(db, &db->conns[1]) == 2,
           "4 transactions of an unordered client: 2 in flight on each connection");
    idle_flag = false;
    db_drain(db, on_idle, &idle_flag);
    res_t more;
    tap_ok(db_draining(db) && submit(cl, &more, &qa, 1) == 0,
           "draining: db_draining() is true, transactions are still taken");
    run_for(100);
    tap_ok(!idle_flag, "on_idle waits for the client's transactions");
    unlock_table(locker);
    tap_ok(run_until(idle_seen, 5000) && owed == 0, "and runs once all are answered");
    free_db(db);
}

static int stored_status = -1;
static bool stored_seen;
static void on_stored(db_update_t *u, int status)
{
    (void)u;
    stored_status = status;
    stored_seen = true;
}
static bool stored(void) { return stored_seen; }

/*
 * Each transaction goes to the connection whose pipeline is shortest: with
 * one transaction of an ordered client waiting for a lock on the first
 * connection, an update stored and an unordered client's transaction go to
 * the second, and the update commits while the first still waits (round
 * robin from the first connection would have queued both behind it).
 */
static void test_shortest_pipeline(void)
{
    static const char body[] = "{\"update_id\":600,\"poll\":{}}";
    /* The ordered client's statement under a name of its own (names are per db). */
    static const db_stmt_t ord_stmts[] = {{"test_ord_put", "INSERT INTO kv (k, v) VALUES ($1, $2)",
                                           2, kv_types}};
    db_t *db = new_db(2);
    db_client_options_t co = {.name = "ordered", .stmts = ord_stmts, .nstmts = 1,
                              .ordered = true};
    db_client_t *ord = db_client_new(db, &co);
    db_client_t *un = new_client(db, 0, 0, false);
    res_t a, b;
    db_query_t qa = put(60, "held"), qb = put(61, "beside");
    qa.stmt = "test_ord_put";
    db_update_t u = {.update_id = 600, .body = body, .body_len = sizeof(body) - 1,
                     .type = "poll", .type_len = 4, .cb = on_stored};

    wait_ready(db);
    PGconn *locker = lock_table("kv");
    submit(ord, &a, &qa, 1);
    run_for(50);
    db_conn_t *held = &db->conns[0], *other = &db->conns[1];
    tap_ok(client_items(db, held) == 1 && client_items(db, other) == 0 && a.calls == 0,
           "an ordered client's transaction waits for a lock on the first connection");
    stored_seen = false;
    tap_ok(db_store(db, &u) == 0, "an update is stored meanwhile");
    tap_ok(run_until(stored, 3000) && stored_status == DB_STORED && a.calls == 0,
           "it commits on the other connection while the first transaction still waits");
    submit(un, &b, &qb, 1);
    run_for(50);
    tap_ok(client_items(db, other) == 1 && client_items(db, held) == 1,
           "an unordered client's transaction goes to the other connection too");
    unlock_table(locker);
    tap_ok(settle(5000) && a.err == 0 && b.err == 0 && q("SELECT count(*) FROM kv "
                                                         "WHERE k IN (60, 61)") == 2,
           "both commit once the lock is gone");
    free_db(db);
}

/* ---- a transaction behind the inbox's batch ---- */

static db_client_t *behind_cl;
static res_t behind_res;
static unsigned hooks;
static int64_t hook_low;
static int hook_conn = -1;  /* the batch's connection */
static int behind_rc = -1;
static int behind_conn = -1; /* the last pipeline item's connection right after the submit */
static unsigned stores;
static void on_store_n(db_update_t *u, int status)
{
    (void)u;
    if (status == DB_STORED)
        stores++;
}
static bool stores_done(void) { return stores == 3 && owed == 0; }

static void on_batch(void *arg, int64_t low)
{
    db_t *db = arg;
    db_query_t qc = {.stmt = "test_upd_count", .nparams = 1, .binary = true};
    qc.params[0] = db_param_int8(low);

    hooks++;
    hook_low = low;
    hook_conn = (int)db->behind->idx;
    memset(&behind_res, 0, sizeof(behind_res));
    behind_rc = db_txn_submit_behind(behind_cl, &qc, 1, on_txn, &behind_res);
    if (behind_rc >= 0)
        owed++;
    for (unsigned i = 0; i < db->opt.connections; i++)
        if (client_items(db, &db->conns[i]) == 1)
            behind_conn = (int)i;
}

/*
 * db_txn_submit_behind() from the batch hook: the hook runs once per batch
 * with its lowest update_id, the transaction goes on the batch's connection
 * and runs after its COMMIT, so it sees every row the batch stored (sent
 * where the pipeline is shortest, it would run in another backend beside
 * the batch's transaction); outside a hook it is a plain submit.
 */
static void test_behind(void)
{
    static const char body[] = "{\"update_id\":0,\"poll\":{}}";
    db_t *db = new_db(3);
    db_update_t u[3];
    int64_t ids[3] = {703, 701, 702};

    behind_cl = new_client(db, 0, 0, false);
    db_set_batch_hook(db, on_batch, db);
    wait_ready(db);
    for (unsigned i = 0; i < 3; i++) {
        u[i] = (db_update_t){.update_id = ids[i], .body = body, .body_len = sizeof(body) - 1,
                             .type = "poll", .type_len = 4, .cb = on_store_n};
        tap_ok(db_store(db, &u[i]) == 0, "update %lld is stored", (long long)ids[i]);
    }
    tap_ok(run_until(stores_done, 5000) && stores == 3, "the three commit, and the transaction too");
    tap_ok(hooks == 1 && hook_low == 701, "the hook ran once, for one batch, with its lowest update_id "
           "(%u, %lld)", hooks, (long long)hook_low);
    tap_ok(hook_conn >= 0 && behind_conn == hook_conn,
           "the transaction went on the batch's connection (%d, %d)", hook_conn, behind_conn);
    tap_ok(behind_rc == 1, "and the submit said so (%d)", behind_rc);
    tap_ok(behind_res.err == 0 && behind_res.rows[0] == 1 && behind_res.k[0][0] == 3,
           "it ran after the batch's COMMIT: it counted the 3 rows (%lld)",
           (long long)behind_res.k[0][0]);
    tap_ok(u[0].followed && u[1].followed && u[2].followed,
           "each of its updates says a transaction followed its batch");
    db_set_batch_hook(db, NULL, NULL);
    stores = 2;
    u[0].update_id = 704;
    tap_ok(db_store(db, &u[0]) == 0 && run_until(stores_done, 5000) && !u[0].followed && hooks == 1,
           "without a hook: no call, and an update no transaction followed says so");
    db_query_t qc = {.stmt = "test_upd_count", .nparams = 1, .binary = true};
    qc.params[0] = db_param_int8(702);
    res_t r;
    memset(&r, 0, sizeof(r));
    tap_ok(db_txn_submit_behind(behind_cl, &qc, 1, on_txn, &r) == 0, "outside a hook it is taken (as a plain submit: 0)");
    owed++;
    tap_ok(settle(5000) && r.err == 0 && r.k[0][0] == 3 && hooks == 1,
           "and answered as a plain submit");
    free_db(db);
}

int main(void)
{
    harness_start();
    if (db_migrate(conninfo) != (int)db_migrations_count)
        tap_bail("db_migrate");
    q("CREATE TABLE kv (k bigint PRIMARY KEY CHECK (k <> 13), v text NOT NULL)");
    q("CREATE SEQUENCE kv_tries");
    q("CREATE FUNCTION kv_passing() RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
      "PERFORM nextval('kv_tries'); "
      "RAISE EXCEPTION 'a passing failure' USING ERRCODE = '40001'; END $$");

    /* One connection: the refused test reads the order of one pipeline, and resend drops it. */
    db_t *db = new_db(1);
    db_client_t *cl = new_client(db, 0, 0, true);
    wait_ready(db);
    test_multi(cl);
    test_refused(cl);
    test_passing(cl);
    test_resend(cl, db);
    free_db(db);
    test_timeout_cancel();
    test_spread_drain();
    test_shortest_pipeline();
    test_behind();

    tap_ok(owed == 0 && cb_twice == 0 && sync_cbs == 0,
           "every accepted transaction had exactly one callback, never from inside the submit "
           "(%u missing, %u twice, %u synchronous)",
           owed, cb_twice, sync_cbs);
    tap_ok(loop.heap_len == 0, "no timer left armed");
    harness_end();
    return tap_done();
}
