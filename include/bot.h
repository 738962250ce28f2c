/* SPDX-License-Identifier: MIT */
/*
 * bot.h - the handler API: what a bot written for tgring is made of. An
 * application (bot_app_t) registers handlers per command, per update type and
 * a fallback, and the SQL statements it needs; the processor (tg_processor.h)
 * calls the matching handler once per update, in update_id order per chat,
 * with the parsed update and a context. docs/handlers.md explains it with the
 * example bot (examples/echo/).
 *
 * Handlers do no I/O of their own. Through the context they
 *  - read: bot_query() runs a registered statement now, as a short
 *    transaction of its own (pipelined with the others), and calls back with
 *    the result;
 *  - write: bot_exec() keeps a statement for the update's commit;
 *  - call the Bot API: bot_call() and the helpers keep an outbox row for the
 *    update's commit; the sender sends it after the commit, within the rate
 *    limits;
 * and end the update with bot_done() (commit the writes and calls with the
 * processed mark, in one transaction) or bot_fail() (mark it failed with the
 * reason; nothing of it is committed). The commit happens exactly once: if
 * the processor dies, or the update's lease runs out and another process
 * takes it, it is handled again and only one run commits. Reads are not part
 * of that transaction; see docs/handlers.md for what that means.
 *
 * Dispatch of one update, first match wins:
 *  1. a "message" whose text starts with '/': the command handler of its
 *     name ("/start", "/start@<bot>", "/start PAYLOAD": command "start",
 *     args "PAYLOAD"). A command addressed to another bot ("/start@other_bot",
 *     or any @name while the bot's own username is not known yet) is ignored:
 *     the update is marked processed and no handler runs, as Telegram's
 *     clients expect in groups. An unknown command goes on to 2;
 *  2. the handler of the update's type ("message", "callback_query", ...);
 *  3. the fallback;
 *  4. none: the update is marked processed, with no effect.
 *
 * Apps may declare their own migrations: SQL files named NNNN_name.sql with
 * versions 1000 and up (0001..0999 are tgring's), kept in the app's own
 * directory and embedded into the app's binary beside tgring's (see
 * examples/echo/meson.build); `migrate` of that binary applies both.
 *
 * Depends on core, db, tg and tg_processor.h.
 */
#ifndef TGRING_BOT_H
#define TGRING_BOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "tg.h"
#include "tg_processor.h"

typedef struct bot_app bot_app_t;
typedef struct bot_ctx bot_ctx_t;

/*
 * One update as handlers see it. Strings are unescaped, NUL-terminated
 * copies owned by the context (valid until the update is finished), "" when
 * absent; never NULL.
 */
typedef struct bot_update {
    int64_t update_id;
    tg_update_type_t type;
    const char *type_name; /* the payload's key: "message", "callback_query", ... */
    bool has_chat;
    int64_t chat_id;       /* the chat (callback_query: the chat of its message) */
    const char *chat_type; /* "private", "group", "supergroup", "channel" */
    bool has_from;
    int64_t from_id;           /* the sender (poll_answer, message_reaction: user) */
    const char *language_code; /* the sender's, e.g. "en" */
    /* message, edited_message, channel_post, edited_channel_post: text, else caption. */
    const char *text;
    int64_t message_id;        /* that message's id (callback_query: the message with the button) */
    const char *command;       /* "start" for "/start@bot PAYLOAD"; "" when not a command */
    const char *args;          /* "PAYLOAD": the text after the command and its blanks */
    const char *callback_id;   /* callback_query.id */
    const char *callback_data; /* callback_query.data */
    /*
     * The raw update for anything else: body[0..body_len) as stored, and its
     * jsmn tokens tok[0..ntok) (tok[0] the update object, parent links on);
     * read them with tg_json_find(), tg_json_tok_int(), tg_json_tok_string().
     */
    const char *body;
    size_t body_len;
    const jsmntok_t *tok;
    int ntok;
} bot_update_t;

/* A handler. It ends the update with bot_done() or bot_fail(), now or from a query callback. */
typedef void (*bot_handler_cb)(bot_ctx_t *ctx, const bot_update_t *u);

/*
 * A read's answer: err 0 and res (valid during the call: db_res_rows(),
 * db_res_value(), db_res_int()...); err -EBADMSG and res the error
 * (db_res_sqlstate()); -ECONNRESET or -ETIMEDOUT and res NULL. Not called
 * when the update finished meanwhile.
 */
