/* SPDX-License-Identifier: MIT */
/*
 * notify.c - /notify on|off and the daily reminder of the quit-smoking bot,
 * plus the broadcast gauges.
 *
 * The reminder is a periodic job (bot_every) on the housekeeping worker. Each
 * run is ONE statement: it selects up to QUIT_NOTIFY_BATCH due users (active,
 * reminders on, BOT_NOTIFY_HOUR reached in BOT_TIMEZONE, not reminded on
 * today's local date) FOR UPDATE SKIP LOCKED, sets their last_notified_on to
 * that date and inserts their sendMessage rows into the outbox. It commits
 * whole or not at all, so each user is reminded once per local day across
 * restarts, workers and replicas (two replicas' runs skip each other's
 * rows); the sender paces the rows within the bot's limits. PostgreSQL does
 * the time zone arithmetic (AT TIME ZONE): there is no time zone code here.
 * A full batch runs the job again at once; otherwise every
 * QUIT_NOTIFY_EVERY_MS.
 */
#include "quit.h"

#include "log.h"
#include "met.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Users one reminder statement takes at most. */
#define QUIT_NOTIFY_BATCH 200
/* Between reminder runs, ms: the reminder leaves within this of the hour. */
#define QUIT_NOTIFY_EVERY_MS 30000
/* Between samples of the broadcast gauges, ms. */
#define QUIT_GAUGES_EVERY_MS 2000

static void on_notify(bot_ctx_t *ctx, const bot_update_t *u)
{
    const quit_t *q = quit_of(ctx);
    char text[QUIT_TEXT_MAX];
    bool on;

    if (strcmp(u->args, "on") == 0 || strcmp(u->args, "ON") == 0)
        on = true;
    else if (strcmp(u->args, "off") == 0 || strcmp(u->args, "OFF") == 0)
        on = false;
    else {
        if (quit_touch(ctx, u, true) < 0) {
            bot_fail(ctx, "cannot keep the user's row");
            return;
        }
        quit_reply(ctx, u, quit_text_notify_usage, NULL);
        return;
    }
    bot_param_t p[2] = {bot_int(u->from_id), bot_int(on)};
    if (!u->has_from || quit_touch(ctx, u, true) < 0 ||
        bot_exec(ctx, "quit_notify_set", p, 2) < 0) {
        bot_fail(ctx, "cannot keep the user's row");
        return;
    }
    if (on) {
        snprintf(text, sizeof(text), "Daily reminders are on: one a day at %02u:00 (%s).",
                 q->notify_hour, q->tz);
        quit_reply(ctx, u, text, NULL);
    } else {
        quit_reply(ctx, u, quit_text_notify_off, NULL);
    }
}

static void on_reminders(bot_job_t *job, int err, const db_result_t *res, void *arg)
{
    const quit_t *q = arg;
    if (err == -EBADMSG) {
        char msg[256];
        /* Class 22 here is nearly always the time zone: PostgreSQL does not know it. */
        log_error("reminders_refused",
                  "the reminder statement was refused (BOT_TIMEZONE %s?): "
                  "SQLSTATE %s %s",
                  q->tz, db_res_sqlstate(res), db_res_message(res, msg, sizeof(msg)));
        return;
    }
    if (err != 0) {
        log_warn("reminders_failed", "the reminder statement failed: %s", strerror(-err));
        return;
    }
    uint64_t n = db_res_affected(res);
    if (n == 0)
        return;
    met_self()->bot_notifications += n;
    log_info("reminders_queued", "%llu daily reminders queued", (unsigned long long)n);
    if (n >= QUIT_NOTIFY_BATCH)
        bot_job_again(job);
}

static void reminders(bot_job_t *job, void *arg)
{
    const quit_t *q = arg;
    bot_param_t p[6] = {bot_int(bot_job_now(job)),       bot_text(q->tz),
                        bot_int(q->notify_hour),         bot_int(QUIT_NOTIFY_BATCH),
                        bot_text(quit_text_notify_days), bot_text(quit_text_notify_plain)};
    bot_job_exec(job, "quit_remind", p, 6, on_reminders);
}

static void on_gauges(bot_job_t *job, int err, const db_result_t *res, void *arg)
{
    int64_t queued = 0, pending = 0;
    if (err != 0 || db_res_rows(res) != 1)
        return;
    db_res_int(res, 0, 0, &queued);
    db_res_int(res, 0, 1, &pending);
    met_self()->bot_broadcast_queued = queued > 0 ? (uint64_t)queued : 0;
    met_self()->bot_broadcast_pending = pending > 0 ? (uint64_t)pending : 0;
}

static void gauges(bot_job_t *job, void *arg)
{
    static const bot_param_t none[1];
    bot_job_exec(job, "quit_broadcast_gauges", none, 0, on_gauges);
}

void quit_notify_register(bot_app_t *app, quit_t *q)
{
    bot_stmt(app, "quit_notify_set",
             "UPDATE users SET notify = $2::bigint <> 0 WHERE user_id = $1::bigint", 2);
    bot_stmt(app, "quit_remind",
             "WITH clock AS (SELECT quit_local_date($1::bigint, $2::text) AS today, "
             "extract(hour FROM to_timestamp($1::bigint / 1000.0) AT TIME ZONE $2::text) AS hour), "
             "due AS (SELECT u.user_id FROM users u, clock "
             "WHERE u.active AND u.notify AND clock.hour >= $3::bigint "
             "AND (u.last_notified_on IS NULL OR u.last_notified_on < clock.today) "
             "ORDER BY u.user_id LIMIT $4::bigint FOR UPDATE OF u SKIP LOCKED), "
             "marked AS (UPDATE users u SET last_notified_on = clock.today FROM due, clock "
             "WHERE u.user_id = due.user_id "
             "RETURNING u.user_id, u.chat_id, u.quit_date, clock.today) "
             "INSERT INTO outbox (chat_id, method, body) "
             "SELECT m.chat_id, 'sendMessage', json_build_object('chat_id', m.chat_id, 'text', "
             "CASE WHEN m.quit_date <= m.today "
             "THEN format($5::text, m.today - m.quit_date, "
             "quit_quote(m.user_id + (m.today - date '1970-01-01'))) "
             "ELSE format($6::text, quit_quote(m.user_id + (m.today - date '1970-01-01'))) END"
             ")::text FROM marked m ORDER BY m.user_id",
             6);
    bot_stmt(app, "quit_broadcast_gauges",
             "SELECT coalesce((SELECT sum(total) FROM broadcasts), 0), "
             "(SELECT count(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL "
             "AND update_id IN (SELECT update_id FROM broadcasts))",
             0);
    bot_on_command(app, "notify", on_notify);
    bot_every(app, "reminders", QUIT_NOTIFY_EVERY_MS, reminders, q);
    bot_every(app, "broadcast_gauges", QUIT_GAUGES_EVERY_MS, gauges, q);
}
