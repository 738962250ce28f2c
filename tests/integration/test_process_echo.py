# SPDX-License-Identifier: MIT
"""Processing through handlers, with the example bot (tgring-example, the echo
and counter bot of docs/handlers.md) against the Bot API stand-in:

- a conversation: /start with and without a deep-link payload, /count (also
  addressed as /count@<the bot>), a command for another bot (ignored), echoes,
  the "+1" button (answerCallbackQuery + editMessageText), a write the
  table's CHECK refuses and a handler that fails (both marked failed with
  their error, nothing of them sent or written), and the next update of that
  chat answered; the exact replies from the stand-in's record; the metrics;
- per-chat order: 50 chats x 20 updates posted concurrently (each chat's one
  at a time, as Telegram does): each chat's echoes arrive in update order;
- claims batched: 300 updates of 300 chats posted over 10 connections, each
  group commit kicking the processor: claims start at least 2 ms apart
  (tgring_processor_claims_total over the time it took);
- claims behind group commits: 20 updates posted one at a time, each after the
  previous reply: their claims go behind their group commits on the same
  connection (tgring_processor_claims_behind_total);
- a commit of many updates whose replies PostgreSQL refuses for one of them:
  that update alone is failed, the others are answered;
- retention: processed updates older than TGRING_RETENTION_HOURS are deleted
  in batches at start, younger ones are kept; a round goes in update_id order
  from where the previous one stopped up to the first update not due, its walk
  planned on the primary key.
"""

import asyncio
import json
import time

import botapi_helpers as bh
import harness
from bot_helpers import BOT, FAST_RATES, callback, msg, processed


def big_text(update_id, chat, text):
    """A text message with 800 entities: 5,600 JSON tokens and more, past what the
    processor parses into its scratch, so its parse takes tokens of its own."""
    u = json.loads(msg(update_id, chat, text))
    u["message"]["entities"] = [{"type": "bold", "offset": i % len(text), "length": 1}
                                for i in range(800)]
    return json.dumps(u).encode()


def calls_of(api, chat):
    """(method, body) of the calls about `chat`, oldest first (getMe left out)."""
    out = []
    for c in api.calls():
        b = c.get("body") or {}
        if c["method"] == "getMe":
            continue
        if str(b.get("chat_id")) == str(chat) or \
                (c["method"] == "answerCallbackQuery" and
                 str(b.get("callback_query_id", "")).startswith(f"cb{chat}")):
            out.append((c["method"], b))
    return out