typedef void (*bot_query_cb)(bot_ctx_t *ctx, int err, const db_result_t *res, void *arg);

/* Parameters of a statement. */
typedef db_param_t bot_param_t;

/* An integer parameter (int8; the server casts it to the column's type). */
static inline bot_param_t bot_int(int64_t v)
{
    return db_param_int8(v);
}

/* A text parameter: NUL-terminated s, or SQL NULL for NULL. */
bot_param_t bot_text(const char *s);

/* ---- the application ---- */

/*
 * A new application named `name` (for logs; not copied: a literal).
 * Aborts on allocation failure.
 */
bot_app_t *bot_app_new(const char *name);

/* Frees it. No processor may still use it. */
void bot_app_free(bot_app_t *app);

/* Its name. */
const char *bot_app_name(const bot_app_t *app);

/*
 * Registers the handler of command `name` (without '/', e.g. "start"; 1..32
 * of a-z, 0-9 and '_', compared without regard to case). Returns 0, -EINVAL
 * for a bad name, -EEXIST when it has one.
 */
int bot_on_command(bot_app_t *app, const char *name, bot_handler_cb fn);

/* Registers the handler of update type `type` ("callback_query"). Returns 0, -EINVAL, -EEXIST. */
int bot_on_type(bot_app_t *app, const char *type, bot_handler_cb fn);

/* Registers the fallback (replaces the one before). */
void bot_on_fallback(bot_app_t *app, bot_handler_cb fn);

/*
 * Registers SQL statement `name` with $1..$n parameters (name and sql
 * copied), prepared on every database connection. Names must not start with
 * "tgring_" (tgring's own). Statements for bot_exec() need not be idempotent:
 * they only run behind the update's processed mark. Returns 0, -EINVAL (bad
 * name or n > 8), -EEXIST.
 */
int bot_stmt(bot_app_t *app, const char *name, const char *sql, int nparams);

/*
 * The clock bot_now() reads: clock(arg) in ms since the epoch, taken when
 * the update is claimed. Default (NULL): the real clock.
 */
void bot_app_set_clock(bot_app_t *app, int64_t (*clock)(void *arg), void *arg);

/*
 * Fills the application's part of a processor's options: its statements,
 * the handler entry, the context size and the clock (the rest is left as
 * is). `app` must outlive the processor.
 */
void bot_app_proc_options(bot_app_t *app, tg_proc_options_t *opt);

/*
 * The application's own state (its configuration, say): `data` is what
 * bot_data() and bot_job_data() return; free_fn (may be NULL) frees it in
 * bot_app_free().
 */
void bot_app_set_data(bot_app_t *app, void *data, void (*free_fn)(void *data));

/* ---- periodic jobs ---- */

typedef struct bot_job bot_job_t;
typedef struct bot_jobs bot_jobs_t;

/*
 * One run of a job. It submits at most one statement with bot_job_exec()
 * (one transaction: make it do the whole batch, e.g. a SELECT ... FOR UPDATE
 * SKIP LOCKED LIMIT n that feeds an UPDATE and an INSERT INTO outbox); without
 * one, the run ends when fn returns.
 */
typedef void (*bot_job_cb)(bot_job_t *job, void *arg);

/*
 * The answer to bot_job_exec(), as db_txn_cb: err 0 and res (valid during the
 * call), -EBADMSG and res the error, -ECONNRESET, -ETIMEDOUT or -ECANCELED
 * (shutting down) and res NULL. The run ends when it returns.
 */
typedef void (*bot_job_result_cb)(bot_job_t *job, int err, const db_result_t *res, void *arg);

/*
 * Registers job `name` (a literal, for logs): fn runs at start and then
 * every_ms after the end of each run, on the housekeeping worker of each
 * process group (worker 0). Every replica runs its own, so a job must be
 * correct when two run at once (SKIP LOCKED). Returns 0, -EINVAL (no fn,
 * every_ms 0).
 */
int bot_every(bot_app_t *app, const char *name, unsigned every_ms, bot_job_cb fn, void *arg);

/*
 * Runs the app's statement `stmt` (bot_stmt(); prepared on every connection)
 * with params[0..n) as one transaction, and cb with its answer (from the
 * loop, never synchronously). At most one per run. Returns 0; -ENOENT (no
 * such statement), -EINVAL (parameter count), -EALREADY (this run has one),
 * -EAGAIN (the database is not ready: the job runs again within a second).
 */
