# SPDX-License-Identifier: MIT
"""Ingest: 1,000 distinct updates over 100 concurrent keep-alive connections,
plus 200 duplicates of already acknowledged ones. Every request gets a 200,
each update is stored exactly once with its body byte for byte and the fields
extracted, and the metrics show the counts and that commits were grouped."""

import asyncio
import hashlib
import json
import random

import harness

CONNS = 100
PER_CONN = 10
DUPS_PER_CONN = 2
KINDS = ["message"] * 14 + ["edited_message", "callback_query", "channel_post", "poll_answer"]


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())
    secret = harness.random_secret()
    path = "/webhook/telegram"
    srv = h.tgring(h.serve_env(pg, secret))
    t.ok(srv.wait_ready(30), "/health/ready is 200 on a migrated database")

    rng = random.Random(20261122)
    base = rng.randrange(10**8, 10**9)
    sent = {}      # update_id -> (body, (type, chat_id, from_id))
    plan = []      # per connection: list of update_ids, one chat per connection
    for c in range(CONNS):
        chat = -(10**12 + c * 7919) if c % 3 == 0 else 10**6 + c * 104729
        ids = []
        for i in range(PER_CONN):
            uid = base + c * PER_CONN + i
            kind = KINDS[rng.randrange(len(KINDS))]
            body, exp = harness.make_update(uid, kind, chat_id=chat,
                                            from_id=5 * 10**8 + c * 31 + i,
                                            text=harness.TEXTS[uid % len(harness.TEXTS)],
                                            rng=rng)
            sent[uid] = (body, exp)
            ids.append(uid)
        plan.append(ids)

    results = []   # (update_id, outcome, duplicate?)

    async def one_conn(ids):
        poster = harness.Poster(srv.port, path, secret)
        try:
            for uid in ids:
                st, resp, _ = await poster.post(sent[uid][0], timeout=20)
                results.append((uid, st, False, resp))
            # Telegram redelivers when it did not see an answer in time.
            for uid in rng.sample(ids, DUPS_PER_CONN):
                st, resp, _ = await poster.post(sent[uid][0], timeout=20)
                results.append((uid, st, True, resp))
        finally:
            poster.close()
        return poster.opens - 1

    reconnects = await asyncio.gather(*(one_conn(ids) for ids in plan))

    firsts = [r for r in results if not r[2]]
    dups = [r for r in results if r[2]]
    bad = [(u, st, repr(resp)[:200]) for u, st, _, resp in results if st != 200]
    t.eq(len(firsts), CONNS * PER_CONN, "all first deliveries were answered")
    t.eq(len(dups), CONNS * DUPS_PER_CONN, "all duplicates were answered")
    t.ok(not bad, "every request got 200", f"{len(bad)} not 200, first: {bad[:5]}")
    t.eq(sum(reconnects), 0, "connections stayed open (keep-alive)")

    rows = pg.psql("SELECT update_id, md5(body), coalesce(update_type, ''), "
                   "coalesce(chat_id::text, ''), coalesce(from_id::text, ''), "
                   "received_at IS NOT NULL FROM updates")
    t.eq(len(rows), CONNS * PER_CONN, "exactly 1,000 rows in updates")
    got = {int(r[0]): r[1:] for r in rows}
    t.eq(set(got), set(sent), "the stored update_ids are the ones sent")
    body_mismatch = [u for u, (b, _) in sent.items()
                     if u in got and got[u][0] != hashlib.md5(b).hexdigest()]
    t.ok(not body_mismatch, "every body is stored byte for byte",
         f"{len(body_mismatch)} differ, e.g. {body_mismatch[:5]}")
    field_mismatch = []
    for u, (_, (kind, chat, frm)) in sent.items():
        if u not in got:
            continue
        want = (kind, "" if chat is None else str(chat), "" if frm is None else str(frm))
        if tuple(got[u][1:4]) != want:
            field_mismatch.append((u, tuple(got[u][1:4]), want))
    t.ok(not field_mismatch, "update_type, chat_id and from_id are extracted",
         f"{len(field_mismatch)} differ (id, got, want): {field_mismatch[:5]}")
    t.ok(all(r[4] == "t" for r in got.values()), "received_at is set on every row")

    # Spot-check the raw bytes too, not only their digests.
    sample = sorted(sent)[::97]
    hexes = dict((int(a), b) for a, b in pg.psql(
        "SELECT update_id, encode(body, 'hex') FROM updates WHERE update_id IN (%s)"
        % ",".join(map(str, sample))))
    t.ok(all(hexes.get(u) == sent[u][0].hex() for u in sample),
         f"sampled bodies ({len(sample)}) are byte-identical in hex")

    m = srv.metrics()
    stored = harness.metric(m, "tgring_updates_stored_total")
    dup = harness.metric(m, "tgring_updates_duplicate_total")
    t.eq(stored, 1000.0, "tgring_updates_stored_total is 1000")
    t.eq(dup, 200.0, "tgring_updates_duplicate_total is 200")
    ok200 = harness.metric(m, "tgring_http_requests_total", code="200")
    t.ok(ok200 is not None and ok200 >= 1200, "tgring_http_requests_total{code=\"200\"} >= 1200",
         f"got {ok200}")
    bcount = harness.metric(m, "tgring_db_batch_size_count")
    bsum = harness.metric(m, "tgring_db_batch_size_sum")
    t.ok(bcount is not None and 0 < bcount < 1000,
         "fewer than 1000 commit batches (group commit happened)", f"count {bcount}, sum {bsum}")
    t.ok(bsum is not None and bsum >= 1000, "batch sizes add up to at least 1000",
         f"sum {bsum}")
    inf = harness.metric(m, "tgring_db_batch_size_bucket", le="+Inf")
    t.eq(inf, bcount, "batch-size histogram: +Inf bucket equals its count")
    lat = harness.metric(m, "tgring_ack_latency_seconds_count")
    t.ok(lat is not None and lat >= 1000, "tgring_ack_latency_seconds has the acks", f"{lat}")
    for name in ("tgring_db_reconnects_total", "tgring_http_connections_open",
                 "tgring_process_resident_memory_bytes"):
        t.ok(harness.metric(m, name) is not None, f"/metrics has {name}")
    rss = harness.metric(m, "tgring_process_resident_memory_bytes") or 0
    t.ok(rss > 1 << 20, "resident memory metric is plausible", f"{rss}")

    # A string with \u0000 (which jsonb would refuse) is stored verbatim.
    nul_id = base + 10**6
    body = (b'{"update_id":%d,"message":{"message_id":1,"from":{"id":42,"is_bot":false,'
            b'"first_name":"N"},"chat":{"id":42,"type":"private"},"date":1700000000,'
            b'"text":"nul \\u0000 here"}}' % nul_id)
    conn = await harness.HttpConn.open(srv.port)
    try:
        resp = await conn.request("POST", path, body,
                                  {"X-Telegram-Bot-Api-Secret-Token": secret,
                                   "Content-Type": "application/json"})
        t.eq(resp.status, 200, "a body with \\u0000 in a string gets 200")
    finally:
        conn.close()
    t.eq(pg.scalar(f"SELECT encode(body, 'hex') FROM updates WHERE update_id = {nul_id}"),
         body.hex(), "the body with \\u0000 is stored byte for byte")

    # A large update (4096 characters of text and many entities, about 60 KB)
    # arrives in several reads and is stored whole.
    big_id = base + 10**6 + 1
    text = "я" * 4096
    entities = [{"type": "bold", "offset": i * 4, "length": 2} for i in range(1000)]
    big = json.dumps({"update_id": big_id, "message": {
        "message_id": 2, "from": {"id": 43, "is_bot": False, "first_name": "B"},
        "chat": {"id": 43, "type": "private"}, "date": 1700000000, "text": text,
        "entities": entities}}, ensure_ascii=False, separators=(",", ":")).encode()
    conn = await harness.HttpConn.open(srv.port)
    try:
        resp = await conn.request("POST", path, big,
                                  {"X-Telegram-Bot-Api-Secret-Token": secret,
                                   "Content-Type": "application/json"})
        t.eq(resp.status, 200, f"a large update ({len(big)} bytes) gets 200")
        resp = await conn.request("POST", path, big,
                                  {"X-Telegram-Bot-Api-Secret-Token": secret,
                                   "Content-Type": "application/json"})
        t.eq(resp.status, 200, "and again on the same connection (duplicate): 200")
    except harness.ConnectionClosed as e:
        t.ok(False, "a large update is answered", f"{e}")
    finally:
        conn.close()
    t.eq(pg.scalar(f"SELECT md5(body) FROM updates WHERE update_id = {big_id}"),
         hashlib.md5(big).hexdigest(), "the large body is stored byte for byte")

    rc = srv.stop()
    t.eq(rc, 0, "tgring exits 0 on SIGTERM")


harness.run(main)
