/* SPDX-License-Identifier: MIT */
/*
 * tg_webhook.h - Telegram, the receiving side: the HTTP endpoints of one bot
 * server. POST <webhook path> checks the secret (in constant time) and the
 * update, hands it to the inbox (db_store) and answers once it is committed;
 * GET /health/live, /health/ready and /metrics answer beside it.
 *
 * What to answer is decided by a pure function, tg_webhook_decide(), over the
 * request, its body and the server's state; the glue around it
 * (tg_webhook_on_request) does the storing and the answering.
 *
 * An update committed by the inbox kicks the processor, so that on one
 * process it is claimed without waiting for a poll.
 *
 * Depends on core, http, db, tg.h and tg_processor.h.
 */
#ifndef TGRING_TG_WEBHOOK_H
#define TGRING_TG_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

#include "db.h"
#include "http.h"
#include "tg.h"
#include "tg_processor.h"

/* The header Telegram sends the webhook secret in. */
#define TG_WEBHOOK_SECRET_HEADER "X-Telegram-Bot-Api-Secret-Token"

/* Tokens one update may have (1 MiB of scratch per endpoint); more is answered 413. */
#define TG_WEBHOOK_JSON_TOKENS 65536

/* Bytes of the /metrics answer's buffer. */
#define TG_WEBHOOK_METRICS_BUF (64 * 1024)

/* What to do with a request. */
typedef enum tg_webhook_do {
    TG_WEBHOOK_RESPOND = 0, /* answer `status` with `text` (and `extra` header lines) */
    TG_WEBHOOK_STORE,       /* a valid update: store it, answer when it is committed */
    TG_WEBHOOK_METRICS,     /* answer 200 with the metrics text */
} tg_webhook_do_t;

/* The server's state that answers depend on. */
typedef struct tg_webhook_state {
    bool db_ready; /* the database is reachable and migrated */
    bool stopping; /* the worker is shutting down */
} tg_webhook_state_t;

/* The decision about one request. Strings are static. */
typedef struct tg_webhook_verdict {
    tg_webhook_do_t what;
    int status;            /* RESPOND: the status to answer */
    const char *text;      /* RESPOND: the text/plain body */
    const char *extra;     /* RESPOND: extra header lines ("Name: value\r\n"), or NULL */
    bool unavailable;      /* RESPOND: an update not stored for want of the database */
    const char *event;     /* a debug log event for the refusal, or NULL */
    const char *why;       /* its message */
    tg_update_info_t info; /* STORE: what the inbox stores beside the body */
} tg_webhook_verdict_t;

/*
 * Decides what to answer to `req` with body[0..len), for `bot` in state `st`:
 * the route (the bot's webhook path, the health and metrics paths, 404 for
 * anything else), the method (405 with Allow), the secret (401, compared
 * without an early exit so that the time taken says nothing about it), the
 * update (400 malformed, 413 too many JSON tokens for `scratch`) and the
 * state (503 + Retry-After when stopping, or /health/ready while the database
 * is not ready). Pure: no I/O, no clock; scratch is the JSON tokenizer's.
 * OUT: *v, always filled.
 */
void tg_webhook_decide(const tg_bot_t *bot, const tg_webhook_state_t *st, const http_request_t *req,
                       const char *body, size_t len, tg_json_scratch_t *scratch,
                       tg_webhook_verdict_t *v);

/* Whether `got` (may be NULL: header missing) equals the bot's secret, in constant time. */
bool tg_webhook_secret_ok(const tg_bot_t *bot, const http_header_t *got);

/* The endpoints of one bot on one worker. Caller's storage; see tg_webhook_init(). */
typedef struct tg_webhook {
    const tg_bot_t *bot; /* not owned */
    db_t *db;            /* the inbox (not owned) */
    tg_proc_t *proc;     /* kicked when an update is stored; NULL: none (not owned) */
    bool stopping;       /* set by tg_webhook_stop() */
    jsmntok_t *tokens;   /* TG_WEBHOOK_JSON_TOKENS, the update check's scratch */
    char *metrics_buf;   /* TG_WEBHOOK_METRICS_BUF bytes for the /metrics answer */
} tg_webhook_t;

/* Sets up `wh` for `bot` storing into `db` (both outlive it); allocation failure aborts. */
void tg_webhook_init(tg_webhook_t *wh, const tg_bot_t *bot, db_t *db);

/* Frees what tg_webhook_init() allocated. Nothing of it may be in flight. */
void tg_webhook_dispose(tg_webhook_t *wh);

/*
 * From now on updates are answered 503 + Retry-After and /health/ready 503
 * "stopping" (Telegram retries, another worker or the restarted server takes
 * them).
 */
void tg_webhook_stop(tg_webhook_t *wh);

/*
 * The http_request_cb of a server whose data (http_server_options_t.data) is
 * a tg_webhook_t: answers every request, a webhook POST once its update is
 * committed (200), rejected by the database (500) or not stored (503).
 */
void tg_webhook_on_request(http_server_t *s, http_conn_t *c, const http_request_t *req, char *body,
                           size_t len);

#endif
