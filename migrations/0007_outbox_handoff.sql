-- SPDX-License-Identifier: MIT
-- 0007_outbox_handoff: a processor's commit writes its updates' processed
-- marks in one statement and their Bot API calls in another, however many
-- updates it carries, and leases those calls to the sender of its own
-- process when that one leads, which takes them without a claim
-- (src/tg/processor.c, src/tg/sender.c). For that each new row says which
-- open row of its chat comes before it: the sender sends a row only once it
-- holds that one or has seen it done, so one chat's messages still leave in
-- id order.
--
-- The previous open row of a chat is found by key in outbox_chat_open_idx
-- (the index 0006 dropped while nothing looked rows up by chat). The
-- statements are functions for the same reason as the claims: their plans
-- cannot change with the statistics (a table that looked empty when planned
-- would be read whole per row).

CREATE INDEX outbox_chat_open_idx ON outbox (chat_id, id)
    WHERE sent_at IS NULL AND failed_at IS NULL;

-- The rows of one commit, all at once: the i-th of each array is one row,
-- inserted in that order (ids ascending). p_token NULL: ordinary rows, for
-- the claims. Otherwise the rows are leased for p_lease_ms under p_token
-- from the transaction's start. Returns each new row's id and its chat's
-- previous open row (NULL: none), in id order; the second statement sees the
-- first's rows, so a commit's two rows to one chat are ordered too.
CREATE FUNCTION tgring_outbox_add_many(p_chats bigint[], p_methods text[], p_bodies text[],
                                       p_updates bigint[], p_lease_ms bigint, p_token bigint)
RETURNS TABLE (id bigint, prev bigint)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
BEGIN
    WITH added AS (
        INSERT INTO outbox (chat_id, method, body, update_id, claimed_until, claim_token)
        SELECT t.c, t.m, t.b, t.u,
               CASE WHEN p_token IS NOT NULL
                    THEN now() + p_lease_ms * interval '1 millisecond' END,
               p_token
          FROM unnest(p_chats, p_methods, p_bodies, p_updates) WITH ORDINALITY AS t(c, m, b, u, n)
         ORDER BY t.n
        RETURNING outbox.id)
    SELECT array_agg(added.id ORDER BY added.id) INTO v_ids FROM added;
    -- Each new row by key (a nested loop over the ids: no plan reads the
    -- open rows to find them), then its chat's previous open row: the first
    -- entry of outbox_chat_open_idx before (chat, id), read backwards. The
    -- row comparison is what only that index can start at; a plan walking
    -- outbox_open_idx back from the row and skipping other chats' rows
    -- would read the whole backlog.
    RETURN QUERY
    SELECT a.id, (SELECT o.id FROM outbox o
                   WHERE (o.chat_id, o.id) < (a.chat_id, a.id) AND o.chat_id = a.chat_id
                     AND o.sent_at IS NULL AND o.failed_at IS NULL
                   ORDER BY o.chat_id DESC, o.id DESC LIMIT 1)
      FROM unnest(v_ids) WITH ORDINALITY AS t(id, n) JOIN outbox a ON a.id = t.id
     ORDER BY t.n;
END
$$;

-- The processed mark of every update of one commit (the processor's): it
-- RAISEs P0T01, as tgring_mark_processed does for one, when any of them is
-- not held under its token or is processed already; the processor then
-- commits those updates one by one to find which.
CREATE FUNCTION tgring_mark_processed_many(p_ids bigint[], p_tokens bigint[]) RETURNS void
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off SET jit = off
AS $$
DECLARE
    v_n bigint;
BEGIN
    -- A nested loop over the ids, each update found by key: no plan reads
    -- the pending updates to find them.
    UPDATE updates u SET processed_at = now(), claimed_until = NULL
      FROM unnest(p_ids, p_tokens) AS t(id, token)
     WHERE u.update_id = t.id AND u.claim_token = t.token AND u.processed_at IS NULL;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_n <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'tgring: % of % updates are not held by their claims or are processed already',
            cardinality(p_ids) - v_n, cardinality(p_ids) USING ERRCODE = 'P0T01';
    END IF;
END
$$;
