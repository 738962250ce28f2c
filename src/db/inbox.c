/* SPDX-License-Identifier: MIT */
/*
 * inbox.c - updates stored by group commit, as items of the connections'
 * pipelines (conn.c): a part of its own rather than a db_client_t, because a
 * batch is formed when it is sent and re-formed (without a refused row, or
 * with more arrivals) when it is retried, which a fixed transaction cannot do.
 *
 * db_store() appends to a pending list; at the end of the turn what is
 * pending goes out as one transaction on a ready connection that has no
 * inbox transaction in flight, and the callbacks run when its result
 * arrives. A transaction is one multi-row insert (unnest over five binary
 * arrays: one statement, however many rows, leaves PostgreSQL more of its
 * CPU than a statement per row), then the item's sync; RETURNING says which
 * rows were new. When PostgreSQL refuses such an insert for a row's content,
 * nobody can tell which row it was: its updates go back to the front of the
 * pending list and are sent again one insert per update, so that only the
 * refused one fails and its batch-mates are stored. Each connection has at most one in
 * flight (a lone connection two, see DB_INFLIGHT_ONE), and two are in flight
 * over all connections unless commits are slow (db.h, DB_INBOX_SLOTS_MIN);
 * what arrives while all are busy waits for the next one, so batches grow
 * with the load, and the transactions of different connections commit side
 * by side in their own
 * backends. A lost connection puts every unconfirmed update back in the
 * pending list, for any connection to send again (the insert is idempotent:
 * ON CONFLICT DO NOTHING).
 */
#include "db_private.h"
#include "log.h"
#include "met.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define DB_BATCH_BYTES (1u << 20) /* body bytes per transaction: bounds libpq's buffers */

#define DB_STMT_INSERT "tgring_store_update"
#define DB_STMT_INSERT_MANY "tgring_store_updates"

static const uint32_t db_insert_types[5] = {DB_OID_INT8, DB_OID_TEXT, DB_OID_INT8, DB_OID_INT8,
                                            DB_OID_BYTEA};
static const uint32_t db_insert_many_types[5] = {DB_OID_INT8_ARRAY, DB_OID_TEXT_ARRAY,
                                                 DB_OID_INT8_ARRAY, DB_OID_INT8_ARRAY,
                                                 DB_OID_BYTEA_ARRAY};

static const db_stmt_t db_inbox_stmts[] = {
    {DB_STMT_INSERT,
     "INSERT INTO updates (update_id, update_type, chat_id, from_id, body) "
     "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (update_id) DO NOTHING",
     5, db_insert_types},
    /*
     * unnest() with several arrays zips them, in order: an update_id twice
     * in one batch is stored once, from its first occurrence.
     */
    {DB_STMT_INSERT_MANY,
     "INSERT INTO updates (update_id, update_type, chat_id, from_id, body) "
     "SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::bytea[]) "
     "ON CONFLICT (update_id) DO NOTHING RETURNING update_id",
     5, db_insert_many_types},
};

/* Per-update outcome within a transaction. */
enum { DB_OUT_STORED, DB_OUT_DUPLICATE, DB_OUT_REJECTED, DB_OUT_RESET, DB_OUT_RETRY };

static void db_gauge(const db_t *db)
{
    met_self()->db_queue_depth = db->in->part.count;
}

static void db_slots_set(db_inbox_t *in, unsigned slots)
{
    in->slots = slots;
    met_self()->db_inbox_slots = slots;
}

/*
 * Every slot is busy and an update waits for one: one more slot, if commits
 * are slow (the disk's flush, not PostgreSQL's CPU, is what an update waits
 * for: more transactions in flight share each flush through the server's
 * group commit) and a connection is left. Slow: on average, or this one (the
 * oldest in flight has been out that long: a stall, a lock).
 */
static bool db_slots_grow(db_inbox_t *in)
{
    uint64_t now = core_mono_ns();
    in->waited_ns = now;
    if (in->slots >= in->nbatch)
        return false;
    bool slow = in->commit_ns >= DB_COMMIT_SLOW_NS;
    for (unsigned k = 0; k < in->nbatch && !slow; k++)
        slow = in->batch[k].id != 0 && now - in->batch[k].sent_ns >= DB_COMMIT_SLOW_NS;
    if (!slow)
        return false;
    db_slots_set(in, in->slots + 1);
    return true;
}

