/* SPDX-License-Identifier: MIT */
/*
 * test_inbox.c - the inbox and the migrations against a real PostgreSQL 15:
 * a throwaway cluster (initdb, a Unix socket directory and a free TCP port,
 * fsync on) that the test starts, stops and starts again to check group
 * commit, duplicates, refused rows, a failed commit, the outage behaviour
 * (503 at once, recovery within about a second) and the migration runner.
 *
 * It includes the module's private header to reach the connection's socket
 * and poll ops for the test of a full socket. Skips (exit 77) only when the
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static db_t *ready_db;
static bool is_ready(void) { return db_ready(ready_db); }

static db_t *new_inbox(unsigned queue_max, unsigned ack_ms, const char *ci)
{
    db_options_t o = {
        .conninfo = ci != NULL ? ci : conninfo,
        .queue_max = queue_max,
        .ack_timeout_ms = ack_ms,
        .max_batch = 512,
    };
    return db_new(&loop, &o);
}

static unsigned idle_calls;
static void on_idle(void *arg)
{
    idle_calls++;
    *(bool *)arg = true;
}

static bool idle_flag;
static bool idle_seen(void) { return idle_flag; }

/* ---- the tests ---- */

static void test_migrations(void)
{
    char bad[128];

    tap_ok(db_check_schema(conninfo) == 0, "db_check_schema: a fresh database is not migrated");
    snprintf(bad, sizeof(bad), "host=127.0.0.1 port=%d user=postgres connect_timeout=2",
             free_port());
    tap_ok(db_check_schema(bad) == -1, "db_check_schema: an unreachable database gives -1");
    tap_ok(db_migrate(bad) == -1, "db_migrate: an unreachable database gives -1");
}

static void test_unmigrated_then_ready(void)
{
    db_t *db = new_inbox(100, 5000, NULL);
    tu_t *t = mk(1);
    run_for(400);
    tap_ok(!db_ready(db) && store(db, t) == -EAGAIN,
           "inbox on an unmigrated database: not ready, db_store gives -EAGAIN");
    t->done = true; /* refused: no callback owed */

    int n = db_migrate(conninfo);
    tap_ok(n == (int)db_migrations_count, "db_migrate applies all %u migrations (got %d)",
           db_migrations_count, n);
    tap_ok(db_migrate(conninfo) == 0, "db_migrate again applies nothing");
    tap_ok(db_check_schema(conninfo) == 1, "db_check_schema after migrate: 1");
    tap_ok(q("SELECT count(*) FROM schema_migrations WHERE version = 1 AND name = '0001_init'") ==
               1,
           "schema_migrations records 0001_init");
    tap_ok(q("SELECT count(*) FROM pg_indexes WHERE indexname = 'updates_unprocessed_idx'") == 1,
           "the partial index for the processor exists");

    ready_db = db;
    uint64_t t0 = mono_ms();
    tap_ok(run_until(is_ready, 3000), "the inbox becomes ready by itself after the migration");
    tap_diag("ready %llu ms after migrating", (unsigned long long)(mono_ms() - t0));
    db_free(db);
    run_for(20);
}

static void test_concurrent_migrate(void)
{
    char ci[256];
    if (q("CREATE DATABASE m2") < 0)
        tap_bail("CREATE DATABASE");
    snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d user=postgres dbname=m2", pg_port);
    pid_t pid[4];
    for (int i = 0; i < 4; i++) {
        pid[i] = fork();
        if (pid[i] == 0) {
            int n = db_migrate(ci);
            _exit(n < 0 ? 100 : n);
        }
    }
    int sum = 0, failures = 0;
    for (int i = 0; i < 4; i++) {
        int st;
        waitpid(pid[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) == 100)
            failures++;
        else
            sum += WEXITSTATUS(st);
    }
    tap_ok(failures == 0 && sum == (int)db_migrations_count,
           "4 concurrent db_migrate runs apply each migration once (%d applied, %d failed)", sum,
           failures);
    tap_ok(db_check_schema(ci) == 1, "and the schema check agrees");
}

static unsigned spread_left;
static db_t *spread_db;
static rx_timer_t spread_timer;
static int64_t spread_id;
static unsigned spread_refused;

static void on_spread(rx_loop_t *l, rx_timer_t *t)
{
    for (int i = 0; i < 40; i++)
        if (store(spread_db, mk(spread_id++)) != 0)
            spread_refused++;
    if (--spread_left > 0)
        rx_timer_start(l, t, 1, on_spread);
}

