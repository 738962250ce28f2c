# SPDX-License-Identifier: MIT
"""Sending, 429 Too Many Requests, judged from the arrival times the Bot API
stand-in records:
- one chat limited (retry_after 2): no request to that chat for 2 s after
  the 429, while another chat's messages keep going; then it is delivered;
- two chats limited within a second (429_global, count 2): no request to any
  chat for 2 s after the second 429; then all are delivered;
- a 429 to a call without a chat (chat_id 0 in the outbox): every chat waits;
- a long retry_after (30 s): the row goes back to the table, due 30 s later,
  and the chat gets nothing meanwhile while another chat does.
The global rate is lowered to 5/s so that calls are 200 ms apart and none is
in flight when a 429 comes back: every request that arrives later was sent
after tgring read the 429."""

import botapi_helpers as bh
import harness

RETRY_AFTER = 2
# The reactor's clock has millisecond resolution and the pause is computed from
# the loop turn's time, so a gap may come out a millisecond or two short.
CLOCK_SLACK = 0.01


def chat(call):
    body = call.get("body")
    return str(body.get("chat_id")) if isinstance(body, dict) else None


async def sent_all(h, pg, what, timeout=20):
    ok = await bh.wait_for(lambda: bh.pending(pg) == 0, timeout, 0.1)
    h.t.ok(ok, f"{what}: every row sent within {timeout} s",
           lambda: repr([r for r in bh.rows(pg) if not r["sent"]][:5]))


async def one_chat(h, pg, api, srv):
    t = h.t
    a, b = 501, 502
    api.reset()
    api.behave({"mode": "429", "chat_id": a, "retry_after": RETRY_AFTER})
    bh.insert_rows(pg, [(a, "sendMessage", bh.message(a, "a1")),
                        (b, "sendMessage", bh.message(b, "b1")),
                        (a, "sendMessage", bh.message(a, "a2"))] +
                   [(b, "sendMessage", bh.message(b, f"b{i}")) for i in range(2, 6)])
    await sent_all(h, pg, "one chat limited")
    calls = api.calls("sendMessage")
    limited = [c for c in calls if c["status"] == 429]
    t.eq(len(limited), 1, "one chat limited: exactly one 429 answered")
    if not limited:
        return
    t0 = limited[0]["time"]
    t.eq(chat(limited[0]), str(a), "the 429 went to chat A")
    after_a = [c for c in calls if chat(c) == str(a) and c["time"] > t0]
    gap = after_a[0]["time"] - t0 if after_a else None
    t.ok(gap is not None and gap >= RETRY_AFTER - CLOCK_SLACK,
         f"no request to chat A for {RETRY_AFTER} s after its 429 "
         f"(next one {gap if gap is None else round(gap, 3)} s later)",
         lambda: "\n".join(f"{c['time'] - t0:+.3f} chat {chat(c)} {c['status']}" for c in calls))
    # Meanwhile, in the stand-in's order of arrival: between A's 429 and A's next call.
    next_a = after_a[0]["seq"] if after_a else float("inf")
    b_during = [c for c in calls if chat(c) == str(b) and limited[0]["seq"] < c["seq"] < next_a]
    t.ok(len(b_during) >= 1, f"chat B got {len(b_during)} messages meanwhile")
    marks = bh.calls_by_marker(calls, ["a1", "a2"])
    t.ok([c["status"] for c in marks["a1"]] == [429, 200] and
         [c["status"] for c in marks["a2"]] == [200],
         "A's first message was sent again after the pause, then A's second",
         lambda: repr({k: [c["status"] for c in v] for k, v in marks.items()}))
    t.ok(after_a and after_a[0]["body"]["text"].endswith("[a1]"),
         "the message sent first to A after the pause is the one that was limited")
    t.ok(all(r["sent"] and not r["failed"] for r in bh.rows(pg)),
         "every row has sent_at and none failed")
    t.ok(any(e.get("event") == "outbox_limited" and "this chat" in e.get("msg", "")
             for e in bh.log_events(srv.log())), "the log says the chat is paused")
    pg.psql("DELETE FROM outbox")