/* At a commit: the commit's latency into the average, and one slot fewer if no longer needed. */
static void db_slots_commit(db_inbox_t *in, uint64_t now, uint64_t latency)
{
    in->commit_ns = latency >= in->commit_ns ? in->commit_ns + (latency - in->commit_ns) / 8
                                             : in->commit_ns - (in->commit_ns - latency) / 8;
    if (in->slots > in->slots_min &&
        (in->commit_ns < DB_COMMIT_SLOW_NS / 2 || now - in->waited_ns >= DB_SLOTS_IDLE_NS))
        db_slots_set(in, in->slots - 1);
}

static db_update_t *db_upd(core_qlink_t *l)
{
    return container_of(l, db_update_t, link);
}

/*
 * Puts the chain (updates in order) in front of the pending queue. It moves
 * the pending ones behind the chain one by one, which costs a walk of the
 * queue, but only after a failed or lost transaction.
 */
static void db_prepend(db_inbox_t *in, core_queue_t *chain)
{
    core_qlink_t *l;

    if (core_queue_empty(chain))
        return;
    while ((l = core_queue_pop(&in->pending)) != NULL)
        core_queue_push(chain, l);
    in->pending = *chain;
    core_queue_init(chain);
}

/* Appends u, taken out of any batch, to the chain. */
static void db_chain(core_queue_t *chain, db_update_t *u)
{
    u->batch = 0;
    core_queue_push(chain, &u->link);
}

/* Runs u's callback; it no longer counts as pending. */
static void db_finish(db_t *db, db_update_t *u, int status)
{
    met_slot_t *m = met_self();

    assert(db->in->part.count > 0);
    db->in->part.count--;
    db_gauge(db);
    u->batch = 0;
    if (status == DB_STORED)
        m->updates_stored++;
    else if (status == DB_DUPLICATE)
        m->updates_duplicate++;
    else if (status == -EBADMSG)
        m->updates_rejected++;
    u->cb(u, status);
}

/* Runs the callbacks of a chain of updates with one status; empties it. */
static void db_finish_chain(db_t *db, core_queue_t *chain, int status)
{
    core_qlink_t *l;

    while ((l = core_queue_pop(chain)) != NULL)
        db_finish(db, db_upd(l), status);
}

/* ---- the batch as a pipeline item ---- */

static bool db_send_insert(db_conn_t *c, const db_update_t *u)
{
    static const int formats[5] = {1, 1, 1, 1, 1};
    uint64_t id = htobe64((uint64_t)u->update_id);
    uint64_t chat = htobe64((uint64_t)u->chat_id);
    uint64_t from = htobe64((uint64_t)u->from_id);
    const char *values[5] = {
        (const char *)&id,
        u->type,
        u->has_chat ? (const char *)&chat : NULL,
        u->has_from ? (const char *)&from : NULL,
        u->body != NULL ? u->body : "", /* a NULL value would be SQL NULL */
    };
    int lengths[5] = {8, (int)u->type_len, 8, 8, (int)u->body_len};

    return PQsendQueryPrepared(c->pg, DB_STMT_INSERT, 5, values, lengths, formats, 0) == 1;
}

/* An int8 element, or NULL when there is none. */
static void db_array_opt_int8(db_array_t *a, bool has, int64_t v)
{
    if (has)
        db_array_int8(a, v);
    else
        db_array_null(a);
}

/* A text element, or NULL for a NULL pointer (as libpq sends a NULL value). */
static void db_array_opt_bytes(db_array_t *a, const char *p, size_t len)
{
    if (p != NULL)
        db_array_bytes(a, p, len);
    else
        db_array_null(a);
}

/*
 * Sends the batch's updates as one multi-row insert: five arrays built in
 * the inbox's own (libpq copies parameters when the statement is queued, so
 * they are free again at return).
 */
