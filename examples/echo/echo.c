/* SPDX-License-Identifier: MIT */
/*
 * echo.c - the example bot of docs/handlers.md, built as tgring-example:
 * every text is echoed back; /count counts per chat (a row in echo_counters)
 * and answers the count with a "+1" button that counts again; /set N sets the
 * counter (a negative N is refused by the table's CHECK: the update is marked
 * failed); /fail fails on purpose; /start greets, with a deep-link payload if
 * one came.
 */
#include "bot.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUS_ONE "{\"inline_keyboard\":[[{\"text\":\"+1\",\"callback_data\":\"inc\"}]]}"

static void on_start(bot_ctx_t *ctx, const bot_update_t *u)
{
    char text[512];
    if (u->args[0] != '\0')
        snprintf(text, sizeof(text), "Hello! You came from %.400s. Send /count or any text.",
                 u->args);
    else
        snprintf(text, sizeof(text), "Hello! Send /count or any text.");
    bot_send_message(ctx, u->chat_id, text, NULL);
    bot_done(ctx);
}

/*
 * The counter is read now and written with the update's commit. Reading
 * first is safe here: a chat's updates are handled one at a time, and the
 * counter belongs to the chat.
 */
static void on_count_read(bot_ctx_t *ctx, int err, const db_result_t *res, void *arg)
{
    const bot_update_t *u = bot_update(ctx);
    int64_t n = 0;
    char text[64];

    if (err != 0) {
        bot_fail(ctx, "cannot read the counter");
        return;
    }
    if (db_res_rows(res) == 1)
        db_res_int(res, 0, 0, &n);
    n++;
    bot_param_t p[2] = {bot_int(u->chat_id), bot_int(n)};
    bot_exec(ctx, "echo_count_set", p, 2);
    snprintf(text, sizeof(text), "count: %lld", (long long)n);
    if (u->type == TG_UPDATE_CALLBACK_QUERY) {
        bot_answer_callback(ctx, u->callback_id, "counted");
        bot_edit_message_text(ctx, u->chat_id, u->message_id, text, PLUS_ONE);
    } else {
        bot_send_message(ctx, u->chat_id, text, PLUS_ONE);
    }
    bot_done(ctx);
}

static void count(bot_ctx_t *ctx, const bot_update_t *u)
{
    bot_param_t p[1] = {bot_int(u->chat_id)};
    if (!u->has_chat || bot_query(ctx, "echo_count_get", p, 1, on_count_read, NULL) < 0)
        bot_fail(ctx, "cannot read the counter");
}

static void on_callback(bot_ctx_t *ctx, const bot_update_t *u)
{
    if (strcmp(u->callback_data, "inc") == 0) {
        count(ctx, u);
        return;
    }
    bot_answer_callback(ctx, u->callback_id, NULL);
    bot_done(ctx);
}

static void on_set(bot_ctx_t *ctx, const bot_update_t *u)
{
    char *end;
    char text[64];
    errno = 0;
    long long n = strtoll(u->args, &end, 10);
    if (u->args[0] == '\0' || *end != '\0' || errno != 0) {
        bot_send_message(ctx, u->chat_id, "usage: /set N", NULL);
        bot_done(ctx);
        return;
    }
    /* A negative n is refused by the CHECK at the commit: no reply, the update fails. */
    bot_param_t p[2] = {bot_int(u->chat_id), bot_int(n)};
    bot_exec(ctx, "echo_count_set", p, 2);
    snprintf(text, sizeof(text), "count set to %lld", n);
    bot_send_message(ctx, u->chat_id, text, NULL);
    bot_done(ctx);
}

static void on_fail(bot_ctx_t *ctx, const bot_update_t *u)
{
    bot_send_message(ctx, u->chat_id, "this reply is never sent", NULL);
    bot_fail(ctx, "asked to fail");
}

/* Any other message: echo its text; other updates are marked processed with no reply. */
static void on_other(bot_ctx_t *ctx, const bot_update_t *u)
{
    if (u->type == TG_UPDATE_MESSAGE && u->text[0] != '\0')
        bot_send_message(ctx, u->chat_id, u->text, NULL);
    bot_done(ctx);
}

bot_app_t *bot_main_app(const cfg_t *cfg)
{
    bot_app_t *app = bot_app_new("echo");
    bot_stmt(app, "echo_count_get", "SELECT n FROM echo_counters WHERE chat_id = $1", 1);
    bot_stmt(app, "echo_count_set",
             "INSERT INTO echo_counters (chat_id, n) VALUES ($1, $2) "
             "ON CONFLICT (chat_id) DO UPDATE SET n = excluded.n",
             2);
    bot_on_command(app, "start", on_start);
    bot_on_command(app, "count", count);
    bot_on_command(app, "set", on_set);
    bot_on_command(app, "fail", on_fail);
    bot_on_type(app, "callback_query", on_callback);
    bot_on_fallback(app, on_other);
    return app;
}
