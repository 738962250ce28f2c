-- SPDX-License-Identifier: MIT
-- 0009_claim_from: the processor's claim walks the unprocessed updates from
-- a lower bound the processor keeps, and keeps its plans, each the only one
-- the statement allows (src/tg/processor.c, include/tg_processor.h).
--
-- The walk's start. An update's entry in the index of unprocessed updates
-- stays after the update is processed, until VACUUM removes it, and each
-- claim's lease leaves one more (the lease is not HOT when the page is
-- full). A walk from the index's start steps over all of them: on a table of
-- 60,000 updates processed since the last VACUUM (120,000 dead entries) a
-- claim of 16 heads took 2.3-3.3 ms instead of 0.7. On a table that keeps
-- two days of updates autovacuum comes once a fifth of them have changed,
-- hours apart, so the walk would grow with the traffic since. The bound is a
-- hint, never a condition of safety: a head below it is only left for a
-- later claim. The per-chat probes are not bounded (an older update of the
-- chat may lie below the bound, stored by another process). The processor
-- computes the bound with tgring_pending_low, lowers it at once for every
-- update its own process stores, and every half lease asks without one
-- (p_from = the smallest bigint) for what other processes stored below it.
--
-- The plans. 0006's claim was planned at every call (0.44 ms of a claim's
-- 1.4 ms, a tenth of PostgreSQL's time end to end) because a plan kept from
-- a time the table looked small could read the whole backlog per row. Here
-- each statement is written so that, with sorting, sequential scans, bitmap
-- scans, hash and merge joins switched off, one plan is left whatever the
-- statistics, and that plan is kept:
-- - the walk's order, (update_id, chat_id), is given only by
--   updates_pending_chat_idx (the primary key gives update_id alone);
-- - a head's probes ask for the nearest unprocessed update of its chat below
--   and above it in (chat_id, update_id) order with the chat bounded, which
--   only a keyed scan of updates_unprocessed_idx gives (as 0008's lookup);
-- - the lease finds the locked rows by their ctid, with index scans also
--   switched off: a TID scan is all that is left.
-- The ctids are those of the versions the walk locked (after EvalPlanQual
-- when another claim changed them meanwhile); nobody else can change them
-- before this transaction ends. Should one not match, that head is only not
-- leased: its lock goes at the commit and a later claim takes it.

CREATE INDEX updates_pending_chat_idx ON updates (update_id, chat_id)
    WHERE processed_at IS NULL;
DROP INDEX updates_pending_idx;
DROP FUNCTION tgring_claim_updates(bigint, bigint, bigint, boolean);

CREATE FUNCTION tgring_claim_lease(p_ctids tid[], p_lease_ms bigint, p_token bigint)
RETURNS TABLE (update_id bigint, chat_id bigint, update_type text, body bytea, attempts integer)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_indexscan = off SET enable_indexonlyscan = off
SET enable_bitmapscan = off SET jit = off SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE updates u
       SET claimed_until = now() + p_lease_ms * interval '1 millisecond',
           claim_token = p_token, attempts = u.attempts + 1
     WHERE u.ctid = ANY (p_ctids) AND u.processed_at IS NULL
    RETURNING u.update_id, u.chat_id, u.update_type, u.body, u.attempts;
END
$$;

-- As 0006's tgring_claim_updates (its header says what a head is and why
-- the lease condition sits on the locked row), walking from p_from.
CREATE FUNCTION tgring_claim_updates(p_max bigint, p_lease_ms bigint, p_token bigint,
                                     p_again boolean, p_from bigint)
RETURNS TABLE (update_id bigint, chat_id bigint, update_type text, body bytea, attempts integer)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off SET enable_sort = off SET enable_material = off SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_ctids tid[];
BEGIN
    SELECT array_agg(h.ctid) INTO v_ctids FROM (
        SELECT u.ctid FROM updates u
         WHERE u.processed_at IS NULL AND u.update_id >= p_from
           AND (u.claimed_until IS NULL OR u.claimed_until <= now()
                OR (p_again AND u.claim_token = p_token AND u.claimed_until > now()))
           -- no older unprocessed update of its chat
           AND (SELECT o.update_id FROM updates o
                 WHERE o.chat_id >= u.chat_id
                   AND (o.chat_id, o.update_id) < (u.chat_id, u.update_id)
                   AND o.processed_at IS NULL
                 ORDER BY o.chat_id DESC, o.update_id DESC LIMIT 1) IS NULL
           -- nor a later one in progress (one that arrived late waits for it)
           AND (SELECT o.update_id FROM updates o
                 WHERE o.chat_id <= u.chat_id
                   AND (o.chat_id, o.update_id) > (u.chat_id, u.update_id)
                   AND o.processed_at IS NULL AND o.claimed_until > now()
                   AND NOT (p_again AND o.claim_token = p_token)
                 ORDER BY o.chat_id, o.update_id LIMIT 1) IS NULL
         ORDER BY u.update_id, u.chat_id LIMIT p_max
           FOR UPDATE OF u SKIP LOCKED) h;
    IF v_ctids IS NOT NULL THEN
        RETURN QUERY SELECT * FROM tgring_claim_lease(v_ctids, p_lease_ms, p_token);
    END IF;
END
$$;

-- The next bound, low: the lowest unprocessed update_id from p_from on, or,
-- when none is left, the highest update_id stored (p_from when that is lower
-- or the table is empty); and age_s, the age in whole seconds of that lowest
-- unprocessed update (0: none), for the processor's lag gauge. Its walk has
-- the claim's only plan.
CREATE FUNCTION tgring_pending_low(p_from bigint, OUT low bigint, OUT age_s bigint)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    SELECT u.update_id, floor(extract(epoch FROM now() - u.received_at))::bigint
      INTO low, age_s FROM updates u
     WHERE u.processed_at IS NULL AND u.update_id >= p_from
     ORDER BY u.update_id, u.chat_id LIMIT 1;
    IF low IS NULL THEN
        SELECT max(u.update_id) INTO low FROM updates u;
        low := greatest(coalesce(low, p_from), p_from);
        age_s := 0;
    END IF;
END
$$;