static bool db_send_insert_many(db_conn_t *c, const db_batch_t *b)
{
    static const int formats[5] = {1, 1, 1, 1, 1};
    db_array_t *a = c->db->in->arr;
    const char *values[5];
    int lengths[5];

    for (unsigned col = 0; col < 5; col++)
        db_array_begin(&a[col], db_insert_types[col]);
    for (unsigned i = 0; i < b->n; i++) {
        const db_update_t *u = b->u[i];
        db_array_int8(&a[0], u->update_id);
        db_array_opt_bytes(&a[1], u->type, u->type_len);
        db_array_opt_int8(&a[2], u->has_chat, u->chat_id);
        db_array_opt_int8(&a[3], u->has_from, u->from_id);
        /* No body is an empty one, as in db_send_insert(). */
        db_array_bytes(&a[4], u->body, u->body != NULL ? u->body_len : 0);
    }
    for (unsigned col = 0; col < 5; col++) {
        db_param_t p = db_array_param(&a[col]);
        values[col] = p.ptr;
        lengths[col] = (int)p.len;
    }
    return PQsendQueryPrepared(c->pg, DB_STMT_INSERT_MANY, 5, values, lengths, formats, 1) == 1;
}

/*
 * Moves the oldest pending updates into the batch and sends them: one
 * multi-row insert, or an insert per update for those to isolate. Returns
 * the number of statements.
 */
static int db_batch_send(db_conn_t *c, db_item_t *it)
{
    db_batch_t *b = container_of(it, db_batch_t, item);
    db_inbox_t *in = c->db->in;
    size_t bytes = 0;

    b->many = in->isolate == 0;
    while (!core_queue_empty(&in->pending) && b->n < c->db->opt.max_batch &&
           (b->many || b->n < in->isolate) &&
           (b->n == 0 || bytes + db_upd(in->pending.head)->body_len <= DB_BATCH_BYTES)) {
        db_update_t *u = db_upd(core_queue_pop(&in->pending));
        u->batch = b->id;
        u->followed = false;
        b->u[b->n] = u;
        b->out[b->n] = b->many ? DB_OUT_DUPLICATE : DB_OUT_STORED;
        b->n++;
        bytes += u->body_len;
        if (!b->many && !db_send_insert(c, u))
            return -1;
    }
    if (!b->many)
        in->isolate = in->isolate > b->n ? in->isolate - b->n : 0;
    else if (!db_send_insert_many(c, b))
        return -1;
    met_slot_t *m = met_self();
    met_observe_batch(&m->db_batch_size, (double)b->n);
    b->sent_ns = core_mono_ns();
    for (unsigned i = 0; i < b->n; i++)
        met_observe_latency(&m->db_queue, (double)(b->sent_ns - b->u[i]->enqueued_ns) / 1e9);
    return b->many ? 1 : (int)b->n;
}

/*
 * The rows a multi-row insert stored (RETURNING update_id): each marks the
 * first of the batch's updates with its id that is not marked yet, the
 * others stay duplicates. Rows come back in the batch's order as a rule,
 * so the search starts after the last match.
 */
static void db_batch_stored(db_batch_t *b, const PGresult *r)
{
    unsigned next = 0;

    for (int row = 0; row < PQntuples(r); row++) {
        uint64_t be;
        if (PQgetlength(r, row, 0) != 8)
            continue;
        memcpy(&be, PQgetvalue(r, row, 0), 8);
        int64_t id = (int64_t)be64toh(be);
        for (unsigned k = 0; k < b->n; k++) {
            unsigned i = (next + k) % b->n;
            if (b->u[i] != NULL && b->u[i]->update_id == id && b->out[i] == DB_OUT_DUPLICATE) {
                b->out[i] = DB_OUT_STORED;
                next = i + 1;
                break;
            }
        }
    }
}

