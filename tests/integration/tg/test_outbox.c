/* SPDX-License-Identifier: MIT */
/*
 * test_outbox.c - tg's outbox store (src/tg/outbox.c, an ordered client of
 * the db's transaction API) against a real PostgreSQL 15 (the throwaway
 * cluster of tests/integration/db/pg_harness.c): migration 0002 on a database that has 0001
 * only, claims (order, due rows only, leases, several claims in flight,
 * several connections and a second process sharing the table), the marks and
 * the exact columns each one changes, their independence from the inbox's
 * transactions on the shared connection, a lost connection (resent claims and
 * marks take effect once; deadlines), the cap, db_drain() and db_free().
 *
 * It includes the db module's private header to send queued work, to look
 * into the pipelines and to drop the connection at chosen moments. Skips (exit 77) only when the PostgreSQL
 * binaries are not installed.
 */
#include "../../../src/db/db_private.h"
#include "log.h"
#include "met.h"
#include "pg_harness.h"
#include "tg_outbox.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static tg_outbox_t *ob_of(db_t *db);

/* ---- callbacks and their bookkeeping ---- */

static bool in_call;   /* inside a tg_outbox_*() call: a callback now would be synchronous */
static unsigned owed;  /* accepted calls whose callback has not run */
static unsigned call_sync; /* callbacks that ran from inside the call */
static unsigned call_twice; /* callbacks that ran twice for one call */

typedef struct claim {
    unsigned calls;
    int err;
    unsigned n;
    int64_t ids[64];
    int attempts[64];
    int64_t chat[64];
    int64_t prev[64];
    char method[32];      /* of the first row */
    char body[256];       /* of the first row */
    bool lengths_ok;      /* method_len and body_len match the NUL-terminated text */
    uint64_t t0, took_ms; /* call time, and how long until the callback */
} claim_t;

typedef struct done {
    unsigned calls;
    int err;
    int64_t count; /* tg_outbox_due */
} done_t;

static void called(unsigned *calls)
{
    if (in_call)
        call_sync++;
    if (*calls > 0)
        call_twice++;
    (*calls)++;
    owed--;
}

/*
 * The token of the latest claim that returned each row, by id, for the
 * marks that follow (ids start at 1 again in every test: clear_outbox()).
 */
#define TOKENS_MAX 4096
static int64_t tokens[TOKENS_MAX];

static int64_t tok(int64_t id)
{
    return id > 0 && id < TOKENS_MAX ? tokens[id] : 0;
}

static void on_claim(void *arg, int err, const tg_outbox_row_t *rows, unsigned n)
{
    claim_t *c = arg;
    called(&c->calls);
    c->err = err;
    c->n = n;
    c->took_ms = mono_ms() - c->t0;
    c->lengths_ok = true;
    for (unsigned i = 0; i < n; i++) {
        if (i < 64) {
            c->ids[i] = rows[i].id;
            c->attempts[i] = rows[i].attempts;
            c->chat[i] = rows[i].chat_id;
            c->prev[i] = rows[i].prev_id;
        }
        c->lengths_ok = c->lengths_ok && strlen(rows[i].method) == rows[i].method_len &&
                        strlen(rows[i].body) == rows[i].body_len;
        if (rows[i].id > 0 && rows[i].id < TOKENS_MAX)
            tokens[rows[i].id] = rows[i].token;
    }
    if (n > 0) {
        snprintf(c->method, sizeof(c->method), "%s", rows[0].method);
        snprintf(c->body, sizeof(c->body), "%s", rows[0].body);
    }
}

static void on_done(void *arg, int err)
{
    done_t *d = arg;
    called(&d->calls);
    d->err = err;
}

static void on_count(void *arg, int err, int64_t count)
{
    done_t *d = arg;
    called(&d->calls);
    d->err = err;
    d->count = count;
}

static int accepted(int r)
{
    in_call = false;
    if (r == 0)
        owed++;
    return r;
}

static int claim(db_t *db, claim_t *c, unsigned max, unsigned lease_ms)
{
    memset(c, 0, sizeof(*c));
    c->t0 = mono_ms();
    in_call = true;
    return accepted(tg_outbox_claim(ob_of(db), max, lease_ms, on_claim, c));
}

static done_t *reset(done_t *d)
{
    memset(d, 0, sizeof(*d));
    in_call = true;
    return d;
}

/* The marks, each under the token of the latest claim that returned the row. */
static int sent(db_t *db, done_t *d, int64_t id)
{
    return accepted(tg_outbox_sent(ob_of(db), id, tok(id), on_done, reset(d)));
}

static int retry(db_t *db, done_t *d, int64_t id, uint64_t delay_ms, const char *error)
{
    return accepted(tg_outbox_retry(ob_of(db), id, tok(id), delay_ms, error, on_done, reset(d)));
}

static int fail(db_t *db, done_t *d, int64_t id, const char *error)
{
    return accepted(tg_outbox_fail(ob_of(db), id, tok(id), error, on_done, reset(d)));
}

static int retarget(db_t *db, done_t *d, int64_t id, int64_t chat)
{
    return accepted(tg_outbox_retarget(ob_of(db), id, tok(id), chat, on_done, reset(d)));
}

static int release(db_t *db, done_t *d, int64_t id)
{
    return accepted(tg_outbox_release(ob_of(db), id, tok(id), on_done, reset(d)));
}

static int due(db_t *db, done_t *d, uint64_t within_ms)
{
    return accepted(tg_outbox_due(ob_of(db), within_ms, on_count, reset(d)));
}

static bool nothing_owed(void) { return owed == 0; }

/* Runs the loop until every accepted call had its callback. */
static bool settle(unsigned ms) { return run_until(nothing_owed, ms); }

/* Waits for the callbacks whose counters are listed (NULL-terminated). */
static unsigned *watched[16];
static bool watched_called(void)
{
    for (unsigned i = 0; watched[i] != NULL; i++)
        if (*watched[i] == 0)
            return false;
    return true;
}

static bool wait_calls(unsigned ms, unsigned *first, ...)
{
    va_list ap;
    unsigned n = 0;
    va_start(ap, first);
    for (unsigned *p = first; p != NULL && n < 15; p = va_arg(ap, unsigned *))
        watched[n++] = p;
    va_end(ap);
    watched[n] = NULL;
    return run_until(watched_called, ms);
}

/* ---- databases and rows ---- */

static db_t *ready_db;
static bool is_ready(void) { return db_ready(ready_db); }

/* The outbox store of each db the test made (a db_t is freed before a new one reuses a slot). */
static struct {
    db_t *db;
    tg_outbox_t ob;
} obs[8];

static tg_outbox_t *ob_of(db_t *db)
{
    for (unsigned i = 0; i < 8; i++)
        if (obs[i].db == db)
            return &obs[i].ob;
    tap_bail("no outbox store for this db");
    return NULL;
}

