/* SPDX-License-Identifier: MIT */
/*
 * tg_commands.h - Telegram, the Bot API subcommands (set-webhook,
 * delete-webhook, webhook-info), the blocking call they are built on, the
 * connection setup to TELEGRAM_API_URL that the worker shares, and the getMe
 * made when a worker starts.
 *
 * Depends on core, reactor, tls, httpc and tg.
 */
#ifndef TGRING_TG_COMMANDS_H
#define TGRING_TG_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"
#include "httpc.h"
#include "reactor.h"
#include "tg.h"
#include "tg_sender.h"
#include "tls.h"

/*
 * Makes the trust anchors (for an https:// TELEGRAM_API_URL; *tls NULL for
 * http://) and the connection pool to it, on `loop`. OUT: *tls, *pool.
 * Returns 0, or -1 with the reason logged (then both are NULL).
 */
int tg_pool_open(rx_loop_t *loop, const cfg_t *cfg, tls_ctx_t **tls, httpc_pool_t **pool);

/* Bytes of a bot username with its NUL (Telegram's are at most 32 characters). */
#define TG_USERNAME_MAX 64

/* The getMe made at start, and the username it found. Caller's storage, zeroed. */
typedef struct tg_getme {
    tg_call_t call;
    char username[TG_USERNAME_MAX]; /* without '@'; "" until getMe answered */
} tg_getme_t;

/*
 * Starts getMe on `pool` with `token`; its answer is logged ("bot_identified"
 * with the bot's username, or "getme_failed" with the reason) when it comes,
 * and the username kept in g->username. `g` stays valid until then, or until
 * the pool is freed. Returns 0, or the error of tg_call_start() (logged) when
 * it could not be queued.
 */
int tg_getme_start(tg_getme_t *g, httpc_pool_t *pool, const char *token);

/* The answer of a call made by tg_call_sync(). */
typedef struct tg_sync_result {
    tg_api_result_t res; /* res.result points at `result` */
    char *result;        /* a heap copy of the "result" JSON, NUL-terminated, or NULL */
    size_t result_len;   /* bytes */
} tg_sync_result_t;

/*
 * Calls `method` with json[0..len) for `bot` on a loop and pool of its own and
 * waits for the answer (up to 30 s). `cmd` names the subcommand in messages.
 * Prints one line on stderr (two for a token Telegram refuses) and returns 1
 * when there is no answer or it is not ok; returns 0 otherwise. Either way
 * *out is filled; free out->result.
 */
int tg_call_sync(const tg_bot_t *bot, const cfg_t *cfg, const char *cmd, const char *method,
                 const char *json, size_t len, tg_sync_result_t *out);

/*
 * `tgring set-webhook`: points Telegram at TELEGRAM_WEBHOOK_URL with the
 * bot's secret, TELEGRAM_WEBHOOK_MAX_CONNECTIONS and TELEGRAM_ALLOWED_UPDATES,
 * dropping pending updates if asked. Prints what was set. Returns the exit
 * status, 0 or 1.
 */
int tg_cmd_set_webhook(const tg_bot_t *bot, const cfg_t *cfg, bool drop_pending);

/* `tgring delete-webhook`: stops webhook delivery. Returns the exit status, 0 or 1. */
int tg_cmd_delete_webhook(const tg_bot_t *bot, const cfg_t *cfg, bool drop_pending);

/*
 * `tgring webhook-info`: prints the webhook's URL, pending update count,
 * max_connections, allowed updates and last error. Returns the exit status.
 */
int tg_cmd_webhook_info(const tg_bot_t *bot, const cfg_t *cfg);

#endif
