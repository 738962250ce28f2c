# SPDX-License-Identifier: MIT
"""A handler that waits for the database through an outage is not failed for
its timeout: with TGRING_HANDLER_TIMEOUT_MS at 3 s, a /count of the example bot
(tgring-example) whose read of its counter waits behind a table lock, then
behind PostgreSQL stopped for 5 s, is handled once the database is back: its
counter counts it, its reply is sent, and it is not marked failed."""

import asyncio

import botapi_helpers as bh
import harness
from bot_helpers import FAST_RATES, msg, processed


async def main(h):
    t = h.t
    token, secret, pg, api = bh.setup(h)
    srv = h.tgring(bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                               TGRING_HANDLER_TIMEOUT_MS="3000", **FAST_RATES))
    # Live comes before the database connections are up; an update posted in between is
    # answered 503 (not stored), which is not what this test is about.
    t.ok(srv.wait_ready(30), "tgring-example is ready")
    chat = 9100
    p = harness.Poster(srv.port, "/webhook/telegram", secret)
    status, _, _ = await p.post(msg(910000, chat, "/count"))
    t.eq(status, 200, "a first /count stored")
    t.ok(await bh.wait_for(lambda: processed(pg, f"chat_id = {chat}") == 1, 20),
         "and handled: the chat's counter exists")

    # Hold the counters table so that the next /count's read waits.
    locker = pg.lock_table("echo_counters")
    try:
        status, _, _ = await p.post(msg(910001, chat, "/count"))
        t.eq(status, 200, "a second /count stored while the table is locked")
        waiting = await bh.wait_for(lambda: pg.scalar(
            "SELECT count(*) FROM pg_locks WHERE relation = 'echo_counters'::regclass "
            "AND NOT granted") != "0", 10)
        t.ok(waiting, "its handler's read waits for the lock")
        p.close()
        pg.stop(mode="immediate")  # the lock goes with the server
        await asyncio.sleep(5)     # longer than the handler timeout
        pg.start()
    finally:
        pg.unlock(locker)

    done = await bh.wait_for(lambda: processed(pg, f"chat_id = {chat}") == 2, 40)
    t.ok(done, "the second /count is handled once the database is back")
    failed = pg.scalar(f"SELECT count(*) FROM updates WHERE chat_id = {chat} "
                       "AND failed_at IS NOT NULL")
    t.eq(failed, "0", "and not marked failed for its timeout",
         pg.psql(f"SELECT update_id, last_error FROM updates WHERE chat_id = {chat}"))
    t.eq(pg.scalar(f"SELECT n FROM echo_counters WHERE chat_id = {chat}"), "2",
         "the counter counted both")
    t.ok(await bh.wait_for(lambda: any(
        (c.get("body") or {}).get("text", "").startswith("count: 2") for c in api.calls()), 30),
         "and the reply count: 2 was sent")
    t.eq(srv.stop(), 0, "tgring stops cleanly")


harness.run(main)
