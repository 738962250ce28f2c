/* SPDX-License-Identifier: MIT */
/*
 * commands.c - the users' commands of the quit-smoking bot: /start, /help,
 * /quit, /status and /quote (its "Another one" button is app.c's callback
 * handler, which comes back here). Each keeps the user's row and the day's
 * message count with its reply (quit_touch), in the update's commit.
 */
#include "quit.h"

#include "cfg.h"

#include <stdio.h>
#include <string.h>

/* The quit date may be this far back at most: 1950-01-01. */
#define QUIT_OLDEST_DAY (-7305)
#define QUIT_PER_DAY_MAX 200
#define QUIT_PRICE_MAX_CENTS 100000
/* A pack holds this many cigarettes, and a day's default when none was ever given. */
#define QUIT_PER_DAY_DEFAULT 20

/* /start and /help: the command list, with a welcome for /start. */
static void quit_help(bot_ctx_t *ctx, const bot_update_t *u, bool welcome)
{
    char text[QUIT_TEXT_MAX];
    if (quit_touch(ctx, u, true) < 0) {
        bot_fail(ctx, "cannot keep the user's row");
        return;
    }
    quit_text_help(text, sizeof(text), quit_of(ctx), welcome);
    quit_reply(ctx, u, text, NULL);
}

/* A deep-link payload (/start PAYLOAD) changes nothing: everyone gets the same welcome. */
static void on_start(bot_ctx_t *ctx, const bot_update_t *u)
{
    quit_help(ctx, u, true);
}

static void on_help(bot_ctx_t *ctx, const bot_update_t *u)
{
    quit_help(ctx, u, false);
}

/* Reads the user's row and today (quit_user_get) for `cb`, or fails the update. */
static void quit_read_user(bot_ctx_t *ctx, const bot_update_t *u, bot_query_cb cb)
{
    const quit_t *q = quit_of(ctx);
    bot_param_t p[3] = {bot_int(u->from_id), bot_int(bot_now(ctx)), bot_text(q->tz)};
    if (!u->has_from || bot_query(ctx, "quit_user_get", p, 3, cb, NULL) < 0)
        bot_fail(ctx, "cannot read the user");
}

/* The columns of quit_user_get. */
typedef struct quit_user {
    int64_t today;    /* local date, days since the epoch */
    bool known;       /* the user has a row */
    bool has_quit;    /* quit_date is set */
    int64_t quit_day; /* days since the epoch */
    int64_t per_day;
    bool has_price;
    int64_t price_cents;
} quit_user_t;

static bool quit_user_read(const db_result_t *res, quit_user_t *out)
{
    memset(out, 0, sizeof(*out));
    if (db_res_rows(res) != 1 || !db_res_int(res, 0, 0, &out->today))
        return false;
    out->known = !db_res_null(res, 0, 1);
    out->has_quit = db_res_int(res, 0, 2, &out->quit_day);
    if (!db_res_int(res, 0, 3, &out->per_day))
        out->per_day = QUIT_PER_DAY_DEFAULT;
    out->has_price = db_res_int(res, 0, 4, &out->price_cents);
    return true;
}

/*
 * The start of /quit's and /status's answer: the user read, and the writes of
 * every message kept. Returns false when the update was failed.
 */
static bool quit_user_begin(bot_ctx_t *ctx, const bot_update_t *u, int err, const db_result_t *res,
                            quit_user_t *user)
{
    if (err != 0 || !quit_user_read(res, user)) {
        bot_fail(ctx, "cannot read the user");
        return false;
    }
    if (quit_touch(ctx, u, true) < 0) {
        bot_fail(ctx, "cannot keep the user's row");
        return false;
    }
    return true;
}

/* ---- /quit YYYY-MM-DD [cigarettes_per_day] [pack_price] ---- */

/* The next blank-separated word of *p. OUT: w (cap bytes). Returns false at the end. */
static bool quit_word(const char **p, char *w, size_t cap)
{
    const char *s = *p;
    size_t n = 0;
    while (*s == ' ' || *s == '\t' || *s == '\n')
        s++;
    if (*s == '\0')
        return false;
    while (s[n] != '\0' && s[n] != ' ' && s[n] != '\t' && s[n] != '\n')
        n++;
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(w, s, k);
    w[k] = '\0';
    *p = s + n;
    return true;
}

