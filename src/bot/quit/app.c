/* SPDX-License-Identifier: MIT */
/*
 * app.c - the quit-smoking bot as the tgring binary's application
 * (bot_main_app): its configuration from cfg.h's BOT_* variables, the clock
 * (BOT_NOW stands it still, for tests and demos), the statements and
 * handlers of commands.c, admin.c and notify.c, and the steps every handler
 * shares.
 *
 * Groups: a command the bot knows is answered in a group whether it is
 * written /cmd or /cmd@<the bot> (Telegram sends both to the bot); a command
 * it does not know gets the hint there only when addressed to it
 * (/cmd@<the bot>): a bare one may be meant for another bot in the group.
 * Plain text in groups gets no reply. (/cmd@<another bot> is never
 * dispatched, see bot.h.)
 */
#include "quit.h"

#include "cfg.h"
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const quit_t *quit_of(const bot_ctx_t *ctx)
{
    return bot_data(ctx);
}

bool quit_config_admin(const quit_t *q, int64_t id)
{
    for (unsigned i = 0; i < q->nadmins; i++)
        if (q->admins[i] == id)
            return true;
    return false;
}

int quit_touch(bot_ctx_t *ctx, const bot_update_t *u, bool count_message)
{
    const quit_t *q = quit_of(ctx);
    int64_t now = bot_now(ctx);
    int r = 0;
    if (u->has_from) {
        /* A private chat's id is its user's id: that is where reminders go. */
        bot_param_t p[5] = {bot_int(u->from_id), bot_int(u->from_id), bot_text(u->language_code),
                            bot_int(now), bot_text(q->tz)};
        r = bot_exec(ctx, "quit_touch", p, 5);
    }
    if (r == 0 && count_message) {
        bot_param_t p[2] = {bot_int(now), bot_text(q->tz)};
        r = bot_exec(ctx, "quit_count_message", p, 2);
    }
    return r;
}

void quit_reply(bot_ctx_t *ctx, const bot_update_t *u, const char *text, const char *markup)
{
    if (bot_send_message(ctx, u->chat_id, text, markup) < 0) {
        bot_fail(ctx, "cannot queue the reply");
        return;
    }
    bot_done(ctx);
}

/* True when the message's command was written /cmd@<name>. */
static bool quit_addressed(const bot_update_t *u)
{
    for (const char *p = u->text; *p != '\0' && *p != ' ' && *p != '\n' && *p != '\t'; p++)
        if (*p == '@')
            return true;
    return false;
}

/* Messages no command handler took: unknown commands and plain text. */
static void on_message(bot_ctx_t *ctx, const bot_update_t *u)
{
    char text[160];
    bool group = strcmp(u->chat_type, "private") != 0;

    if (!u->has_chat || (group && (u->command[0] == '\0' || !quit_addressed(u)))) {
        bot_done(ctx);
        return;
    }
    if (quit_touch(ctx, u, true) < 0) {
        bot_fail(ctx, "cannot keep the user's row");
        return;
    }
    if (u->command[0] != '\0') {
        snprintf(text, sizeof(text), "I do not know /%.32s. Send /help to see what I can do.",
                 u->command);
        quit_reply(ctx, u, text, NULL);
    } else if (u->text[0] != '\0') {
        quit_reply(ctx, u, quit_text_plain, NULL);
    } else {
        bot_done(ctx); /* a photo, a sticker...: counted, not answered */
    }
}

/* The "Another one" button under a quote. */
static void on_callback(bot_ctx_t *ctx, const bot_update_t *u)
{
    if (strcmp(u->callback_data, "quote") == 0 && u->has_chat && u->message_id != 0 &&
        u->has_from) {
        quit_quote_send(ctx, u);
        return;
    }
    bot_answer_callback(ctx, u->callback_id, NULL);
    bot_done(ctx);
}

static int64_t quit_clock(void *arg)
{
    const quit_t *q = arg;
    return q->now_ms;
}

static void quit_free(void *data)
{
    quit_t *q = data;
    free(q->admins);
    free(q->tz);
    free(q);
}

bot_app_t *bot_main_app(const cfg_t *cfg)
{
    bot_app_t *app = bot_app_new("quit");
    quit_t *q = xcalloc(1, sizeof(*q));

    q->nadmins = cfg->bot_admin_count;
    q->admins = xcalloc(q->nadmins + 1, sizeof(*q->admins));
    if (q->nadmins > 0)
        memcpy(q->admins, cfg->bot_admin_ids, q->nadmins * sizeof(*q->admins));
    q->notify_hour = cfg->bot_notify_hour;
    q->tz = xstrdup(cfg->bot_timezone != NULL ? cfg->bot_timezone : "UTC");
    q->fixed_now = cfg->bot_now_set;
    q->now_ms = cfg->bot_now_ms;
    bot_app_set_data(app, q, quit_free);
    if (q->fixed_now)
        bot_app_set_clock(app, quit_clock, q);

    /*
     * Integer parameters go as int8 and text as text: every $n is cast so
     * that the server does not infer another type for them.
     */
    bot_stmt(app, "quit_touch",
             "INSERT INTO users (user_id, chat_id, language_code, created_at, last_notified_on) "
             "VALUES ($1::bigint, $2::bigint, $3::text, to_timestamp($4::bigint / 1000.0), "
             "quit_local_date($4::bigint, $5::text)) "
             "ON CONFLICT (user_id) DO UPDATE SET active = true, language_code = "
             "CASE WHEN excluded.language_code <> '' THEN excluded.language_code "
             "ELSE users.language_code END",
             5);
    bot_stmt(app, "quit_count_message",
             "INSERT INTO daily_stats (day, messages) "
             "VALUES (quit_local_date($1::bigint, $2::text), 1) "
             "ON CONFLICT (day) DO UPDATE SET messages = daily_stats.messages + 1",
             2);
    quit_commands_register(app);
    quit_admin_register(app);
    quit_notify_register(app, q);
    bot_on_type(app, "message", on_message);
    bot_on_type(app, "callback_query", on_callback);
    return app;
}