async def conversation(h, pg, api, srv):
    t = h.t
    chat = 7001
    p = harness.Poster(srv.port, "/webhook/telegram", srv.env["TELEGRAM_WEBHOOK_SECRET"])
    script = [
        msg(700100, chat, "/start"),
        msg(700101, chat, "/start ref42"),
        msg(700102, chat, "/count"),
        msg(700103, chat, f"/count@{BOT}"),
        msg(700104, chat, "/count@some_other_bot"),
        msg(700105, chat, "hello"),
        msg(700106, chat, "Привет, \"мир\" \\ \U0001F680"),
        callback(700107, chat, "inc", 42, text="count: 2"),
        msg(700108, chat, "/set -1"),
        msg(700109, chat, "/fail"),
        msg(700110, chat, "after"),
        msg(700111, chat, "/count"),
        msg(700112, chat, "/set 10"),
        msg(700113, chat, "/count"),
        big_text(700114, chat, "many entities"),
    ]
    for body in script:
        status, resp, _ = await p.post(body)
        t.eq(status, 200, f"update {json.loads(body)['update_id']} stored")
        # Telegram sends a chat's next update only after the last was answered.
    p.close()
    done = await bh.wait_for(lambda: processed(pg, f"chat_id = {chat}") == len(script), 30)
    t.ok(done, "every update of the conversation is processed")
    await bh.wait_for(lambda: bh.pending(pg) == 0, 30)

    plus = {"inline_keyboard": [[{"text": "+1", "callback_data": "inc"}]]}
    want = [
        ("sendMessage", {"chat_id": chat, "text": "Hello! Send /count or any text."}),
        ("sendMessage", {"chat_id": chat,
                         "text": "Hello! You came from ref42. Send /count or any text."}),
        ("sendMessage", {"chat_id": chat, "text": "count: 1", "reply_markup": plus}),
        ("sendMessage", {"chat_id": chat, "text": "count: 2", "reply_markup": plus}),
        ("sendMessage", {"chat_id": chat, "text": "hello"}),
        ("sendMessage", {"chat_id": chat, "text": "Привет, \"мир\" \\ \U0001F680"}),
        ("answerCallbackQuery", {"callback_query_id": "cb700107", "text": "counted"}),
        ("editMessageText", {"chat_id": chat, "message_id": 42, "text": "count: 3",
                             "reply_markup": plus}),
        ("sendMessage", {"chat_id": chat, "text": "after"}),
        ("sendMessage", {"chat_id": chat, "text": "count: 4", "reply_markup": plus}),
        ("sendMessage", {"chat_id": chat, "text": "count set to 10"}),
        ("sendMessage", {"chat_id": chat, "text": "count: 11", "reply_markup": plus}),
        ("sendMessage", {"chat_id": chat, "text": "many entities"}),
    ]
    got = await bh.wait_for(lambda: len(calls_of(api, chat)) >= len(want) and
                            calls_of(api, chat), 20)
    got = calls_of(api, chat)
    t.eq(len(got), len(want), "one Bot API call per reply, nothing for the ignored, refused "
         "and failed updates")
    for i, (g, w) in enumerate(zip(got, want)):
        t.eq(g, w, f"reply {i + 1}: {w[0]} {w[1].get('text', '')[:30]!r}")
    t.eq(pg.scalar(f"SELECT n FROM echo_counters WHERE chat_id = {chat}"), "11",
         "the counter holds 11: the refused /set -1 wrote nothing")

    rows = pg.psql("SELECT update_id, failed_at IS NOT NULL, coalesce(last_error, ''), "
                   "claimed_until IS NULL FROM updates WHERE chat_id = "
                   f"{chat} ORDER BY update_id")
    failed = {int(r[0]): r[2] for r in rows if r[1] == "t"}
    t.eq(sorted(failed), [700108, 700109], "the refused /set -1 and /fail are marked failed")
    t.ok("echo_count_set refused: SQLSTATE 23514" in failed.get(700108, ""),
         "the refused write's error names the statement and the check violation",
         repr(failed.get(700108)))
    t.eq(failed.get(700109), "asked to fail", "the failing handler's reason is kept")
    t.ok(all(r[3] == "t" for r in rows), "no lease is left on a processed update")
    t.eq(int(pg.scalar("SELECT count(*) FROM outbox WHERE update_id IN (700108, 700109)")), 0,
         "no outbox row of the failed updates")

    m = srv.metrics()
    t.eq(harness.metric(m, "tgring_updates_failed_total"), 2.0, "tgring_updates_failed_total")
    t.eq(harness.metric(m, "tgring_updates_processed_total"), float(len(script) - 2),
         "tgring_updates_processed_total counts the others (the ignored command too)")
    t.ok(harness.metric(m, "tgring_processor_lag_seconds") is not None and
         harness.metric(m, "tgring_outbox_depth") is not None,
         "the lag and outbox depth gauges are there")


async def post_in_turn(srv, updates):
    """POSTs updates one after the other on one keep-alive connection, each until it is
    answered 200 (20 tries, as Telegram redelivers); returns the answers that were not."""
    p = harness.Poster(srv.port, "/webhook/telegram", srv.env["TELEGRAM_WEBHOOK_SECRET"])
    bad = 0
    for u in updates:
        for _ in range(20):
            status, _, _ = await p.post(u)
            if status == 200:
                break
            bad += 1
            await asyncio.sleep(0.1)
    p.close()
    return bad