static void test_group_commit(db_t *db)
{
    met_slot_t *m = met_self();
    uint64_t batches0 = m->db_batch_size.count, stored0 = m->updates_stored;
    unsigned from = nups, refused = 0;

    for (int64_t id = 10000; id < 12000; id++)
        refused += store(db, mk(id)) != 0;
    tap_ok(refused == 0, "2000 updates accepted in one turn");
    tap_ok(db_pending(db) == 2000, "db_pending counts them (%u)", db_pending(db));
    tap_ok(wait_range(from, nups, 20000), "all 2000 callbacks ran");
    tap_ok(count_status(from, nups, DB_STORED) == 2000, "all 2000 stored (%u)",
           count_status(from, nups, DB_STORED));
    uint64_t batches = m->db_batch_size.count - batches0;
    tap_ok(batches >= 4 && batches <= 8, "in %llu transactions (at most 512 each)",
           (unsigned long long)batches);
    tap_ok(m->updates_stored - stored0 == 2000, "updates_stored counted them");
    tap_ok(q("SELECT count(*) FROM updates WHERE update_id >= 10000 AND update_id < 12000") == 2000,
           "2000 rows in the table");
    tap_ok(db_pending(db) == 0 && m->db_queue_depth == 0, "nothing pending afterwards");

    /* Arrivals spread over 50 turns: each turn's updates share a transaction. */
    batches0 = m->db_batch_size.count;
    from = nups;
    spread_db = db;
    spread_left = 50;
    spread_id = 20000;
    rx_timer_start(&loop, &spread_timer, 0, on_spread);
    run_until(NULL, 10);
    tap_ok(wait_range(from, from + 2000, 20000) && spread_left == 0 && spread_refused == 0,
           "2000 updates arriving over 50 turns all answered");
    tap_ok(count_status(from, nups, DB_STORED) == 2000, "all stored");
    batches = m->db_batch_size.count - batches0;
    tap_ok(batches <= 52, "in %llu transactions for 50 turns", (unsigned long long)batches);
}

static void test_verbatim(db_t *db)
{
    static const char body[] = "{\"update_id\":5,\"text\":\"\\u0000 \xff\xfe'\\\"\"}\0tail";
    unsigned from = nups;
    tu_t *a = mk(5);
    a->u.body = body;
    a->u.body_len = sizeof(body) - 1;
    tu_t *b = mk(6);
    b->u.type = NULL;
    b->u.has_chat = false;
    b->u.has_from = false;
    store(db, a);
    store(db, b);
    tap_ok(wait_range(from, nups, 5000) && a->status == DB_STORED && b->status == DB_STORED,
           "two updates with odd bodies stored");

    PGconn *c = PQconnectdb(conninfo);
    PGresult *r = PQexecParams(c,
                               "SELECT body, update_type, chat_id, from_id FROM updates "
                               "WHERE update_id = 5",
                               0, NULL, NULL, NULL, NULL, 1);
    tap_ok(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
               PQgetlength(r, 0, 0) == (int)(sizeof(body) - 1) &&
               memcmp(PQgetvalue(r, 0, 0), body, sizeof(body) - 1) == 0,
           "the body is stored byte for byte (NUL, 0xff, quotes)");
    tap_ok(PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 1), "message") == 0 &&
               PQgetlength(r, 0, 2) == 8 && PQgetlength(r, 0, 3) == 8,
           "type, chat_id and from_id stored");
    PQclear(r);
    PQfinish(c);
    tap_ok(q("SELECT count(*) FROM updates WHERE update_id = 6 AND update_type IS NULL AND "
             "chat_id IS NULL AND from_id IS NULL") == 1,
           "absent type, chat and from are NULL");
}

/*
 * Large bodies while the server does not read (a lock blocks the inserts) and
 * the socket's send buffer is small: libpq cannot write a transaction at
 * once, so the connection has to wait for POLLOUT and keep reading
 * meanwhile. A backend reads a whole statement before it runs it, so one
 * connection carrying two transactions (DB_INFLIGHT_ONE) is what leaves one
 * in the socket: the first is read and waits for the lock, the second
 * cannot be.
 */
