# SPDX-License-Identifier: MIT
"""One sender per bot across replicas: two tgring processes, each with
TGRING_WORKERS=2 (four senders), on one database, with the default rates
(global 30/s, per chat 1/s, each with burst 1) and TGRING_OUTBOX_LEASE_MS=3000.
300 outbox rows for 60 private chats (5 each, ids interleaved across chats)
are inserted directly. Checked from the Bot API stand-in's arrival times and
the processes' metrics:
- exactly one of the two reports tgring_sender_leader 1 (and one worker in
  it), and the database shows one session holding the bot's advisory lock;
- kill -9 of the leader mid-way (the main process and its workers at once,
  as when a replica's machine dies): the other process reports
  tgring_sender_leader 1 and a takeover, and calls resume on its connections
  (the time from the kill to its first call is reported; asserted only within
  a generous 15 s);
- every row is delivered and ends sent; calls of a row the dead leader had
  made but not recorded may come twice (at-least-once), nothing else does;
- each chat's calls arrive in outbox id order (a row called again after the
  takeover comes before any later row of its chat);
- the lock's session ended by the server (pg_terminate_backend): the leader
  logs that it stands by, and a worker takes the lock again;
- together, through the takeover, at most 30 calls in any 0.95 s window and
  at most 1 per chat in any 0.95 s window (0.05 s for the stand-in's stamping
  jitter, as in test_send_rates).
"""

import collections
import json
import os
import signal
import time

import botapi_helpers as bh
import harness
from test_send_rates import JITTER, max_in_window

GLOBAL_PER_S = 30
CHATS = 60
PER_CHAT = 5
LEASE_MS = 3000
TAKEOVER_BOUND_S = 15


def leading_pids(srv):
    """Pids of the workers that logged becoming the bot's sender."""
    out = set()
    for line in srv.log().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "sender_leading":
            out.add(rec.get("pid"))
    return out


def leader_gauge(srv):
    try:
        return harness.metric(srv.metrics(), "tgring_sender_leader")
    except (OSError, RuntimeError):
        return None