/* Records the first failure of the transaction, at statement `pos`. */
static void db_batch_error(db_t *db, db_batch_t *b, unsigned pos, const PGresult *r)
{
    char msg[DB_MSG_MAX];
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    db_update_t *u = !b->many && pos < b->n ? b->u[pos] : NULL;
    long long id = u != NULL ? (long long)u->update_id : -1;
    unsigned last = b->many ? 1 : b->n; /* statements before the commit */

    if (b->fail != DB_FAIL_NONE)
        return;
    db_result_msg(r, msg, sizeof(msg));
    if (b->many && pos == 0 && db_is_row_error(state)) {
        /* Which row, nobody can tell: its updates are sent again an insert each. */
        b->fail = DB_FAIL_ISOLATE;
        db_warn_limited(db, "db_batch_refused",
                        "a transaction of %u updates was refused for a row (SQLSTATE %s: %s); "
                        "sending them again one by one",
                        b->n, state, msg);
    } else if (b->many || pos >= last) {
        b->fail = DB_FAIL_TXN;
        db_warn_limited(db, "db_commit_failed",
                        "transaction of %u updates failed at %s, retrying: SQLSTATE %s: %s", b->n,
                        pos >= last ? "commit" : "its insert", state ? state : "none", msg);
    } else if (db_is_row_error(state)) {
        b->fail = DB_FAIL_ROW;
        b->fail_idx = pos;
        if (u != NULL)
            log_warn("update_rejected", "update %lld rejected by the database: SQLSTATE %s: %s", id,
                     state, msg);
    } else {
        b->fail = DB_FAIL_ROW_RETRY;
        b->fail_idx = pos;
        db_warn_limited(db, "db_insert_failed",
                        "storing update %lld failed, retrying: SQLSTATE %s: %s", id,
                        state ? state : "none", msg);
    }
}

static bool db_batch_result(db_conn_t *c, db_item_t *it, PGresult *r)
{
    db_t *db = c->db;
    db_batch_t *b = container_of(it, db_batch_t, item);
    ExecStatusType st = PQresultStatus(r);

    switch (st) {
    case PGRES_TUPLES_OK:
        if (b->many && it->pos == 0) {
            db_batch_stored(b, r);
            break;
        }
        /* Only the multi-row insert returns rows. */
        __attribute__((fallthrough));
    case PGRES_COMMAND_OK:
        if (!b->many && it->pos < b->n && st == PGRES_COMMAND_OK) {
            /* ON CONFLICT DO NOTHING inserts one row or none. */
            b->out[it->pos] = strcmp(PQcmdTuples(r), "0") == 0 ? DB_OUT_DUPLICATE : DB_OUT_STORED;
            break;
        }
        /* A second result for a statement cannot be told apart from the commit: fail safe. */
        __attribute__((fallthrough));
    case PGRES_PIPELINE_ABORTED:
        /* Skipped after an earlier error: that error decides. */
        if (b->fail == DB_FAIL_NONE) {
            b->fail = DB_FAIL_TXN;
            db_warn_limited(db, "db_unexpected_result", "unexpected %s in a transaction; retrying",
                            PQresStatus(st));
        }
        break;
    default:
        db_batch_error(db, b, it->pos, r);
        break;
    }
    return false;
}

