/* SPDX-License-Identifier: MIT */
/*
 * admin.c - the admins' commands of the quit-smoking bot: /admins,
 * /addadmin, /deladmin, /stats and /broadcast. Admins are the ids of
 * BOT_ADMIN_IDS (always: they are removed there, not with /deladmin) and
 * the rows of admins. Everyone else gets a polite refusal.
 *
 * A broadcast is one INSERT ... SELECT of a sendMessage row per active user
 * into the outbox, kept with bot_exec(): it commits with the update's
 * processed mark, so it is queued exactly once, and the sender sends it at
 * the bot's global rate like any other row.
 */
#include "quit.h"

#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* For the statements without parameters: a pointer, never read. */
static const bot_param_t quit_no_params[1];

/* An admin command once the caller is known to be an admin. */
typedef void (*quit_admin_cb)(bot_ctx_t *ctx, const bot_update_t *u, bool target_admin);

/* A user id argument: 1..2^63-1, or 0 when args is not one. */
static int64_t quit_user_id_arg(const char *args)
{
    char *end;
    if (args[0] < '1' || args[0] > '9')
        return 0;
    long long v = strtoll(args, &end, 10);
    while (*end == ' ' || *end == '\n' || *end == '\t')
        end++;
    return *end == '\0' && v > 0 && v < INT64_MAX ? v : 0;
}

static void on_admin_read(bot_ctx_t *ctx, int err, const db_result_t *res, void *arg)
{
    const bot_update_t *u = bot_update(ctx);
    const quit_t *q = quit_of(ctx);
    quit_admin_cb next = (quit_admin_cb)(uintptr_t)arg;

    if (err != 0 || db_res_rows(res) != 1) {
        bot_fail(ctx, "cannot read the admins");
        return;
    }
    bool caller = quit_config_admin(q, u->from_id) || db_res_value(res, 0, 0, NULL)[0] == 't';
    bool target = db_res_value(res, 0, 1, NULL)[0] == 't';
    if (quit_touch(ctx, u, true) < 0) {
        bot_fail(ctx, "cannot keep the user's row");
        return;
    }
    if (!caller) {
        quit_reply(ctx, u, quit_text_not_admin, NULL);
        return;
    }
    next(ctx, u, target);
}

/* Checks that the caller is an admin (and whether `target` is one), then runs next. */
static void quit_as_admin(bot_ctx_t *ctx, const bot_update_t *u, int64_t target, quit_admin_cb next)
{
    bot_param_t p[2] = {bot_int(u->from_id), bot_int(target)};
    if (!u->has_from ||
        bot_query(ctx, "quit_admin_check", p, 2, on_admin_read, (void *)(uintptr_t)next) < 0)
        bot_fail(ctx, "cannot read the admins");
}

/* ---- /admins ---- */

static void on_admins_read(bot_ctx_t *ctx, int err, const db_result_t *res, void *arg)
{
    const bot_update_t *u = bot_update(ctx);
    const quit_t *q = quit_of(ctx);
    char text[QUIT_TEXT_MAX];
    size_t n = 0;

    if (err != 0) {
        bot_fail(ctx, "cannot read the admins");
        return;
    }
    n += (size_t)snprintf(text, sizeof(text), "Admins:");
    for (unsigned i = 0; i < q->nadmins && n < sizeof(text); i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "\n%lld (BOT_ADMIN_IDS)",
                              (long long)q->admins[i]);
    for (unsigned r = 0; r < db_res_rows(res) && n < sizeof(text); r++) {
        int64_t id = 0, by = 0;
        db_res_int(res, r, 0, &id);
        db_res_int(res, r, 1, &by);
        if (quit_config_admin(q, id))
            continue;
        n += (size_t)snprintf(text + n, sizeof(text) - n, "\n%lld (added by %lld)", (long long)id,
                              (long long)by);
    }
    quit_reply(ctx, u, text, NULL);
}

static void admins_list(bot_ctx_t *ctx, const bot_update_t *u, bool target_admin)
{
    if (bot_query(ctx, "quit_admins", quit_no_params, 0, on_admins_read, NULL) < 0)
        bot_fail(ctx, "cannot read the admins");
}

static void on_admins(bot_ctx_t *ctx, const bot_update_t *u)
{
    quit_as_admin(ctx, u, 0, admins_list);
}

