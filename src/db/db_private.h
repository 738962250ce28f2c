/* SPDX-License-Identifier: MIT */
/*
 * db_private.h - helpers shared by the inbox (db.c) and the migration runner
 * (migrate.c); not part of the db interface.
 */
#ifndef TGRING_DB_PRIVATE_H
#define TGRING_DB_PRIVATE_H

#include <stddef.h>

/* Bytes for a flattened libpq message in a log line. */
#define DB_MSG_MAX 512

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

#endif
