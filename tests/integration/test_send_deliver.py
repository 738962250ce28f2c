# SPDX-License-Identifier: MIT
"""Sending, the good path: outbox rows for several chats reach the Bot API
stand-in (over TLS, trusting the test CA) once each, with their method and
exact body, one at a time per chat in id order; the rows are marked sent and
/metrics counts them; getMe is called at start and the bot's username logged.
Then many messages with loosened rates: they share a few kept-alive
connections (the stand-in's TLS handshake count stays near
TGRING_API_CONNECTIONS), and tgring's handshake metrics agree. With
TGRING_WORKERS=3 one sender serves them all: each row once, the per-chat rate
kept. No output of tgring holds the bot token or the webhook secret."""

import collections
import json

import botapi_helpers as bh
import harness

CHATS = [1001, 1002, 1003, 77, 4242, -1001234567890, -42, 9007199254740]
PER_CHAT = 4

# Rates loose enough that the pool, not the limiter, sets the pace.
FAST_RATES = {"TELEGRAM_RATE_GLOBAL": "2000/s", "TELEGRAM_RATE_CHAT": "500/s",
              "TELEGRAM_RATE_GROUP": "500/s"}
MANY_CHATS = 40
MANY_PER_CHAT = 10
CONNS = 8


def canon(body):
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


async def deliver(h, pg, api, token, secret):
    t = h.t
    srv = h.tgring(bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                               LOG_LEVEL="debug"))
    t.ok(srv.wait_ready(30), "tgring is ready")

    getme = await bh.wait_for(lambda: api.calls("getMe"), 15)
    t.eq(len(getme), 1, "getMe was called once at start")
    if getme:
        t.ok(getme[0]["token_ok"] and getme[0]["status"] == 200 and getme[0]["tls"],
             "getMe over TLS with the right token, answered 200", repr(getme[0]))
    logged = await bh.wait_for(lambda: "@quit_smoking_test_bot" in srv.log(), 10)
    t.ok(logged, "the log names the bot's username", srv.tail(20))

    texts = harness.TEXTS + ["", "x" * 4000, "<b>bold</b> & <i>it</i>", "\u0000 nul? no: \u2028"]
    expected = []   # (chat, method, body)
    n = 0
    for i in range(PER_CHAT):
        for chat in CHATS:
            n += 1
            marker = f"d{n}"
            if n % 7 == 3:
                body = bh.message(chat, marker, texts[n % len(texts)], parse_mode="HTML",
                                  reply_markup={"inline_keyboard": [[
                                      {"text": "Yes \u2714", "callback_data": f"y:{n}"},
                                      {"text": "No", "callback_data": f"n:{n}"}]]},
                                  disable_notification=True)
            elif n % 11 == 5:
                # Another method: the body and method pass through unchanged.
                body = {"chat_id": chat, "action": "typing", "marker": marker}
                expected.append((chat, "sendChatAction", body))
                continue
            else:
                body = bh.message(chat, marker, texts[n % len(texts)] or None)
            expected.append((chat, "sendMessage", body))
    ids = bh.insert_rows(pg, expected)
    t.eq(len(ids), len(expected), f"{len(expected)} outbox rows inserted")

    done = await bh.wait_for(lambda: bh.pending(pg) == 0, 40, 0.2)
    t.ok(done, "every row was sent within 40 s", lambda: f"{bh.pending(pg)} still pending")

    calls = [c for c in api.calls() if c["method"] != "getMe"]
    want = collections.Counter((m, canon(b)) for _, m, b in expected)
    got = collections.Counter((c["method"], canon(c["body"])) for c in calls)
    t.eq(len(calls), len(expected), "one call per row, no more")
    t.ok(got == want, "each row's method and exact body arrived once",
         lambda: f"missing: {list((want - got).items())[:3]}",
         lambda: f"unexpected: {list((got - want).items())[:3]}")
    bad = [c for c in calls if not (c["http_method"] == "POST" and c["token_ok"] and
                                    c["tls"] and c["status"] == 200 and
                                    (c["content_type"] or "").startswith("application/json"))]
    t.ok(not bad, "each call: POST, application/json, the right token, over TLS, answered 200",
         lambda: repr(bad[:3]))

    # Per chat, one at a time in id order: the stand-in saw each chat's rows in
    # insertion order.
    order_ok = True
    for chat in CHATS:
        sent = [canon(c["body"]) for c in calls if str(c["body"].get("chat_id")) == str(chat)]
        wanted = [canon(b) for c, _, b in expected if c == chat]
        if sent != wanted:
            order_ok = False
            t.diag(f"chat {chat}: order differs")
    t.ok(order_ok, "each chat's rows were sent in id order")

    rows = bh.rows(pg)
    t.ok(all(r["sent"] and not r["failed"] and not r["claimed"] for r in rows),
         "every row has sent_at, no failed_at and no lease",
         lambda: repr([r for r in rows if not r["sent"]][:3]))
    t.ok(all(r["attempts"] == 0 and r["last_error"] == "" for r in rows),
         "no row needed a retry", lambda: repr([r for r in rows if r["attempts"]][:3]))
    stored = {r["id"]: r["body"] for r in rows}
    t.ok(all(json.loads(stored[i]) == b for i, (_, _, b) in zip(ids, expected)),
         "the bodies in the table are unchanged")

    m = srv.metrics()
    t.eq(harness.metric(m, "tgring_outbox_sent_total"), float(len(expected)),
         "tgring_outbox_sent_total counts the rows sent")
    t.eq(harness.metric(m, "tgring_outbox_failed_total"), 0.0, "tgring_outbox_failed_total is 0")

    # Nothing more comes later (no duplicate from a lease running out).
    before = len(api.calls())
    await bh.wait_for(lambda: False, 1.5)
    t.eq(len(api.calls()), before, "no further call in the 1.5 s after the last row was sent")
    t.eq(srv.stop(), 0, "tgring stops cleanly (exit 0)")