/* The transaction got its sync: run callbacks, or put updates back. */
static void db_batch_done(db_conn_t *c, db_item_t *it)
{
    db_t *db = c->db;
    db_batch_t *b = container_of(it, db_batch_t, item);
    core_queue_t chain;

    uint64_t now = core_mono_ns();
    db->in->nflight--;
    db->in->flight[c->idx]--;
    db->in->done[c->idx]++;
    met_observe_latency(&met_self()->db_commit, (double)(now - b->sent_ns) / 1e9);
    db_slots_commit(db->in, now, now - b->sent_ns);
    core_queue_init(&chain);
    if (b->fail == DB_FAIL_ISOLATE) {
        /* Not a try: the same updates go again, an insert each. */
        for (unsigned i = 0; i < b->n; i++) {
            if (b->u[i] == NULL)
                continue;
            db_chain(&chain, b->u[i]);
            b->u[i] = NULL;
            db->in->isolate++;
        }
        db_prepend(db->in, &chain);
    } else if (b->fail != DB_FAIL_NONE) {
        for (unsigned i = 0; i < b->n; i++) {
            db_update_t *u = b->u[i];
            if (u == NULL)
                continue;
            bool blamed = b->fail == DB_FAIL_TXN || i == b->fail_idx;
            if (b->fail == DB_FAIL_ROW && i == b->fail_idx)
                b->out[i] = DB_OUT_REJECTED;
            else if (blamed && ++u->tries >= DB_TRIES_MAX)
                b->out[i] = DB_OUT_RESET;
            else
                b->out[i] = DB_OUT_RETRY;
            if (b->out[i] != DB_OUT_RETRY)
                continue;
            /* Batch-mates go back to the front, in order, for the next transaction. */
            b->u[i] = NULL;
            db_chain(&chain, u);
        }
        db_prepend(db->in, &chain);
    }
    /*
     * The slot (and the connection's turn) is free from here, but it is
     * filled only at the end of the turn, so the callbacks below may call
     * db_store() safely.
     */
    b->id = 0;
    unsigned reset = 0;
    long long reset_id = 0;
    for (unsigned i = 0; i < b->n; i++) {
        db_update_t *u = b->u[i];
        if (u == NULL)
            continue;
        b->u[i] = NULL;
        switch (b->out[i]) {
        case DB_OUT_STORED:
            db_finish(db, u, DB_STORED);
            break;
        case DB_OUT_DUPLICATE:
            db_finish(db, u, DB_DUPLICATE);
            break;
        case DB_OUT_REJECTED:
            db_finish(db, u, -EBADMSG);
            break;
        default:
            if (reset++ == 0)
                reset_id = (long long)u->update_id;
            db_finish(db, u, -ECONNRESET);
            break;
        }
    }
    if (reset > 0)
        log_warn("updates_not_stored",
                 "%u update%s not stored (first %lld): the transaction failed %d times", reset,
                 reset == 1 ? "" : "s", reset_id, DB_TRIES_MAX);
    b->n = 0;
    if (!core_queue_empty(&db->in->pending))
        db_kick(db);
    db_check_idle(db);
}

/* Whatever was not confirmed goes back to the front of the pending list, in order. */
static void db_batch_lost(db_conn_t *c, db_item_t *it)
{
    db_t *db = c->db;
    db_batch_t *b = container_of(it, db_batch_t, item);
    core_queue_t chain;

    core_queue_init(&chain);
    for (unsigned i = 0; i < b->n; i++) {
        db_update_t *u = b->u[i];
        if (u == NULL)
            continue;
        b->u[i] = NULL;
        db_chain(&chain, u);
    }
    db_prepend(db->in, &chain);
    b->id = 0;
    b->n = 0;
    db->in->nflight--;
    db->in->flight[c->idx]--;
}

static const db_item_ops_t db_batch_ops = {
    .send = db_batch_send,
    .result = db_batch_result,
    .done = db_batch_done,
    .lost = db_batch_lost,
};

/* ---- the part's ops, called by conn.c ---- */

/* A connection with room for another inbox transaction. */
static bool db_inbox_room(const db_conn_t *c, void *arg)
{
    const db_inbox_t *in = arg;
    return in->flight[c->idx] < in->per_conn;
}

static void db_inbox_send(db_part_t *p)
{
    db_inbox_t *in = container_of(p, db_inbox_t, part);
    db_conn_t *c;

    /*
     * Each batch where the pipeline is shortest (so that it does not queue
     * behind other parts' transactions while another backend is free), round
     * robin among equals, so that each backend stays warm.
     */
    while (!core_queue_empty(&in->pending) && (in->nflight < in->slots || db_slots_grow(in)) &&
           (c = db_conn_pick(p->db, &in->next_conn, db_inbox_room, in)) != NULL) {
        db_batch_t *b = &in->batch[0];
        while (b->id != 0)
            b++;
        if (++in->next_id == 0)
            in->next_id = 1;
        b->id = in->next_id;
        b->n = 0;
        b->fail = DB_FAIL_NONE;
        in->nflight++;
        in->flight[c->idx]++;
        /* On failure the connection is down and its lost() put the updates back. */
        if (db_item_push(c, &b->item) && p->db->batch_hook != NULL) {
            int64_t low = b->u[0]->update_id;
            for (unsigned i = 1; i < b->n; i++)
                if (b->u[i]->update_id < low)
                    low = b->u[i]->update_id;
            p->db->behind = c;
            p->db->batch_hook(p->db->batch_arg, low);
            p->db->behind = NULL;
            /*
             * Something now behind the batch in its pipeline runs after its
             * COMMIT. (A push that broke the connection gave the batch back.)
             */
            if (c->state == DB_READY && c->pipe.tail != &b->item.link)
                for (unsigned i = 0; i < b->n; i++)
                    b->u[i]->followed = true;
        }
    }
}

