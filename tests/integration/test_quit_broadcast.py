# SPDX-License-Identifier: MIT
"""A /broadcast of the quit-smoking bot to 500 users (inserted directly, one of
them inactive, plus the admin) goes out through the outbox at the configured
global rate: TELEGRAM_RATE_GLOBAL=100/s,burst=1, so no window of 1 s (less
the stand-in's stamping jitter, as in test_send_rates) holds more than 100
calls, every active user gets it exactly once, the inactive one nothing, and
/stats and the metrics show the progress."""

import time

import botapi_helpers as bh
import harness
import bot_helpers as qh
from test_send_rates import max_in_window

RATE = 100
JITTER = 0.05
USERS = 500


async def main(h):
    t = h.t
    token, _, pg, api = bh.setup(h)
    pg.psql("INSERT INTO users (user_id, chat_id, created_at, active) "
            f"SELECT g, g, now(), g <> 10007 FROM generate_series(10001, {10000 + USERS}) g")
    env = bh.send_env(h, pg, api, token, BOT_NOW="2024-05-10T12:00:00Z", BOT_ADMIN_IDS="500",
                      TELEGRAM_RATE_GLOBAL=f"{RATE}/s,burst=1")
    srv = h.tgring(env)
    t.ok(srv.wait_ready(30), "tgring is ready")
    text = "We are 500 strong today!"
    start = time.monotonic()
    await qh.post_all(t, srv, [qh.msg(1, 500, "/broadcast " + text)])
    want = USERS  # 499 active users and the admin
    done = await bh.wait_for(lambda: len(api.calls("sendMessage")) >= want + 1, 60, 0.2)
    took = time.monotonic() - start
    t.ok(done, f"{want} copies and the admin's reply were sent",
         lambda: len(api.calls("sendMessage")))
    calls = api.calls("sendMessage")
    copies = [c for c in calls if c["body"]["text"] == text]
    chats = sorted(int(c["body"]["chat_id"]) for c in copies)
    t.eq(chats, sorted([500] + [u for u in range(10001, 10001 + USERS) if u != 10007]),
         "every active user got it once, the inactive one did not")
    worst = max_in_window([c["time"] for c in calls], 1.0 - JITTER)
    t.ok(worst <= RATE, f"at most {RATE} calls in any {1 - JITTER:.2f} s window (saw {worst})")
    t.ok(took >= (want + 1) / RATE - 1.5,
         f"it took about the time the rate allows ({took:.1f} s for {want + 1} calls)")
    t.eq(int(pg.scalar("SELECT total FROM broadcasts")), want, "the broadcast's row counts them")
    await bh.wait_for(lambda: bh.pending(pg) == 0, 20)
    await bh.wait_for(lambda: harness.metric(srv.metrics(), "tgring_bot_broadcast_pending") == 0
                      and harness.metric(srv.metrics(),
                                         "tgring_bot_broadcast_queued_total") == want, 10)
    m = srv.metrics()
    t.eq(harness.metric(m, "tgring_bot_broadcast_queued_total"), float(want),
         "tgring_bot_broadcast_queued_total")
    t.eq(harness.metric(m, "tgring_bot_broadcast_pending"), 0.0, "tgring_bot_broadcast_pending")
    api._ctl("POST", "/calls/clear")
    await qh.post_all(t, srv, [qh.msg(2, 500, "/stats")])
    await bh.wait_for(lambda: len(api.calls("sendMessage")) >= 1, 20)
    t.eq([c["body"]["text"] for c in api.calls("sendMessage")],
         [f"Users: {USERS + 1}\nActive quitters: 0\nMessages today: 1\n"
          f"Broadcasts: 1; the last one: {want} messages, 0 still to send"], "/stats")
    t.eq(srv.stop(), 0, "tgring stops cleanly")


if __name__ == "__main__":
    bh.run(main)