int bot_job_exec(bot_job_t *job, const char *stmt, const bot_param_t *params, unsigned n,
                 bot_job_result_cb cb);

/* From the result callback: run again at once instead of after every_ms (a full batch). */
void bot_job_again(bot_job_t *job);

/* The app's clock (bot_app_set_clock()), ms since the epoch, taken when the run began. */
int64_t bot_job_now(const bot_job_t *job);

/* The app's data (bot_app_set_data()). */
void *bot_job_data(const bot_job_t *job);

/*
 * Starts the app's jobs on `loop` with `db` (for worker.c). Returns NULL when
 * the app has none. Aborts on allocation failure.
 */
bot_jobs_t *bot_jobs_start(bot_app_t *app, rx_loop_t *loop, db_t *db);

/* No more runs; a statement in flight completes (or is cancelled by db_free()). NULL: nothing. */
void bot_jobs_stop(bot_jobs_t *jobs);

/* Frees them, after db_free(). NULL: nothing. */
void bot_jobs_free(bot_jobs_t *jobs);

/*
 * Provided by each binary: the application it runs (tgring's is the
 * quit-smoking bot in src/bot/quit/, tgring-example's the example bot in
 * examples/echo/). Called once by main() after the configuration is loaded; main frees it at exit.
 */
bot_app_t *bot_main_app(const cfg_t *cfg);

/* ---- in a handler: the context of one update ---- */

/*
 * Runs statement `stmt` with params[0..n) now and calls cb with the result
 * (from the loop, never synchronously). Returns 0; -ENOENT (no such
 * statement), -EINVAL (parameter count), -EPIPE (the update is finished),
 * -EAGAIN (the database is not ready or too busy: fail or retry later).
 */
int bot_query(bot_ctx_t *ctx, const char *stmt, const bot_param_t *params, unsigned n,
              bot_query_cb cb, void *arg);

/*
 * Keeps statement `stmt` with params[0..n) (copied) for the update's commit.
 * Returns 0, -ENOENT, -EINVAL, -EPIPE, or -E2BIG past TG_PROC_EFFECTS_MAX
 * writes and calls (the update is then marked failed at bot_done()).
 */
int bot_exec(bot_ctx_t *ctx, const char *stmt, const bot_param_t *params, unsigned n);

/*
 * Keeps a Bot API call for the update's commit: `method` with the JSON
 * object `json` (NUL-terminated, copied), queued to the update's chat (the
 * sender's per-chat order and limits; the sender's chat if it has none).
 * Returns as bot_exec(), and -EINVAL for an empty method.
 */
int bot_call(bot_ctx_t *ctx, const char *method, const char *json);

/* bot_call() to chat_id (for a call about another chat). */
int bot_call_chat(bot_ctx_t *ctx, int64_t chat_id, const char *method, const char *json);

/*
 * sendMessage to chat_id with `text` (UTF-8) and, unless NULL, reply_markup
 * given as JSON text (e.g. an inline keyboard). Returns as bot_call().
 */
int bot_send_message(bot_ctx_t *ctx, int64_t chat_id, const char *text, const char *markup);

/* answerCallbackQuery for callback query `id`, with `text` (NULL: none). */
int bot_answer_callback(bot_ctx_t *ctx, const char *id, const char *text);

/* editMessageText of message_id in chat_id, with `text` and reply_markup (NULL: none). */
int bot_edit_message_text(bot_ctx_t *ctx, int64_t chat_id, int64_t message_id, const char *text,
                          const char *markup);

/* The update is handled: commit its writes and calls. Later calls are ignored. */
void bot_done(bot_ctx_t *ctx);

/* The update failed: mark it failed with `why` (copied), commit none of its effects. */
void bot_fail(bot_ctx_t *ctx, const char *why);

/* The update of the context (the one the handler was given). */
const bot_update_t *bot_update(const bot_ctx_t *ctx);

/* The time the update was claimed, ms since the epoch (bot_app_set_clock()). */
int64_t bot_now(const bot_ctx_t *ctx);

/* The app's data (bot_app_set_data()). */
void *bot_data(const bot_ctx_t *ctx);

/* The bot's username without '@' ("" until getMe answered). */
const char *bot_username(const bot_ctx_t *ctx);

#endif
