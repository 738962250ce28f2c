# SPDX-License-Identifier: MIT
"""Exactly once across processes, with the example bot (tgring-example):

- two tgring-example processes on one database, one of them with
  TGRING_WORKERS=2, each chat's /count updates posted to both in turn: every
  update is processed once (each counter is exact, each chat's outbox rows are
  "count: 1".."count: N" once and in id order, each reply is sent once, the
  processed counters of the two add up);
- kill -9 of a process while it is processing a stream of /count updates,
  another one started on the database, the unanswered posts retried there (as
  Telegram does): nothing is lost and no effect doubles (each counter is
  exact, each chat's outbox rows are "count: 1".."count: N" once, in order).
"""

import asyncio
import json
import signal

import botapi_helpers as bh
import harness
from bot_helpers import FAST_RATES, msg

LEASES = {"TGRING_PROCESS_LEASE_MS": "2000", "TGRING_HANDLER_TIMEOUT_MS": "1000",
          "TGRING_OUTBOX_LEASE_MS": "2000"}


def counters(pg, lo, hi):
    return {int(r[0]): int(r[1]) for r in pg.psql(
        f"SELECT chat_id, n FROM echo_counters WHERE chat_id BETWEEN {lo} AND {hi}")}


def outbox_texts(pg, chat):
    return [json.loads(r["body"])["text"] for r in bh.rows(pg, f"chat_id = {chat}")]


def sent_texts(api, lo, hi):
    out = {}
    for c in api.calls("sendMessage"):
        cid = int(c["body"]["chat_id"])
        if lo <= cid <= hi:
            out.setdefault(cid, []).append(c["body"]["text"])
    return out


async def post_until_stored(target, body, secret, tries=200):
    """Posts to whichever server target["port"] names until one answers 200."""
    for _ in range(tries):
        p = harness.Poster(target["port"], "/webhook/telegram", secret)
        status, _, _ = await p.post(body, timeout=5)
        p.close()
        if status == 200:
            return True
        await asyncio.sleep(0.1)
    return False


async def two_processes(h, pg, api, token):
    t = h.t
    chats, per, base = 30, 10, 9000
    secret = harness.random_secret()
    a = h.tgring(bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                             TGRING_WORKERS=2, **FAST_RATES), name="tgring-a")
    b = h.tgring(bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret, **FAST_RATES),
                 name="tgring-b")
    t.ok(a.wait_ready(30) and b.wait_ready(30), "two tgring-example processes are ready")
    await bh.wait_for(lambda: "@quit_smoking_test_bot" in a.log() and
                      "@quit_smoking_test_bot" in b.log(), 15)

    async def one_chat(c):
        ok = True
        for i in range(per):
            target = {"port": (a, b)[(i + c) % 2].port}
            ok &= await post_until_stored(target, msg(900000 + i * chats + c, base + c, "/count"),
                                          secret)
        return ok

    t.ok(all(await asyncio.gather(*(one_chat(c) for c in range(chats)))),
         f"{chats * per} updates stored, each chat's sent to both in turn")
    lo, hi = base, base + chats - 1
    done = await bh.wait_for(lambda: int(pg.scalar(
        f"SELECT count(*) FROM updates WHERE processed_at IS NOT NULL AND chat_id BETWEEN "
        f"{lo} AND {hi}")) == chats * per, 60, 0.2)
    t.ok(done, "every update is processed")
    await bh.wait_for(lambda: bh.pending(pg) == 0, 60, 0.2)
    cnt = counters(pg, lo, hi)
    t.ok(len(cnt) == chats and all(v == per for v in cnt.values()),
         f"each of the {chats} counters is exactly {per}", repr(cnt))
    want = [f"count: {i}" for i in range(1, per + 1)]
    bad = [c for c in range(lo, hi + 1) if outbox_texts(pg, c) != want]
    t.ok(not bad, "each chat's outbox holds count: 1..10 once each, in id order",
         lambda: f"chat {bad[0]}: {outbox_texts(pg, bad[0])}" if bad else "")
    # Each process runs a sender: the order across them is the sender's business.
    sent = sent_texts(api, lo, hi)
    bad = [c for c in range(lo, hi + 1) if sorted(sent.get(c, []), key=lambda x: int(x[7:])) !=
           want]
    t.ok(not bad, "each chat got count: 1..10 once each",
         lambda: f"chat {bad[0]}: {sent.get(bad[0])}" if bad else "")
    pa = harness.metric(a.metrics(), "tgring_updates_processed_total") or 0
    pb = harness.metric(b.metrics(), "tgring_updates_processed_total") or 0
    t.eq(pa + pb, float(chats * per), f"the processed counters add up ({pa:.0f} + {pb:.0f})")
    t.ok(pa > 0 and pb > 0, "both processes processed updates")
    t.eq(a.stop(), 0, "the first stops cleanly")
    t.eq(b.stop(), 0, "the second stops cleanly")


