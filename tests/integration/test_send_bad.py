# SPDX-License-Identifier: MIT
"""Sending rows that cannot go as they are, on the Bot API stand-in; none of
them may hold its chat, or the sender, back:
- a method with a space (the HTTP client would refuse the request) and one
  longer than a Bot API method name: failed at once with the reason in
  last_error, never sent (not cut short either), and the chat's next row is
  delivered;
- migrate_to_chat_id that cannot end: to the row's own chat (failed at
  once), A to B and back (each retarget counts as an attempt: failed after
  TGRING_SEND_ATTEMPTS sends), and a retarget the database refuses (a body
  that is not JSON): each row fails with the reason in last_error and its
  chat's next row goes;
- a 429 with retry_after 10^9 s, for one chat and then for two chats within a
  second (the bot's limit): each pause is cut to an hour, the rows are due
  again within the hour, and a warning says so. (That sending goes on after
  the hour is the unit test's to show, on a clock it moves.)"""

import botapi_helpers as bh
import harness

SPACE, LONG = 1101, 1102
LONG_METHOD = "sendMessage" + "X" * 60
HUGE = 10**9
HOUR = 3600
PAUSED, OTHER, G1, G2 = 1201, 1202, 1203, 1204
SELF, CYC_A, CYC_B, NOT_JSON, MOVED = 1301, -1302, -1303, 1304, -1305
ATTEMPTS = 4


async def bad_methods(h, pg, api, srv):
    t = h.t
    ids = bh.insert_rows(pg, [(SPACE, "send Message", bh.message(SPACE, "space")),
                              (SPACE, "sendMessage", bh.message(SPACE, "after-space")),
                              (LONG, LONG_METHOD, bh.message(LONG, "long")),
                              (LONG, "sendMessage", bh.message(LONG, "after-long"))])
    done = await bh.wait_for(lambda: bh.pending(pg) == 0, 15, 0.1)
    t.ok(done, "bad methods: every row is sent or failed within 15 s",
         lambda: repr([r for r in bh.rows(pg) if not r["sent"] and not r["failed"]]))
    rows = {r["id"]: r for r in bh.rows(pg)}
    for rid, what in ((ids[0], "a method with a space"), (ids[2], "a 71-byte method")):
        r = rows[rid]
        t.ok(r["failed"] and not r["sent"] and "method" in r["last_error"],
             f"{what}: failed, with the reason in last_error ({r['last_error']!r})", repr(r))
    for rid, what in ((ids[1], "space"), (ids[3], "long")):
        t.ok(rows[rid]["sent"], f"the chat's next row after the {what} one is sent")
    calls = api.calls()
    t.eq([c["method"] for c in calls if c["method"] not in ("getMe", "sendMessage")], [],
         "no call went out with a bad method, cut short or otherwise")
    t.ok(any(e.get("event") == "outbox_rejected" for e in bh.log_events(srv.log())),
         "the log says the rows were rejected")
    pg.psql("DELETE FROM outbox")


