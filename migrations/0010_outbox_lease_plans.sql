-- SPDX-License-Identifier: MIT
-- 0010_outbox_lease_plans: the sender's lease (src/tg/outbox.c) finds its
-- rows by key whatever the statistics, as the processor's claim does since
-- 0009; and the plans that 0009 keeps can use no incremental sort either.
--
-- 0006's tgring_outbox_lease looked its rows up with `id = ANY (p_ids)`.
-- PL/pgSQL keeps a generic plan after five calls, and one made while the
-- outbox looked empty read outbox_chat_open_idx whole, testing each open row
-- against the array: 112 ms for 138 rows over 50,000 open ones. A sender that
-- fell behind (the processor's hand-off skipped because the sender was full)
-- leased through it at 30 ms a call end to end at 5,000 updates/s, fell
-- further behind, and replies took seconds. Now each id is looked up on its
-- own, as the first row from it in id order with the id bounded on both
-- sides: with sorting off only outbox_open_idx or the primary key give that
-- order, each keyed by the bounds (a full scan of either would cost more);
-- the rows are then leased by their ctid with index scans off, a TID scan.
-- The ctids are those of the versions locked; should one not match, that row
-- is only not leased (its lock goes at the commit).

CREATE FUNCTION tgring_outbox_lease_rows(p_ctids tid[], p_lease_ms bigint, p_token bigint)
RETURNS TABLE (id bigint, chat_id bigint, method text, body text, attempts integer)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_indexscan = off SET enable_indexonlyscan = off
SET enable_bitmapscan = off SET jit = off SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE outbox o
       SET claimed_until = now() + p_lease_ms * interval '1 millisecond', claim_token = p_token
     WHERE o.ctid = ANY (p_ctids) AND o.sent_at IS NULL AND o.failed_at IS NULL
    RETURNING o.id, o.chat_id, o.method, o.body, o.attempts;
END
$$;

-- As 0006's: the rows of p_ids still open, due and not leased (or, with
-- p_again, leased under p_token), locked SKIP LOCKED and leased.
CREATE OR REPLACE FUNCTION tgring_outbox_lease(p_ids bigint[], p_lease_ms bigint, p_token bigint,
                                               p_again boolean)
RETURNS TABLE (id bigint, chat_id bigint, method text, body text, attempts integer)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
SET enable_incremental_sort = off SET enable_hashjoin = off SET enable_mergejoin = off
SET enable_material = off SET jit = off SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_ctids tid[];
BEGIN
    SELECT array_agg(r.ctid) INTO v_ctids
      FROM unnest(p_ids) AS k(id),
           LATERAL (SELECT o.ctid FROM outbox o
                     WHERE o.id >= k.id AND o.id <= k.id
                       AND o.sent_at IS NULL AND o.failed_at IS NULL
                       AND ((o.not_before <= now()
                             AND (o.claimed_until IS NULL OR o.claimed_until <= now()))
                            OR (p_again AND o.claim_token = p_token AND o.claimed_until > now()))
                     ORDER BY o.id LIMIT 1
                       FOR UPDATE SKIP LOCKED) r;
    IF v_ctids IS NOT NULL THEN
        RETURN QUERY SELECT * FROM tgring_outbox_lease_rows(v_ctids, p_lease_ms, p_token);
    END IF;
END
$$;

-- 0009's walks are ordered by (update_id, chat_id) so that only
-- updates_pending_chat_idx gives the order with sorting off; an incremental
-- sort over the primary key's update_id order would give it too.
ALTER FUNCTION tgring_claim_updates(bigint, bigint, bigint, boolean, bigint)
    SET enable_incremental_sort = off;
ALTER FUNCTION tgring_pending_low(bigint) SET enable_incremental_sort = off;