/* "YYYY-MM-DD": 1 and the day number, 0 not of that form, -1 of that form but no real date. */
static int quit_parse_date(const char *w, int64_t *day)
{
    unsigned v[3] = {0, 0, 0};
    static const int len[3] = {4, 2, 2};
    const char *p = w;
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < len[i]; k++, p++) {
            if (*p < '0' || *p > '9')
                return 0;
            v[i] = v[i] * 10 + (unsigned)(*p - '0');
        }
        if (*p != (i < 2 ? '-' : '\0'))
            return 0;
        p++;
    }
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > cfg_days_in_month(v[0], v[1]))
        return -1;
    *day = cfg_days_from_civil(v[0], v[1], v[2]);
    return 1;
}

/* A whole number 1..max. */
static bool quit_parse_count(const char *w, int64_t max, int64_t *out)
{
    int64_t v = 0;
    if (w[0] == '\0')
        return false;
    for (const char *p = w; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || v > max)
            return false;
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > max)
        return false;
    *out = v;
    return true;
}

/* "9", "9.5", "9.50" (or with a comma) as cents, 1..QUIT_PRICE_MAX_CENTS. */
static bool quit_parse_price(const char *w, int64_t *cents)
{
    int64_t units = 0, frac = 0;
    int nunits = 0, nfrac = 0;
    const char *p = w;
    for (; *p >= '0' && *p <= '9'; p++, nunits++)
        if (nunits < 8)
            units = units * 10 + (*p - '0');
    if (*p == '.' || *p == ',') {
        for (p++; *p >= '0' && *p <= '9'; p++, nfrac++)
            if (nfrac < 2)
                frac = frac * 10 + (*p - '0');
        if (nfrac == 0 || nfrac > 2)
            return false;
        if (nfrac == 1)
            frac *= 10;
    }
    if (*p != '\0' || nunits == 0 || nunits > 7)
        return false;
    int64_t v = units * 100 + frac;
    if (v < 1 || v > QUIT_PRICE_MAX_CENTS)
        return false;
    *cents = v;
    return true;
}

static void on_quit_read(bot_ctx_t *ctx, int err, const db_result_t *res, void *arg)
{
    const bot_update_t *u = bot_update(ctx);
    char text[QUIT_TEXT_MAX], w[64], date[11], money[48];
    const char *args = u->args;
    quit_user_t user;
    int64_t day, per_day, price = 0;
    bool has_price;

    if (!quit_user_begin(ctx, u, err, res, &user))
        return;
    per_day = user.per_day;
    has_price = user.has_price;
    price = user.price_cents;
    if (!quit_word(&args, w, sizeof(w))) {
        quit_reply(ctx, u, quit_text_quit_usage, NULL);
        return;
    }
    int d = quit_parse_date(w, &day);
    if (d == 0) {
        snprintf(text, sizeof(text), "\"%.40s\" is not a date. Write it as YYYY-MM-DD, e.g. %s.", w,
                 (quit_fmt_date(date, user.today), date));
        quit_reply(ctx, u, text, NULL);
        return;
    }
    if (d < 0) {
        snprintf(text, sizeof(text), "%s is not a real date.", w);
        quit_reply(ctx, u, text, NULL);
        return;
    }
    if (day > user.today + 1) {
        quit_fmt_date(date, user.today);
        snprintf(text, sizeof(text), "The quit date can be at most one day ahead: today is %s.",
                 date);
        quit_reply(ctx, u, text, NULL);
        return;
    }
    if (day < QUIT_OLDEST_DAY) {
        quit_reply(ctx, u, quit_text_too_old, NULL);
        return;
    }
    if (quit_word(&args, w, sizeof(w)) && !quit_parse_count(w, QUIT_PER_DAY_MAX, &per_day)) {
        quit_reply(ctx, u, quit_text_per_day_bad, NULL);
        return;
    }
    if (quit_word(&args, w, sizeof(w))) {
        if (!quit_parse_price(w, &price)) {
            quit_reply(ctx, u, quit_text_price_bad, NULL);
            return;
        }
        has_price = true;
    }
    if (quit_word(&args, w, sizeof(w))) {
        quit_reply(ctx, u, quit_text_quit_usage, NULL);
        return;
    }
    bot_param_t p[4] = {bot_int(u->from_id), bot_int(day), bot_int(per_day),
                        has_price ? bot_int(price) : bot_text(NULL)};
    if (bot_exec(ctx, "quit_set", p, 4) < 0) {
        bot_fail(ctx, "cannot keep the quit date");
        return;
    }
    quit_fmt_date(date, day);
    int n = snprintf(text, sizeof(text), "Quit date set: %s. Counting %lld cigarettes a day", date,
                     (long long)per_day);
    if (has_price)
        n += snprintf(text + n, sizeof(text) - (size_t)n, ", %s a pack",
                      quit_fmt_money(money, sizeof(money), price));
    snprintf(text + n, sizeof(text) - (size_t)n, ". Send /status to see your progress.");
    quit_reply(ctx, u, text, NULL);
}

