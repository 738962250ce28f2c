# SPDX-License-Identifier: MIT
"""Sending when rows wait longer than their lease: 40 outbox rows over 4 chats
take 10 s at the default 1 message per chat per second, far beyond
TGRING_OUTBOX_LEASE_MS=2000. With no crash and one process, each row is sent
exactly once: a lease running out while its row waits in memory (for the rate
limiter, not for an answer) must not bring the same row back for a second
send."""

import botapi_helpers as bh
import harness

CHATS = [121, 232, 343, 454]
PER_CHAT = 10
LEASE_MS = 2000


async def main(h):
    t = h.t
    token, secret, pg, api = bh.setup(h)
    srv = h.tgring(bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                               TGRING_OUTBOX_LEASE_MS=LEASE_MS))
    t.ok(srv.wait_ready(30), "tgring is ready")
    plan = [(c, f"l{c}-{i}") for i in range(PER_CHAT) for c in CHATS]
    bh.insert_rows(pg, [(c, "sendMessage", bh.message(c, m)) for c, m in plan])
    done = await bh.wait_for(lambda: bh.pending(pg) == 0, 40, 0.2)
    t.ok(done, f"{len(plan)} rows sent within 40 s", lambda: f"{bh.pending(pg)} pending")
    # A second copy of a row would come a second after the first at the latest.
    await bh.wait_for(lambda: False, 1.5)
    by = bh.calls_by_marker(api.calls("sendMessage"), [m for _, m in plan])
    dups = {m: len(v) for m, v in by.items() if len(v) != 1}
    t.ok(not dups, "each row was sent exactly once", f"sent other than once: {dups}")
    t.ok(all(r["sent"] for r in bh.rows(pg)), "every row has sent_at")
    m = srv.metrics()
    t.eq(harness.metric(m, "tgring_outbox_sent_total"), float(len(plan)),
         "tgring_outbox_sent_total counts each row once")
    t.eq(srv.stop(), 0, "tgring stops cleanly (exit 0)")
    bh.scan_secrets(h, [token, secret])


if __name__ == "__main__":
    bh.run(main)