async def migrate_loops(h, pg, api, srv):
    t = h.t
    api.reset()
    api.behave({"mode": "migrate", "chat_id": SELF, "to": SELF, "count": 1},
               {"mode": "migrate", "chat_id": CYC_A, "to": CYC_B},
               {"mode": "migrate", "chat_id": CYC_B, "to": CYC_A},
               {"mode": "migrate", "method": "sendDice", "to": MOVED})
    ids = bh.insert_rows(pg, [(SELF, "sendMessage", bh.message(SELF, "self")),
                              (SELF, "sendChatAction", {"chat_id": SELF, "action": "typing"}),
                              (CYC_A, "sendMessage", bh.message(CYC_A, "cycle")),
                              (NOT_JSON, "sendDice", "not json"),
                              (NOT_JSON, "sendMessage", bh.message(NOT_JSON, "after-not-json"))])
    done = await bh.wait_for(lambda: bh.pending(pg) == 0, 20, 0.1)
    t.ok(done, "migrate loops: every row is sent or failed within 20 s",
         lambda: repr([r for r in bh.rows(pg) if not r["sent"] and not r["failed"]]))
    rows = {r["id"]: r for r in bh.rows(pg)}
    calls = api.calls()
    r = rows[ids[0]]
    t.ok(r["failed"] and r["attempts"] == 1 and "own chat" in r["last_error"],
         f"migrate to its own chat: failed after one send ({r['last_error']!r})", repr(r))
    t.ok(rows[ids[1]]["sent"], "and that chat's next row is sent")
    r = rows[ids[2]]
    cycle = bh.calls_by_marker(calls, ["cycle"])["cycle"]
    t.ok(r["failed"] and r["attempts"] == ATTEMPTS and "giving up" in r["last_error"],
         f"migrate A to B to A: failed after {ATTEMPTS} attempts ({r['last_error']!r})", repr(r))
    t.eq([c["body"]["chat_id"] for c in cycle], [CYC_A, CYC_B] * (ATTEMPTS // 2),
         f"migrate A to B to A: {ATTEMPTS} calls, to each chat in turn")
    r = rows[ids[3]]
    t.ok(r["failed"] and r["chat_id"] == NOT_JSON and "refused" in r["last_error"],
         f"a retarget the database refuses: failed, chat unchanged ({r['last_error']!r})",
         repr(r))
    t.eq(len([c for c in calls if c["method"] == "sendDice"]), 1,
         "a retarget the database refuses: one call, not sent again")
    t.ok(rows[ids[4]]["sent"], "and that chat's next row is sent")
    pg.psql("DELETE FROM outbox")


def due_in(pg, rid):
    """Seconds until row rid is due again, or None while it is not put back."""
    v = pg.scalar("SELECT extract(epoch FROM not_before - now()) FROM outbox "
                  f"WHERE id = {rid} AND claimed_until IS NULL AND attempts > 0")
    return float(v) if v else None


async def put_back(h, pg, rids, what):
    """Waits for rows rids to be put back after their 429; checks they are due within the hour."""
    t = h.t
    back = await bh.wait_for(lambda: all(due_in(pg, r) is not None for r in rids), 15, 0.1)
    t.ok(back, f"{what}: the limited rows are put back in the table")
    for rid in rids:
        due = due_in(pg, rid)
        t.ok(due is not None and HOUR - 60 < due <= HOUR,
             f"{what}: row {rid} is due again in an hour, not 10^9 s ({due} s)")


async def huge_retry_after(h, pg, api, srv):
    t = h.t
    api.reset()
    # Past the 1 s window in which an earlier 429 would count.
    await bh.wait_for(lambda: False, 1.2)
    api.behave({"mode": "429", "chat_id": PAUSED, "retry_after": HUGE})
    ids = bh.insert_rows(pg, [(PAUSED, "sendMessage", bh.message(PAUSED, "paused")),
                              (OTHER, "sendMessage", bh.message(OTHER, "other"))])
    await put_back(h, pg, ids[:1], "retry_after 10^9, one chat")
    other = await bh.wait_for(lambda: bh.rows(pg, f"id = {ids[1]}")[0]["sent"], 10, 0.1)
    t.ok(other, "retry_after 10^9, one chat: another chat's row is sent meanwhile")

    await bh.wait_for(lambda: False, 1.2)
    api.behave({"mode": "429_global", "retry_after": HUGE, "count": 2})
    gids = bh.insert_rows(pg, [(G1, "sendMessage", bh.message(G1, "g1")),
                               (G2, "sendMessage", bh.message(G2, "g2"))])
    await put_back(h, pg, gids, "retry_after 10^9, two chats")
    events = bh.log_events(srv.log())
    clamped = [e for e in events if e.get("event") == "outbox_pause_clamped"]
    t.eq(len(clamped), 3, "a warning for each of the three 429s cut to an hour",
         repr(clamped))
    t.ok(any(e.get("event") == "outbox_limited" and "all chats" in e.get("msg", "") and
             "3600000 ms" in e.get("msg", "") for e in events),
         "the second chat limited pauses all chats, for 3600000 ms")


async def main(h):
    t = h.t
    token, secret, pg, api, srv = await bh.start_sending(h, TGRING_SEND_ATTEMPTS=ATTEMPTS)
    await bad_methods(h, pg, api, srv)
    await migrate_loops(h, pg, api, srv)
    # Last: it pauses every chat for an hour.
    await huge_retry_after(h, pg, api, srv)
    t.eq(srv.stop(), 0, "tgring stops cleanly (exit 0)")
    bh.scan_secrets(h, [token, secret])


if __name__ == "__main__":
    bh.run(main)