static db_t *new_db_n(const char *ci, unsigned outbox_max, unsigned timeout_ms,
                      unsigned connections)
{
    db_options_t o = {
        .conninfo = ci != NULL ? ci : conninfo,
        .connections = connections,
    };
    tg_outbox_options_t oo = {.max = outbox_max, .timeout_ms = timeout_ms};
    db_t *db = db_new(&loop, &o);
    unsigned i = 0;
    while (i < 8 && obs[i].db != NULL)
        i++;
    if (i == 8)
        tap_bail("too many databases");
    obs[i].db = db;
    tg_outbox_init(&obs[i].ob, db, &oo);
    return db;
}

/* Forgets db's outbox store; db_free() freed its client. */
static void forget_ob(db_t *db)
{
    for (unsigned i = 0; i < 8; i++)
        if (obs[i].db == db)
            obs[i].db = NULL;
}

/* Transactions of the outbox in the pipelines: neither inbox batches nor setups. */
static unsigned outbox_in_flight(db_t *db)
{
    unsigned n = 0;
    for (unsigned i = 0; i < db->opt.connections; i++)
        for (db_item_t *it = db_pipe_item(db->conns[i].pipe.head); it != NULL;
             it = db_pipe_item(it->link.next))
            n += it->ops != db->in->batch[0].item.ops && it != &db->conns[i].setup;
    return n;
}

/* With the default number of connections. */
static db_t *new_db(const char *ci, unsigned outbox_max, unsigned timeout_ms)
{
    return new_db_n(ci, outbox_max, timeout_ms, 0);
}

static db_t *ready(db_t *db)
{
    ready_db = db;
    if (!run_until(is_ready, 5000))
        tap_bail("database not ready");
    return db;
}

static void free_db(db_t *db)
{
    db_free(db);
    forget_ob(db);
    run_for(20);
}

/*
 * Inserts n rows, each the only one of its chat (`chat` for the first, then
 * chat + 100000, chat + 200000, ...: a claim takes only a chat's oldest open
 * row), due `due_s` seconds from now (negative: overdue), bodies
 * {"chat_id":chat,"text":"row K"}. Returns the first id; the others follow it.
 */
static int64_t add_rows(int n, int64_t chat, int due_s)
{
    return q("WITH i AS (INSERT INTO outbox (chat_id, method, body, not_before) "
             "SELECT %lld + (k - 1) * 100000, 'sendMessage', "
             "format('{\"chat_id\":%%s,\"text\":\"row %%s\"}', %lld + (k - 1) * 100000, k), "
             "now() + %d * interval '1 second' FROM generate_series(1, %d) k "
             "RETURNING id) SELECT min(id) FROM i",
             (long long)chat, (long long)chat, due_s, n);
}

/* Inserts n rows for the one chat `chat`, due now, in id order. Returns the first id. */
static int64_t add_chat_rows(int n, int64_t chat)
{
    return q("WITH i AS (INSERT INTO outbox (chat_id, method, body) "
             "SELECT %lld, 'sendMessage', format('{\"chat_id\":%%s,\"text\":\"row %%s\"}', "
             "%lld, k) FROM generate_series(1, %d) k RETURNING id) SELECT min(id) FROM i",
             (long long)chat, (long long)chat, n);
}

static void clear_outbox(void)
{
    q("TRUNCATE outbox RESTART IDENTITY");
    memset(tokens, 0, sizeof(tokens));
}

/* Leases row id for a minute under `token`, as a claim would, for the marks that follow. */
static void lease(int64_t id, int64_t token)
{
    q("UPDATE outbox SET claimed_until = now() + interval '60 s', claim_token = %lld "
      "WHERE id = %lld",
      (long long)token, (long long)id);
    tokens[id] = token;
}

/* The columns of row id that differ from its copy in table snap, comma-separated and sorted. */
static const char *changed(int64_t id, char *out, size_t cap)
{
    qs(NULL, out, cap,
       "SELECT coalesce(string_agg(a.key, ',' ORDER BY a.key), '') FROM outbox o "
       "JOIN snap s USING (id), jsonb_each(to_jsonb(o)) a "
       "WHERE o.id = %lld AND a.value IS DISTINCT FROM to_jsonb(s) -> a.key",
       (long long)id);
    return out;
}

static void snapshot(void)
{
    q("DROP TABLE IF EXISTS snap");
    q("CREATE TABLE snap AS SELECT * FROM outbox");
}

/* ---- the tests ---- */

/* A database at 0001 (as left by an older release) gets 0002 and the inbox comes up. */
static void test_migrate_from_0001(void)
{
    char ci[256], v[1024];

    if (db_migrations_count < 2 || db_migrations[1].version != 2)
        tap_bail("0002 is not the second compiled-in migration");
    q("CREATE DATABASE m1");
    snprintf(ci, sizeof(ci), "host=127.0.0.1 port=%d user=postgres dbname=m1", pg_port);
    PGconn *c = PQconnectdb(ci);
    PGresult *r = PQexec(c, "BEGIN");
    PQclear(r);
    r = PQexec(c, "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT "
                  "NULL, applied_at timestamptz NOT NULL DEFAULT now())");
    PQclear(r);
    r = PQexec(c, db_migrations[0].sql);
    bool applied = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    r = PQexec(c, "INSERT INTO schema_migrations (version, name) VALUES (1, '0001_init')");
    PQclear(r);
    r = PQexec(c, "INSERT INTO updates (update_id, body) VALUES (1, 'kept')");
    PQclear(r);
    r = PQexec(c, "COMMIT");
    applied = applied && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(c);
    tap_ok(applied, "a database with 0001 only (and an update in it)");
    tap_ok(db_check_schema(ci) == 0, "db_check_schema: 0002 pending");

    db_t *db = new_db(ci, 0, 0);
    run_for(400);
    claim_t cl;
    tap_ok(!db_ready(db) && claim(db, &cl, 1, 1000) == -EAGAIN,
           "not ready on a database without 0002: tg_outbox_claim gives -EAGAIN");

    tap_ok(db_migrate(ci) == (int)db_migrations_count - 1, "db_migrate applies the later ones");
    qs(ci, v, sizeof(v), "SELECT string_agg(version || ':' || name, ',' ORDER BY version) "
                         "FROM schema_migrations");
    tap_ok(strncmp(v, "1:0001_init,2:0002_outbox,3:0003_processor", 42) == 0,
           "schema_migrations: %s", v);
    qs(ci, v, sizeof(v), "SELECT body FROM updates WHERE update_id = 1");
    tap_ok(strcmp(v, "\\x6b657074") == 0, "the update stored before is still there");
    qs(ci, v, sizeof(v),
       "SELECT string_agg(indexname || ' ' || substring(indexdef from 'USING .*'), '; ' "
       "ORDER BY indexname) FROM pg_indexes WHERE tablename = 'outbox'");
    tap_ok(strcmp(v, "outbox_chat_open_idx USING btree (chat_id, id) WHERE ((sent_at IS NULL) "
                     "AND (failed_at IS NULL)); outbox_open_idx USING btree (id) WHERE ((sent_at "
                     "IS NULL) AND (failed_at IS NULL)); outbox_pkey USING btree (id)") == 0,
           "the outbox's indexes: its key, the partial index of rows to send, and the same by "
           "chat (%s)",
           v);
    qs(ci, v, sizeof(v),
       "SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable || ' ' || "
       "coalesce(column_default, '-'), ', ' ORDER BY ordinal_position) "
       "FROM information_schema.columns WHERE table_name = 'outbox'");
    tap_diag("outbox: %s", v);
    tap_ok(strstr(v, "id bigint NO nextval(") == v &&
               strstr(v,
                      "chat_id bigint NO -, method text NO -, body text NO -, not_before "
                      "timestamp with time zone NO now(), attempts integer NO 0, last_error text "
                      "YES -, created_at timestamp with time zone NO now(), sent_at timestamp "
                      "with time zone YES -, failed_at timestamp with time zone YES -, "
                      "claimed_until timestamp with time zone YES -, claim_token bigint YES -, "
                      "update_id bigint YES -") != NULL,
           "the outbox has the documented columns");

    /*
     * The first setups prepared the insert and then failed on the outbox's
     * statements; coming up now needs them deallocated first.
     */
    ready_db = db;
    tap_ok(run_until(is_ready, 3000), "the connection becomes ready by itself after the migration");
    tap_ok(claim(db, &cl, 5, 1000) == 0 && settle(3000) && cl.err == 0 && cl.n == 0,
           "and a claim on the empty outbox returns no rows");
    free_db(db);
}