static uint64_t db_upd_since(const core_qlink_t *l)
{
    return container_of(l, db_update_t, link)->enqueued_ms;
}

static void db_inbox_expire(db_part_t *p, uint64_t now)
{
    db_inbox_t *in = container_of(p, db_inbox_t, part);
    db_t *db = p->db;
    core_queue_t expired;

    core_queue_init(&expired);
    db_take_expired(&in->pending, &expired, now, db->opt.ack_timeout_ms, db_upd_since);
    for (unsigned k = 0; k < in->nbatch; k++) {
        db_batch_t *b = &in->batch[k];
        for (unsigned i = 0; b->id != 0 && i < b->n; i++) {
            db_update_t *u = b->u[i];
            if (u == NULL || now - u->enqueued_ms < db->opt.ack_timeout_ms)
                continue;
            /* Its result still comes and is ignored; the slot stays for the positions. */
            b->u[i] = NULL;
            db_chain(&expired, u);
        }
    }
    db_finish_chain(db, &expired, -ETIMEDOUT);
}

static void db_inbox_cancel(db_part_t *p)
{
    db_inbox_t *in = container_of(p, db_inbox_t, part);
    db_finish_chain(p->db, &in->pending, -ECANCELED);
    p->db->in = NULL;
    for (unsigned k = 0; k < in->nbatch; k++) {
        free(in->batch[k].u);
        free(in->batch[k].out);
    }
    free(in->batch);
    for (unsigned col = 0; col < 5; col++)
        db_array_free(&in->arr[col]);
    free(in->flight);
    free(in->done);
    free(in);
}

static const db_part_ops_t db_inbox_ops = {
    .send = db_inbox_send,
    .expire = db_inbox_expire,
    .cancel = db_inbox_cancel,
};

db_inbox_t *db_inbox_new(db_t *db)
{
    db_inbox_t *in = xcalloc(1, sizeof(*in));

    core_queue_init(&in->pending);
    in->part.ops = &db_inbox_ops;
    in->part.stmts = db_inbox_stmts;
    in->part.nstmts = ARRAY_SIZE(db_inbox_stmts);
    in->part.timeout_ms = db->opt.ack_timeout_ms;
    in->per_conn = db->opt.connections == 1 ? DB_INFLIGHT_ONE : 1;
    in->nbatch = db->opt.connections * in->per_conn;
    in->slots_min = in->nbatch < DB_INBOX_SLOTS_MIN ? in->nbatch : DB_INBOX_SLOTS_MIN;
    db_slots_set(in, in->slots_min);
    in->batch = xcalloc(in->nbatch, sizeof(*in->batch));
    in->flight = xcalloc(db->opt.connections, sizeof(*in->flight));
    in->done = xcalloc(db->opt.connections, sizeof(*in->done));
    for (unsigned k = 0; k < in->nbatch; k++) {
        db_batch_t *b = &in->batch[k];
        b->item.ops = &db_batch_ops;
        b->u = xcalloc(db->opt.max_batch, sizeof(*b->u));
        b->out = xcalloc(db->opt.max_batch, sizeof(*b->out));
    }
    db_part_add(db, &in->part);
    met_self()->db_queue_depth = 0;
    return in;
}

/* ---- interface ---- */

int db_store(db_t *db, db_update_t *u)
{
    db_inbox_t *in = db->in;

    assert(u->cb != NULL);
    if (db->draining || in->part.count >= db->opt.queue_max || !db_ready(db))
        return -EAGAIN;
    /* libpq takes int lengths; the HTTP layer caps bodies far below this. */
    assert(u->body_len <= INT_MAX && u->type_len <= INT_MAX);
    u->enqueued_ms = rx_now(db->loop);
    u->enqueued_ns = core_mono_ns();
    u->tries = 0;
    db_chain(&in->pending, u);
    in->part.count++;
    db_gauge(db);
    db_kick(db);
    return 0;
}

unsigned db_pending(const db_t *db)
{
    return db->in->part.count;
}
