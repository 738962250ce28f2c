/* SPDX-License-Identifier: MIT */
/*
 * text.c - every text the quit-smoking bot writes, in English (the user's
 * language code is kept in users for a later translation), and the
 * formatting of dates, day counts and money in them. Pure functions: the
 * same input gives the same text on every run.
 */
#include "quit.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const char quit_text_notify_days[] = "Smoke-free days: %s. Keep going!\n\n%s";
const char quit_text_notify_plain[] = "%s\n\nReady when you are: /quit YYYY-MM-DD sets your quit "
                                      "date.";

const char quit_text_quit_usage[] =
    "Usage: /quit YYYY-MM-DD [cigarettes_per_day] [pack_price], e.g. /quit 2024-05-01 20 9.50";
const char quit_text_per_day_bad[] = "Cigarettes per day must be a whole number from 1 to 200.";
const char quit_text_price_bad[] =
    "The pack price must be a number from 0.01 to 1000 with at most two decimals, e.g. 9.50.";
const char quit_text_too_old[] = "The quit date cannot be before 1950-01-01.";
const char quit_text_no_quit_date[] =
    "You have not set a quit date yet. Send /quit YYYY-MM-DD [cigarettes_per_day] [pack_price] "
    "to start counting.";
const char quit_text_notify_usage[] = "Usage: /notify on or /notify off";
const char quit_text_notify_off[] = "Daily reminders are off. Send /notify on to get them again.";
const char quit_text_plain[] = "I answer commands. Send /help to see them.";
const char quit_text_not_admin[] = "Sorry, this command is for the bot's admins only.";
const char quit_text_addadmin_usage[] = "Usage: /addadmin <user_id>";
const char quit_text_deladmin_usage[] = "Usage: /deladmin <user_id>";
const char quit_text_broadcast_usage[] = "Usage: /broadcast <text>";
const char quit_text_broadcast_long[] = "That text is too long: a broadcast takes at most 4096 "
                                        "bytes.";
const char quit_text_busy[] = "Sorry, I am busy right now. Please try again in a minute.";

/* Howard Hinnant's civil_from_days. */
void quit_fmt_date(char *out, int64_t days)
{
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    char tmp[64];
    /* Years past 9999 do not occur: /quit takes YYYY-MM-DD and today. */
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02d", (int)(y % 10000), (int)m, (int)d);
    memcpy(out, tmp, 10);
    out[10] = '\0';
}

const char *quit_fmt_days(char *out, size_t cap, int64_t n)
{
    snprintf(out, cap, "%" PRId64 " %s", n, n == 1 ? "day" : "days");
    return out;
}

const char *quit_fmt_money(char *out, size_t cap, int64_t cents)
{
    snprintf(out, cap, "%" PRId64 ".%02d", cents / 100, (int)(cents % 100));
    return out;
}

void quit_text_help(char *out, size_t cap, const quit_t *q, bool welcome)
{
    snprintf(out, cap,
             "%s"
             "Commands:\n"
             "/quit YYYY-MM-DD [cigarettes_per_day] [pack_price] - set your quit date\n"
             "/status - days smoke-free, cigarettes not smoked, money saved\n"
             "/quote - a motivational quote\n"
             "/notify on|off - a daily reminder at %02u:00 (%s)\n"
             "/help - this list",
             welcome ? "Hi! I help you quit smoking and stay smoke-free.\n\n" : "", q->notify_hour,
             q->tz);
}

/* The milestones /status counts towards, in days. */
static const struct {
    int64_t days;
    const char *name;
} quit_milestones[] = {
    {1, "1 day"}, {3, "3 days"}, {7, "1 week"}, {30, "1 month"}, {90, "3 months"}, {365, "1 year"},
};

void quit_text_status(char *out, size_t cap, int64_t today, int64_t quit_day, int64_t per_day,
                      bool has_price, int64_t price_cents)
{
    char since[11], days[32], money[48], next[96], left[32];
    int64_t n = today - quit_day;
    quit_fmt_date(since, quit_day);
    /* A pack holds 20 cigarettes. */
    if (has_price)
        quit_fmt_money(money, sizeof(money), n * per_day * price_cents / 20);
    else
        snprintf(money, sizeof(money), "add a pack price to /quit to see it");
    snprintf(next, sizeof(next), "all reached, 1 year and more. Amazing!");
    for (size_t i = 0; i < sizeof(quit_milestones) / sizeof(quit_milestones[0]); i++)
        if (quit_milestones[i].days > n) {
            snprintf(next, sizeof(next), "%s, in %s", quit_milestones[i].name,
                     quit_fmt_days(left, sizeof(left), quit_milestones[i].days - n));
            break;
        }
    snprintf(out, cap,
             "Smoke-free since %s: %s.\n"
             "Cigarettes not smoked: %" PRId64 "\n"
             "Money saved: %s\n"
             "Next milestone: %s",
             since, quit_fmt_days(days, sizeof(days), n), n * per_day, money, next);
}
