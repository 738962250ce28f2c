# SPDX-License-Identifier: MIT
"""The claims' lower bound through the real binary (tgring-example against
PostgreSQL and the Bot API stand-in; include/tg_processor.h, migrations/0009):

- with a lease of 60 s (a walk without the bound every 30 s): once everything
  posted is processed and a second has passed, an update another process
  stored below the bound (inserted into the table directly) is left by the
  claims, while updates posted meanwhile are processed; an older update posted
  to this process lowers the bound at once: it is processed, and so is the one
  left below;
- with a lease of 2 s (a walk without the bound every second): an update
  another process stored below the bound is processed within a few seconds;
  one it stored and holds (its lease an hour away) shows in the lag gauge.
"""

import asyncio

import botapi_helpers as bh
import harness
from bot_helpers import FAST_RATES, msg, post_all, processed


def insert_elsewhere(pg, update_id, chat, age_s=0, leased=False):
    """Stores an update as another tgring process would (its processor never claims it),
    received `age_s` ago; `leased`: held for an hour by a claim of that process."""
    body = msg(update_id, chat, "from another process").decode().replace("'", "''")
    lease = "now() + interval '1 hour', 1" if leased else "NULL, NULL"
    pg.psql("INSERT INTO updates (update_id, update_type, chat_id, from_id, body, received_at, "
            f"claimed_until, claim_token) VALUES ({update_id}, 'message', {chat}, {chat}, "
            f"convert_to('{body}', 'UTF8'), now() - interval '{age_s} s', {lease})")


def done(pg, update_id):
    return processed(pg, f"update_id = {update_id}") == 1


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    token = bh.random_token()
    api = bh.StandIn(h, token)

    srv = h.tgring(bh.send_env(h, pg, api, token, TGRING_PROCESS_LEASE_MS=60000, **FAST_RATES))
    t.ok(srv.wait_ready(30), "tgring-example is ready (lease 60 s)")
    await post_all(t, srv, [msg(2000 + i, 701, f"m{i}") for i in range(10)])
    t.ok(await bh.wait_for(lambda: processed(pg) == 10, 20), "the 10 posted updates are processed")
    await asyncio.sleep(1.5)  # the bound moves up to them

    insert_elsewhere(pg, 1500, 702)
    await post_all(t, srv, [msg(2100, 703, "meanwhile")])
    t.ok(await bh.wait_for(lambda: done(pg, 2100), 10), "an update posted meanwhile is processed")
    await asyncio.sleep(1.5)
    t.ok(not done(pg, 1500), "an update another process stored below the bound is left by the "
         "claims (the walk without it is 30 s away)")

    await post_all(t, srv, [msg(1400, 704, "older")])
    t.ok(await bh.wait_for(lambda: done(pg, 1400), 10),
         "an older update posted to this process is processed at once")
    t.ok(await bh.wait_for(lambda: done(pg, 1500), 10),
         "and the bound it lowered takes the one stored elsewhere above it")
    def replies_to(chat):
        return [c["body"]["text"] for c in api.calls("sendMessage")
                if int(c["body"]["chat_id"]) == chat]
    await bh.wait_for(lambda: len(replies_to(702)) >= 1, 10)
    await asyncio.sleep(0.5)
    t.eq(replies_to(702), ["from another process"], "it is answered once (its echo)")
    t.eq(srv.stop(), 0, "tgring-example stops cleanly (exit 0)")

    srv = h.tgring(bh.send_env(h, pg, api, token, TGRING_PROCESS_LEASE_MS=2000,
                               TGRING_HANDLER_TIMEOUT_MS=1000, **FAST_RATES))
    t.ok(srv.wait_ready(30), "tgring-example is ready (lease 2 s)")
    await post_all(t, srv, [msg(3000, 705, "posted")])
    t.ok(await bh.wait_for(lambda: done(pg, 3000), 10), "a posted update is processed")
    await asyncio.sleep(1.5)
    insert_elsewhere(pg, 2500, 706)
    t.ok(await bh.wait_for(lambda: done(pg, 2500), 5),
         "an update another process stored below the bound is processed by the walk without "
         "it, every half lease")
    insert_elsewhere(pg, 1300, 707, age_s=100, leased=True)
    t.ok(await bh.wait_for(
        lambda: harness.metric(srv.metrics(), "tgring_processor_lag_seconds") >= 100, 5),
        "the lag gauge shows an unprocessed update another process holds below the bound "
        "(received 100 s ago) once the walk without the bound has found it")
    t.eq(srv.stop(), 0, "tgring-example stops cleanly (exit 0)")


if __name__ == "__main__":
    bh.run(main)
