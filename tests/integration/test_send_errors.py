# SPDX-License-Identifier: MIT
"""Sending, answers other than success, each steered per chat on the Bot API
stand-in, all at once on one tgring (and one more with TGRING_SEND_ATTEMPTS=2):
- 502 twice (JSON, then a proxy's HTML page for another chat): retried with
  backoff (1 s doubling, jitter in [d/2, d]) and delivered; the row counts
  the attempts and keeps the error;
- 403 "bot was blocked": failed at once, with the description, never retried;
- a persistent 502 with TGRING_SEND_ATTEMPTS=2: failed after two calls;
- a truncated answer (with and without TLS close_notify) and a connection
  reset: not taken as success; the row is sent only after a complete answer
  to a second call;
- migrate_to_chat_id: the row moves to the supergroup (chat_id column and the
  body's chat_id) and is delivered there."""

import json

import botapi_helpers as bh
import harness

# Seconds the backoff jitter may come out short of d/2: the loop's clock has
# millisecond resolution.
CLOCK_SLACK = 0.01

X, Y, Z, T, T2, R, W = 801, 802, 803, 804, 805, 806, 901
OLD, NEW = -5, -1005
BLOCKED = "Forbidden: bot was blocked by the user"


def epoch(pg, db, rid, col):
    v = pg.scalar(f"SELECT extract(epoch FROM {col}) FROM outbox WHERE id = {rid}", db=db)
    return float(v) if v else None


