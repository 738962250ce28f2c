-- SPDX-License-Identifier: MIT
-- 0006_claim_plans: the processor's claim, and the two statements of the
-- sender's claim, as functions whose plans cannot change with the statistics
-- (src/tg/processor.c, src/tg/outbox.c); the outbox's indexes cut to those
-- the sender's claim can only use as meant.
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
-- for an older open row, stop after the heads it takes. This function plans
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
    -- without a chat. Two claims that run at the same moment in different
    -- processes can each see a different head of one chat only when an
    -- update arrives late between their snapshots. The lease condition sits on the locked row, so that a
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
           -- Nor while a later update of the chat is in progress: one that
           -- arrives late (Telegram redelivered it after a 503 while later
           -- ones got through) waits for that one to finish.
           AND NOT EXISTS (SELECT 1 FROM updates o
                            WHERE o.chat_id = u.chat_id AND o.processed_at IS NULL
                              AND o.update_id > u.update_id AND o.claimed_until > now()
                              AND NOT (p_again AND o.claim_token = p_token))
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

-- The sender's claim (src/tg/outbox.c) is a walk of the open rows oldest
-- first, after which C decides what to take, then a lease of those rows by
-- key. As prepared statements their plans were made once per session, while
-- the table was small, and kept: a lease that read the whole table to find
-- 128 rows by key (a sequential scan, 34 ms), a walk that could sort the
-- table. As functions with the sequential scan and the sort switched off,
-- the walk can only go through outbox_open_idx (or the larger primary key)
-- in id order from p_after, and the lease only find its rows by key.
CREATE FUNCTION tgring_outbox_walk(p_after bigint, p_limit bigint)
RETURNS TABLE (id bigint, chat_id bigint, lease_token bigint, due integer)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT o.id, o.chat_id, CASE WHEN o.claimed_until > now() THEN o.claim_token END,
           (o.not_before <= now())::integer
      FROM outbox o
     WHERE o.sent_at IS NULL AND o.failed_at IS NULL AND o.id > p_after
     ORDER BY o.id LIMIT p_limit;
END
$$;

-- p_again: also the rows this claim token still leases (a lease sent again
-- after a lost connection; its first attempt may have committed).
CREATE FUNCTION tgring_outbox_lease(p_ids bigint[], p_lease_ms bigint, p_token bigint,
                                    p_again boolean)
RETURNS TABLE (id bigint, chat_id bigint, method text, body text, attempts integer)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_sort = off SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE outbox SET claimed_until = now() + p_lease_ms * interval '1 millisecond',
                      claim_token = p_token
     WHERE outbox.id = ANY (ARRAY (
        SELECT o.id FROM outbox o
         WHERE o.id = ANY (p_ids) AND o.sent_at IS NULL AND o.failed_at IS NULL
           AND ((o.not_before <= now()
                 AND (o.claimed_until IS NULL OR o.claimed_until <= now()))
                OR (p_again AND o.claim_token = p_token AND o.claimed_until > now()))
           FOR UPDATE SKIP LOCKED))
    RETURNING outbox.id, outbox.chat_id, outbox.method, outbox.body, outbox.attempts;
END
$$;

-- The sender no longer probes a chat's older rows (it walks outbox_open_idx
-- and decides in C, src/tg/outbox.c) nor looks rows up by due time, so two
-- of the outbox's indexes only cost: every lease and mark wrote them, and
-- the planner, misled by statistics taken when few rows were open, chose to
-- find the rows of a lease by key through outbox_due_idx, reading every due
-- row (350 ms for 128 rows). What is left can only be used by key.
DROP INDEX outbox_chat_open_idx;
DROP INDEX outbox_due_idx;
