/* SPDX-License-Identifier: MIT */
/*
 * conninfo.c - DATABASE_URL checked before anything connects, and its
 * password kept out of the logs.
 *
 * libpq's connection errors quote parts of the conninfo: the token it could
 * not parse ("invalid percent-encoded token: ..."), the host it could not
 * resolve, the port it could not read. In a URI whose password holds an
 * unencoded '%', '@' or '/', those parts are the password or pieces of it.
 * So a conninfo that libpq cannot parse, or reads differently from how it is
 * written, is refused at start without quoting libpq's message, and the
 * password of one it reads as written goes to log_redact(), which scrubs it
 * from every line, libpq's once-a-second retry messages included.
 */
#include "db_private.h"
#include "log.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char db_ci_problem[] = "tgring: config: DATABASE_URL: ";

/* The length of libpq's URI prefix that `s` starts with, 0 when it is not a URI. */
static size_t db_uri_prefix(const char *s)
{
    static const char *const prefixes[] = {"postgresql://", "postgres://"};
    for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++)
        if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
            return strlen(prefixes[i]);
    return 0;
}

/*
 * Percent-decodes s[0..len) into a new string, or NULL when an escape is
 * malformed or decodes to NUL (libpq refuses both).
 */
static char *db_uri_decode(const char *s, size_t len)
{
    char *out = xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= len || !isxdigit((unsigned char)s[i + 1]) ||
            !isxdigit((unsigned char)s[i + 2]))
            goto fail;
        char hex[3] = {s[i + 1], s[i + 2], '\0'};
        out[o] = (char)strtol(hex, NULL, 16);
        if (out[o++] == '\0')
            goto fail;
        i += 2;
    }
    out[o] = '\0';
    return out;
fail:
    explicit_bzero(out, len + 1);
    free(out);
    return NULL;
}

/*
 * The password of a URI as its author meant it: the userinfo runs to the
 * last '@' before the query (a '?' after the first '@'), and the password
 * from the userinfo's first ':'. OUT: *len. NULL when there is none.
 */
static const char *db_uri_password(const char *uri, size_t *len)
{
    const char *rest = uri + db_uri_prefix(uri);
    const char *first_at = strchr(rest, '@');
    if (first_at == NULL)
        return NULL;
    const char *query = strchr(first_at, '?');
    const char *at = first_at;
    for (const char *p = first_at; *p != '\0' && (query == NULL || p < query); p++)
        if (*p == '@')
            at = p;
    const char *colon = memchr(rest, ':', (size_t)(at - rest));
    if (colon == NULL)
        return NULL;
    *len = (size_t)(at - colon - 1);
    return colon + 1;
}

/* The value of `key` in libpq's parse, NULL when unset. */
static const char *db_ci_value(const PQconninfoOption *opts, const char *key)
{
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, key) == 0)
            return o->val;
    return NULL;
}

/* Registers the password as written (raw[0..len)) with log_redact(). */
static void db_redact_raw(const char *raw, size_t len)
{
    char *copy = xmalloc(len + 1);
    memcpy(copy, raw, len);
    copy[len] = '\0';
    log_redact(copy);
    explicit_bzero(copy, len);
    free(copy);
}

int db_conninfo_check(const char *conninfo, FILE *err)
{
    size_t uri = db_uri_prefix(conninfo);
    /* Like libpq's expand_dbname: neither a URI nor key=value is a database name. */
    if (uri == 0 && strchr(conninfo, '=') == NULL)
        return 0;

    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    if (opts == NULL) {
        if (perr != NULL) {
            explicit_bzero(perr, strlen(perr));
            PQfreemem(perr);
        }
        if (err != NULL)
            fprintf(err,
                    "%slibpq cannot parse it (its message is not shown: it quotes the text, "
                    "which may be the password); check the syntax, and in a URI percent-encode "
                    "%%, @, / and ? in the password (%%25, %%40, %%2F, %%3F)\n",
                    db_ci_problem);
        return 1;
    }

    int problems = 0;
    const char *password = db_ci_value(opts, "password");
    size_t raw_len = 0;
    const char *raw = uri != 0 ? db_uri_password(conninfo, &raw_len) : NULL;
    if (raw != NULL) {
        db_redact_raw(raw, raw_len);
        /* A "?password=" parameter overrides the userinfo's; there is nothing to compare. */
        char *meant = db_uri_decode(raw, raw_len);
        if (strstr(conninfo, "password=") == NULL &&
            (meant == NULL || password == NULL || strcmp(meant, password) != 0)) {
            if (err != NULL)
                fprintf(err,
                        "%slibpq reads the password differently from how it is written; "
                        "percent-encode %%, @, / and ? in it (%%25, %%40, %%2F, %%3F)\n",
                        db_ci_problem);
            problems++;
        }
        if (meant != NULL) {
            explicit_bzero(meant, strlen(meant));
            free(meant);
        }
    }
    log_redact(password);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (o->val != NULL)
            explicit_bzero(o->val, strlen(o->val));
    PQconninfoFree(opts);
    return problems;
}