async def crash(h, pg, api, token):
    t = h.t
    chats, per, base = 20, 10, 9500
    secret = harness.random_secret()
    env = bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret, **FAST_RATES, **LEASES)
    a = h.tgring(env, name="tgring-killed")
    t.ok(a.wait_ready(30), "tgring-example is ready")
    target = {"port": a.port}
    posted = [0]

    async def one_chat(c):
        ok = True
        for i in range(per):
            ok &= await post_until_stored(target, msg(950000 + i * chats + c, base + c, "/count"),
                                          secret)
            posted[0] += 1
        return ok

    async def killer():
        await bh.wait_for(lambda: posted[0] >= chats * per * 2 // 5, 60, 0.01)
        a.signal(signal.SIGKILL)
        a.wait(10)
        b = h.tgring(env, name="tgring-after")
        target["port"] = b.port
        return b

    results = await asyncio.gather(killer(), *(one_chat(c) for c in range(chats)))
    b = results[0]
    t.ok(a.proc.returncode == -signal.SIGKILL, "the first process was killed with SIGKILL")
    t.ok(all(results[1:]), "every update was stored, by one process or the other")
    lo, hi = base, base + chats - 1
    done = await bh.wait_for(lambda: int(pg.scalar(
        f"SELECT count(*) FROM updates WHERE processed_at IS NOT NULL AND chat_id BETWEEN "
        f"{lo} AND {hi}")) == chats * per, 60, 0.2)
    t.ok(done, "every update is processed after the crash")
    t.eq(pg.scalar(f"SELECT count(*) FROM updates WHERE failed_at IS NOT NULL AND chat_id "
                   f"BETWEEN {lo} AND {hi}"), "0", "none failed")
    await bh.wait_for(lambda: bh.pending(pg) == 0, 60, 0.2)
    cnt = counters(pg, lo, hi)
    t.ok(len(cnt) == chats and all(v == per for v in cnt.values()),
         f"each of the {chats} counters is exactly {per}: no effect doubled", repr(cnt))
    wanted = [f"count: {i}" for i in range(1, per + 1)]
    bad = []
    for c in range(lo, hi + 1):
        got = outbox_texts(pg, c)
        if got != wanted:
            bad.append((c, got))
    t.ok(not bad, "each chat's outbox holds count: 1..10 once each, in id order",
         lambda: repr(bad[0]) if bad else "")
    sent = sent_texts(api, lo, hi)
    firsts = {c: list(dict.fromkeys(sent.get(c, []))) for c in range(lo, hi + 1)}
    bad = [c for c in firsts if firsts[c] != wanted]
    t.ok(not bad, "each chat got every reply, in order (the sender may repeat one the "
         "killed process had sent but not marked)",
         lambda: f"chat {bad[0]}: {sent.get(bad[0])}" if bad else "")
    t.eq(b.stop(), 0, "the second process stops cleanly")


async def main(h):
    pg = h.postgres()
    h.migrate(pg.url())
    token = bh.random_token()
    api = bh.StandIn(h, token)
    await two_processes(h, pg, api, token)
    await crash(h, pg, api, token)


bh.run(main)