static void test_large(void)
{
    enum { N = 48, SIZE = 96 * 1024 };
    static char big[N][SIZE];
    met_slot_t *m = met_self();
    db_options_t o = {.conninfo = conninfo, .connections = 1, .queue_max = 4096,
                      .ack_timeout_ms = 10000, .max_batch = 512};
    db_t *db = db_new(&loop, &o);
    ready_db = db;
    tap_ok(run_until(is_ready, 3000), "a one-connection inbox ready");
    uint64_t batches0 = m->db_batch_size.count;
    unsigned from = nups;

    PGconn *locker = PQconnectdb(conninfo);
    PQclear(PQexec(locker, "BEGIN"));
    PGresult *lr = PQexec(locker, "LOCK TABLE updates IN SHARE MODE");
    tap_ok(PQresultStatus(lr) == PGRES_COMMAND_OK, "another session locks the inserts out");
    PQclear(lr);
    int small = 4096;
    for (unsigned i = 0; i < db->opt.connections; i++)
        if (db->conns[i].pg != NULL)
            setsockopt(PQsocket(db->conns[i].pg), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));

    srand(7);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < SIZE; j++)
            big[i][j] = (char)(rand() & 0xff);
        tu_t *t = mk(90000 + i);
        t->u.body = big[i];
        t->u.body_len = SIZE;
        store(db, t);
    }
    run_for(300);
    unsigned busy = 0, full = 0;
    for (unsigned i = 0; i < db->opt.connections; i++) {
        db_conn_t *c = &db->conns[i];
        busy += db->in->flight[i] > 0;
        full += db->in->flight[i] > 0 && c->wr.op.armed && c->rd.op.armed;
    }
    tap_ok(busy > 0 && full == busy && ndone_in(from, nups) == 0,
           "with the socket full: polling for POLLOUT and POLLIN, nothing answered yet (%u of %u "
           "connections)",
           full, busy);
    PQclear(PQexec(locker, "COMMIT"));
    PQfinish(locker);
    tap_ok(wait_range(from, nups, 20000) && count_status(from, nups, DB_STORED) == N,
           "%d updates of %d KiB stored once the lock is gone", N, SIZE / 1024);
    uint64_t batches = m->db_batch_size.count - batches0;
    tap_ok(batches >= 4, "in %llu transactions: at most 1 MiB of bodies each",
           (unsigned long long)batches);
    PGconn *c = PQconnectdb(conninfo);
    PGresult *r = PQexecParams(c,
                               "SELECT body FROM updates WHERE update_id >= 90000 AND "
                               "update_id < 90048 ORDER BY update_id",
                               0, NULL, NULL, NULL, NULL, 1);
    int same = 0;
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r) && i < N; i++)
        same += PQgetlength(r, i, 0) == SIZE && memcmp(PQgetvalue(r, i, 0), big[i], SIZE) == 0;
    tap_ok(same == N, "all %d bodies read back identical (%d)", N, same);
    PQclear(r);
    PQfinish(c);
    db_free(db);
    run_for(20);
}

static void test_duplicates(db_t *db)
{
    met_slot_t *m = met_self();
    uint64_t dup0 = m->updates_duplicate;
    unsigned from = nups;

    for (int64_t id = 10000; id < 10010; id++)
        store(db, mk(id));
    store(db, mk(30000));
    store(db, mk(30000)); /* twice in one transaction */
    tap_ok(wait_range(from, nups, 5000), "duplicates answered");
    tap_ok(count_status(from, from + 10, DB_DUPLICATE) == 10,
           "10 redelivered updates are DB_DUPLICATE");
    tap_ok(ups[from + 10].status == DB_STORED && ups[from + 11].status == DB_DUPLICATE,
           "the same update twice in one transaction: stored, then duplicate");
    tap_ok(m->updates_duplicate - dup0 == 11, "updates_duplicate counted 11");
    tap_ok(q("SELECT count(*) FROM updates WHERE update_id >= 10000 AND update_id < 12000") ==
                   2000 &&
               q("SELECT count(*) FROM updates WHERE update_id = 30000") == 1,
           "nothing stored twice");
}