/* ---- /addadmin, /deladmin ---- */

static void admin_add(bot_ctx_t *ctx, const bot_update_t *u, bool target_admin)
{
    char text[128];
    int64_t id = quit_user_id_arg(u->args);
    if (id == 0) {
        quit_reply(ctx, u, quit_text_addadmin_usage, NULL);
        return;
    }
    if (target_admin || quit_config_admin(quit_of(ctx), id)) {
        snprintf(text, sizeof(text), "%lld is an admin already.", (long long)id);
        quit_reply(ctx, u, text, NULL);
        return;
    }
    bot_param_t p[3] = {bot_int(id), bot_int(u->from_id), bot_int(bot_now(ctx))};
    if (bot_exec(ctx, "quit_admin_add", p, 3) < 0) {
        bot_fail(ctx, "cannot add the admin");
        return;
    }
    snprintf(text, sizeof(text), "%lld is an admin now.", (long long)id);
    quit_reply(ctx, u, text, NULL);
}

static void on_addadmin(bot_ctx_t *ctx, const bot_update_t *u)
{
    quit_as_admin(ctx, u, quit_user_id_arg(u->args), admin_add);
}

static void admin_del(bot_ctx_t *ctx, const bot_update_t *u, bool target_admin)
{
    char text[160];
    int64_t id = quit_user_id_arg(u->args);
    if (id == 0) {
        quit_reply(ctx, u, quit_text_deladmin_usage, NULL);
        return;
    }
    if (quit_config_admin(quit_of(ctx), id)) {
        snprintf(text, sizeof(text), "%lld is an admin through BOT_ADMIN_IDS: remove them there.",
                 (long long)id);
        quit_reply(ctx, u, text, NULL);
        return;
    }
    if (!target_admin) {
        snprintf(text, sizeof(text), "%lld is not an admin.", (long long)id);
        quit_reply(ctx, u, text, NULL);
        return;
    }
    bot_param_t p[1] = {bot_int(id)};
    if (bot_exec(ctx, "quit_admin_del", p, 1) < 0) {
        bot_fail(ctx, "cannot remove the admin");
        return;
    }
    snprintf(text, sizeof(text), "%lld is no longer an admin.", (long long)id);
    quit_reply(ctx, u, text, NULL);
}

static void on_deladmin(bot_ctx_t *ctx, const bot_update_t *u)
{
    quit_as_admin(ctx, u, quit_user_id_arg(u->args), admin_del);
}

/* ---- /stats ---- */

static void on_stats_read(bot_ctx_t *ctx, int err, const db_result_t *res, void *arg)
{
    const bot_update_t *u = bot_update(ctx);
    char text[QUIT_TEXT_MAX];
    int64_t v[6] = {0, 0, 0, 0, 0, 0};

    if (err != 0 || db_res_rows(res) != 1) {
        bot_fail(ctx, "cannot read the stats");
        return;
    }
    for (unsigned i = 0; i < 6; i++)
        db_res_int(res, 0, i, &v[i]);
    int n = snprintf(text, sizeof(text), "Users: %lld\nActive quitters: %lld\nMessages today: %lld",
                     (long long)v[0], (long long)v[1], (long long)v[2]);
    if (v[3] == 0)
        snprintf(text + n, sizeof(text) - (size_t)n, "\nBroadcasts: none yet");
    else
        snprintf(text + n, sizeof(text) - (size_t)n,
                 "\nBroadcasts: %lld; the last one: %lld messages, %lld still to send",
                 (long long)v[3], (long long)v[4], (long long)v[5]);
    quit_reply(ctx, u, text, NULL);
}

static void stats(bot_ctx_t *ctx, const bot_update_t *u, bool target_admin)
{
    bot_param_t p[2] = {bot_int(bot_now(ctx)), bot_text(quit_of(ctx)->tz)};
    if (bot_query(ctx, "quit_stats", p, 2, on_stats_read, NULL) < 0)
        bot_fail(ctx, "cannot read the stats");
}

static void on_stats(bot_ctx_t *ctx, const bot_update_t *u)
{
    quit_as_admin(ctx, u, 0, stats);
}

/* ---- /broadcast <text> ---- */

