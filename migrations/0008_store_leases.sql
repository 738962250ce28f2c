-- SPDX-License-Identifier: MIT
-- 0008_store_leases: the inbox's group commit can lease the updates it
-- stores to the processor of its own process, in the same transaction
-- (src/db/inbox.c, src/tg/processor.c). The processor then has them from
-- memory, without a claim statement that reads them back: a claim cost
-- PostgreSQL about 1.5 ms for 13 updates, more than the insert and the
-- processor's commit together.
--
-- An update is leased at its store only when it is, there and then, a head
-- the claim would take: it has no chat, or no update of its chat is
-- unprocessed (none older waiting, none later in progress) and no row before
-- it in the batch has its chat. The others are stored unleased and claimed
-- as before, once their chat's earlier update is done. "No update of its
-- chat is unprocessed" must hold against transactions of other connections
-- and processes that store an update of the same chat at the same moment,
-- which this statement's snapshot cannot see: each leasing transaction
-- first takes a transaction-scoped advisory lock per chat (two-int4 keys:
-- 'tgrc' and hashint8(chat_id); a key collision only makes two chats wait for
-- each other), in key order so that two transactions cannot deadlock, and
-- the insert, a later statement, takes its snapshot once they are granted.
-- The claims need no such lock: they only take committed rows.
--
-- A function for the same reason as the claims (0006): the probes must stay
-- index probes whatever the statistics said when the plan was made.

CREATE FUNCTION tgring_store_updates(p_ids bigint[], p_types text[], p_chats bigint[],
                                     p_froms bigint[], p_bodies bytea[],
                                     p_lease_ms bigint, p_token bigint)
RETURNS TABLE (update_id bigint, leased boolean)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(1952936547, k.h)
       FROM (SELECT DISTINCT hashint8(c) AS h FROM unnest(p_chats) AS c
              WHERE c IS NOT NULL ORDER BY 1) AS k;
    -- unnest() with several arrays zips them, in order: an update_id twice
    -- in one batch is stored once, from its first occurrence.
    RETURN QUERY
    INSERT INTO updates AS u (update_id, update_type, chat_id, from_id, body,
                              claimed_until, claim_token, attempts)
    SELECT t.i, t.ty, t.c, t.f, t.b,
           CASE WHEN t.take THEN now() + p_lease_ms * interval '1 millisecond' END,
           CASE WHEN t.take THEN p_token END,
           CASE WHEN t.take THEN 1 ELSE 0 END
      FROM (SELECT n.i, n.ty, n.c, n.f, n.b, n.o,
                   n.c IS NULL
                   OR (row_number() OVER (PARTITION BY n.c ORDER BY n.i, n.o) = 1
                       AND NOT EXISTS (SELECT 1 FROM updates x
                                        WHERE x.chat_id = n.c AND x.processed_at IS NULL))
                   AS take
              FROM unnest(p_ids, p_types, p_chats, p_froms, p_bodies)
                   WITH ORDINALITY AS n(i, ty, c, f, b, o)) AS t
     ORDER BY t.o
    ON CONFLICT (update_id) DO NOTHING
    RETURNING u.update_id, u.claim_token IS NOT NULL;
END
$$;