static void test_claim_order(db_t *db)
{
    claim_t c;
    char v[256];

    clear_outbox();
    /* Due rows whose not_before runs against their ids, and future rows between them. */
    int64_t first = add_rows(1, 500, -1);
    add_rows(1, 501, -5);
    add_rows(2, 502, 3600);
    add_rows(1, 503, -60);
    add_rows(2, 504, -2);
    q("UPDATE outbox SET attempts = 2 WHERE id = %lld", (long long)first + 1);
    tap_ok(claim(db, &c, 10, 60000) == 0, "tg_outbox_claim accepted");
    tap_ok(c.calls == 0, "its callback does not run synchronously");
    bool answered = settle(3000);
    tap_ok(answered && c.err == 0 && c.n == 5, "5 due rows claimed of 7 (err %d, n %u)", c.err,
           c.n);
    tap_ok(c.n == 5 && c.ids[0] == first && c.ids[1] == first + 1 && c.ids[2] == first + 4 &&
               c.ids[3] == first + 5 && c.ids[4] == first + 6,
           "oldest id first, the future ones left out");
    tap_ok(c.chat[0] == 500 && c.chat[4] == 100504 && c.attempts[0] == 0 && c.attempts[1] == 2,
           "chat_id and attempts as stored");
    tap_ok(strcmp(c.method, "sendMessage") == 0 &&
               strcmp(c.body, "{\"chat_id\":500,\"text\":\"row 1\"}") == 0 && c.lengths_ok,
           "method and body as stored, lengths right");
    qs(NULL, v, sizeof(v),
       "SELECT count(*) FILTER (WHERE claimed_until BETWEEN now() + interval '59 s' AND "
       "now() + interval '61 s') || '/' || count(DISTINCT claim_token) || '/' || "
       "count(*) FILTER (WHERE claimed_until IS NULL AND claim_token IS NULL) FROM outbox");
    tap_ok(strcmp(v, "5/1/2") == 0,
           "the 5 leased for 60 s under one token, the 2 others untouched (%s)", v);
    tap_ok(claim(db, &c, 10, 60000) == 0 && settle(3000) && c.err == 0 && c.n == 0,
           "a second claim gets nothing while the leases run");
}

/* Only a chat's oldest open row is claimable: its rows go strictly in id order. */
static void test_runs(db_t *db)
{
    claim_t c;
    done_t d;

    clear_outbox();
    int64_t a = add_chat_rows(3, 1600);
    int64_t other = add_rows(1, 1601, -1);
    tap_ok(claim(db, &c, 10, 60000) == 0 && settle(3000) && c.err == 0 && c.n == 4 &&
               c.ids[0] == a && c.ids[1] == a + 1 && c.ids[2] == a + 2 && c.ids[3] == other,
           "runs: a chat's three rows come as one run, beside another chat's row");
    tap_ok(c.prev[0] == 0 && c.prev[1] == a && c.prev[2] == a + 1 && c.prev[3] == 0,
           "runs: each row names its chat's next older open row (0 for none)");
    done_t back[3];
    tap_ok(release(db, &back[0], a + 2) == 0 && release(db, &back[1], a + 1) == 0 &&
               retry(db, &back[2], a, 60000, "later") == 0 && settle(3000) &&
               back[0].err == 0 && back[1].err == 0 && back[2].err == 0,
           "runs: the run is put back, its first row with a delay");
    tap_ok(claim(db, &c, 10, 60000) == 0 && settle(3000) && c.err == 0 && c.n == 0,
           "runs: while its first row is not due, the chat's later rows are not claimable (%u)",
           c.n);
    q("UPDATE outbox SET not_before = now() WHERE id = %lld", (long long)a);
    tap_ok(claim(db, &c, 10, 60000) == 0 && settle(3000) && c.n == 3 && c.ids[0] == a &&
               c.ids[2] == a + 2,
           "runs: due again, the put-back row comes first, the rest of the run behind it");
    int64_t late = add_chat_rows(1, 1600);
    tap_ok(claim(db, &c, 10, 60000) == 0 && settle(3000) && c.n == 1 && c.ids[0] == late &&
               c.prev[0] == a + 2,
           "runs: a new row joins while the rows before it are leased by this outbox");
    db_t *b = ready(new_db(NULL, 0, 0));
    int64_t after = add_chat_rows(1, 1600);
    claim_t cb = {0};
    tap_ok(accepted(tg_outbox_claim(ob_of(b), 10, 60000, on_claim, &cb)) == 0 && settle(3000) &&
               cb.err == 0 && cb.n == 0,
           "runs: rows leased by another process's outbox hold the chat's later rows back");
    free_db(b);
    done_t fin;
    tap_ok(sent(db, &d, a) == 0 && fail(db, &fin, a + 1, "final") == 0 && settle(3000) &&
               claim(db, &c, 10, 60000) == 0 && settle(3000) && c.n == 1 && c.ids[0] == after &&
               c.prev[0] == late,
           "runs: sent and failed rows hold nothing back; leased ones of this outbox do not either");
}