async def order(h, pg, api, srv):
    t = h.t
    chats, per = 50, 20
    retries = await asyncio.gather(*(
        post_in_turn(srv, [msg(800000 + i * chats + c, 8000 + c, f"c{c}-{i}") for i in range(per)])
        for c in range(chats)))
    t.ok(True, f"{chats * per} updates posted ({sum(retries)} retried)")
    done = await bh.wait_for(lambda: processed(pg, "chat_id BETWEEN 8000 AND 8049") ==
                             chats * per, 60, 0.2)
    t.ok(done, "every update is processed", lambda: processed(pg, "chat_id BETWEEN 8000 AND 8049"))
    await bh.wait_for(lambda: bh.pending(pg) == 0, 60, 0.2)
    by_chat = {c: [] for c in range(chats)}
    for call in api.calls("sendMessage"):
        cid = int(call["body"]["chat_id"])
        if 8000 <= cid < 8000 + chats:
            by_chat[cid - 8000].append(call["body"]["text"])
    bad = [c for c in range(chats) if by_chat[c] != [f"c{c}-{i}" for i in range(per)]]
    t.ok(not bad, f"each of the {chats} chats got its {per} echoes once, in update order",
         lambda: f"chat {bad[0]}: {by_chat[bad[0]]}" if bad else "")


async def claim_gap(h, pg, api, srv):
    t = h.t
    posters, per = 10, 30
    n = posters * per
    m0 = srv.metrics()
    claims0, t0 = harness.metric(m0, "tgring_processor_claims_total"), time.monotonic()
    await asyncio.gather(*(
        post_in_turn(srv, [msg(850000 + k * per + i, 85000 + k * per + i, f"g{k}-{i}")
                           for i in range(per)])
        for k in range(posters)))
    done = await bh.wait_for(lambda: processed(pg, "chat_id BETWEEN 85000 AND 85299") == n,
                             60, 0.01)
    claims = harness.metric(srv.metrics(), "tgring_processor_claims_total") - claims0
    ms = (time.monotonic() - t0) * 1000
    t.ok(done, f"{n} updates of {n} chats posted over {posters} connections, all processed",
         lambda: processed(pg, "chat_id BETWEEN 85000 AND 85299"))
    # One claim at a time, each starting at least 2 ms after the previous one started (one
    # answered in the window may have started before it). A release build without the gap
    # claims every 0.7 ms at 5,000 updates/s (bench/RESULTS.md); under the sanitizers claims
    # are seldom that quick, so this holds the bound rather than proving the batching.
    t.ok(0 < claims <= ms / 2 + 2,
         "claims start at least 2 ms apart (tgring_processor_claims_total)",
         f"{claims:.0f} claims in {ms:.0f} ms for {n} updates")
    # The stage histograms count what passed through each stage: every claim, every update
    # once into a commit, every commit; every reply once taken and once called.
    sent = lambda: harness.metric(srv.metrics(), "tgring_outbox_sent_total") - \
        harness.metric(m0, "tgring_outbox_sent_total")
    await bh.wait_for(lambda: sent() >= n, 30, 0.05)
    m1 = srv.metrics()
    d = lambda name: harness.metric(m1, name + "_count") - harness.metric(m0, name + "_count")
    t.ok(d("tgring_processor_claim_seconds") == harness.metric(m1, "tgring_processor_claims_total")
         - claims0 and d("tgring_processor_handle_seconds") == n
         and 1 <= d("tgring_processor_commit_seconds") <= n,
         "the processor's stage histograms count each claim, each update and each commit",
         lambda: [d("tgring_processor_claim_seconds"), d("tgring_processor_handle_seconds"),
                  d("tgring_processor_commit_seconds")])
    t.ok(d("tgring_outbox_wait_seconds") == n and d("tgring_botapi_call_seconds") == n,
         f"the sender's count each of the {n} replies once taken and once called",
         lambda: [sent(), d("tgring_outbox_wait_seconds"), d("tgring_botapi_call_seconds")])