async def reuse(h, pg, api, token, secret):
    t = h.t
    api.reset()
    srv = h.tgring(bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                               TGRING_API_CONNECTIONS=CONNS, **FAST_RATES))
    t.ok(srv.wait_ready(30), "tgring with loosened rates is ready")
    rows = [(10**6 + c, "sendMessage", bh.message(10**6 + c, f"r{c}-{i}"))
            for i in range(MANY_PER_CHAT) for c in range(MANY_CHATS)]
    bh.insert_rows(pg, rows)
    done = await bh.wait_for(lambda: bh.pending(pg) == 0, 40, 0.2)
    t.ok(done, f"{len(rows)} rows sent within 40 s", lambda: f"{bh.pending(pg)} still pending")

    st = api.stats()
    sends = len(api.calls("sendMessage"))
    t.eq(sends, len(rows), "one sendMessage call per row")
    t.ok(st["handshakes"] <= CONNS + 3,
         f"{st['requests']} requests over {st['handshakes']} TLS handshakes "
         f"(at most TGRING_API_CONNECTIONS={CONNS} + 3)", repr(st))
    t.ok(st["connections"] <= CONNS + 3, f"{st['connections']} TCP connections", repr(st))
    t.eq(st["handshake_failures"], 0, "no failed handshake")

    # tgring copies the pool's counters into the metrics once a second.
    await bh.wait_for(lambda: False, 1.5)
    m = srv.metrics()
    full = harness.metric(m, "tgring_tls_handshakes_full_total") or 0
    resumed = harness.metric(m, "tgring_tls_handshakes_resumed_total") or 0
    t.ok(abs((full + resumed) - st["handshakes"]) <= 1,
         f"tgring counted {full:.0f} full + {resumed:.0f} resumed handshakes, "
         f"the stand-in {st['handshakes']} ({st['resumed']} resumed)")
    t.ok(abs(resumed - st["resumed"]) <= 1, "and they agree on the resumed ones")
    t.eq(harness.metric(m, "tgring_tls_failures_total"), 0.0, "tgring_tls_failures_total is 0")
    opened = harness.metric(m, "tgring_botapi_connections_open")
    t.ok(opened is not None and 1 <= opened <= CONNS,
         f"tgring_botapi_connections_open is {opened} (1..{CONNS})")
    t.eq(srv.stop(), 0, "tgring stops cleanly (exit 0)")


async def workers(h, pg, api, token, secret):
    t = h.t
    api.reset()
    srv = h.tgring(bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                               TGRING_WORKERS=3))
    t.ok(srv.wait_ready(30), "tgring with 3 workers is ready")
    plan = [(c, f"w{c}-{i}") for i in range(4) for c in (31, 32, 33, 34)]
    bh.insert_rows(pg, [(c, "sendMessage", bh.message(c, m)) for c, m in plan])
    done = await bh.wait_for(lambda: bh.pending(pg) == 0, 30, 0.2)
    t.ok(done, "3 workers: every row sent", lambda: f"{bh.pending(pg)} pending")
    await bh.wait_for(lambda: False, 1.5)
    calls = api.calls("sendMessage")
    by = bh.calls_by_marker(calls, [m for _, m in plan])
    t.ok(all(len(v) == 1 for v in by.values()) and len(calls) == len(plan),
         "3 workers: each row sent once", repr({m: len(v) for m, v in by.items()}))
    gaps = []
    for c in (31, 32, 33, 34):
        ts = sorted(x["time"] for x in calls if x["body"]["chat_id"] == c)
        gaps += [b - a for a, b in zip(ts, ts[1:])]
    # 50 ms for the stand-in's stamping jitter, as in test_send_rates.
    t.ok(gaps and min(gaps) >= 0.95, "3 workers: one limiter, a chat's calls 1 s apart "
         f"(smallest gap {min(gaps) if gaps else 0:.3f} s)")
    t.eq(srv.stop(), 0, "tgring with 3 workers stops cleanly (exit 0)")


async def main(h):
    token, secret, pg, api = bh.setup(h)
    await deliver(h, pg, api, token, secret)
    pg.psql("DELETE FROM outbox")
    await reuse(h, pg, api, token, secret)
    pg.psql("DELETE FROM outbox")
    await workers(h, pg, api, token, secret)
    bh.scan_secrets(h, [token, secret])


if __name__ == "__main__":
    bh.run(main)
