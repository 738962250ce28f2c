# SPDX-License-Identifier: MIT
"""Sending rows that cannot go as they are, on the Bot API stand-in; none of
them may hold its chat, or the sender, back:
- a method with a space (the HTTP client would refuse the request) and one
  longer than a Bot API method name: failed at once with the reason in
  last_error, never sent (not cut short either), and the chat's next row is
  delivered."""

import botapi_helpers as bh
import harness

SPACE, LONG = 1101, 1102
LONG_METHOD = "sendMessage" + "X" * 60


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


async def main(h):
    t = h.t
    token, secret, pg, api, srv = await bh.start_sending(h)
    await bad_methods(h, pg, api, srv)
    t.eq(srv.stop(), 0, "tgring stops cleanly (exit 0)")
    bh.scan_secrets(h, [token, secret])


if __name__ == "__main__":
    bh.run(main)
