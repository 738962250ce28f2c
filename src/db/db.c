/* SPDX-License-Identifier: MIT */
/*
 * db.c - the db's lifecycle: the connections (conn.c) with the inbox
 * (inbox.c) as their first part. Transaction clients (txn.c) register
 * themselves later, through db_client_new(). Also the builder of binary
 * array parameters (db.h).
 */
#include "db_private.h"

#include <assert.h>
#include <endian.h>
#include <stdlib.h>
#include <string.h>

db_t *db_new(rx_loop_t *loop, const db_options_t *opt)
{
    db_t *db = db_conns_new(loop, opt);
    db->in = db_inbox_new(db);
    db_conns_start(db);
    return db;
}

void db_free(db_t *db)
{
    if (db == NULL)
        return;
    /* The inbox is freed with the other parts, and db->in cleared then. */
    db_conns_free(db);
}

void db_set_batch_hook(db_t *db, void (*fn)(void *arg, int64_t low_id), void *arg)
{
    db->batch_hook = fn;
    db->batch_arg = arg;
}

/* ---- binary array parameters ---- */

static void db_array_put(db_array_t *a, const void *p, size_t len)
{
    if (a->len + len > a->cap) {
        a->cap = a->cap ? 2 * a->cap : 256;
        while (a->cap < a->len + len)
            a->cap *= 2;
        a->buf = xrealloc(a->buf, a->cap);
    }
    memcpy(a->buf + a->len, p, len);
    a->len += len;
}

static void db_array_put32(db_array_t *a, uint32_t v)
{
    v = htobe32(v);
    db_array_put(a, &v, 4);
}

void db_array_begin(db_array_t *a, uint32_t elem_oid)
{
    a->len = 0;
    a->n = 0;
    a->nulls = false;
    db_array_put32(a, 1); /* dimensions */
    db_array_put32(a, 0); /* has NULLs: set by db_array_param() */
    db_array_put32(a, elem_oid);
    db_array_put32(a, 0); /* elements: set by db_array_param() */
    db_array_put32(a, 1); /* lower bound */
}

void db_array_int8(db_array_t *a, int64_t v)
{
    uint64_t be = htobe64((uint64_t)v);
    db_array_put32(a, 8);
    db_array_put(a, &be, 8);
    a->n++;
}

void db_array_bytes(db_array_t *a, const void *p, size_t len)
{
    assert(len <= INT32_MAX);
    db_array_put32(a, (uint32_t)len);
    if (len > 0)
        db_array_put(a, p, len);
    a->n++;
}

void db_array_null(db_array_t *a)
{
    db_array_put32(a, UINT32_MAX); /* length -1 */
    a->nulls = true;
    a->n++;
}

db_param_t db_array_param(db_array_t *a)
{
    uint32_t v = htobe32(a->nulls ? 1 : 0);
    memcpy(a->buf + 4, &v, 4);
    v = htobe32(a->n);
    memcpy(a->buf + 12, &v, 4);
    return (db_param_t){.kind = DB_PARAM_BINARY, .ptr = a->buf, .len = a->len};
}

void db_array_free(db_array_t *a)
{
    free(a->buf);
    memset(a, 0, sizeof(*a));
}
