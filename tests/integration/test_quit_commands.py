# SPDX-License-Identifier: MIT
"""The quit-smoking bot (the tgring binary's application) through the real
binary, PostgreSQL and the Bot API stand-in, with its clock set by BOT_NOW
(2024-05-10 12:00 UTC): a conversation per command with the exact replies
from the stand-in's record:

- /start (also with a deep-link payload), /help, /quit with every kind of
  invalid argument and valid ones (tomorrow allowed, more refused), /status
  before a quit date, for tomorrow, within the milestones and past a year;
- /quote and its "Another one" button (answerCallbackQuery +
  editMessageText with the next quote, chosen the same way on every run);
- /notify usage, off and on; an unknown command's hint; plain text's reply;
  an update type the bot does not handle (processed, no reply);
- a group: known commands answered bare or addressed, other bots' and bare
  unknown commands and plain text ignored;
- admins: BOT_ADMIN_IDS, /admins, /addadmin, /deladmin (usage, already,
  configured, unknown), /stats, a small /broadcast; a non-admin refused;
- BOT_NOW, BOT_TIMEZONE, BOT_NOTIFY_HOUR and BOT_ADMIN_IDS refused when bad.
"""

import json

import botapi_helpers as bh
import harness
import bot_helpers as qh

NOW = "2024-05-10T12:00:00Z"
TODAY = 19853  # days from 1970-01-01 to 2024-05-10
HELP = ("Commands:\n"
        "/quit YYYY-MM-DD [cigarettes_per_day] [pack_price] - set your quit date\n"
        "/status - days smoke-free, cigarettes not smoked, money saved\n"
        "/quote - a motivational quote\n"
        "/notify on|off - a daily reminder at 09:00 (UTC)\n"
        "/help - this list")
WELCOME = "Hi! I help you quit smoking and stay smoke-free.\n\n" + HELP
NO_DATE = ("You have not set a quit date yet. Send /quit YYYY-MM-DD [cigarettes_per_day] "
           "[pack_price] to start counting.")
USAGE = "Usage: /quit YYYY-MM-DD [cigarettes_per_day] [pack_price], e.g. /quit 2024-05-01 20 9.50"
REFUSED = "Sorry, this command is for the bot's admins only."


def send(chat, text, **more):
    body = {"chat_id": chat, "text": text}
    body.update(more)
    return ("sendMessage", body)


class Convo:
    """Updates numbered from a base, and the count of messages the bot counts."""

    def __init__(self):
        self.next_id = 100000
        self.counted = 0

    def msg(self, user, text, counted=True, **kw):
        self.next_id += 1
        self.counted += 1 if counted else 0
        return qh.msg(self.next_id, user, text, **kw)

    def callback(self, user, data, message_id):
        self.next_id += 1
        return qh.callback(self.next_id, user, data, message_id), f"cb{self.next_id}"

    def other(self, user):
        self.next_id += 1
        return json.dumps({"update_id": self.next_id, "edited_message": {
            "message_id": 5, "from": {"id": user, "is_bot": False, "first_name": "T"},
            "chat": {"id": user, "type": "private"}, "date": 1, "edit_date": 2,
            "text": "edited"}}).encode()


async def check(t, pg, api, srv, c, chat, bodies, want, what, cb_ids=()):
    await qh.post_all(t, srv, bodies)
    ok = await qh.settle(pg, f"update_id > {c.next_id - len(bodies)} AND update_id <= "
                         f"{c.next_id}", len(bodies))
    t.ok(ok, f"{what}: every update is processed")
    await bh.wait_for(lambda: len(qh.calls_of(api, chat, cb_ids)) >= len(want), 10)
    got = qh.calls_of(api, chat, cb_ids)
    t.eq(len(got), len(want), f"{what}: one call per reply", lambda: "\n".join(map(str, got)))
    for i, (g, w) in enumerate(zip(got, want)):
        t.eq(g, w, f"{what}, reply {i + 1}: {w[1].get('text', '')[:40]!r}")
    api._ctl("POST", "/calls/clear")


def quote(pg, user, k):
    return pg.scalar(f"SELECT quit_quote(({user} % 1000003) * 7 + {TODAY} + {k})")


