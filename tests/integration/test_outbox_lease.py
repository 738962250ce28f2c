# SPDX-License-Identifier: MIT
"""The sender's lease (tgring_outbox_lease, migrations/0010) against a real
PostgreSQL: of the ids asked for it leases the rows still open, due and not
leased (with p_again also those its token leases), under the token and for the
lease given, and leaves rows another transaction holds locked; and its plans,
from auto_explain: each id looked up by key in outbox_open_idx or the primary
key and the rows leased by ctid, also in a session whose kept generic plan was
made while the table looked empty, over 50,000 open rows; the lease is a HOT
update (0011_hot_leases.sql)."""

import harness

LEASE = ("SELECT id FROM tgring_outbox_lease(ARRAY[{ids}]::bigint[], 60000, {tok}, {again}) "
         "ORDER BY id")


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())

    def row(sent=False, failed=False, later=False, leased_by=None):
        lease = (f"now() + interval '1 minute', {leased_by}" if leased_by else "NULL, NULL")
        return int(pg.scalar(
            "INSERT INTO outbox (chat_id, method, body, sent_at, failed_at, not_before, "
            "claimed_until, claim_token) VALUES (7, 'sendMessage', '{}', "
            f"{'now()' if sent else 'NULL'}, {'now()' if failed else 'NULL'}, "
            f"now() + interval '{'1 hour' if later else '0 s'}', {lease}) RETURNING id"))

    def lease(ids, tok, again=False):
        sql = LEASE.format(ids=", ".join(str(i) for i in ids), tok=tok, again=str(again).lower())
        return [int(r[0]) for r in pg.psql(sql)]

    due = [row(), row()]
    sent, failed, later = row(sent=True), row(failed=True), row(later=True)
    other = row(leased_by=99)
    mine = row(leased_by=42)
    t.eq(lease(due + [sent, failed, later, other, mine, 999999], 42), due,
         "the open, due, free rows; not sent, failed, not yet due, leased or unknown ones")
    t.eq(pg.psql(f"SELECT claim_token, claimed_until > now() + interval '50 s' FROM outbox "
                 f"WHERE id IN ({due[0]}, {due[1]})"), [["42", "t"], ["42", "t"]],
         "leased under the token for the lease given")
    t.eq(lease(due, 43), [], "a leased row is not leased again")
    t.eq(lease(due + [mine, other], 42, again=True), due + [mine],
         "sent again, a lease gets back what its token holds")
    free = row()
    locker = pg.lock_rows("outbox", f"id = {free}")
    try:
        t.eq(lease([free], 44), [], "a row another transaction holds is skipped, not waited for")
    finally:
        pg.unlock(locker)
    t.eq(lease([free], 44), [free], "and leased once it is free")

    # A session keeps the generic plan made on its sixth call: make it while the
    # outbox is analyzed empty, then lease 138 of 50,000 open rows in it.
    pg.psql("DELETE FROM outbox")
    pg.psql("ANALYZE outbox")
    warm = "SELECT count(*) FROM tgring_outbox_lease('{1,2,3}', 60000, 45, false); " * 7
    fill = ("INSERT INTO outbox (chat_id, method, body) SELECT g % 1000, 'sendMessage', '{}' "
            "FROM generate_series(1, 50000) g; ")
    some = "(SELECT array_agg(id) FROM (SELECT id FROM outbox ORDER BY id OFFSET 25000 LIMIT 138) s)"
    plans = pg.plans(f"SELECT count(*) FROM tgring_outbox_lease({some}, 60000, 46, false)",
                     before=warm + fill)
    look = plans[plans.find("SELECT array_agg"):plans.find("UPDATE outbox")]
    t.ok(("Index Scan using outbox_open_idx on outbox o" in look or
          "Index Scan using outbox_pkey on outbox o" in look) and
         "Index Cond: ((id >= k.id) AND (id <= k.id))" in look and
         "outbox_chat_open_idx" not in look and "Seq Scan" not in look,
         "with a generic plan made on an empty table, each id is looked up by key", plans)
    upd = plans[plans.find("UPDATE outbox"):]
    t.ok("Tid Scan on outbox o" in upd and "TID Cond: (ctid = ANY ($1))" in upd,
         "and the rows are leased by their ctid", plans)
    t.eq(pg.scalar("SELECT count(*) FROM outbox WHERE claim_token = 46"), "138",
         "all 138 rows are leased")

    # The lease is HOT (0011_hot_leases.sql): 600 replies of a usual size,
    # rows that fill pages, leased at once.
    pg.psql("DELETE FROM outbox")
    pg.psql("INSERT INTO outbox (chat_id, method, body) SELECT g, 'sendMessage', "
            "'{\"chat_id\":' || g || ',\"text\":\"' || repeat('x', 120) || '\"}' "
            "FROM generate_series(1, 600) g")
    updated, hot = pg.hot_updates("SELECT count(*) FROM tgring_outbox_lease("
                                  "(SELECT array_agg(id) FROM outbox), 60000, 47, false)", "outbox")
    t.ok(updated == 600 and hot >= updated * 9 // 10,
         "nine leases in ten or more are heap-only (HOT) updates, adding no index entry "
         "(a page's last row may not fit: the leased version is 16 bytes longer)",
         f"{updated} updated, {hot} HOT")


harness.run(main)
