/* SPDX-License-Identifier: MIT */
/*
 * quit.h - the quit-smoking bot, tgring's application (docs/quit-bot.md):
 * what its files share. app.c builds the application and holds the shared
 * steps of every handler; commands.c the users' commands, admin.c the
 * admins', notify.c /notify and the daily reminder job, text.c every text
 * the bot writes.
 */
#ifndef TGRING_QUIT_H
#define TGRING_QUIT_H

#include "bot.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest reply the bot writes itself, bytes (a broadcast's text is the admin's). */
#define QUIT_TEXT_MAX 2048
/* Longest broadcast text, bytes: Telegram takes 4096 characters. */
#define QUIT_BROADCAST_MAX 4096
/* The inline keyboard under a quote; its button's callback_data is "quote". */
#define QUIT_QUOTE_MARKUP                                                                          \
    "{\"inline_keyboard\":[[{\"text\":\"Another one\",\"callback_data\":\"quote\"}]]}"

/* The bot's configuration (cfg.h's BOT_*), the application's data. */
typedef struct quit {
    int64_t *admins; /* BOT_ADMIN_IDS */
    unsigned nadmins;
    unsigned notify_hour; /* BOT_NOTIFY_HOUR */
    char *tz;             /* BOT_TIMEZONE */
    bool fixed_now;       /* BOT_NOW given */
    int64_t now_ms;       /* BOT_NOW, ms since the epoch */
} quit_t;

/* ---- app.c ---- */

/* The configuration, from a handler. */
const quit_t *quit_of(const bot_ctx_t *ctx);

/*
 * Keeps the writes every message from a user brings: the user's row (made,
 * or active again with its language code kept) and today's message count.
 * Returns 0 or what bot_exec() returned.
 */
int quit_touch(bot_ctx_t *ctx, const bot_update_t *u, bool count_message);

/* Sends `text` to the update's chat (markup may be NULL) and ends the update. */
void quit_reply(bot_ctx_t *ctx, const bot_update_t *u, const char *text, const char *markup);

/* True when `id` is in BOT_ADMIN_IDS. */
bool quit_config_admin(const quit_t *q, int64_t id);

/* ---- commands.c, admin.c, notify.c: their statements and handlers ---- */

void quit_commands_register(bot_app_t *app);
void quit_admin_register(bot_app_t *app);
void quit_notify_register(bot_app_t *app, quit_t *q);

/* /quote's and the button's reply: a quote for the user, the counter moved on. */
void quit_quote_send(bot_ctx_t *ctx, const bot_update_t *u);

/* ---- text.c ---- */

/* Days since 1970-01-01 as YYYY-MM-DD. OUT: out (11 bytes). */
void quit_fmt_date(char *out, int64_t days);

/* "1 day", "N days". OUT: out (cap bytes). Returns out. */
const char *quit_fmt_days(char *out, size_t cap, int64_t n);

/* Cents as "9.50". OUT: out (cap bytes). Returns out. */
const char *quit_fmt_money(char *out, size_t cap, int64_t cents);

/* /start's and /help's text. OUT: out (cap bytes). */
void quit_text_help(char *out, size_t cap, const quit_t *q, bool welcome);

/* /status for a user who quit on quit_day (<= today), days since the epoch. */
void quit_text_status(char *out, size_t cap, int64_t today, int64_t quit_day, int64_t per_day,
                      bool has_price, int64_t price_cents);

/* The notification's texts, PostgreSQL format() strings: days (%s) and quote (%s); quote. */
extern const char quit_text_notify_days[];
extern const char quit_text_notify_plain[];

extern const char quit_text_quit_usage[];
extern const char quit_text_per_day_bad[];
extern const char quit_text_price_bad[];
extern const char quit_text_too_old[];
extern const char quit_text_no_quit_date[];
extern const char quit_text_notify_usage[];
extern const char quit_text_notify_off[];
extern const char quit_text_plain[];
extern const char quit_text_not_admin[];
extern const char quit_text_addadmin_usage[];
extern const char quit_text_deladmin_usage[];
extern const char quit_text_broadcast_usage[];
extern const char quit_text_broadcast_long[];
extern const char quit_text_busy[];

#endif
