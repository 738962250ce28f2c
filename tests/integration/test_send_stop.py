# SPDX-License-Identifier: MIT
"""Sending and SIGTERM: with one call in flight (the stand-in answers it 3 s
late) and rows still waiting for the per-chat rate, tgring stops sending
new calls at once, waits for the answer in flight and marks that row sent,
gives the waiting rows back (no lease left, attempts unchanged) and exits 0.
Started again, it sends them at once instead of waiting for a lease
(TGRING_OUTBOX_LEASE_MS is the default 30 s) to run out."""

import time

import botapi_helpers as bh
import harness

SLOW = 909
CHATS = [911, 912, 913]
PER_CHAT = 6
# Between SIGTERM and the stand-in's stamp of a call sent just before it: the
# stand-in's thread may be slow to read it on a loaded machine. A sender that
# went on sending would still show: three chats have rows due every second
# through the 3 s drain.
SLACK = 0.5


async def main(h):
    t = h.t
    token, secret, pg, api = bh.setup(h)
    env = bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret)
    srv = h.tgring(env, name="tgring-first")
    t.ok(srv.wait_ready(30), "tgring is ready")
    await bh.wait_for(lambda: api.calls("getMe"), 15)

    api.behave({"mode": "slow", "delay_ms": 3000, "chat_id": SLOW})
    plan = [(SLOW, "s")] + [(c, f"p{c}-{i}") for i in range(PER_CHAT) for c in CHATS]
    ids = dict(zip([m for _, m in plan],
                   bh.insert_rows(pg, [(c, "sendMessage", bh.message(c, m)) for c, m in plan])))
    started = await bh.wait_for(lambda: len(api.calls("sendMessage")) >= 1 + 2 * len(CHATS),
                                15, 0.05)
    t.ok(started, "the slow call and a few others went out")
    t0 = time.time()
    srv.signal()
    rc = srv.wait(15)
    t1 = time.time()
    t.eq(rc, 0, "SIGTERM: tgring exits 0", srv.tail(10))
    t.ok(t1 - t0 < 10, f"within the grace period ({t1 - t0:.1f} s)")

    calls = api.calls("sendMessage")
    late = [c for c in calls if c["time"] > t0 + SLACK]
    t.ok(not late, "no call was made after SIGTERM",
         lambda: repr([(round(c["time"] - t0, 3), c["body"]) for c in late]))
    rows = {r["id"]: r for r in bh.rows(pg)}
    slow = rows[ids["s"]]
    t.ok(slow["sent"], "the call in flight was answered during the drain and its row marked sent",
         repr(slow))
    by = bh.calls_by_marker(calls, [m for _, m in plan])
    unsent = [rows[ids[m]] for _, m in plan if not by[m]]
    t.ok(len(unsent) > 0, f"{len(unsent)} rows were still waiting")
    t.ok(all(not r["sent"] and not r["claimed"] and r["attempts"] == 0 for r in unsent),
         "those were given back: not sent, no lease, attempts unchanged",
         lambda: repr([r for r in unsent if r["claimed"] or r["sent"] or r["attempts"]][:3]))
    sent_ok = [rows[ids[m]] for _, m in plan if by[m]]
    t.ok(all(r["sent"] for r in sent_ok), "every row that was called is marked sent",
         lambda: repr([r for r in sent_ok if not r["sent"]][:3]))

    n = len(calls)
    srv2 = h.tgring(env, name="tgring-second")
    t.ok(srv2.wait_ready(30), "tgring is ready again")
    ready_at = time.time()
    resumed = await bh.wait_for(lambda: len(api.calls("sendMessage")) > n, 5, 0.05)
    t.ok(resumed, "the rows given back are sent again at once (within 5 s, not after a lease)")
    if resumed:
        t.diag(f"first send {api.calls('sendMessage')[n]['time'] - ready_at:.2f} s after ready")
    done = await bh.wait_for(lambda: bh.pending(pg) == 0, 20, 0.2)
    t.ok(done, "then every row is sent")
    by = bh.calls_by_marker(api.calls("sendMessage"), [m for _, m in plan])
    t.ok(all(len(v) == 1 for v in by.values()), "each row exactly once across the restart",
         repr({m: len(v) for m, v in by.items() if len(v) != 1}))
    t.eq(srv2.stop(), 0, "the second tgring stops cleanly (exit 0)")
    bh.scan_secrets(h, [token, secret])


if __name__ == "__main__":
    bh.run(main)