async def main(h):
    t = h.t
    token = bh.random_token()
    secret = harness.random_secret()
    pg = h.postgres(db=None)
    for db in ("main", "few"):
        pg.createdb(db)
        h.migrate(pg.url(db))
    main_db = bh.PgDb(pg, "main")
    few_db = bh.PgDb(pg, "few")
    api = bh.StandIn(h, token)
    api.behave({"mode": "5xx", "status": 502, "count": 2, "chat_id": X},
               {"mode": "5xx", "status": 502, "count": 2, "chat_id": Y, "html": True},
               {"mode": "final", "status": 403, "description": BLOCKED, "chat_id": Z},
               {"mode": "truncate", "chat_id": T},
               {"mode": "truncate", "chat_id": T2, "close_notify": True},
               {"mode": "reset", "chat_id": R},
               {"mode": "migrate", "chat_id": OLD, "to": NEW},
               {"mode": "5xx", "status": 502, "count": -1, "chat_id": W})

    srv = h.tgring(bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                               DATABASE_URL=pg.url("main")), name="tgring-main")
    few = h.tgring(bh.send_env(h, pg, api, token, TELEGRAM_WEBHOOK_SECRET=secret,
                               DATABASE_URL=pg.url("few"), TGRING_SEND_ATTEMPTS=2),
                   name="tgring-few")
    t.ok(srv.wait_ready(30) and few.wait_ready(30), "both tgrings are ready")

    old_body = bh.message(OLD, "mig1", "to the old group", parse_mode="HTML",
                          reply_markup={"inline_keyboard": [[{"text": "a", "callback_data":
                                                              "b"}]]})
    ids = dict(zip(["x", "y", "z", "z2", "t", "t2", "r", "m1", "m2"], bh.insert_rows(main_db, [
        (X, "sendMessage", bh.message(X, "x")),
        (Y, "sendMessage", bh.message(Y, "y")),
        (Z, "sendMessage", bh.message(Z, "z")),
        (Z, "sendMessage", bh.message(Z, "z2")),
        (T, "sendMessage", bh.message(T, "t")),
        (T2, "sendMessage", bh.message(T2, "t2")),
        (R, "sendMessage", bh.message(R, "r")),
        (OLD, "sendMessage", old_body),
        (OLD, "sendMessage", bh.message(OLD, "mig2")),
    ])))
    wid = bh.insert_rows(few_db, [(W, "sendMessage", bh.message(W, "w"))])[0]

    done = await bh.wait_for(lambda: bh.pending(main_db) == 0 and bh.pending(few_db) == 0,
                             30, 0.2)
    t.ok(done, "every row is sent or failed within 30 s",
         lambda: repr([r for r in bh.rows(main_db) + bh.rows(few_db)
                       if not r["sent"] and not r["failed"]]))
    # A retry of a row that should be final would come within the backoff.
    await bh.wait_for(lambda: False, 2)
    calls = api.calls("sendMessage")
    marks = bh.calls_by_marker(calls, ["x", "y", "z", "z2", "t", "t2", "r", "mig1", "mig2",
                                       "w"])
    rows = {r["id"]: r for r in bh.rows(main_db)}
    statuses = {k: [c["status"] for c in v] for k, v in marks.items()}
    t.diag(f"statuses per message: {statuses}")

    # 502 twice, then delivered.
    for key, what in (("x", "JSON 502"), ("y", "HTML 502 page")):
        r = rows[ids[key]]
        t.eq(statuses[key], [502, 502, 200], f"{what} twice: three calls, the last answered 200")
        t.ok(r["sent"] and not r["failed"], f"{what}: the row is sent", repr(r))
        t.eq(r["attempts"], 2, f"{what}: attempts is 2")
        t.ok("502" in r["last_error"], f"{what}: last_error mentions 502 ({r['last_error']!r})")
        times = [c["time"] for c in marks[key]]
        if len(times) == 3:
            g1, g2 = times[1] - times[0], times[2] - times[1]
            # Lower bounds only: a loaded machine may add to a backoff; a backoff far
            # too long fails the wait for every row above.
            t.ok(g1 >= 0.5 - CLOCK_SLACK and g2 >= 1.0 - CLOCK_SLACK,
                 f"{what}: backoff {g1:.2f} s then {g2:.2f} s (at least 0.5 and 1 s; "
                 f"1 and 2 s at most without load)")

    # Final.
    for key in ("z", "z2"):
        r = rows[ids[key]]
        t.eq(statuses[key], [403], f"403 blocked ({key}): one call, not retried")
        t.ok(r["failed"] and not r["sent"], f"403 blocked ({key}): the row has failed_at",
             repr(r))
        t.ok(BLOCKED in r["last_error"], f"403 blocked ({key}): last_error has the "
             f"description ({r['last_error']!r})")
        t.eq(r["attempts"], 1, f"403 blocked ({key}): attempts is 1")

    # Truncated answers and a reset.
    for key, what in (("t", "truncated answer"), ("t2", "truncated answer, then close_notify"),
                      ("r", "connection reset")):
        r = rows[ids[key]]
        t.eq(statuses[key], [None, 200], f"{what}: two calls, the second answered 200")
        t.ok(r["sent"] and not r["failed"], f"{what}: the row is sent", repr(r))
        sent_at = epoch(pg, "main", ids[key], "sent_at")
        if len(marks[key]) == 2 and sent_at is not None:
            # Both clocks are this machine's wall clock.
            t.ok(sent_at >= marks[key][1]["time"] - 0.005,
                 f"{what}: marked sent only after the second call "
                 f"({sent_at - marks[key][0]['time']:.3f} s after the first)")
    for key in ("t", "t2"):
        t.eq(rows[ids[key]]["attempts"], 1, f"truncated ({key}): counted as one failed attempt")

    # Migrated.
    got_new = [c for c in calls if c["body"].get("chat_id") == NEW]
    got_old = [c for c in calls if c["body"].get("chat_id") == OLD]
    t.ok(all(c["status"] == 400 for c in got_old) and len(got_old) >= 1,
         f"the old group got {len(got_old)} calls, all answered 400 with migrate_to_chat_id")
    want = dict(old_body, chat_id=NEW)
    t.eq([c["body"] for c in marks["mig1"] if c["body"].get("chat_id") == NEW], [want],
         "the first message went once to the supergroup, its body as before but chat_id")
    t.eq([c["status"] for c in marks["mig2"] if c["body"].get("chat_id") == NEW], [200],
         "the second message went once to the supergroup")
    t.eq(len(got_new), 2, "two calls to the supergroup in all")
    for key in ("m1", "m2"):
        r = rows[ids[key]]
        t.ok(r["sent"] and r["chat_id"] == NEW and json.loads(r["body"])["chat_id"] == NEW,
             f"row {key}: sent, chat_id and the body's chat_id are {NEW}", repr(r))
    t.eq(json.loads(rows[ids["m1"]]["body"]), want, "row m1's body is otherwise unchanged")
    t.ok(any(e.get("event") == "outbox_migrated" for e in bh.log_events(srv.log())),
         "the log says the row was re-targeted")

    # Attempts used up.
    r = bh.rows(few_db)[0]
    t.eq(statuses["w"], [502, 502], "TGRING_SEND_ATTEMPTS=2, persistent 502: two calls")
    t.ok(r["failed"] and not r["sent"] and r["attempts"] == 2 and "502" in r["last_error"],
         "and the row failed with attempts 2 and the 502 in last_error", repr(r))
    t.ok(any(e.get("event") == "outbox_failed" for e in bh.log_events(few.log())),
         "the log says it gave up")

    m = srv.metrics()
    t.eq(harness.metric(m, "tgring_outbox_sent_total"), 7.0, "tgring_outbox_sent_total is 7")
    t.eq(harness.metric(m, "tgring_outbox_failed_total"), 2.0, "tgring_outbox_failed_total is 2")
    t.ok((harness.metric(m, "tgring_outbox_retried_total") or 0) >= 6,
         "tgring_outbox_retried_total counts the retries (at least 6)")
    t.eq(harness.metric(few.metrics(), "tgring_outbox_failed_total"), 1.0,
         "the second tgring counts its failed row")
    t.eq(srv.stop(), 0, "tgring stops cleanly (exit 0)")
    t.eq(few.stop(), 0, "the second tgring stops cleanly (exit 0)")
    bh.scan_secrets(h, [token, secret])


if __name__ == "__main__":
    bh.run(main)
