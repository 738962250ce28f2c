# SPDX-License-Identifier: MIT
"""A sent mark across a database outage: the Bot API stand-in answers a row's
sendMessage 3 s late, and PostgreSQL is stopped while that call is out, so
that the answer arrives with no database to mark the row sent in. Started
again, the row is marked sent by the mark that the sender kept and made
again, long before its lease (the default 30 s) could run out: the message
reached the stand-in exactly once. tgring then stops cleanly."""

import asyncio
import time

import botapi_helpers as bh

CHAT = 4242
DELAY_MS = 3000
# After the restart: time for the reconnect, the sender's lock and its next try of the mark.
MARKED_WITHIN_S = 15


async def main(h):
    t = h.t
    token, secret, pg, api = bh.setup(h)
    env = bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret)
    api.behave({"mode": "slow", "method": "sendMessage", "delay_ms": DELAY_MS})
    marker = "outage-1"
    ids = bh.insert_rows(pg, [(CHAT, "sendMessage", bh.message(CHAT, marker))])
    t.eq(len(ids), 1, "one row inserted before the start")

    srv = h.tgring(env)
    t.ok(srv.wait_ready(30), "tgring is ready")
    arrived = await bh.wait_for(lambda: len(api.calls("sendMessage")) >= 1, 20, 0.05)
    t.ok(arrived, "the row's call reached the stand-in", srv.tail(10))
    t0 = time.monotonic()
    await asyncio.to_thread(pg.stop, "fast")
    took = time.monotonic() - t0
    t.ok(took < DELAY_MS / 1000,
         f"PostgreSQL stopped {took:.2f} s after the call arrived, before its answer was sent")

    # The answer comes while the database is down; its mark cannot be written.
    await asyncio.sleep(DELAY_MS / 1000 + 2)
    t.diag("the sender says it keeps a mark it could not write: "
           f"{'outbox_record_retry' in srv.log()}")
    t0 = time.monotonic()
    await asyncio.to_thread(pg.start)
    marked = await bh.wait_for(lambda: bh.pending(pg) == 0, MARKED_WITHIN_S, 0.2)
    t.ok(marked, f"after the restart the row is marked sent within {MARKED_WITHIN_S} s",
         lambda: f"{bh.rows(pg)}\n{srv.tail(15)}")
    t.diag(f"marked {time.monotonic() - t0:.1f} s after the restart began")

    table = bh.rows(pg)
    t.ok(len(table) == 1 and table[0]["sent"] and not table[0]["failed"] and
         not table[0]["claimed"] and table[0]["attempts"] == 0,
         "the row: sent, not failed, no lease, no attempt counted", repr(table))
    calls = bh.calls_by_marker(api.calls("sendMessage"), [marker])[marker]
    t.eq(len(calls), 1, "the message reached the stand-in exactly once")
    t.eq(srv.stop(), 0, "tgring stops cleanly (exit 0)")
    bh.scan_secrets(h, [token, secret])


if __name__ == "__main__":
    bh.run(main)