async def user_commands(t, pg, api, srv, c):
    u = 1001
    status_day9 = ("Smoke-free since 2024-05-01: 9 days.\nCigarettes not smoked: 180\n"
                   "Money saved: 85.50\nNext milestone: 1 month, in 21 days")
    status_year = ("Smoke-free since 2023-05-10: 366 days.\nCigarettes not smoked: 5490\n"
                   "Money saved: 2607.75\nNext milestone: all reached, 1 year and more. Amazing!")
    script = [
        (c.msg(u, "/start"), send(u, WELCOME)),
        (c.msg(u, "/start ref42"), send(u, WELCOME)),
        (c.msg(u, "/help"), send(u, HELP)),
        (c.msg(u, "/status"), send(u, NO_DATE)),
        (c.msg(u, "/quit"), send(u, USAGE)),
        (c.msg(u, "/quit 2024-13-01"), send(u, "2024-13-01 is not a real date.")),
        (c.msg(u, "/quit 2023-02-29"), send(u, "2023-02-29 is not a real date.")),
        (c.msg(u, "/quit yesterday"),
         send(u, "\"yesterday\" is not a date. Write it as YYYY-MM-DD, e.g. 2024-05-10.")),
        (c.msg(u, "/quit 2024-05-12"),
         send(u, "The quit date can be at most one day ahead: today is 2024-05-10.")),
        (c.msg(u, "/quit 1949-12-31"), send(u, "The quit date cannot be before 1950-01-01.")),
        (c.msg(u, "/quit 2024-05-01 0"),
         send(u, "Cigarettes per day must be a whole number from 1 to 200.")),
        (c.msg(u, "/quit 2024-05-01 201"),
         send(u, "Cigarettes per day must be a whole number from 1 to 200.")),
        (c.msg(u, "/quit 2024-05-01 20 abc"),
         send(u, "The pack price must be a number from 0.01 to 1000 with at most two "
                 "decimals, e.g. 9.50.")),
        (c.msg(u, "/quit 2024-05-01 20 9.505"),
         send(u, "The pack price must be a number from 0.01 to 1000 with at most two "
                 "decimals, e.g. 9.50.")),
        (c.msg(u, "/quit 2024-05-01 20 9.5 more"), send(u, USAGE)),
        (c.msg(u, "/quit 2024-05-01 20 9.5"),
         send(u, "Quit date set: 2024-05-01. Counting 20 cigarettes a day, 9.50 a pack. "
                 "Send /status to see your progress.")),
        (c.msg(u, "/status"), send(u, status_day9)),
        (c.msg(u, "/quit 2024-05-11"),
         send(u, "Quit date set: 2024-05-11. Counting 20 cigarettes a day, 9.50 a pack. "
                 "Send /status to see your progress.")),
        (c.msg(u, "/status"), send(u, "Your quit date is tomorrow, 2024-05-11. You can do it!")),
        (c.msg(u, "/quit 2023-05-10 15"),
         send(u, "Quit date set: 2023-05-10. Counting 15 cigarettes a day, 9.50 a pack. "
                 "Send /status to see your progress.")),
        (c.msg(u, "/status"), send(u, status_year)),
    ]
    await check(t, pg, api, srv, c, u, [b for b, _ in script], [w for _, w in script],
                "/start, /help, /quit, /status")

    q0, q1, q2 = quote(pg, u, 0), quote(pg, u, 1), quote(pg, u, 2)
    t.ok(len({q0, q1, q2}) == 3, "three different quotes follow each other", q0, q1, q2)
    # One at a time, as a user presses the button under a reply received.
    await check(t, pg, api, srv, c, u, [c.msg(u, "/quote")],
                [send(u, q0, reply_markup=qh.QUOTE_MARKUP)], "/quote")
    body, cb = c.callback(u, "quote", 77)
    await check(t, pg, api, srv, c, u, [body],
                [("answerCallbackQuery", {"callback_query_id": cb}),
                 ("editMessageText", {"chat_id": u, "message_id": 77, "text": q1,
                                      "reply_markup": qh.QUOTE_MARKUP})],
                "the \"Another one\" button", (cb,))
    await check(t, pg, api, srv, c, u, [c.msg(u, "/quote")],
                [send(u, q2, reply_markup=qh.QUOTE_MARKUP)], "/quote again")

    script = [
        (c.msg(u, "/notify"), send(u, "Usage: /notify on or /notify off")),
        (c.msg(u, "/notify maybe"), send(u, "Usage: /notify on or /notify off")),
        (c.msg(u, "/notify off"),
         send(u, "Daily reminders are off. Send /notify on to get them again.")),
        (c.msg(u, "/notify on"), send(u, "Daily reminders are on: one a day at 09:00 (UTC).")),
        (c.msg(u, "/frobnicate now"),
         send(u, "I do not know /frobnicate. Send /help to see what I can do.")),
        (c.msg(u, "hello there"), send(u, "I answer commands. Send /help to see them.")),
        (c.msg(u, "/stats"), send(u, REFUSED)),
        (c.msg(u, "/broadcast hi all"), send(u, REFUSED)),
        (c.msg(u, "/addadmin 1001"), send(u, REFUSED)),
    ]
    bodies = [b for b, _ in script] + [c.other(u)]
    await check(t, pg, api, srv, c, u, bodies, [w for _, w in script],
                "/notify, unknown commands, plain text, non-admins, an edited message")
    row = pg.psql("SELECT language_code, quit_date, cigarettes_per_day, pack_price_cents, "
                  f"notify, active, quotes_shown FROM users WHERE user_id = {u}")
    t.eq(row, [["en", "2023-05-10", "15", "950", "t", "t", "3"]], "the user's row")