static void test_claims_in_flight(db_t *db)
{
    claim_t c[3];

    clear_outbox();
    add_rows(20, 600, -1);
    for (int i = 0; i < 3; i++)
        claim(db, &c[i], 8, 60000);
    db_send_queued(db);
    tap_ok(outbox_in_flight(db) == 3, "three claims in the pipeline at once (%u)",
           outbox_in_flight(db));
    tap_ok(settle(3000) && c[0].err == 0 && c[1].err == 0 && c[2].err == 0, "all three answered");
    /*
     * Each claim walks, then leases what it picked: one whose walk ran before
     * another's lease picked the same rows and gets those it still finds free.
     */
    tap_ok(c[0].n == 8 && c[0].n + c[1].n + c[2].n <= 20,
           "the first takes 8, the others what was left when they leased (%u, %u, %u)", c[0].n,
           c[1].n, c[2].n);
    bool seen[21] = {false}, dup = false;
    for (int i = 0; i < 3; i++)
        for (unsigned k = 0; k < c[i].n; k++) {
            int64_t id = c[i].ids[k];
            dup = dup || id < 1 || id > 20 || seen[id];
            if (id >= 1 && id <= 20)
                seen[id] = true;
        }
    tap_ok(!dup, "no row returned twice");
}

/* ---- several connections and a second process claiming from one outbox ---- */

#define SHARE_ROWS 1000
#define SHARE_MAX 5

typedef struct claimer {
    db_t *db;
    unsigned outstanding; /* claims in flight */
    unsigned errors;
    unsigned n;
    int64_t ids[SHARE_ROWS];
} claimer_t;

static void on_share(void *arg, int err, const tg_outbox_row_t *rows, unsigned n)
{
    claimer_t *c = arg;
    c->outstanding--;
    c->errors += err != 0;
    for (unsigned i = 0; i < n && c->n < SHARE_ROWS; i++)
        c->ids[c->n++] = rows[i].id;
    /*
     * Claim again while claims find rows. One that comes back empty may have
     * lost its picks to a lease of another claim, which then claims again:
     * the last claim standing comes back empty only when nothing is left.
     */
    if (err == 0 && n > 0 && tg_outbox_claim(ob_of(c->db), SHARE_MAX, 60000, on_share, c) == 0)
        c->outstanding++;
}

static void claimer_start(claimer_t *c, db_t *db)
{
    memset(c, 0, sizeof(*c));
    c->db = db;
    for (int i = 0; i < 4; i++)
        if (tg_outbox_claim(ob_of(db), SHARE_MAX, 60000, on_share, c) == 0)
            c->outstanding++;
}

static claimer_t share[3];
static bool claimers_done(void)
{
    return share[0].outstanding == 0 && share[1].outstanding == 0;
}

/*
 * The second process: its own ring and connection, claiming until nothing is
 * left; tells the parent when it is ready, then writes the ids it got.
 */
