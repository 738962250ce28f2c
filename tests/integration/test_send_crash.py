# SPDX-License-Identifier: MIT
"""Sending across a crash: 60 outbox rows over 6 chats (10 s of sending at the
default 1 message per chat per second), TGRING_OUTBOX_LEASE_MS=2000. tgring
is killed with SIGKILL after a few seconds of sending and started again: every
row reaches the Bot API stand-in at least once (a unique marker in each
body's text finds its calls) and every row ends with sent_at."""

import signal

import botapi_helpers as bh
import harness

CHATS = [111, 222, 333, 444, -555, 666]
PER_CHAT = 10
LEASE_MS = 2000


async def main(h):
    t = h.t
    token, secret, pg, api = bh.setup(h)
    env = bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                      TGRING_OUTBOX_LEASE_MS=LEASE_MS,
                      # The group among the chats goes at the chat rate too.
                      TELEGRAM_RATE_GROUP="60/min,burst=1")
    plan = [(c, f"k{c}-{i}") for i in range(PER_CHAT) for c in CHATS]
    markers = [m for _, m in plan]
    rows = [(c, "sendMessage", bh.message(c, m)) for c, m in plan]
    ids = bh.insert_rows(pg, rows)
    t.eq(len(ids), len(rows), f"{len(rows)} rows inserted before the start")

    first = h.tgring(env, name="tgring-first")
    t.ok(first.wait_ready(30), "tgring is ready")
    progressed = await bh.wait_for(lambda: len(api.calls("sendMessage")) >= 15, 20, 0.05)
    t.ok(progressed, "it sent 15 messages", first.tail(10))
    first.proc.send_signal(signal.SIGKILL)
    t.eq(first.wait(10), -signal.SIGKILL, "tgring was killed with SIGKILL mid-way")
    calls_before = len(api.calls("sendMessage"))
    sent_before = int(pg.scalar("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL"))
    t.ok(0 < sent_before < len(rows),
         f"{sent_before} rows were marked sent, {calls_before} calls made, when it died")

    second = h.tgring(env, name="tgring-second")
    t.ok(second.wait_ready(30), "tgring is ready again")
    done = await bh.wait_for(lambda: bh.pending(pg) == 0, 40, 0.2)
    t.ok(done, "after the restart every row is sent within 40 s",
         lambda: f"{bh.pending(pg)} pending", second.tail(10))

    calls = api.calls("sendMessage")
    by = bh.calls_by_marker(calls, markers)
    missing = [m for m in markers if not any(c["status"] == 200 for c in by[m])]
    t.ok(not missing, "every row reached the Bot API at least once (answered 200)",
         f"missing: {missing[:10]}")
    table = bh.rows(pg)
    t.ok(all(r["sent"] and not r["failed"] for r in table), "every row has sent_at",
         lambda: repr([r for r in table if not r["sent"]][:5]))
    dups = {m: len(v) for m, v in by.items() if len(v) > 1}
    t.diag(f"{len(calls)} calls for {len(rows)} rows; sent more than once: {dups}")
    t.eq(second.stop(), 0, "the restarted tgring stops cleanly (exit 0)")
    bh.scan_secrets(h, [token, secret])


if __name__ == "__main__":
    bh.run(main)