async def group(t, pg, api, srv, c):
    g, u = -100500, 1003
    kw = {"chat": g, "chat_type": "supergroup"}
    bodies = [c.msg(u, "/status", **kw), c.msg(u, f"/status@{qh.BOT}", **kw),
              c.msg(u, "/status@other_bot", counted=False, **kw),
              c.msg(u, "/frob", counted=False, **kw), c.msg(u, f"/frob@{qh.BOT}", **kw),
              c.msg(u, "hello group", counted=False, **kw)]
    want = [send(g, NO_DATE), send(g, NO_DATE),
            send(g, "I do not know /frob. Send /help to see what I can do.")]
    await check(t, pg, api, srv, c, g, bodies, want, "a group")


async def admins(t, pg, api, srv, c):
    a = 500
    script = [
        (c.msg(a, "/admins"), send(a, "Admins:\n500 (BOT_ADMIN_IDS)\n501 (BOT_ADMIN_IDS)")),
        (c.msg(a, "/addadmin"), send(a, "Usage: /addadmin <user_id>")),
        (c.msg(a, "/addadmin abc"), send(a, "Usage: /addadmin <user_id>")),
        (c.msg(a, "/addadmin 1001"), send(a, "1001 is an admin now.")),
        (c.msg(a, "/addadmin 1001"), send(a, "1001 is an admin already.")),
        (c.msg(a, "/addadmin 501"), send(a, "501 is an admin already.")),
        (c.msg(a, "/admins"),
         send(a, "Admins:\n500 (BOT_ADMIN_IDS)\n501 (BOT_ADMIN_IDS)\n1001 (added by 500)")),
        (c.msg(a, "/deladmin"), send(a, "Usage: /deladmin <user_id>")),
        (c.msg(a, "/deladmin 501"),
         send(a, "501 is an admin through BOT_ADMIN_IDS: remove them there.")),
        (c.msg(a, "/deladmin 7"), send(a, "7 is not an admin.")),
        (c.msg(a, "/broadcast"), send(a, "Usage: /broadcast <text>")),
    ]
    await check(t, pg, api, srv, c, a, [b for b, _ in script], [w for _, w in script],
                "an admin's commands")

    # Users: 1001, 1003 (the group's) and 500; 1001 quit a year ago; every counted message
    # before this one.
    stats = (f"Users: 3\nActive quitters: 1\nMessages today: {c.counted}\n"
             "Broadcasts: none yet")
    await check(t, pg, api, srv, c, 1001, [c.msg(1001, "/stats")], [send(1001, stats)],
                "an added admin's /stats")
    await check(t, pg, api, srv, c, a, [c.msg(a, "/deladmin 1001")],
                [send(a, "1001 is no longer an admin.")], "/deladmin")
    await check(t, pg, api, srv, c, 1001, [c.msg(1001, "/stats")], [send(1001, REFUSED)],
                "a removed admin is refused")

    await qh.post_all(t, srv, [c.msg(a, "/broadcast Stay strong,\nfriends! \U0001F4AA")])
    await qh.settle(pg, f"update_id = {c.next_id}", 1)
    text = "Stay strong,\nfriends! \U0001F4AA"
    calls = [x for x in api.calls("sendMessage")]
    got = sorted((int(x["body"]["chat_id"]), x["body"]["text"]) for x in calls)
    t.eq(got, sorted([(500, "Broadcast queued for 3 users."), (500, text), (1001, text),
                      (1003, text)]), "the broadcast reached every active user once")
    # Only one chat's messages are ordered (by outbox id); rows of different chats go out
    # side by side, so the admin's confirmation is first among the admin's own messages.
    to_admin = [x["body"] for x in calls if int(x["body"]["chat_id"]) == 500]
    t.eq(to_admin[:1], [{"chat_id": 500, "text": "Broadcast queued for 3 users."}],
         "the admin's reply leaves before the broadcast reaches the admin")
    api._ctl("POST", "/calls/clear")
    stats = (f"Users: 3\nActive quitters: 1\nMessages today: {c.counted}\n"
             "Broadcasts: 1; the last one: 3 messages, 0 still to send")
    await check(t, pg, api, srv, c, a, [c.msg(a, "/stats")], [send(a, stats)],
                "/stats after the broadcast")
    # Both gauges are sampled by one periodic statement, and the sent marks follow the
    # calls: wait for a sample taken after the last mark.
    def settled():
        g = srv.metrics()
        return (harness.metric(g, "tgring_bot_broadcast_queued_total") == 3.0 and
                harness.metric(g, "tgring_bot_broadcast_pending") == 0.0)

    await bh.wait_for(settled, 10)
    m = srv.metrics()
    t.eq(harness.metric(m, "tgring_bot_broadcast_queued_total"), 3.0,
         "tgring_bot_broadcast_queued_total")
    t.eq(harness.metric(m, "tgring_bot_broadcast_pending"), 0.0, "tgring_bot_broadcast_pending")