static void child_claimer(int ready_fd, int ids_fd)
{
    static claimer_t *me = &share[2];
    if (rx_loop_init(&loop, 64) < 0)
        _exit(2);
    db_t *db = new_db(NULL, 0, 0);
    ready_db = db;
    if (!run_until(is_ready, 5000))
        _exit(3);
    if (write(ready_fd, "r", 1) != 1)
        _exit(4);
    claimer_start(me, db);
    while (me->outstanding > 0)
        run_for(5);
    size_t bytes = me->n * sizeof(me->ids[0]);
    _exit(write(ids_fd, me->ids, bytes) == (ssize_t)bytes && me->errors == 0 ? 0 : 5);
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_shared_outbox(db_t *a)
{
    static int64_t all[3 * SHARE_ROWS];
    int rp[2], ip[2];
    char byte;

    clear_outbox();
    add_rows(SHARE_ROWS, 700, -1);
    db_t *b = ready(new_db(NULL, 0, 0));
    if (pipe(rp) != 0 || pipe(ip) != 0)
        tap_bail("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(rp[0]);
        close(ip[0]);
        child_claimer(rp[1], ip[1]);
    }
    close(rp[1]);
    close(ip[1]);
    if (read(rp[0], &byte, 1) != 1)
        tap_bail("the claiming process did not start");
    uint64_t t0 = mono_ms();
    claimer_start(&share[0], a);
    claimer_start(&share[1], b);
    tap_ok(run_until(claimers_done, 20000), "two connections claimed until nothing was left");
    uint64_t took = mono_ms() - t0;
    ssize_t got = 0, r;
    share[2].n = 0;
    while ((r = read(ip[0], (char *)share[2].ids + got, sizeof(share[2].ids) - (size_t)got)) > 0)
        got += r;
    close(ip[0]);
    close(rp[0]);
    int st = -1;
    waitpid(pid, &st, 0);
    share[2].n = (unsigned)(got / (ssize_t)sizeof(int64_t));
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "and a second process did too (status %d)",
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    unsigned n = 0;
    for (int i = 0; i < 3; i++) {
        memcpy(all + n, share[i].ids, share[i].n * sizeof(int64_t));
        n += share[i].n;
    }
    qsort(all, n, sizeof(all[0]), cmp_id);
    unsigned dups = 0;
    for (unsigned i = 1; i < n; i++)
        dups += all[i] == all[i - 1];
    tap_diag("%u rows in %llu ms: %u, %u and %u (other process) in claims of %d", n,
             (unsigned long long)took, share[0].n, share[1].n, share[2].n, SHARE_MAX);
    tap_ok(dups == 0 && n == SHARE_ROWS && share[0].errors == 0 && share[1].errors == 0,
           "every row claimed exactly once among them (%u rows, %u twice)", n, dups);
    /*
     * Not asserted: that each got some. Claimers whose walks see the same
     * rows race for them, and one that loses every race stops; one sender
     * per bot claims in production.
     */
    free_db(b);
}

static void test_lease_expiry(db_t *db)
{
    claim_t c;

    clear_outbox();
    int64_t id = add_rows(1, 800, -1);
    tap_ok(claim(db, &c, 5, 300) == 0 && settle(3000) && c.n == 1 && c.ids[0] == id,
           "a row claimed with a 300 ms lease");
    tap_ok(claim(db, &c, 5, 300) == 0 && settle(3000) && c.err == 0 && c.n == 0,
           "not claimable while the lease runs");
    run_for(400);
    tap_ok(claim(db, &c, 5, 60000) == 0 && settle(3000) && c.n == 1 && c.ids[0] == id &&
               c.attempts[0] == 0,
           "claimable again once it ran out, attempts unchanged (at-least-once)");
}

/*
 * Marks name the claim they follow: after a row's lease ran out and another
 * claim took it, a mark under the first claim's token changes nothing, and
 * the new claim's marks apply. A lease that ran out with no claim since
 * still takes its own claim's mark.
 */
static void test_tokens(db_t *db)
{
    claim_t c;
    done_t d[6];
    char v[256], w[256];

    clear_outbox();
    int64_t a = add_rows(2, 1700, -1);
    tap_ok(claim(db, &c, 5, 300) == 0 && settle(3000) && c.n == 2,
           "tokens: two rows claimed with a 300 ms lease");
    int64_t old_a = tok(a), old_b = tok(a + 1);
    run_for(400);
    tap_ok(claim(db, &c, 5, 60000) == 0 && settle(3000) && c.n == 2 && tok(a) != old_a &&
               tok(a + 1) != old_b,
           "tokens: taken again by a claim with a token of its own once the lease ran out");
    snapshot();
    int64_t ids[] = {a, a + 1}, olds[] = {old_a, old_b};
    accepted(tg_outbox_sent_many(ob_of(db), ids, olds, 2, on_done, reset(&d[0])));
    accepted(tg_outbox_retry(ob_of(db), a, old_a, 1000, "old", on_done, reset(&d[1])));
    accepted(tg_outbox_fail(ob_of(db), a, old_a, "old", on_done, reset(&d[2])));
    accepted(tg_outbox_retarget(ob_of(db), a, old_a, 1799, on_done, reset(&d[3])));
    accepted(tg_outbox_release(ob_of(db), a + 1, old_b, on_done, reset(&d[4])));
    accepted(tg_outbox_sent(ob_of(db), a + 1, old_b, on_done, reset(&d[5])));
    bool answered = settle(3000);
    int errs = 0;
    for (int i = 0; i < 6; i++)
        errs += d[i].err != 0;
    tap_ok(answered && errs == 0, "tokens: marks under the old token answered err 0 (%d errors)",
           errs);
    tap_ok(
        strcmp(changed(a, v, sizeof(v)), "") == 0 && strcmp(changed(a + 1, w, sizeof(w)), "") == 0,
        "tokens: and sent, retry, fail, retarget, release under it changed nothing (%s; %s)", v, w);
    sent(db, &d[0], a);
    retry(db, &d[1], a + 1, 1000, "new");
    tap_ok(settle(3000) && d[0].err == 0 && d[1].err == 0 &&
               strcmp(changed(a, v, sizeof(v)), "claimed_until,sent_at") == 0 &&
               strcmp(changed(a + 1, w, sizeof(w)),
                      "attempts,claimed_until,last_error,not_before") == 0,
           "tokens: under the new claim's token they apply (%s; %s)", v, w);

    int64_t e = add_rows(1, 1701, -1);
    tap_ok(claim(db, &c, 5, 300) == 0 && settle(3000) && c.n == 1 && c.ids[0] == e,
           "tokens: a row claimed with a 300 ms lease");
    run_for(400);
    tap_ok(sent(db, &d[0], e) == 0 && settle(3000) && d[0].err == 0 &&
               q("SELECT count(*) FROM outbox WHERE id = %lld AND sent_at IS NOT NULL",
                 (long long)e) == 1,
           "tokens: its lease ran out and no claim took it since: its sent mark applies");
}

static void test_marks(db_t *db)
{
    static char long_error[3200];
    claim_t c;
    done_t d[5];
    char v[512];

    clear_outbox();
    int64_t a = add_rows(5, 900, -10); /* a sent, b retry, c fail, d retarget, e untouched */
    q("INSERT INTO outbox (chat_id, method, body) VALUES (901, 'sendMessage', 'not json')");
    int64_t bad = a + 5;
    claim(db, &c, 10, 60000);
    tap_ok(settle(3000) && c.n == 6, "six rows claimed");
    snapshot();
    /* One byte that is not UTF-8, then 1500 two-byte characters: 3001 bytes. */
    long_error[0] = '\xff';
    for (int i = 0; i < 1500; i++)
        memcpy(long_error + 1 + 2 * i, "\xc3\xa9", 2);
    sent(db, &d[0], a);
    retry(db, &d[1], a + 1, 5000, "429 Too Many Requests: retry after 5");
    fail(db, &d[2], a + 2, long_error);
    retarget(db, &d[3], a + 3, -1001234567890);
    retarget(db, &d[4], bad, 42);
    tap_ok(d[0].calls + d[1].calls + d[2].calls + d[3].calls + d[4].calls == 0,
           "no mark's callback runs synchronously");
    tap_ok(settle(3000) && d[0].err == 0 && d[1].err == 0 && d[2].err == 0 && d[3].err == 0,
           "sent, retry, fail and retarget done");
    tap_ok(d[4].err == -EBADMSG, "retarget of a body that is not JSON: -EBADMSG (%d)", d[4].err);

    tap_ok(strcmp(changed(a, v, sizeof(v)), "claimed_until,sent_at") == 0, "sent changed %s", v);
    tap_ok(strcmp(changed(a + 1, v, sizeof(v)), "attempts,claimed_until,last_error,not_before") ==
               0,
           "retry changed %s", v);
    tap_ok(strcmp(changed(a + 2, v, sizeof(v)), "attempts,claimed_until,failed_at,last_error") == 0,
           "fail changed %s", v);
    tap_ok(strcmp(changed(a + 3, v, sizeof(v)), "attempts,body,chat_id,claimed_until,not_before") ==
               0,
           "retarget changed %s", v);
    tap_ok(strcmp(changed(a + 4, v, sizeof(v)), "") == 0 &&
               strcmp(changed(bad, v, sizeof(v)), "") == 0,
           "the untouched row and the refused retarget's row are unchanged");

    tap_ok(
        q("SELECT count(*) FROM outbox WHERE id = %lld AND sent_at BETWEEN now() - interval '5 s' "
          "AND now() AND claimed_until IS NULL",
          (long long)a) == 1,
        "sent: sent_at = now(), claimed_until null");
    tap_ok(
        q("SELECT count(*) FROM outbox WHERE id = %lld AND attempts = 1 AND last_error = '429 Too "
          "Many Requests: retry after 5' AND not_before BETWEEN now() + interval '3 s' AND now() + "
          "interval '5 s' AND failed_at IS NULL AND sent_at IS NULL",
          (long long)a + 1) == 1,
        "retry: attempts + 1, last_error, not_before = now() + 5 s");
    qs(NULL, v, sizeof(v),
       "SELECT octet_length(last_error) || ' ' || left(last_error, 3) || ' ' || attempts || ' ' "
       "|| (failed_at IS NOT NULL) FROM outbox WHERE id = %lld",
       (long long)a + 2);
    tap_ok(strcmp(v, "999 ?\xc3\xa9\xc3\xa9 1 true") == 0,
           "fail: failed_at set, attempts + 1, last_error cut to 999 bytes of valid UTF-8 (%s)", v);
    qs(NULL, v, sizeof(v), "SELECT chat_id || ' ' || body FROM outbox WHERE id = %lld",
       (long long)a + 3);
    tap_ok(strcmp(v, "-1001234567890 {\"text\": \"row 4\", \"chat_id\": -1001234567890}") == 0,
           "retarget: chat_id and the body's chat_id replaced (%s)", v);

    tap_ok(claim(db, &c, 10, 60000) == 0 && settle(3000) && c.n == 1 && c.ids[0] == a + 3 &&
               c.chat[0] == -1001234567890 && strstr(c.body, "-1001234567890") != NULL &&
               c.attempts[0] == 1,
           "the retargeted row is due again at once, its send counted in attempts; the retried "
           "one is not due");

    /* Repeats, as after a lost connection: none counts twice. */
    snapshot();
    sent(db, &d[0], a);
    retry(db, &d[1], a + 1, 1000, "again");
    fail(db, &d[2], a + 2, "again");
    tap_ok(settle(3000) && d[0].err == 0 && d[1].err == 0 && d[2].err == 0,
           "sent, retry and fail repeated: err 0");
    tap_ok(strcmp(changed(a, v, sizeof(v)), "") == 0 &&
               strcmp(changed(a + 1, v, sizeof(v)), "") == 0 &&
               strcmp(changed(a + 2, v, sizeof(v)), "") == 0,
           "and nothing changed: the row was not in the state they apply to");
    retry(db, &d[1], a + 3, 1000, NULL);
    /* Its retarget counted one attempt, this retry the second. */
    tap_ok(
        settle(3000) && d[1].err == 0 &&
            q("SELECT count(*) FROM outbox WHERE id = %lld AND attempts = 2 AND last_error IS NULL",
              (long long)a + 3) == 1,
        "retry with no error text: last_error null");

    snapshot();
    release(db, &d[0], a + 4);
    release(db, &d[1], a);
    tap_ok(settle(3000) && d[0].err == 0 && d[1].err == 0 &&
               strcmp(changed(a + 4, v, sizeof(v)), "claimed_until") == 0,
           "release changed %s", v);
    tap_ok(strcmp(changed(a, v, sizeof(v)), "") == 0, "release of a sent row changed nothing");
    tap_ok(claim(db, &c, 10, 60000) == 0 && settle(3000) && c.n == 1 && c.ids[0] == a + 4 &&
               c.attempts[0] == 0,
           "a released row is claimable again at once, attempts unchanged");
}

static void test_sent_many(db_t *db)
{
    claim_t c;
    done_t d;

    clear_outbox();
    int64_t a = add_chat_rows(4, 950);
    int64_t b = add_chat_rows(1, 951);
    claim(db, &c, 10, 60000);
    tap_ok(settle(3000) && c.n == 5, "sent_many: the five rows claimed");
    int64_t ids[] = {a, b}, toks[] = {tok(a), tok(b)};
    tap_ok(accepted(tg_outbox_sent_many(ob_of(db), ids, toks, 2, on_done, reset(&d))) == 0 &&
               d.calls == 0,
           "sent_many: taken, its callback not run synchronously");
    tap_ok(settle(3000) && d.calls == 1 && d.err == 0, "sent_many: one callback, err 0");
    tap_ok(q("SELECT count(*) FROM outbox WHERE id IN (%lld, %lld) AND sent_at IS NOT NULL AND "
             "claimed_until IS NULL",
             (long long)a, (long long)b) == 2 &&
               q("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL") == 2,
           "sent_many: both rows marked sent and no other");
    long long first = q("SELECT (extract(epoch FROM sent_at) * 1000000)::bigint FROM outbox "
                        "WHERE id = %lld",
                        (long long)a);
    int64_t again[] = {a, a + 1}, again_toks[] = {tok(a), tok(a + 1)};
    accepted(tg_outbox_sent_many(ob_of(db), again, again_toks, 2, on_done, reset(&d)));
    tap_ok(settle(3000) && d.err == 0 &&
               q("SELECT (extract(epoch FROM sent_at) * 1000000)::bigint FROM outbox "
                 "WHERE id = %lld",
                 (long long)a) == first &&
               q("SELECT count(*) FROM outbox WHERE id = %lld AND sent_at IS NOT NULL",
                 (long long)(a + 1)) == 1,
           "sent_many: a row marked again keeps its first sent_at; the new one is marked");
}

static void test_release_many(db_t *db)
{
    claim_t c;
    done_t d;

    clear_outbox();
    int64_t a = add_chat_rows(1, 960);
    int64_t b = add_chat_rows(1, 961);
    int64_t e = add_chat_rows(1, 962);
    claim(db, &c, 10, 60000);
    tap_ok(settle(3000) && c.n == 3, "release_many: the three rows claimed");
    /* b under a token that is not its claim's: left as it is. */
    int64_t ids[] = {a, b, e}, toks[] = {tok(a), tok(b) + 1, tok(e)};
    tap_ok(accepted(tg_outbox_release_many(ob_of(db), ids, toks, 3, on_done, reset(&d))) == 0 &&
               d.calls == 0,
           "release_many: taken, its callback not run synchronously");
    tap_ok(settle(3000) && d.calls == 1 && d.err == 0, "release_many: one callback, err 0");
    tap_ok(q("SELECT count(*) FROM outbox WHERE id IN (%lld, %lld) AND claimed_until IS NULL AND "
             "sent_at IS NULL",
             (long long)a, (long long)e) == 2 &&
               q("SELECT count(*) FROM outbox WHERE id = %lld AND claimed_until > now()",
                 (long long)b) == 1,
           "release_many: the rows under their claims' tokens are free again, the other still "
           "leased");
    claim(db, &c, 10, 60000);
    tap_ok(settle(3000) && c.n == 2, "release_many: a claim takes the two released rows again");
}

static void test_due_count(db_t *db)
{
    done_t d, e;

    clear_outbox();
    add_rows(3, 1000, -1);
    add_rows(2, 1001, 30);
    add_rows(4, 1002, 7200);
    int64_t s = add_rows(1, 1003, -1);
    q("UPDATE outbox SET sent_at = now() WHERE id = %lld", (long long)s);
    due(db, &d, 0);
    due(db, &e, 60000);
    bool answered = settle(3000);
    tap_ok(answered && d.err == 0 && d.count == 3 && e.err == 0 && e.count == 5,
           "tg_outbox_due: 3 due now, 5 within a minute (%lld, %lld)", (long long)d.count,
           (long long)e.count);
}

/*
 * Outbox operations pipelined between inbox transactions: a refused update
 * fails nothing of the outbox, a refused outbox mark nothing of the inbox.
 */
/* Stores update `id` from the harness's pool; a refusal is marked done with status 1. */
static tu_t *store_out(db_t *db, int64_t id)
{
    tu_t *t = mk(id);
    if (store(db, t) != 0) {
        t->done = true;
        t->status = 1;
    }
    return t;
}

static tu_t **stores;
static unsigned nstores;
static bool stores_done(void)
{
    for (unsigned i = 0; i < nstores; i++)
        if (!stores[i]->done)
            return false;
    return owed == 0;
}

static void test_interleaved(db_t *db)
{
    static tu_t *t[8];
    claim_t c;
    done_t bad, ok_sent, ok_retarget;

    clear_outbox();
    int64_t a = add_rows(3, 1100, -1);
    q("INSERT INTO outbox (chat_id, method, body) VALUES (1101, 'sendMessage', 'not json')");
    /* The two rows marked below without a claim of theirs. */
    lease(a + 2, 11002);
    lease(a + 3, 11003);
    tap_ok(q("ALTER TABLE updates ADD CONSTRAINT no666 CHECK (update_id <> 666666)") == 0,
           "a CHECK constraint refuses update 666666");

    /* Another session holds the outbox, so that what is sent piles up in the pipeline. */
    PGconn *locker = PQconnectdb(conninfo);
    PQclear(PQexec(locker, "BEGIN"));
    PGresult *lr = PQexec(locker, "LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE");
    tap_ok(PQresultStatus(lr) == PGRES_COMMAND_OK, "another session locks the outbox");
    PQclear(lr);

    retarget(db, &bad, a + 3, 7);
    run_for(30);
    t[0] = store_out(db, 120001);
    t[1] = store_out(db, 666666);
    t[2] = store_out(db, 120002);
    claim(db, &c, 2, 60000);
    run_for(30);
    t[3] = store_out(db, 120003);
    sent(db, &ok_sent, a + 2);
    retarget(db, &ok_retarget, a + 2, 1102);
    run_for(30);
    char shape[32] = "";
    size_t o = 0;
    for (db_item_t *it = db_pipe_item(db->conns[0].pipe.head); it != NULL && o + 1 < sizeof(shape);
         it = db_pipe_item(it->link.next))
        shape[o++] = it->ops == db->in->batch[0].item.ops ? 'I' : 'O';
    shape[o] = '\0';
    tap_ok(strcmp(shape, "OIOIOO") == 0,
           "pipeline: refused mark, inbox batch with a refused row, claim, batch, two marks (%s)",
           shape);
    PQclear(PQexec(locker, "COMMIT"));
    PQfinish(locker);

    stores = t;
    nstores = 4;
    tap_ok(run_until(stores_done, 5000), "everything answered once the lock is gone");
    tap_ok(bad.err == -EBADMSG && t[1]->status == -EBADMSG, "the refused mark and update: -EBADMSG");
    tap_ok(t[0]->status == DB_STORED && t[2]->status == DB_STORED && t[3]->status == DB_STORED &&
               q("SELECT count(*) FROM updates WHERE update_id IN (120001, 120002, 120003)") == 3,
           "the updates behind the refused mark, and the refused update's batch-mates, stored");
    tap_ok(c.err == 0 && c.n == 2 && c.ids[0] == a && ok_sent.err == 0 && ok_retarget.err == 0,
           "the outbox operations behind the refused update done");
    tap_ok(
        q("SELECT count(*) FROM outbox WHERE id = %lld AND sent_at IS NOT NULL AND chat_id = 201100",
          (long long)a + 2) == 1,
        "and in effect (sent; the retarget after it found the row sent and left it)");
    q("ALTER TABLE updates DROP CONSTRAINT no666");
}

/*
 * The connection drops after a claim and a retry were executed and before
 * their answers were read: resent after the reconnect, the claim returns the
 * rows the first attempt leased and the retry counts once.
 */
/* The retry's answer stops the loop at the end of its turn, before any later answer is read. */
static void on_done_stop(void *arg, int err)
{
    on_done(arg, err);
    rx_stop(&loop);
}

static void test_resend(db_t *db)
{
    claim_t c, first;
    done_t d;
    char v[128];

    clear_outbox();
    int64_t a = add_rows(3, 1200, -1);
    claim(db, &first, 1, 60000);
    tap_ok(settle(3000) && first.n == 1 && first.ids[0] == a, "row %lld claimed", (long long)a);

    /*
     * The claim's walk, then the retry, go out; the walk's answer submits the
     * lease behind the retry. Once the retry is answered the lease is on its
     * way and its answer not read yet: let the server run it, then drop the
     * connection.
     */
    claim(db, &c, 2, 60000);
    accepted(tg_outbox_retry(ob_of(db), a, tok(a), 1000, "503", on_done_stop, reset(&d)));
    run_for(3000);
    tap_ok(d.calls == 1 && c.calls == 0, "the walk and the retry answered, the claim not yet");
    db_send_queued(db);
    usleep(300 * 1000);
    qs(NULL, v, sizeof(v),
       "SELECT string_agg(id::text, ',' ORDER BY id) FROM outbox WHERE claimed_until > now() "
       "AND claim_token IS NOT NULL");
    char want[64];
    snprintf(want, sizeof(want), "%lld,%lld", (long long)a + 1, (long long)a + 2);
    tap_ok(strcmp(v, want) == 0 &&
               q("SELECT attempts FROM outbox WHERE id = %lld", (long long)a) == 1,
           "the server ran both: rows %s leased, the retry counted", v);
    db_lost(&db->conns[0], "dropped by the test");
    tap_ok(c.calls == 0 && !db_ready(db), "connection dropped, the claim not answered yet");
    bool answered = settle(5000);
    tap_ok(answered && c.err == 0 && c.n == 2 && c.ids[0] == a + 1 && c.ids[1] == a + 2,
           "after the reconnect the claim returns the rows its first attempt leased (%u rows)",
           c.n);
    tap_ok(d.err == 0 && q("SELECT attempts FROM outbox WHERE id = %lld", (long long)a) == 1,
           "and the retry did not count twice");
}

static void test_outage(db_t *a)
{
    db_t *b = ready(new_db(NULL, 0, 400));
    done_t da[3], db_[2];
    claim_t ca, cb, down;

    clear_outbox();
    int64_t id = add_rows(4, 1300, -1);
    claim(a, &ca, 1, 60000);
    settle(3000);
    lease(id + 3, 13003); /* re-targeted below */
    /* Queued in the turn the server goes away: they are never sent on this connection. */
    tap_ok(pg_stop("fast") == 0, "server stopped (pg_ctl stop -m fast)");
    sent(a, &da[0], id);
    claim(a, &ca, 2, 60000);
    retarget(a, &da[1], id + 3, 1399);
    due(a, &da[2], 0);
    sent(b, &db_[0], id + 3);
    claim(b, &cb, 2, 60000);
    retry(b, &db_[1], id, 10, "x");
    run_for(150);
    tap_ok(!db_ready(a) && claim(a, &down, 1, 1000) == -EAGAIN &&
               tg_outbox_sent(ob_of(a), id, tok(id), NULL, NULL) == -EAGAIN,
           "while it is down: tg_outbox_claim and the marks give -EAGAIN");
    tap_ok(wait_calls(2000, &db_[0].calls, &db_[1].calls, &cb.calls, NULL) &&
               db_[0].err == -ETIMEDOUT && db_[1].err == -ETIMEDOUT && cb.err == -ETIMEDOUT,
           "operations with a 400 ms deadline time out");
    run_for(500);
    tap_ok(da[0].calls + da[1].calls + da[2].calls + ca.calls == 0,
           "the ones with a 10 s deadline are still waiting");

    pid_t starter = fork();
    if (starter == 0)
        _exit(pg_start() == 0 ? 0 : 1);
    tap_ok(wait_calls(30000, &da[0].calls, &da[1].calls, &da[2].calls, &ca.calls, NULL),
           "after the restart they are answered");
    int st = -1;
    waitpid(starter, &st, 0);
    tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server started again");
    tap_ok(da[0].err == 0 && da[1].err == 0 && da[2].err == 0 && da[2].count == 3 && ca.err == 0 &&
               ca.n == 2 && ca.ids[0] == id + 1 && ca.ids[1] == id + 2,
           "sent, retarget, due and a claim of the two due rows left done (%d %d %d %d, n %u)",
           da[0].err, da[1].err, da[2].err, ca.err, ca.n);
    tap_ok(q("SELECT count(*) FROM outbox WHERE id = %lld AND sent_at IS NOT NULL",
             (long long)id) == 1 &&
               q("SELECT count(*) FROM outbox WHERE id = %lld AND chat_id = 1399",
                 (long long)id + 3) == 1,
           "and in effect");
    free_db(b);
}

static bool idle_flag;
static void on_idle(void *arg) { *(bool *)arg = true; }
static bool idle_seen(void) { return idle_flag; }

static void test_cap_drain_free(void)
{
    db_t *db = ready(new_db(NULL, 3, 0));
    done_t d[4];
    claim_t c;

    clear_outbox();
    int64_t id = add_rows(2, 1400, -1);
    int r[4];
    r[0] = sent(db, &d[0], id);
    r[1] = sent(db, &d[1], id + 1);
    r[2] = due(db, &d[2], 0);
    r[3] = sent(db, &d[3], id);
    tap_ok(r[0] == 0 && r[1] == 0 && r[2] == 0 && r[3] == -EAGAIN && tg_outbox_pending(ob_of(db)) == 3,
           "outbox_max 3: the fourth operation gives -EAGAIN");
    tap_ok(settle(3000) && d[0].err == 0 && d[1].err == 0 && d[2].err == 0 &&
               tg_outbox_pending(ob_of(db)) == 0,
           "the three accepted are done");

    idle_flag = false;
    sent(db, &d[0], id);
    db_drain(db, on_idle, &idle_flag);
    tap_ok(claim(db, &c, 1, 1000) == -EAGAIN && sent(db, &d[1], id) == 0,
           "after db_drain: claims -EAGAIN, marks still taken");
    tap_ok(!idle_flag && run_until(idle_seen, 3000) && d[0].calls == 1 && d[1].calls == 1,
           "on_idle once the marks are done");
    free_db(db);

    db = ready(new_db(NULL, 0, 0));
    claim(db, &c, 1, 1000);
    sent(db, &d[0], id);
    db_free(db);
    forget_ob(db);
    tap_ok(c.calls == 1 && c.err == -ECANCELED && c.n == 0 && d[0].calls == 1 &&
               d[0].err == -ECANCELED,
           "db_free answers pending operations -ECANCELED, synchronously");
    run_for(20);
}

/*
 * How long claims and a mark take is reported, not judged (a busy machine
 * may take long); what is checked is that the 20 claims took the 1000 rows
 * in id order, 50 each, without gaps.
 */
static void test_latency(db_t *db)
{
    claim_t c;
    done_t d;
    uint64_t worst = 0, sum = 0;
    unsigned in_order = 0;

    clear_outbox();
    int64_t first = add_rows(1000, 1500, -1);
    for (int i = 0; i < 20; i++) {
        claim(db, &c, 50, 60000);
        settle(3000);
        sum += c.took_ms;
        worst = c.took_ms > worst ? c.took_ms : worst;
        bool ok = c.err == 0 && c.n == 50;
        for (unsigned k = 0; ok && k < 50; k++)
            ok = c.ids[k] == first + 50 * i + (int64_t)k;
        in_order += ok;
    }
    uint64_t t0 = mono_ms();
    sent(db, &d, 1);
    settle(3000);
    tap_diag(
        "claims of 50 rows out of 1000 due: %llu ms on average, %llu ms at most; a mark: %llu ms",
        (unsigned long long)(sum / 20), (unsigned long long)worst,
        (unsigned long long)(mono_ms() - t0));
    tap_ok(in_order == 20 && d.err == 0,
           "20 claims of 50 took the 1000 rows in id order (%u in order), and the mark was done",
           in_order);
}

int main(void)
{
    harness_start();
    test_migrate_from_0001();
    if (db_migrate(conninfo) != (int)db_migrations_count)
        tap_bail("db_migrate");
    /*
     * One connection: test_interleaved reads the order of the inbox's and the
     * outbox's items in its pipeline, and test_resend drops it. The other
     * databases below have the default, several.
     */
    db_t *db = ready(new_db_n(NULL, 0, 10000, 1));
    test_claim_order(db);
    test_runs(db);
    test_claims_in_flight(db);
    test_shared_outbox(db);
    test_lease_expiry(db);
    test_marks(db);
    test_tokens(db);
    test_sent_many(db);
    test_release_many(db);
    test_due_count(db);
    test_interleaved(db);
    test_resend(db);
    test_outage(db);
    test_cap_drain_free();
    test_latency(db);
    free_db(db);

    tap_ok(owed == 0 && call_twice == 0 && call_sync == 0,
           "every accepted call had exactly one callback, never from inside the call "
           "(%u missing, %u twice, %u synchronous)",
           owed, call_twice, call_sync);
    tap_ok(loop.heap_len == 0, "no timer left armed");
    harness_end();
    return tap_done();
}