static void test_rejected(db_t *db)
{
    met_slot_t *m = met_self();
    uint64_t rej0 = m->updates_rejected;
    unsigned from = nups;

    tap_ok(
        q("ALTER TABLE updates ADD CONSTRAINT no666 CHECK (update_id NOT IN (666666, 666667))") ==
            0,
        "a CHECK constraint refuses 666666 and 666667");
    for (int64_t id = 40000; id < 40020; id++) {
        if (id == 40005)
            store(db, mk(666666));
        if (id == 40012)
            store(db, mk(666667));
        store(db, mk(id));
    }
    tap_ok(wait_range(from, nups, 5000), "a transaction with two refused rows answered");
    tap_ok(ups[from + 5].u.update_id == 666666 && ups[from + 5].status == -EBADMSG &&
               ups[from + 13].u.update_id == 666667 && ups[from + 13].status == -EBADMSG,
           "the refused rows get -EBADMSG");
    tap_ok(count_status(from, nups, DB_STORED) == 20, "their 20 batch-mates are stored");
    tap_ok(q("SELECT count(*) FROM updates WHERE update_id >= 40000 AND update_id < 40020") == 20 &&
               q("SELECT count(*) FROM updates WHERE update_id IN (666666, 666667)") == 0,
           "the table has the 20 and not the refused ones");
    tap_ok(m->updates_rejected - rej0 == 2, "updates_rejected counted 2");
    q("ALTER TABLE updates DROP CONSTRAINT no666");
}