async def all_chats(h, pg, api, srv):
    t = h.t
    chats = [601, 602, 603, 604, -605]
    api.reset()
    # Past the 1 s window in which a 429 of the previous scenario would count.
    await bh.wait_for(lambda: False, 1.2)
    api.behave({"mode": "429_global", "retry_after": RETRY_AFTER, "count": 2})
    bh.insert_rows(pg, [(c, "sendMessage", bh.message(c, f"g{c}-{i}"))
                        for i in range(2) for c in chats])
    await sent_all(h, pg, "two chats limited")
    calls = api.calls("sendMessage")
    limited = [c for c in calls if c["status"] == 429]
    t.eq(len(limited), 2, "two 429s answered")
    if len(limited) != 2:
        return
    t.ok(chat(limited[0]) != chat(limited[1]), "to two different chats")
    # How far apart they came is reported: tgring takes two within a second as
    # the bot's limit, which the pause checked below shows it did.
    t.diag(f"the two 429s came {limited[1]['time'] - limited[0]['time']:.3f} s apart")
    t1 = limited[1]["time"]
    later = [c for c in calls if c["time"] > t1]
    gap = later[0]["time"] - t1 if later else None
    t.ok(gap is not None and gap >= RETRY_AFTER - CLOCK_SLACK,
         f"no request to any chat for {RETRY_AFTER} s after the second 429 "
         f"(next one {gap if gap is None else round(gap, 3)} s later)",
         lambda: "\n".join(f"{c['time'] - t1:+.3f} chat {chat(c)} {c['status']}" for c in calls))
    marks = bh.calls_by_marker(calls, [f"g{c}-{i}" for i in range(2) for c in chats])
    t.ok(all(len([c for c in v if c["status"] == 200]) == 1 for v in marks.values()),
         "then every message was delivered once",
         lambda: repr({k: [c["status"] for c in v] for k, v in marks.items()}))
    t.ok(any(e.get("event") == "outbox_limited" and "all chats" in e.get("msg", "")
             for e in bh.log_events(srv.log())), "the log says all chats are paused")
    pg.psql("DELETE FROM outbox")


async def no_chat(h, pg, api, srv):
    t = h.t
    chats = [701, 702, 703]
    api.reset()
    await bh.wait_for(lambda: False, 1.2)
    api.behave({"mode": "429", "method": "setMyCommands", "retry_after": RETRY_AFTER})
    bh.insert_rows(pg, [(0, "setMyCommands",
                         {"commands": [{"command": "start", "description": "Start"}]})] +
                   [(c, "sendMessage", bh.message(c, f"z{c}-{i}"))
                    for i in range(2) for c in chats])
    await sent_all(h, pg, "a call without a chat limited")
    calls = api.calls()
    limited = [c for c in calls if c["status"] == 429]
    t.ok(len(limited) == 1 and limited[0]["method"] == "setMyCommands",
         "setMyCommands (outbox chat_id 0) got the 429", repr(limited))
    if len(limited) != 1:
        return
    t1 = limited[0]["time"]
    later = [c for c in calls if c["time"] > t1]
    gap = later[0]["time"] - t1 if later else None
    t.ok(gap is not None and gap >= RETRY_AFTER - CLOCK_SLACK,
         f"no request to any chat for {RETRY_AFTER} s after it "
         f"(next one {gap if gap is None else round(gap, 3)} s later)",
         lambda: "\n".join(f"{c['time'] - t1:+.3f} {c['method']} chat {chat(c)} {c['status']}"
                           for c in calls))
    t.eq(len([c for c in calls if c["method"] == "setMyCommands" and c["status"] == 200]), 1,
         "setMyCommands was delivered afterwards")


async def long_pause(h, pg, api, srv):
    t = h.t
    c_long, c_other = 751, 752
    api.reset()
    await bh.wait_for(lambda: False, 1.2)
    api.behave({"mode": "429", "chat_id": c_long, "retry_after": 30})
    ids = bh.insert_rows(pg, [(c_long, "sendMessage", bh.message(c_long, "long1")),
                              (c_long, "sendMessage", bh.message(c_long, "long2"))] +
                         [(c_other, "sendMessage", bh.message(c_other, f"o{i}"))
                          for i in range(3)])
    others = await bh.wait_for(lambda: len([c for c in api.calls("sendMessage")
                                            if chat(c) == str(c_other)]) >= 3, 10)
    t.ok(others, "retry_after 30: the other chat's 3 messages went out meanwhile")
    calls = [c for c in api.calls("sendMessage") if chat(c) == str(c_long)]
    t.eq([c["status"] for c in calls], [429], "the limited chat got one call, answered 429")
    due = pg.psql("SELECT sent_at IS NULL, claimed_until IS NULL, "
                  "extract(epoch FROM not_before - now()), coalesce(last_error, '') "
                  f"FROM outbox WHERE id = {ids[0]}")
    if due:
        unsent, free, wait, err = due[0]
        t.ok(unsent == "t" and free == "t" and float(wait) > 20,
             f"its row went back to the table unsent, due in {float(wait):.1f} s", repr(due))
        t.ok("429" in err, f"with the 429 in last_error ({err!r})")
    pg.psql("DELETE FROM outbox")


async def main(h):
    t = h.t
    token, secret, pg, api, srv = await bh.start_sending(h, TELEGRAM_RATE_GLOBAL="5/s,burst=1")
    await one_chat(h, pg, api, srv)
    await all_chats(h, pg, api, srv)
    await no_chat(h, pg, api, srv)
    await long_pause(h, pg, api, srv)
    m = srv.metrics()
    t.eq(harness.metric(m, "tgring_outbox_limited_total"), 5.0,
         "tgring_outbox_limited_total counts the five 429s")
    t.eq(harness.metric(m, "tgring_outbox_failed_total"), 0.0, "no row failed")
    t.eq(srv.stop(), 0, "tgring stops cleanly (exit 0)")
    bh.scan_secrets(h, [token, secret])


if __name__ == "__main__":
    bh.run(main)