async def main(h):
    t = h.t
    token, secret, pg, api = bh.setup(h)
    env = bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret, TGRING_WORKERS=2,
                      TGRING_OUTBOX_LEASE_MS=LEASE_MS)
    chats = [7 * 10**6 + c for c in range(CHATS)]
    plan = [(c, f"c{c}-{i}") for i in range(PER_CHAT) for c in chats]
    rows = [(c, "sendMessage", bh.message(c, m)) for c, m in plan]
    ids = bh.insert_rows(pg, rows)
    t.eq(len(ids), len(rows), f"{len(rows)} rows for {CHATS} chats inserted before the start")

    a = h.tgring(env, name="tgring-a")
    b = h.tgring(env, name="tgring-b")
    t.ok(a.wait_ready(30) and b.wait_ready(30), "two tgring processes (2 workers each) are ready")
    started = await bh.wait_for(lambda: len(api.calls("sendMessage")) >= 60, 30, 0.05)
    t.ok(started, "sending started", a.tail(10))

    gauges = {"a": leader_gauge(a), "b": leader_gauge(b)}
    t.ok(sorted(gauges.values()) == [0.0, 1.0],
         f"exactly one process reports tgring_sender_leader 1 ({gauges})")
    holders = int(pg.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                            "AND granted AND objsubid = 1"))
    t.eq(holders, 1, "one session holds an advisory lock (the bot's sender lock)")
    leader, standby = (a, b) if gauges["a"] == 1.0 else (b, a)
    before = harness.metric(standby.metrics(), "tgring_sender_takeovers_total") or 0.0

    kids = harness.children(leader.pid)
    t.ok(len(leading_pids(leader)) == 1 and leading_pids(leader) <= set(kids) and
         not leading_pids(standby),
         "one worker of the leader's two logged that it leads, none of the other's",
         f"{leading_pids(leader)} of {kids}; other: {leading_pids(standby)}")
    conns_before = {c["conn"] for c in api.calls()}
    for pid in [leader.pid] + kids:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    t.eq(leader.wait(10), -signal.SIGKILL, "the leader's process and workers were killed with "
         "SIGKILL mid-way")
    gone = await bh.wait_for(lambda: not any(harness.pid_alive(k) for k in kids), 10)
    t.ok(gone, "its workers are gone")
    sent_before = int(pg.scalar("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL"))
    t.ok(0 < sent_before < len(rows), f"{sent_before} of {len(rows)} rows were sent by then")

    took = await bh.wait_for(lambda: leader_gauge(standby) == 1.0, TAKEOVER_BOUND_S, 0.05)
    t.ok(took, f"the other process reports tgring_sender_leader 1 within {TAKEOVER_BOUND_S} s",
         standby.tail(10))
    after = harness.metric(standby.metrics(), "tgring_sender_takeovers_total") or 0.0
    t.eq(after - before, 1.0, "and counted one takeover")
    resumed = await bh.wait_for(
        lambda: [c for c in api.calls("sendMessage") if c["conn"] not in conns_before],
        TAKEOVER_BOUND_S, 0.05)
    t.ok(resumed, f"calls resume from the other process within {TAKEOVER_BOUND_S} s of the kill")
    if resumed:
        t.diag(f"takeover: the new leader's first call {min(c['time'] for c in resumed) - killed_at:.2f}"
               " s after the kill (the lock's next try within 1 s, then a 1 s takeover wait)")

    done = await bh.wait_for(lambda: bh.pending(pg) == 0, 60, 0.2)
    t.ok(done, "every row is sent within 60 s", lambda: f"{bh.pending(pg)} pending",
         standby.tail(10))

    calls = api.calls("sendMessage")
    markers = [m for _, m in plan]
    by = bh.calls_by_marker(calls, markers)
    missing = [m for m in markers if not any(c["status"] == 200 for c in by[m])]
    t.ok(not missing, "every row reached the Bot API (answered 200)", f"missing: {missing[:10]}")
    table = bh.rows(pg)
    t.ok(all(r["sent"] and not r["failed"] for r in table), "every row ends sent")
    dups = sorted(m for m, v in by.items() if len(v) > 1)
    t.ok(len(dups) <= CHATS, f"at most one row per chat called twice, across the kill "
         f"({len(dups)} were)", repr(dups[:10]))

    # Order: per chat, the row index of each call, by arrival, never goes down.
    seq = collections.defaultdict(list)
    for c in sorted(calls, key=lambda c: c["seq"]):
        m = c["body"]["text"].rsplit("[", 1)[1][:-1]
        chat, idx = m[1:].split("-")
        seq[chat].append(int(idx))
    bad = {k: v for k, v in seq.items() if any(y < x for x, y in zip(v, v[1:]))}
    t.ok(not bad, f"each of the {len(seq)} chats' calls arrive in outbox id order",
         repr(list(bad.items())[:5]))

    times = [c["time"] for c in calls]
    worst = max_in_window(times, 1.0 - JITTER)
    t.ok(worst <= GLOBAL_PER_S, f"together at most {GLOBAL_PER_S} calls in any "
         f"{1 - JITTER:.2f} s window, through the takeover (saw {worst})")
    per_chat = collections.defaultdict(list)
    for c in calls:
        per_chat[c["body"]["chat_id"]].append(c["time"])
    chat_worst = max(max_in_window(v, 1.0 - JITTER) for v in per_chat.values())
    t.eq(chat_worst, 1, f"at most 1 call per chat in any {1 - JITTER:.2f} s window")
    t.diag(f"{len(calls)} calls for {len(rows)} rows in {max(times) - min(times):.1f} s; "
           f"{worst} in the busiest {1 - JITTER:.2f} s")

    # The lock's session ended under the leader (an operator's pg_terminate_backend): it says
    # so, stops, and a worker takes the lock again.
    before = harness.metric(standby.metrics(), "tgring_sender_takeovers_total") or 0.0
    ended = pg.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
                      "WHERE locktype = 'advisory' AND granted AND objsubid = 1")
    t.eq(int(ended), 1, "the lock's session is ended by the server")
    lost = await bh.wait_for(lambda: '"event":"sender_standby"' in standby.log(), 10)
    t.ok(lost, "the leader notices and stands by", standby.tail(5))
    again = await bh.wait_for(
        lambda: (harness.metric(standby.metrics(), "tgring_sender_takeovers_total") or 0) > before
        and leader_gauge(standby) == 1.0, TAKEOVER_BOUND_S, 0.05)
    t.ok(again, "and a worker takes the lock again: one more takeover, tgring_sender_leader 1")

    t.eq(standby.stop(), 0, "the surviving tgring stops cleanly (exit 0)")
    bh.scan_secrets(h, [token, secret])


if __name__ == "__main__":
    bh.run(main)
