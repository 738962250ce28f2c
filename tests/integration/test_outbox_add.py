# SPDX-License-Identifier: MIT
"""The processor's outbox insert (tgring_outbox_add_many, migrations/0008) against
a real PostgreSQL: each new row comes back in the arrays' order with its chat's
previous open row (sent and failed rows do not count, other chats' rows never
do, and a call's own earlier row to the chat is one), leased under the token when one is given; and its plans stay the keyed
ones when the statistics say the table is empty while it holds thousands of
open rows, and the same after ANALYZE."""

import harness

ADD = ("SELECT id, coalesce(prev, 0) FROM tgring_outbox_add_many("
       "ARRAY[{chats}]::int8[], ARRAY[{methods}]::text[], ARRAY[{bodies}]::text[], "
       "ARRAY[{updates}]::int8[], 60000, {token})")


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())

    def row(chat, sent=False, failed=False):
        return int(pg.scalar(
            f"INSERT INTO outbox (chat_id, method, body, sent_at, failed_at) VALUES "
            f"({chat}, 'sendMessage', '{{}}', {'now()' if sent else 'NULL'}, "
            f"{'now()' if failed else 'NULL'}) RETURNING id"))

    def add(chats, token="NULL"):
        n = len(chats)
        sql = ADD.format(chats=", ".join(str(c) for c in chats),
                         methods=", ".join(["'sendMessage'"] * n),
                         bodies=", ".join(["'{}'"] * n), updates=", ".join(["NULL"] * n),
                         token=token)
        return [(int(a), int(b)) for a, b in pg.psql(sql)]

    # Chat 10: an open row, then a sent and a failed one after it; chat 5 (below 7)
    # and chat 20 have open rows; chat 7 has none.
    open10 = row(10)
    row(10, sent=True)
    row(10, failed=True)
    row(5)
    open20 = row(20)
    got = add([10, 7, 10, 20])
    ids = [i for i, _ in got]
    t.eq(len(got), 4, "one row back per call")
    t.ok(ids == sorted(ids) and ids[0] > open20, "in the arrays' order, new ids ascending", got)
    t.eq([p for _, p in got], [open10, 0, ids[0], open20],
         "previous open row: the chat's own (not sent, not failed), none for a chat with none "
         "(chat 5's row below it does not count), the call's own earlier row", got)
    t.eq(pg.scalar(f"SELECT count(*) FROM outbox WHERE id >= {ids[0]} AND claim_token IS NULL "
                   "AND claimed_until IS NULL"), "4", "without a token nothing is leased")
    leased = add([7], token="4242")
    t.eq(leased[0][1], ids[1], "the next row of chat 7 follows the one just added")
    t.eq(pg.scalar(f"SELECT claim_token || ' ' || (claimed_until > now() + interval '50 s') "
                   f"FROM outbox WHERE id = {leased[0][0]}"), "4242 true",
         "with a token the row is leased under it for the lease given")

    # Plans: the statistics of an empty table (analyzed empty), 20,000 open rows in 1,000
    # chats inserted since, then analyzed. The lookup must stay a keyed backward scan.
    pg.psql("DELETE FROM outbox")
    pg.psql("ANALYZE outbox")
    pg.psql("INSERT INTO outbox (chat_id, method, body) "
            "SELECT g % 1000, 'sendMessage', '{}' FROM generate_series(1, 20000) g")
    lookup = ("EXPLAIN (ANALYZE, COSTS OFF) EXECUTE p(500, {id})")
    prep = ("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_hashjoin = off; "
            "SET enable_mergejoin = off; SET enable_sort = off; "
            "SET plan_cache_mode = force_generic_plan; "
            "PREPARE p(bigint, bigint) AS SELECT (SELECT o.id FROM outbox o "
            "WHERE o.chat_id >= $1 AND (o.chat_id, o.id) < ($1, $2) "
            "AND o.sent_at IS NULL AND o.failed_at IS NULL "
            "ORDER BY o.chat_id DESC, o.id DESC LIMIT 1); ")
    top = int(pg.scalar("SELECT max(id) FROM outbox"))
    for when in ("with the statistics of an empty table", "after ANALYZE"):
        if when == "after ANALYZE":
            pg.psql("ANALYZE outbox")
        plan = "\n".join(r[0] for r in pg.psql(prep + lookup.format(id=top + 1)))
        t.ok("Index Only Scan Backward using outbox_chat_open_idx" in plan and
             "Index Cond: ((chat_id >= $1) AND (ROW(chat_id, id) < ROW($1, $2)))" in plan and
             "Sort" not in plan,
             f"{when}: the generic plan of the lookup is the keyed backward scan", plan)
        got = add([500])
        want = pg.scalar(f"SELECT max(id) FROM outbox WHERE chat_id = 500 AND id < {got[0][0]} "
                         "AND sent_at IS NULL AND failed_at IS NULL")
        t.eq(got[0][1], int(want), f"{when}: the function finds chat 500's last open row")


harness.run(main)