static void on_broadcast_count(bot_ctx_t *ctx, int err, const db_result_t *res, void *arg)
{
    const bot_update_t *u = bot_update(ctx);
    char text[128];
    int64_t users = 0;

    if (err != 0 || !db_res_int(res, 0, 0, &users)) {
        bot_fail(ctx, "cannot count the users");
        return;
    }
    snprintf(text, sizeof(text), "Broadcast queued for %lld %s.", (long long)users,
             users == 1 ? "user" : "users");
    /* The reply first: it leaves before the admin's own copy of the broadcast. */
    if (bot_send_message(ctx, u->chat_id, text, NULL) < 0) {
        bot_fail(ctx, "cannot queue the reply");
        return;
    }
    bot_param_t p[4] = {bot_int(u->update_id), bot_int(u->from_id), bot_text(u->args),
                        bot_int(bot_now(ctx))};
    if (bot_exec(ctx, "quit_broadcast", p, 4) < 0) {
        bot_fail(ctx, "cannot queue the broadcast");
        return;
    }
    bot_done(ctx);
}

static void broadcast(bot_ctx_t *ctx, const bot_update_t *u, bool target_admin)
{
    if (u->args[0] == '\0') {
        quit_reply(ctx, u, quit_text_broadcast_usage, NULL);
        return;
    }
    if (strlen(u->args) > QUIT_BROADCAST_MAX) {
        quit_reply(ctx, u, quit_text_broadcast_long, NULL);
        return;
    }
    if (bot_query(ctx, "quit_active_users", quit_no_params, 0, on_broadcast_count, NULL) < 0)
        bot_fail(ctx, "cannot count the users");
}

static void on_broadcast(bot_ctx_t *ctx, const bot_update_t *u)
{
    quit_as_admin(ctx, u, 0, broadcast);
}

void quit_admin_register(bot_app_t *app)
{
    bot_stmt(app, "quit_admin_check",
             "SELECT EXISTS (SELECT 1 FROM admins WHERE user_id = $1::bigint), "
             "EXISTS (SELECT 1 FROM admins WHERE user_id = $2::bigint)",
             2);
    bot_stmt(app, "quit_admins", "SELECT user_id, added_by FROM admins ORDER BY user_id", 0);
    bot_stmt(app, "quit_admin_add",
             "INSERT INTO admins (user_id, added_by, added_at) "
             "VALUES ($1::bigint, $2::bigint, to_timestamp($3::bigint / 1000.0)) "
             "ON CONFLICT (user_id) DO NOTHING",
             3);
    bot_stmt(app, "quit_admin_del", "DELETE FROM admins WHERE user_id = $1::bigint", 1);
    bot_stmt(app, "quit_stats",
             "SELECT (SELECT count(*) FROM users), "
             "(SELECT count(*) FROM users WHERE active "
             "AND quit_date <= quit_local_date($1::bigint, $2::text)), "
             "coalesce((SELECT messages FROM daily_stats "
             "WHERE day = quit_local_date($1::bigint, $2::text)), 0), "
             "(SELECT count(*) FROM broadcasts), coalesce(b.total, 0), "
             "(SELECT count(*) FROM outbox o WHERE o.sent_at IS NULL AND o.failed_at IS NULL "
             "AND o.update_id = b.update_id) "
             "FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT update_id, total FROM broadcasts "
             "ORDER BY created_at DESC, update_id DESC LIMIT 1) b ON true",
             2);
    bot_stmt(app, "quit_active_users", "SELECT count(*) FROM users WHERE active", 0);
    bot_stmt(app, "quit_broadcast",
             "WITH q AS (INSERT INTO outbox (chat_id, method, body, update_id) "
             "SELECT chat_id, 'sendMessage', "
             "json_build_object('chat_id', chat_id, 'text', $3::text)::text, $1::bigint "
             "FROM users WHERE active ORDER BY user_id RETURNING 1) "
             "INSERT INTO broadcasts (update_id, admin_id, body, total, created_at) "
             "SELECT $1::bigint, $2::bigint, $3::text, count(*), "
             "to_timestamp($4::bigint / 1000.0) FROM q",
             4);
    bot_on_command(app, "admins", on_admins);
    bot_on_command(app, "addadmin", on_addadmin);
    bot_on_command(app, "deladmin", on_deladmin);
    bot_on_command(app, "stats", on_stats);
    bot_on_command(app, "broadcast", on_broadcast);
}
