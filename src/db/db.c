/* SPDX-License-Identifier: MIT */
/*
 * db.c - the db's lifecycle: the connections (conn.c) with the inbox
 * (inbox.c) as their first part. Transaction clients (txn.c) register
 * themselves later, through db_client_new().
 */
#include "db_private.h"

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
