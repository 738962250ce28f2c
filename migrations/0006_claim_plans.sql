-- SPDX-License-Identifier: MIT
-- 0006_claim_plans: the processor's and the sender's claims as functions whose
-- plan cannot change with the statistics (src/tg/processor.c, src/tg/outbox.c).
--
-- updates and outbox are queues: between two of autovacuum's analyzes (a
-- minute apart at the default naptime) their open rows can go from none to
-- tens of thousands. A claim planned while they were small read the whole
-- backlog for every row it took, and a prepared statement (or PL/pgSQL)
-- keeps such a plan for the session: a nested loop whose inner side scanned
-- all of a partial index without a key (9.5 s for 128 heads of a 20,000-row
-- backlog, with the plan made while the table was empty), or a hash join
-- over the backlog. A claim has one right plan whatever the sizes: walk the
-- open rows oldest first in a partial index, probe each one's chat by key
-- for an older open row, stop after the heads it takes. These functions plan
-- their statement at every call (a custom plan sees the tables' current
-- size: 21 ms for the same claim), with every other way of reading or
-- joining switched off, and without JIT (the switched-off ways' costs would
-- otherwise make every claim compile). Planning costs about 0.2 ms a claim.
--
-- p_again: also the rows this claim token still leases. A claim is sent again
-- after a lost connection with the same token; its first attempt may have
-- committed. Callers order the rows (RETURNING has no order).

CREATE FUNCTION tgring_claim_updates(p_max bigint, p_lease_ms bigint, p_token bigint,
                                     p_again boolean)
RETURNS TABLE (update_id bigint, chat_id bigint, update_type text, body bytea, attempts integer)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off SET enable_sort = off SET enable_material = off SET jit = off
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    -- A head is the oldest unprocessed update of its chat, or any update
    -- without a chat. The lease condition sits on the locked row, so that a
    -- head leased or processed by a claim that committed after this
    -- statement's snapshot is re-checked on its newest version and left out.
    WITH picked AS (
        SELECT u.update_id FROM updates u
         WHERE u.processed_at IS NULL
           AND (u.claimed_until IS NULL OR u.claimed_until <= now()
                OR (p_again AND u.claim_token = p_token AND u.claimed_until > now()))
           AND NOT EXISTS (SELECT 1 FROM updates o
                            WHERE o.chat_id = u.chat_id AND o.processed_at IS NULL
                              AND o.update_id < u.update_id)
         ORDER BY u.update_id LIMIT p_max
           FOR UPDATE OF u SKIP LOCKED)
    UPDATE updates u
       SET claimed_until = now() + p_lease_ms * interval '1 millisecond',
           claim_token = p_token, attempts = u.attempts + 1
      FROM picked
     WHERE u.update_id = picked.update_id
    RETURNING u.update_id, u.chat_id, u.update_type, u.body, u.attempts;
END
$$;

-- The sender takes each chat's open rows as a run, oldest first, and sends a
-- chat's rows one after the other in id order (src/tg/sender.c). A row is
-- claimable when it is open, due and not leased, and no older open row of its
-- chat holds it back: each older one is either leased by this sender (a live
-- lease under a token in p_base..p_token, the sender's claims so far) or
-- claimable itself, and so comes in this claim ahead of it (the walk goes in
-- id order). A row put back with a delay, or leased by another process, holds
-- its chat's later rows back. prev_id is the next older open row of the
-- row's chat in this statement's snapshot (null: none): the sender keeps a
-- row only while that one is held or done, and gives it back otherwise (one
-- put back while the claim was on its way).
CREATE FUNCTION tgring_claim_outbox(p_max bigint, p_lease_ms bigint, p_token bigint,
                                    p_again boolean, p_base bigint)
RETURNS TABLE (id bigint, chat_id bigint, method text, body text, attempts integer,
               prev_id bigint)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off SET enable_sort = off SET enable_material = off SET jit = off
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH c AS (
        UPDATE outbox SET claimed_until = now() + p_lease_ms * interval '1 millisecond',
                          claim_token = p_token
         WHERE outbox.id = ANY (ARRAY (
            SELECT o.id FROM outbox o
             WHERE o.sent_at IS NULL AND o.failed_at IS NULL
               AND ((o.not_before <= now()
                     AND (o.claimed_until IS NULL OR o.claimed_until <= now()))
                    OR (p_again AND o.claim_token = p_token AND o.claimed_until > now()))
               AND NOT EXISTS (
                    SELECT 1 FROM outbox p
                     WHERE p.chat_id = o.chat_id AND p.id < o.id
                       AND p.sent_at IS NULL AND p.failed_at IS NULL
                       AND (p.claimed_until > now()
                            AND p.claim_token BETWEEN p_base AND p_token) IS NOT TRUE
                       AND (p.not_before <= now()
                            AND (p.claimed_until IS NULL OR p.claimed_until <= now())) IS NOT TRUE)
             ORDER BY o.id LIMIT p_max
               FOR UPDATE SKIP LOCKED))
        RETURNING outbox.id, outbox.chat_id, outbox.method, outbox.body, outbox.attempts)
    SELECT c.id, c.chat_id, c.method, c.body, c.attempts,
           (SELECT max(p.id) FROM outbox p
             WHERE p.chat_id = c.chat_id AND p.id < c.id
               AND p.sent_at IS NULL AND p.failed_at IS NULL)
      FROM c;
END
$$;