static void test_commit_failure(db_t *db)
{
    unsigned from = nups;

    q("CREATE FUNCTION no777() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      "IF NEW.update_id = 777777 THEN RAISE EXCEPTION 'no 777777'; END IF; RETURN NULL; END $$");
    tap_ok(q("CREATE CONSTRAINT TRIGGER no777 AFTER INSERT ON updates DEFERRABLE INITIALLY "
             "DEFERRED FOR EACH ROW EXECUTE FUNCTION no777()") == 0,
           "a deferred trigger fails the commit of 777777");
    tu_t *t = mk(777777);
    store(db, t);
    bool done = wait_range(from, nups, 5000);
    tap_ok(done && t->status == -ECONNRESET,
           "a transaction whose commit keeps failing: -ECONNRESET after %d tries (got %d)",
           DB_TRIES_MAX, t->status);
    tap_ok(q("SELECT count(*) FROM updates WHERE update_id = 777777") == 0,
           "and it is not reported stored, nor stored");
    q("DROP TRIGGER no777 ON updates");
    from = nups;
    store(db, mk(50000));
    tap_ok(wait_range(from, nups, 5000) && ups[from].status == DB_STORED,
           "the next transaction commits");
}

static void test_queue_max(void)
{
    db_t *db = new_inbox(3, 5000, NULL);
    ready_db = db;
    run_until(is_ready, 3000);
    unsigned from = nups;
    int r[4];
    for (int i = 0; i < 4; i++)
        r[i] = store(db, mk(60000 + i));
    tap_ok(r[0] == 0 && r[1] == 0 && r[2] == 0 && r[3] == -EAGAIN,
           "queue_max 3: the fourth db_store gives -EAGAIN");
    tap_ok(wait_range(from, from + 3, 5000) && count_status(from, from + 3, DB_STORED) == 3,
           "the three accepted are stored");
    ups[from + 3].done = true; /* refused: no callback owed */
    db_free(db);
    run_for(20);
}

static void test_multihost(void)
{
    char ci[256];
    snprintf(ci, sizeof(ci), "host=%s/nonexistent,127.0.0.1 port=%d,%d user=postgres", pg_dir,
             free_port(), pg_port);
    db_t *db = new_inbox(10, 5000, ci);
    ready_db = db;
    tap_ok(run_until(is_ready, 3000), "a host list whose first host is down: ready on the second");
    db_free(db);
    run_for(20);
}

static uint64_t server_up_ms; /* when the server first answered a ping */
static bool up_and_ready(void)
{
    if (server_up_ms == 0 && PQping(conninfo) == PQPING_OK)
        server_up_ms = mono_ms();
    return server_up_ms != 0 && db_ready(ready_db);
}

static void test_outage(db_t *a)
{
    met_slot_t *m = met_self();
    uint64_t reconnects0 = m->db_reconnects;
    db_t *b = new_inbox(100, 400, NULL);
    ready_db = b;
    run_until(is_ready, 3000);

    unsigned fa = nups;
    for (int64_t id = 70000; id < 70005; id++)
        store(a, mk(id));
    unsigned fb = nups;
    for (int64_t id = 71000; id < 71003; id++)
        store(b, mk(id));
    tap_ok(pg_stop("fast") == 0, "server stopped (pg_ctl stop -m fast)");
    run_for(150);
    unsigned from = nups;
    tu_t *t = mk(72000);
    tap_ok(!db_ready(a) && store(a, t) == -EAGAIN, "while it is down: not ready, db_store -EAGAIN");
    t->done = true;
    tap_ok(m->db_connected == 0, "db_connected is 0");
    tap_ok(wait_range(fb, fb + 3, 2000) && count_status(fb, fb + 3, -ETIMEDOUT) == 3,
           "updates queued before the outage time out after their ack timeout (400 ms)");
    run_for(1000);
    tap_ok(count_status(fa, fa + 5, -ETIMEDOUT) == 0 && !ups[fa].done,
           "the ones with a 10 s ack timeout are still waiting");

    /*
     * Started in the background while the loop runs, so that the inbox is in
     * its slowest backoff (500 ms) when the server begins to accept.
     */
    pid_t starter = fork();
    if (starter == 0)
        _exit(pg_start() == 0 ? 0 : 1);
    ready_db = a;
    server_up_ms = 0;
    bool back = run_until(up_and_ready, 60000);
    uint64_t took = mono_ms() - server_up_ms;
    int st = -1;
    waitpid(starter, &st, 0);
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server started again");
    tap_ok(back && took <= 1000, "ready again %llu ms after the server accepted connections",
           (unsigned long long)took);
    tap_ok(wait_range(fa, fa + 5, 3000) && count_status(fa, fa + 5, DB_STORED) == 5,
           "updates kept through the outage are stored after the reconnect");
    tap_ok(q("SELECT count(*) FROM updates WHERE update_id >= 70000 AND update_id < 70005") == 5,
           "and they are in the table");
    tap_ok(m->db_reconnects - reconnects0 >= 1, "db_reconnects counted (%llu)",
           (unsigned long long)(m->db_reconnects - reconnects0));
    ready_db = b;
    run_until(is_ready, 3000);
    from = nups;
    store(a, mk(73000));
    tap_ok(wait_range(from, nups, 5000) && ups[from].status == DB_STORED,
           "and new ones are stored");
    db_free(b);
    run_for(20);
}

static void test_drain_and_free(db_t *a)
{
    unsigned from = nups;
    for (int64_t id = 80000; id < 80005; id++)
        store(a, mk(id));
    idle_flag = false;
    db_drain(a, on_idle, &idle_flag);
    tu_t *t = mk(80100);
    tap_ok(store(a, t) == -EAGAIN, "after db_drain, db_store gives -EAGAIN");
    t->done = true;
    tap_ok(!idle_flag, "on_idle does not run synchronously");
    tap_ok(run_until(idle_seen, 5000) && idle_calls == 1, "on_idle runs once nothing is pending");
    tap_ok(count_status(from, from + 5, DB_STORED) == 5, "the updates in flight completed first");

    db_t *c = new_inbox(100, 5000, NULL);
    ready_db = c;
    run_until(is_ready, 3000);
    from = nups;
    for (int64_t id = 81000; id < 81003; id++)
        store(c, mk(id));
    tap_ok(db_pending(c) == 3, "three pending before db_free");
    db_free(c);
    tap_ok(count_status(from, from + 3, -ECANCELED) == 3,
           "db_free answers pending updates with -ECANCELED, synchronously");
    run_for(20);
}

int main(void)
{
    harness_start();

    test_migrations();
    test_unmigrated_then_ready();
    test_concurrent_migrate();

    db_t *db = new_inbox(4096, 10000, NULL);
    ready_db = db;
    tap_ok(run_until(is_ready, 3000), "inbox ready");
    tap_ok(met_self()->db_connected == 1, "db_connected is 1");
    test_group_commit(db);
    test_verbatim(db);
    test_duplicates(db);
    test_rejected(db);
    test_commit_failure(db);
    test_queue_max();
    test_large();
    ready_db = db;
    test_multihost();
    test_outage(db);
    test_drain_and_free(db);
    db_free(db);
    run_for(20);

    unsigned owed = 0;
    for (unsigned i = 0; i < nups; i++)
        owed += !ups[i].done;
    tap_ok(owed == 0 && twice == 0 && sync_cb == 0,
           "every accepted update had exactly one callback, never from inside db_store "
           "(%u missing, %u twice, %u synchronous)",
           owed, twice, sync_cb);
    tap_ok(loop.heap_len == 0, "no timer left armed");
    harness_end();
    return tap_done();
}
