-- SPDX-License-Identifier: MIT
-- 0008_outbox_add_plans: tgring_outbox_add_many (0007) with plans that are
-- made once per session instead of at every call.
--
-- 0007's previous-row lookup said `o.chat_id = a.chat_id`; with the chat
-- fixed, a walk of outbox_open_idx backwards in id order also gives the rows
-- in the order asked for, so that a plan made without the table's current
-- size could read the backlog, and PL/pgSQL's plan cache made a new plan at
-- every call (most of the function's cost: 430-550 us a call of four rows
-- against 230-260 us with the plans kept, pgbench on a scratch cluster,
-- bench/RESULTS.md). Here the lookup bounds the chat from below instead
-- (`o.chat_id >= chat` with `(o.chat_id, o.id) < (chat, id)`, which together
-- still mean this chat's earlier rows): no equality makes the chat column of
-- the order redundant, so outbox_chat_open_idx is the only index that gives
-- that order, and with sorting switched off the keyed backward scan of it is
-- the one plan left whatever the statistics say. The new rows' chats come
-- from the insert's RETURNING rather than from a join back to outbox by id.
-- Same arguments, same results as 0007's.

CREATE OR REPLACE FUNCTION tgring_outbox_add_many(p_chats bigint[], p_methods text[],
                                                  p_bodies text[], p_updates bigint[],
                                                  p_lease_ms bigint, p_token bigint)
RETURNS TABLE (id bigint, prev bigint)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off SET enable_sort = off SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
    v_chats bigint[];
BEGIN
    WITH added AS (
        INSERT INTO outbox (chat_id, method, body, update_id, claimed_until, claim_token)
        SELECT t.c, t.m, t.b, t.u,
               CASE WHEN p_token IS NOT NULL
                    THEN now() + p_lease_ms * interval '1 millisecond' END,
               p_token
          FROM unnest(p_chats, p_methods, p_bodies, p_updates) WITH ORDINALITY AS t(c, m, b, u, n)
         ORDER BY t.n
        RETURNING outbox.id, outbox.chat_id)
    SELECT array_agg(added.id ORDER BY added.id), array_agg(added.chat_id ORDER BY added.id)
      INTO v_ids, v_chats FROM added;
    -- Each new row's chat's previous open row: the entry of
    -- outbox_chat_open_idx just before (chat, id), if it is of the same chat.
    -- The second statement sees the first's
    -- rows, so a commit's two rows to one chat are ordered too.
    RETURN QUERY
    SELECT t.id, (SELECT o.id FROM outbox o
                   WHERE o.chat_id >= t.chat AND (o.chat_id, o.id) < (t.chat, t.id)
                     AND o.sent_at IS NULL AND o.failed_at IS NULL
                   ORDER BY o.chat_id DESC, o.id DESC LIMIT 1)
      FROM unnest(v_ids, v_chats) WITH ORDINALITY AS t(id, chat, n)
     ORDER BY t.n;
END
$$;
