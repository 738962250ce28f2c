# SPDX-License-Identifier: MIT
"""The processor's claim (tgring_claim_updates, migrations/0006_claim_plans.sql
and 0009_claim_from.sql) against a real PostgreSQL: a chat's oldest unprocessed
update is its head; an update without a chat is always one; an update that
arrives late (Telegram redelivered it after a 503 while later ones of its chat
got through) is not claimed while a later update of its chat is in progress, so
two updates of one chat are never handled at once; a claim sent again with its
token gets back what its first attempt leased. The walk's lower bound: heads
below it are left, an older update of the chat below it still holds its chat
back; tgring_pending_low. The plans, from auto_explain: the walk through
updates_pending_chat_idx from the bound, each probe a keyed scan of
updates_unprocessed_idx, the lease a TID scan, with the statistics of an empty
table over 20,000 unprocessed updates and after ANALYZE. The lease is a HOT
update (0011_hot_leases.sql)."""

import harness

NONE = -9223372036854775808  # no bound
CLAIM = ("SELECT update_id FROM tgring_claim_updates(10, 60000, {tok}, {again}, {frm}) "
         "ORDER BY 1")


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())

    def insert(update_id, chat):
        chat_sql = "NULL" if chat is None else str(chat)
        pg.psql(f"INSERT INTO updates (update_id, update_type, chat_id, body) "
                f"VALUES ({update_id}, 'message', {chat_sql}, '\\x7b7d')")

    def claim(tok, again=False, frm=NONE):
        return [int(r[0]) for r in pg.psql(CLAIM.format(tok=tok, again=str(again).lower(),
                                                        frm=frm))]

    def low(frm):
        return int(pg.scalar(f"SELECT low FROM tgring_pending_low({frm})"))

    def processed(update_id):
        pg.psql(f"UPDATE updates SET processed_at = now(), claimed_until = NULL "
                f"WHERE update_id = {update_id}")

    insert(20, 7)
    insert(21, 7)
    insert(30, 8)
    insert(40, None)
    insert(41, None)
    t.eq(claim(111), [20, 30, 40, 41],
         "a chat's oldest unprocessed update, and every update without a chat")
    t.eq(claim(112), [], "nothing more while they are in progress")

    insert(10, 7)  # arrives late: older than the one in progress
    t.eq(claim(113), [], "a late update is not claimed while a later one of its chat is in progress")
    t.eq(pg.psql("SELECT count(*) FROM updates WHERE chat_id = 7 AND claimed_until > now()"),
         [["1"]], "one update of the chat is leased, not two")

    processed(20)
    t.eq(claim(114), [10], "once it is done, the late one is the chat's head and is claimed")
    t.eq(claim(114, again=True), [10], "a claim sent again gets back what its token leases")
    t.eq(claim(115), [], "and no other claim takes it meanwhile")
    processed(10)
    t.eq(claim(116), [21], "then the chat goes on in update_id order")
    processed(21)
    processed(30)
    processed(40)
    processed(41)

    # The lower bound.
    t.eq(low(NONE), 41, "nothing unprocessed: the bound is the highest update_id stored")
    t.eq(low(100), 100, "and never goes down")
    insert(50, 9)
    insert(60, 10)
    insert(70, 9)
    insert(80, None)
    t.eq(low(NONE), 50, "the lowest unprocessed update")
    t.eq(low(55), 60, "the lowest unprocessed update from the bound on")
    pg.psql("UPDATE updates SET received_at = now() - interval '100 s' WHERE update_id = 50")
    t.eq(pg.psql(f"SELECT age_s FROM tgring_pending_low({NONE}) "
                 "UNION ALL SELECT age_s FROM tgring_pending_low(1000)"), [["100"], ["0"]],
         "and its age in seconds (0 when none is left)")
    t.eq(claim(117, frm=55), [60, 80], "heads below the bound are left to a later claim")
    t.eq(claim(118, frm=65), [], "a chat whose older update lies below the bound is held back "
         "by it (70 is not chat 9's head)")
    t.eq(claim(119), [50], "without a bound the head below it is claimed")
    processed(50)
    t.eq(claim(120, frm=65), [70], "then the chat's next one, from the bound")
    pg.psql("DELETE FROM updates")
    t.eq(low(7), 7, "an empty table: the bound stays")

    # Plans, with the statistics of an empty table (analyzed empty) over 20,000
    # updates of 1,000 chats inserted since, the first 9,999 processed, then
    # analyzed.
    pg.psql("ANALYZE updates")
    pg.psql("INSERT INTO updates (update_id, update_type, chat_id, body, processed_at) "
            "SELECT g, 'message', g % 1000, '\\x7b7d', CASE WHEN g < 10000 THEN now() END "
            "FROM generate_series(1, 20000) g")
    for when in ("with the statistics of an empty table", "after ANALYZE"):
        if when == "after ANALYZE":
            pg.psql("ANALYZE updates")
        plans = pg.plans("BEGIN; SELECT count(*) FROM tgring_claim_updates(16, 60000, 121, "
                         "false, 10000); ROLLBACK;")
        walk = plans[plans.find("SELECT array_agg"):plans.find("UPDATE updates")]
        t.ok("Index Scan using updates_pending_chat_idx on updates u" in walk and
             "Index Cond: (update_id >= $5)" in walk and
             walk.count("using updates_unprocessed_idx") == 2 and
             "Index Cond: ((chat_id >= u.chat_id) AND (ROW(chat_id, update_id) < "
             "ROW(u.chat_id, u.update_id)))" in walk and
             "Index Cond: ((chat_id <= u.chat_id) AND (ROW(chat_id, update_id) > "
             "ROW(u.chat_id, u.update_id)))" in walk and
             "Sort" not in walk and "Seq Scan" not in walk,
             f"{when}: the walk goes from the bound, each probe a keyed scan", plans)
        lease = plans[plans.find("UPDATE updates"):]
        t.ok("Tid Scan on updates u" in lease and "TID Cond: (ctid = ANY ($1))" in lease,
             f"{when}: the lease takes the locked rows by their ctid", plans)
        got = claim(122 if when == "after ANALYZE" else 123, frm=10000)
        t.eq(got[:3], [10000, 10001, 10002], f"{when}: the claim takes the heads from the bound")
        pg.psql("UPDATE updates SET claimed_until = NULL, claim_token = NULL")
        plans = pg.plans("SELECT * FROM tgring_pending_low(15000)")
        t.ok("Index Scan using updates_pending_chat_idx on updates u" in plans and
             "Index Cond: (update_id >= $1)" in plans and "Sort" not in plans,
             f"{when}: tgring_pending_low walks the same index from the bound", plans)

    # The lease is HOT (0011_hot_leases.sql): 600 heads with bodies of an
    # update's usual size, rows that fill dozens of pages, leased in one claim.
    pg.psql("DELETE FROM updates")
    pg.psql("INSERT INTO updates (update_id, update_type, chat_id, body) "
            "SELECT g, 'message', g, convert_to(repeat('x', 400), 'UTF8') "
            "FROM generate_series(100001, 100600) g")
    updated, hot = pg.hot_updates(f"SELECT count(*) FROM tgring_claim_updates(600, 60000, 124, "
                                  f"false, {NONE})", "updates")
    t.ok(updated == 600 and hot >= updated * 9 // 10,
         "nine leases in ten or more are heap-only (HOT) updates, adding no index entry "
         "(a page's last row may not fit: the leased version is 16 bytes longer)",
         f"{updated} updated, {hot} HOT")


harness.run(main)
