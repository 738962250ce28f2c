# SPDX-License-Identifier: MIT
"""The quit-smoking bot's daily reminder, with the clock set by BOT_NOW and
BOT_TIMEZONE=Asia/Novosibirsk (UTC+7), BOT_NOTIFY_HOUR=9, users inserted
directly:

- before 09:00 local time nobody is reminded;
- at 15:30 local every active user with reminders on is reminded once (one
  with reminders off and one inactive are not), with the text of the day;
- a restart with the same BOT_NOW reminds nobody again;
- the next day everyone is reminded again; the Bot API answers 403 for one
  user, who is then marked inactive and skipped on the day after;
- that user's /start makes them active again.
"""

import asyncio

import botapi_helpers as bh
import harness
import bot_helpers as qh

BLOCKED = 2001
DAY1 = "2024-05-10"


def reminded(api):
    return sorted(int(c["body"]["chat_id"]) for c in api.calls("sendMessage"))


async def run_at(h, t, pg, api, env, now, what):
    """Runs tgring with BOT_NOW=now until its reminder job has run, then stops it."""
    api._ctl("POST", "/calls/clear")
    before = int(pg.scalar("SELECT count(*) FROM outbox"))
    srv = h.tgring(dict(env, BOT_NOW=now))
    t.ok(srv.wait_ready(30), f"{what}: tgring is ready")
    # The job runs at start (retried each second while the database is not ready).
    await asyncio.sleep(3)
    await bh.wait_for(lambda: bh.pending(pg) == 0, 30)
    m = srv.metrics()
    t.eq(srv.stop(), 0, f"{what}: tgring stops cleanly")
    return int(pg.scalar("SELECT count(*) FROM outbox")) - before, m


async def main(h):
    t = h.t
    token, _, pg, api = bh.setup(h)
    pg.psql("INSERT INTO users (user_id, chat_id, created_at, quit_date, notify, active) "
            "SELECT g, g, now(), CASE WHEN g % 2 = 0 THEN date '2024-05-01' END, g <> 2020, "
            "g <> 2019 FROM generate_series(2001, 2020) g")
    due = list(range(2001, 2019))
    env = bh.send_env(h, pg, api, token, BOT_TIMEZONE="Asia/Novosibirsk", BOT_NOTIFY_HOUR="9",
                      **qh.FAST_RATES)

    n, _ = await run_at(h, t, pg, api, env, "2024-05-10T01:00:00Z", "08:00 local")
    t.eq(n, 0, "before the hour nobody is reminded")

    n, m = await run_at(h, t, pg, api, env, "2024-05-10T08:30:00Z", "15:30 local")
    t.eq(n, len(due), "at 15:30 local every due user is reminded")
    t.eq(reminded(api), due, "once each; not the one with reminders off, not the inactive one")
    t.eq(harness.metric(m, "tgring_bot_notifications_total"), float(len(due)),
         "tgring_bot_notifications_total")
    texts = {int(c["body"]["chat_id"]): c["body"]["text"] for c in api.calls("sendMessage")}
    day = 19853
    q = pg.scalar(f"SELECT quit_quote(2002 + {day})")
    t.eq(texts.get(2002), f"Smoke-free days: 9. Keep going!\n\n{q}",
         "a quitter's reminder counts the days (local date 2024-05-10)")
    q = pg.scalar(f"SELECT quit_quote(2001 + {day})")
    t.eq(texts.get(2001), f"{q}\n\nReady when you are: /quit YYYY-MM-DD sets your quit date.",
         "a user without a quit date gets the quote and a nudge")
    t.eq(pg.scalar("SELECT string_agg(DISTINCT last_notified_on::text, ',') FROM users "
                   "WHERE user_id BETWEEN 2001 AND 2018"), DAY1, "last_notified_on is set")

    n, _ = await run_at(h, t, pg, api, env, "2024-05-10T08:30:00Z", "a restart, same time")
    t.eq(n, 0, "a restart on the same day reminds nobody again")
    n, _ = await run_at(h, t, pg, api, env, "2024-05-10T20:00:00Z", "03:00 local next day")
    t.eq(n, 0, "past local midnight but before the hour: nobody")

    api.behave({"mode": "final", "chat_id": BLOCKED, "status": 403,
                "description": "Forbidden: bot was blocked by the user"})
    n, _ = await run_at(h, t, pg, api, env, "2024-05-11T08:30:00Z", "the next day")
    t.eq(n, len(due), "the next day everyone is reminded again")
    t.eq(pg.scalar(f"SELECT active FROM users WHERE user_id = {BLOCKED}"), "f",
         "the user whose message got 403 is marked inactive")
    t.eq(pg.scalar("SELECT count(*) FROM users WHERE NOT active"), "2",
         "nobody else is marked inactive")
    api.clear_behaviours()

    n, _ = await run_at(h, t, pg, api, env, "2024-05-12T08:30:00Z", "the day after")
    t.eq(n, len(due) - 1, "the day after, the blocked user is skipped")
    t.ok(BLOCKED not in reminded(api), "no message to the blocked user")

    srv = h.tgring(dict(env, BOT_NOW="2024-05-12T09:00:00Z"))
    t.ok(srv.wait_ready(30), "tgring is ready")
    await qh.post_all(t, srv, [qh.msg(1, BLOCKED, "/start")])
    await qh.settle(pg, "update_id = 1", 1)
    t.eq(pg.scalar(f"SELECT active FROM users WHERE user_id = {BLOCKED}"), "t",
         "/start makes the user active again")
    t.eq(srv.stop(), 0, "tgring stops cleanly")


if __name__ == "__main__":
    bh.run(main)
