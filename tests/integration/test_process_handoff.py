# SPDX-License-Identifier: MIT
"""The inbox's hand-off to the processor (migrations/0008_update_handoff.sql),
with the example bot (tgring-example) against the Bot API stand-in:

- 200 chats, one /count each, posted at once to one process: every update is
  leased by the group commit that stored it and run without a claim
  (tgring_updates_handed_over_total = 200, none lost), each chat answered
  "count: 1" once;
- one chat's 40 /count updates posted all at once, half to each of two
  processes on one database: whichever stores them, no two of the chat's
  updates are in progress together (the counter is read, then written with
  the commit: two at once would count one twice), so the counter is exactly
  40 and the chat's outbox holds "count: 1".."count: 40" once each, in id
  order; some were handed over, the others claimed;
- an update whose chat has an older unprocessed update is not leased: with
  the chat's older update held by another claim (as by another replica), a
  new one is stored neither leased nor claimed; once the older one is free,
  both are processed, in update_id order;
- a store whose outcome the process never learnt (the ack timed out while
  the table was locked, then the commit went through) and that is sent again
  is taken at once, not after its lease.
"""

import asyncio
import json

import botapi_helpers as bh
import harness
from bot_helpers import FAST_RATES, msg, post_until_stored, processed

LEASES = {"TGRING_PROCESS_LEASE_MS": "2000", "TGRING_HANDLER_TIMEOUT_MS": "1000",
          "TGRING_OUTBOX_LEASE_MS": "2000"}
ACK_MS = 1000


def outbox_texts(pg, chat):
    return [json.loads(r["body"])["text"] for r in bh.rows(pg, f"chat_id = {chat}")]


async def distinct_chats(h, pg, api, srv):
    t = h.t
    chats, base = 200, 20000
    secret = srv.env["TELEGRAM_WEBHOOK_SECRET"]
    m0 = srv.metrics()
    ok = await asyncio.gather(*(post_until_stored(srv.port, msg(2000000 + c, base + c, "/count"),
                                                  secret) for c in range(chats)))
    t.ok(all(ok), f"{chats} updates of {chats} chats stored, posted at once")
    where = f"chat_id BETWEEN {base} AND {base + chats - 1}"
    done = await bh.wait_for(lambda: processed(pg, where) == chats, 30, 0.1)
    t.ok(done, "every update is processed", lambda: processed(pg, where))
    await bh.wait_for(lambda: bh.pending(pg) == 0, 30, 0.1)
    m1 = srv.metrics()

    def grew(name):
        return (harness.metric(m1, name) or 0) - (harness.metric(m0, name) or 0)
    t.eq(grew("tgring_updates_handed_over_total"), float(chats),
         "each was leased by its group commit and run without a claim")
    t.eq(grew("tgring_updates_lost_total"), 0.0, "no processed mark was refused")
    t.eq(grew("tgring_updates_processed_total"), float(chats), "all processed, once")
    sent = {}
    for c in api.calls("sendMessage"):
        cid = int(c["body"]["chat_id"])
        if base <= cid < base + chats:
            sent.setdefault(cid, []).append(c["body"]["text"])
    bad = [c for c in range(base, base + chats) if sent.get(c) != ["count: 1"]]
    t.ok(not bad, "each chat got count: 1 once", lambda: f"chat {bad[0]}: {sent.get(bad[0])}"
         if bad else "")
    t.eq(pg.scalar(f"SELECT count(*) FROM updates WHERE {where} AND "
                   "(attempts <> 1 OR claimed_until IS NOT NULL)"), "0",
         "each taken once (attempts 1), no lease left")


async def one_chat_two_processes(h, pg, api, token, a):
    t = h.t
    per, chat = 40, 30000
    secret = a.env["TELEGRAM_WEBHOOK_SECRET"]
    b = h.tgring(bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret, **LEASES,
                             **FAST_RATES), name="tgring-b")
    t.ok(b.wait_ready(30), "a second tgring-example on the database is ready")
    ma0, mb0 = a.metrics(), b.metrics()
    ok = await asyncio.gather(*(post_until_stored((a, b)[i % 2].port,
                                                  msg(3000000 + i, chat, "/count"), secret)
                                for i in range(per)))
    t.ok(all(ok), f"{per} updates of one chat stored, posted at once to both processes")
    done = await bh.wait_for(lambda: processed(pg, f"chat_id = {chat}") == per, 60, 0.1)
    t.ok(done, "every update is processed", lambda: processed(pg, f"chat_id = {chat}"))
    await bh.wait_for(lambda: bh.pending(pg) == 0, 30, 0.1)
    t.eq(pg.scalar(f"SELECT n FROM echo_counters WHERE chat_id = {chat}"), str(per),
         f"the counter is exactly {per}: no two of the chat's updates ran at once")
    want = [f"count: {i}" for i in range(1, per + 1)]
    got = outbox_texts(pg, chat)
    t.eq(got, want, f"the chat's outbox holds count: 1..{per} once each, in id order")
    ma1, mb1 = a.metrics(), b.metrics()
    handed = sum((harness.metric(m1, "tgring_updates_handed_over_total") or 0) -
                 (harness.metric(m0, "tgring_updates_handed_over_total") or 0)
                 for m0, m1 in ((ma0, ma1), (mb0, mb1)))
    t.ok(1 <= handed < per, f"{handed:.0f} of the {per} were handed over, the others claimed")
    t.eq(b.stop(), 0, "the second stops cleanly")