static void on_quit(bot_ctx_t *ctx, const bot_update_t *u)
{
    quit_read_user(ctx, u, on_quit_read);
}

/* ---- /status ---- */

static void on_status_read(bot_ctx_t *ctx, int err, const db_result_t *res, void *arg)
{
    const bot_update_t *u = bot_update(ctx);
    char text[QUIT_TEXT_MAX], date[11];
    quit_user_t user;

    if (!quit_user_begin(ctx, u, err, res, &user))
        return;
    if (!user.has_quit) {
        quit_reply(ctx, u, quit_text_no_quit_date, NULL);
        return;
    }
    if (user.quit_day > user.today) {
        quit_fmt_date(date, user.quit_day);
        snprintf(text, sizeof(text), "Your quit date is tomorrow, %s. You can do it!", date);
        quit_reply(ctx, u, text, NULL);
        return;
    }
    quit_text_status(text, sizeof(text), user.today, user.quit_day, user.per_day, user.has_price,
                     user.price_cents);
    quit_reply(ctx, u, text, NULL);
}

static void on_status(bot_ctx_t *ctx, const bot_update_t *u)
{
    quit_read_user(ctx, u, on_status_read);
}

/* ---- /quote and its button ---- */

static void on_quote_read(bot_ctx_t *ctx, int err, const db_result_t *res, void *arg)
{
    const bot_update_t *u = bot_update(ctx);
    bool button = u->type == TG_UPDATE_CALLBACK_QUERY;

    if (err != 0 || db_res_rows(res) != 1 || db_res_null(res, 0, 0)) {
        bot_fail(ctx, "cannot read a quote");
        return;
    }
    const char *quote = db_res_value(res, 0, 0, NULL);
    bot_param_t p[1] = {bot_int(u->from_id)};
    /* The row first (a button pressed by a user the bot never saw), then its counter. */
    if (quit_touch(ctx, u, !button) < 0 || bot_exec(ctx, "quit_quote_next", p, 1) < 0) {
        bot_fail(ctx, "cannot keep the user's row");
        return;
    }
    if (button) {
        if (bot_answer_callback(ctx, u->callback_id, NULL) < 0 ||
            bot_edit_message_text(ctx, u->chat_id, u->message_id, quote, QUIT_QUOTE_MARKUP) < 0) {
            bot_fail(ctx, "cannot queue the reply");
            return;
        }
        bot_done(ctx);
        return;
    }
    quit_reply(ctx, u, quote, QUIT_QUOTE_MARKUP);
}

void quit_quote_send(bot_ctx_t *ctx, const bot_update_t *u)
{
    /* The quote is a function of the user, the day and the user's counter: no randomness. */
    bot_param_t p[2] = {bot_int(u->from_id), bot_int(bot_now(ctx) / 86400000)};
    if (!u->has_from || bot_query(ctx, "quit_quote_pick", p, 2, on_quote_read, NULL) < 0)
        bot_fail(ctx, "cannot read a quote");
}

static void on_quote(bot_ctx_t *ctx, const bot_update_t *u)
{
    quit_quote_send(ctx, u);
}

void quit_commands_register(bot_app_t *app)
{
    bot_stmt(app, "quit_user_get",
             "SELECT quit_local_date($2::bigint, $3::text) - date '1970-01-01', u.user_id, "
             "u.quit_date - date '1970-01-01', u.cigarettes_per_day, u.pack_price_cents "
             "FROM (SELECT 1) one LEFT JOIN users u ON u.user_id = $1::bigint",
             3);
    bot_stmt(app, "quit_set",
             "UPDATE users SET quit_date = date '1970-01-01' + $2::bigint::integer, "
             "cigarettes_per_day = $3::bigint, pack_price_cents = $4::bigint "
             "WHERE user_id = $1::bigint",
             4);
    bot_stmt(app, "quit_quote_pick",
             "SELECT quit_quote(($1::bigint % 1000003) * 7 + $2::bigint + coalesce("
             "(SELECT quotes_shown FROM users WHERE user_id = $1::bigint), 0))",
             2);
    bot_stmt(app, "quit_quote_next",
             "UPDATE users SET quotes_shown = quotes_shown + 1 WHERE user_id = $1::bigint", 1);
    bot_on_command(app, "start", on_start);
    bot_on_command(app, "help", on_help);
    bot_on_command(app, "quit", on_quit);
    bot_on_command(app, "status", on_status);
    bot_on_command(app, "quote", on_quote);
}
