-- SPDX-License-Identifier: MIT
-- 0008_update_handoff: the inbox's group commit leases the updates it
-- stores to the processor of its own process, which runs them when the
-- commit is through, without a claim (src/db/inbox.c, src/tg/processor.c).
--
-- A row is leased only when its caller asked (a token: the processor had
-- room) and it heads its chat: no other unprocessed update of its chat
-- exists, older or later, in progress or not (a conservative form of the
-- claim's two conditions; what is not leased, the claims take as before).
-- Rows without a chat are heads of their own. Two rows of one chat in one
-- call are never both asked for (the inbox asks for the first only).
--
-- Two stores of one chat's updates can run at the same moment, on two
-- connections of a process or in two replicas, and neither statement's
-- snapshot would see the other's row: both would lease, and one chat would
-- have two updates in progress. So a store that asks for leases first tries
-- a transaction-level advisory lock per chat (class 0x74677275, 'tgru'; the
-- key the chat id modulo 2^31 - 1: two chats sharing one only lease less),
-- and leases only rows of the chats it got: its insert's snapshot, taken
-- after the locks, sees every other store of those chats that committed
-- first, and one still in flight holds the lock. It never waits: a store
-- that does not get a chat's lock just leaves that row to the claims (two
-- stores waiting on each other's commits would halve the group commit's
-- throughput as batches grow). A claim takes no such lock: it sees only
-- committed rows, and a committed leased row is in progress to it.
--
-- Returns each new row's update_id, whether it was leased, and stored =
-- true. An update already stored (ON CONFLICT DO NOTHING) returns nothing,
-- unless it is still unprocessed and leased under the token its row asks
-- with: then it comes back with leased = true and stored = false. That is a
-- store whose outcome its process never learnt (its connection broke, or the
-- ack timed out while the commit went through) and that Telegram sent again:
-- the process takes it now rather than after its lease (it ignores one it
-- already has in progress).

CREATE FUNCTION tgring_store_updates(p_ids bigint[], p_types text[], p_chats bigint[],
                                     p_froms bigint[], p_bodies bytea[], p_tokens bigint[],
                                     p_lease_ms bigint[])
RETURNS TABLE (update_id bigint, leased boolean, stored boolean)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_locked integer[];
BEGIN
    SELECT array_agg(k.key) INTO v_locked
      FROM (SELECT DISTINCT (t.chat % 2147483647)::integer AS key
              FROM unnest(p_chats, p_tokens) AS t(chat, token)
             WHERE t.token IS NOT NULL AND t.chat IS NOT NULL) AS k
     WHERE pg_try_advisory_xact_lock(1952936565, k.key);
    RETURN QUERY
    WITH ins (update_id, leased) AS (
    INSERT INTO updates AS u (update_id, update_type, chat_id, from_id, body,
                              claimed_until, claim_token, attempts)
    SELECT t.id, t.type, t.chat, t.from_id, t.body,
           CASE WHEN h.head THEN now() + t.lease_ms * interval '1 millisecond' END,
           CASE WHEN h.head THEN t.token END,
           CASE WHEN h.head THEN 1 ELSE 0 END
      FROM unnest(p_ids, p_types, p_chats, p_froms, p_bodies, p_tokens, p_lease_ms)
           AS t(id, type, chat, from_id, body, token, lease_ms)
     CROSS JOIN LATERAL (
           SELECT t.token IS NOT NULL
                  AND (t.chat IS NULL
                       OR (t.chat % 2147483647)::integer = ANY (v_locked)
                          AND NOT EXISTS (SELECT 1 FROM updates o
                                           WHERE o.chat_id = t.chat AND o.processed_at IS NULL
                                             AND o.update_id <> t.id))) AS h(head)
    ON CONFLICT (update_id) DO NOTHING
    RETURNING u.update_id, u.claim_token IS NOT NULL)
    SELECT ins.update_id, ins.leased, true FROM ins
    UNION ALL
    -- The statement's snapshot does not see the rows ins adds: these are
    -- the ones that were there before.
    SELECT o.update_id, true, false
      FROM unnest(p_ids, p_tokens) AS t(id, token)
      JOIN updates o ON o.update_id = t.id
     WHERE t.token IS NOT NULL AND o.claim_token = t.token AND o.processed_at IS NULL
       AND o.claimed_until > now();
END
$$;

-- The processed marks of one commit's updates, by tgring_mark_processed_many
-- (0007, which RAISEs as before), and then how many of their chats still
-- have an unprocessed update: the processor claims after a commit only then
-- (a chat's next update stored while this one was in progress became its
-- head now), not after every commit.
CREATE FUNCTION tgring_mark_processed_next(p_ids bigint[], p_tokens bigint[]) RETURNS bigint
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off SET jit = off
AS $$
DECLARE
    v_next bigint;
BEGIN
    PERFORM tgring_mark_processed_many(p_ids, p_tokens);
    -- Only later updates: a chat's index entries before the one just marked
    -- are its processed past (dead entries to walk until vacuum); an older
    -- one that arrived late is found by the next poll.
    SELECT count(DISTINCT u.chat_id) INTO v_next
      FROM unnest(p_ids) AS t(id)
      JOIN updates u ON u.update_id = t.id
     WHERE u.chat_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM updates o WHERE o.chat_id = u.chat_id
                      AND o.processed_at IS NULL AND o.update_id > u.update_id);
    RETURN v_next;
END
$$;
