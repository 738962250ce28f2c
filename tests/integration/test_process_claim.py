# SPDX-License-Identifier: MIT
"""The processor's claim (tgring_claim_updates, migrations/0006_claim_plans.sql)
against a real PostgreSQL: a chat's oldest unprocessed update is its head;
an update without a chat is always one; an update that arrives late (Telegram
redelivered it after a 503 while later ones of its chat got through) is not
claimed while a later update of its chat is in progress, so two updates of one
chat are never handled at once; and a claim sent again with its token gets back
what its first attempt leased."""

import harness

CLAIM = "SELECT update_id FROM tgring_claim_updates(10, 60000, {tok}, {again}) ORDER BY 1"


async def main(h):
    t = h.t
    pg = h.postgres()
    h.migrate(pg.url())

    def insert(update_id, chat):
        chat_sql = "NULL" if chat is None else str(chat)
        pg.psql(f"INSERT INTO updates (update_id, update_type, chat_id, body) "
                f"VALUES ({update_id}, 'message', {chat_sql}, '\\x7b7d')")

    def claim(tok, again=False):
        return [int(r[0]) for r in pg.psql(CLAIM.format(tok=tok, again=str(again).lower()))]

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


harness.run(main)