async def behind_a_held_update(h, pg, api, a):
    t = h.t
    chat, old, new = 40000, 4000000, 4000001
    secret = a.env["TELEGRAM_WEBHOOK_SECRET"]
    # As if another replica had claimed the chat's older update and were still on it.
    body = msg(old, chat, "old").decode().replace("'", "''")
    pg.psql("INSERT INTO updates (update_id, update_type, chat_id, from_id, body, claimed_until, "
            f"claim_token, attempts) VALUES ({old}, 'message', {chat}, {chat}, "
            f"convert_to('{body}', 'UTF8'), now() + interval '1 hour', 42, 1)")
    m0 = a.metrics()
    t.ok(await post_until_stored(a.port, msg(new, chat, "new"), secret),
         "a new update of the chat stored while an older one is held elsewhere")
    await asyncio.sleep(1.0)  # four of the processor's polls
    m1 = a.metrics()
    t.eq((harness.metric(m1, "tgring_updates_handed_over_total") or 0) -
         (harness.metric(m0, "tgring_updates_handed_over_total") or 0), 0.0,
         "the new update was not leased at its store (an older one is open)")
    t.eq(processed(pg, f"chat_id = {chat}"), 0, "nor claimed: it waits for the older one")
    pg.psql(f"UPDATE updates SET claimed_until = NULL, claim_token = NULL WHERE update_id = {old}")
    done = await bh.wait_for(lambda: processed(pg, f"chat_id = {chat}") == 2, 30, 0.1)
    t.ok(done, "once the older one is free, both are processed")
    await bh.wait_for(lambda: bh.pending(pg) == 0, 30, 0.1)
    t.eq(outbox_texts(pg, chat), ["old", "new"], "echoed in update_id order")


async def lost_outcome(h, pg, api, a):
    t = h.t
    chat, uid = 50000, 5000000
    secret = a.env["TELEGRAM_WEBHOOK_SECRET"]
    body = msg(uid, chat, "late")
    m0 = a.metrics()
    locker = pg.lock_table("updates")
    try:
        p = harness.Poster(a.port, "/webhook/telegram", secret)
        status, _, _ = await p.post(body, timeout=10)
        p.close()
    finally:
        pg.unlock(locker)
    t.eq(status, 503, f"answered 503 at the ack timeout ({ACK_MS} ms) while updates is locked")
    stored = await bh.wait_for(lambda: pg.scalar(
        f"SELECT count(*) FROM updates WHERE update_id = {uid} AND claim_token IS NOT NULL") == "1",
        5, 0.05)
    t.ok(stored, "its store committed once the lock was gone, leased to the process")
    t.ok(await post_until_stored(a.port, body, secret), "sent again (as Telegram does): 200")
    done = await bh.wait_for(lambda: processed(pg, f"update_id = {uid}") == 1, 10, 0.05)
    t.ok(done, "processed")
    m1 = a.metrics()

    def grew(name):
        return (harness.metric(m1, name) or 0) - (harness.metric(m0, name) or 0)
    t.eq(grew("tgring_updates_duplicate_total"), 1.0, "the second store found it stored")
    t.eq(grew("tgring_updates_handed_over_total"), 1.0,
         "and, still leased under the process's token, took it at once (not after the lease)")
    await bh.wait_for(lambda: bh.pending(pg) == 0, 30, 0.1)
    t.eq(outbox_texts(pg, chat), ["late"], "answered once")


async def main(h):
    pg = h.postgres()
    h.migrate(pg.url())
    token = bh.random_token()
    api = bh.StandIn(h, token)
    a = h.tgring(bh.send_env(h, pg, api, token, TGRING_ACK_TIMEOUT_MS=ACK_MS, **LEASES,
                             **FAST_RATES), name="tgring-a")
    h.t.ok(a.wait_ready(30), "tgring-example is ready")
    await bh.wait_for(lambda: "@quit_smoking_test_bot" in a.log(), 15)
    await distinct_chats(h, pg, api, a)
    await one_chat_two_processes(h, pg, api, token, a)
    await behind_a_held_update(h, pg, api, a)
    await lost_outcome(h, pg, api, a)
    h.t.eq(a.stop(), 0, "tgring-example stops cleanly")


if __name__ == "__main__":
    bh.run(main)