async def claims_behind(h, pg, api, srv):
    """Updates posted one at a time, each once the previous one's reply arrived: each group
    commit leaves with no claim in flight, so the claim goes behind it on its connection."""
    t = h.t
    n = 20
    b0 = harness.metric(srv.metrics(), "tgring_processor_claims_behind_total")
    for i in range(n):
        await post_in_turn(srv, [msg(870000 + i, 87000, f"b{i}")])
        await bh.wait_for(lambda: len(calls_of(api, 87000)) == i + 1, 10, 0.005)
    got = [b["text"] for _, b in calls_of(api, 87000)]
    t.eq(got, [f"b{i}" for i in range(n)], f"{n} updates posted in turn, each echoed once, in order")
    behind = harness.metric(srv.metrics(), "tgring_processor_claims_behind_total") - b0
    # A poll's claim in flight when an update arrives may take it instead, now and then.
    t.ok(n * 3 // 4 <= behind <= n + 2,
         "their claims went behind their group commits (tgring_processor_claims_behind_total)",
         f"{behind:.0f} of {n}")


async def shared_failure(h, pg, api, srv):
    """A commit carries many updates' replies in one statement: when PostgreSQL
    refuses it for one reply, that update alone is marked failed and its
    commit-mates are committed (alone, to find whose it was)."""
    t = h.t
    secret = srv.env["TELEGRAM_WEBHOOK_SECRET"]
    pg.psql("ALTER TABLE outbox ADD CONSTRAINT no_refused CHECK (body NOT LIKE '%refuse-me%')")
    # Held back by a lock on the outbox, the twenty updates are ready together.
    def update(c):
        return msg(900000 + c, 9000 + c, "refuse-me" if c == 7 else f"shared {c}")

    async def post(c):
        p = harness.Poster(srv.port, "/webhook/telegram", secret)
        status, _, _ = await p.post(update(c))
        p.close()
        return status

    locker = pg.lock_table("outbox")
    try:
        statuses = await asyncio.gather(*(post(c) for c in range(20)))
        await bh.wait_for(lambda: pg.scalar(
            "SELECT count(*) FROM pg_locks WHERE relation = 'outbox'::regclass "
            "AND NOT granted") != "0", 10)
    finally:
        pg.unlock(locker)
    # A connection whose commit waited for the lock held up what was behind it:
    # an update answered 503 then is sent again, as Telegram does.
    for c in range(20):
        for _ in range(50):
            if statuses[c] == 200:
                break
            await asyncio.sleep(0.2)
            statuses[c] = await post(c)
    t.eq(statuses, [200] * 20, "twenty updates of twenty chats stored")
    done = await bh.wait_for(lambda: processed(pg, "chat_id BETWEEN 9000 AND 9019") == 20, 30)
    t.ok(done, "all twenty are processed",
         lambda: processed(pg, "chat_id BETWEEN 9000 AND 9019"))
    t.eq(pg.scalar("SELECT update_id || ' ' || (last_error LIKE '%no_refused%') FROM updates "
                   "WHERE chat_id BETWEEN 9000 AND 9019 AND failed_at IS NOT NULL"),
         "900007 true", "only the refused reply's update is failed, with PostgreSQL's reason")
    sent = await bh.wait_for(lambda: len([c for c in api.calls("sendMessage")
                                         if 9000 <= int(c["body"]["chat_id"]) < 9020]) >= 19, 20)
    texts = sorted(c["body"]["text"] for c in api.calls("sendMessage")
                   if 9000 <= int(c["body"]["chat_id"]) < 9020)
    t.ok(sent and texts == sorted(f"shared {c}" for c in range(20) if c != 7),
         "the other nineteen replies are sent, once each", texts)
    pg.psql("ALTER TABLE outbox DROP CONSTRAINT no_refused")


