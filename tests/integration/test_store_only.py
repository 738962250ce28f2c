# SPDX-License-Identifier: MIT
"""TGRING_PROCESS_CAPACITY=0, a replica that stores and answers but does not
process: updates posted to it are committed and answered 200 and stay
unprocessed and unleased (no claim, no handler); it stops cleanly; a normal
replica started on the same database then processes every one of them."""

import asyncio
import time

import harness
from bot_helpers import msg


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    env = h.serve_env(pg, TGRING_PROCESS_CAPACITY=0, TGRING_PROCESS_POLL_MS=20)
    srv = h.tgring(env)
    t.ok(srv.wait_ready(30), "a store-only tgring is ready")
    t.ok("store_only" in srv.log(), "it says it stores only")
    p = harness.Poster(srv.port, "/webhook/telegram", env["TELEGRAM_WEBHOOK_SECRET"])
    ids = list(range(5000, 5020))
    statuses = [(await p.post(msg(i, 77 + i % 3, f"m{i}")))[0] for i in ids]
    p.close()
    t.eq(statuses, [200] * len(ids), "every update is answered 200")
    t.eq(pg.scalar("SELECT count(*) FROM updates"), str(len(ids)), "and stored")
    # A processing replica with this poll interval would have claimed them 50 times over.
    await asyncio.sleep(1.0)
    t.eq(pg.scalar("SELECT count(*) FROM updates WHERE processed_at IS NULL AND "
                   "claim_token IS NULL AND attempts = 0"), str(len(ids)),
         "none is claimed or processed by the store-only replica")
    m = srv.metrics()
    t.eq(harness.metric(m, "tgring_updates_processed_total"), 0.0, "it processed nothing")
    t.eq(srv.stop(), 0, "it stops cleanly (exit 0) with no processor to wait for")

    srv2 = h.tgring(h.serve_env(pg, secret=env["TELEGRAM_WEBHOOK_SECRET"]))
    t.ok(srv2.wait_ready(30), "a processing tgring on the same database is ready")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and pg.scalar(
            "SELECT count(*) FROM updates WHERE processed_at IS NULL") != "0":
        await asyncio.sleep(0.1)
    t.eq(pg.scalar("SELECT count(*) FROM updates WHERE processed_at IS NULL"), "0",
         "it processes every update the store-only one stored")
    t.eq(srv2.stop(), 0, "and stops cleanly")


harness.run(main)