def bad_config(t, h, env):
    for name, value, needle in [
            ("BOT_NOW", "2024-05-10 12:00", "BOT_NOW"),
            ("BOT_NOW", "2024-02-30T00:00:00Z", "BOT_NOW"),
            ("BOT_TIMEZONE", "Mars/Olympus_Mons", "unknown time zone"),
            ("BOT_TIMEZONE", "../etc/passwd", "BOT_TIMEZONE"),
            ("BOT_NOTIFY_HOUR", "24", "BOT_NOTIFY_HOUR"),
            ("BOT_ADMIN_IDS", "1,x", "BOT_ADMIN_IDS"),
            ("BOT_ADMIN_IDS", "0", "BOT_ADMIN_IDS")]:
        rc, _, err = h.run(["serve"], dict(env, **{name: value}))
        t.ok(rc == 1 and needle in err, f"{name}={value} is refused", err)


async def main(h):
    t = h.t
    token, _, pg, api = bh.setup(h)
    t.eq(pg.scalar("SELECT max(version) FROM schema_migrations"), "1002",
         "migrate applies the bot's migrations (1001, 1002) after tgring's")
    t.ok(int(pg.scalar("SELECT count(*) FROM quotes")) >= 50, "at least 50 quotes are seeded")
    env = bh.send_env(h, pg, api, token, BOT_NOW=NOW, BOT_ADMIN_IDS="500, 501", **qh.FAST_RATES)
    srv = h.tgring(env)
    t.ok(srv.wait_ready(30), "tgring is ready")
    await bh.wait_for(lambda: f"@{qh.BOT}" in srv.log(), 15)
    api._ctl("POST", "/calls/clear")
    c = Convo()
    await user_commands(t, pg, api, srv, c)
    await group(t, pg, api, srv, c)
    await admins(t, pg, api, srv, c)
    t.eq(int(pg.scalar("SELECT count(*) FROM updates WHERE failed_at IS NOT NULL")), 0,
         "no update failed")
    t.eq(srv.stop(), 0, "tgring stops cleanly")
    bad_config(t, h, env)


if __name__ == "__main__":
    bh.run(main)