async def retention(h, pg, api, token):
    t = h.t
    db = "ret"
    pg.createdb(db)
    url = pg.url(db)
    h.migrate(url)
    rdb = bh.PgDb(pg, db)
    rdb.psql("INSERT INTO updates (update_id, received_at, body, processed_at) "
             "SELECT g, now() - interval '30 hours', 'x', now() - interval '29 hours' "
             "FROM generate_series(1, 2500) g")
    rdb.psql("INSERT INTO updates (update_id, received_at, body, processed_at) "
             "SELECT g, now() - interval '20 hours', 'y', now() - interval '20 hours' "
             "FROM generate_series(3001, 3010) g")
    env = bh.send_env(h, pg, api, token, DATABASE_URL=url, TGRING_RETENTION_HOURS=24)
    srv = h.tgring(env, name="tgring-retention")
    gone = await bh.wait_for(lambda: rdb.scalar("SELECT count(*) FROM updates WHERE "
                                                "update_id <= 2500") == "0", 30, 0.2)
    t.ok(gone, "the 2500 processed updates older than 24 h are deleted (in batches of 1000)")
    t.eq(rdb.scalar("SELECT count(*) FROM updates WHERE update_id > 3000"), "10",
         "the younger ones are kept")
    m = srv.metrics()
    t.eq(harness.metric(m, "tgring_updates_pruned_total"), 2500.0, "tgring_updates_pruned_total")
    t.eq(srv.stop(), 0, "it stops cleanly")

    # A round goes in update_id order up to the first update not due, and
    # says where the next one starts.
    rdb.psql("INSERT INTO updates (update_id, received_at, body, processed_at) "
             "SELECT g, now() - interval '30 hours', 'z', "
             "CASE WHEN g <> 2005 THEN now() - interval '29 hours' END "
             "FROM generate_series(2001, 2010) g")
    prune = "SELECT pruned, upto FROM tgring_prune_updates(24, {n}, {frm})"
    t.eq(rdb.psql(prune.format(n=3, frm=-9223372036854775808)), [["3", "2003"]],
         "a round reads 3 updates: all due, deleted; the next starts above 2003")
    t.eq(rdb.psql(prune.format(n=100, frm=2003)), [["1", "2004"]],
         "the next stops at 2005, not processed: what follows waits")
    t.eq(rdb.psql(prune.format(n=100, frm=2004)), [["0", ""]], "and stays there")
    rdb.psql("UPDATE updates SET processed_at = now() WHERE update_id = 2005")
    t.eq(rdb.psql(prune.format(n=100, frm=2004)), [["6", "2010"]],
         "once processed (and old enough), it goes with the others, up to the young ones")
    plans = pg.plans(prune.format(n=100, frm=0), db=db)
    walk = plans[plans.find("Limit"):]
    t.ok("Index Scan using updates_pkey on updates u" in walk and "Sort" not in walk and
         "Seq Scan" not in walk,
         "the walk takes its order from the primary key, with the statistics of a small table",
         plans)

    rc, _, err = h.run(["serve"], dict(env, TGRING_RETENTION_HOURS="23"))
    t.ok(rc == 1 and "TGRING_RETENTION_HOURS" in err, "TGRING_RETENTION_HOURS=23 is refused",
         err)


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    t.eq(pg.scalar("SELECT max(version) FROM schema_migrations"), "1001",
         "tgring-example's migrate applies its own migration (1001) after tgring's")
    token = bh.random_token()
    api = bh.StandIn(h, token)
    srv = h.tgring(bh.send_env(h, pg, api, token, **FAST_RATES))
    t.ok(srv.wait_ready(30), "tgring-example is ready")
    await bh.wait_for(lambda: f"@{BOT}" in srv.log(), 15)
    await conversation(h, pg, api, srv)
    await order(h, pg, api, srv)
    await claim_gap(h, pg, api, srv)
    await claims_behind(h, pg, api, srv)
    await shared_failure(h, pg, api, srv)
    t.eq(srv.stop(), 0, "tgring-example stops cleanly (exit 0)")
    await retention(h, pg, api, token)


if __name__ == "__main__":
    bh.run(main)
