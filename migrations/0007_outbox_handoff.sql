-- SPDX-License-Identifier: MIT
-- 0007_outbox_handoff: the processor's commits lease the Bot API calls they
-- queue to this process's sender when it leads, and hand them over without
-- a claim (src/tg/processor.c, src/tg/sender.c). For that each new row says
-- which open row of its chat comes before it: the sender takes a row only
-- when it holds that one or has seen it done, so one chat's messages still
-- leave in id order; any other row is released and left to the claims.
--
-- The previous open row of a chat is found by key in outbox_chat_open_idx
-- (the index 0006 dropped while nothing looked rows up by chat). The insert
-- is a function for the same reason as the claims: its plan cannot change
-- with the statistics (a table that looked empty when planned would be read
-- whole per row).

CREATE INDEX outbox_chat_open_idx ON outbox (chat_id, id)
    WHERE sent_at IS NULL AND failed_at IS NULL;

-- p_token NULL: an ordinary row, for the claims. Otherwise the row is leased
-- for p_lease_ms under p_token from the transaction's start. Returns the new
-- row's id and its chat's previous open row (NULL: none).
CREATE FUNCTION tgring_outbox_add(p_chat bigint, p_method text, p_body text, p_update bigint,
                                  p_lease_ms bigint, p_token bigint)
RETURNS TABLE (id bigint, prev bigint)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off
AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO outbox (chat_id, method, body, update_id, claimed_until, claim_token)
    VALUES (p_chat, p_method, p_body, p_update,
            CASE WHEN p_token IS NOT NULL THEN now() + p_lease_ms * interval '1 millisecond' END,
            p_token)
    RETURNING outbox.id INTO v_id;
    RETURN QUERY
    SELECT v_id, (SELECT max(o.id) FROM outbox o
                   WHERE o.chat_id = p_chat AND o.sent_at IS NULL AND o.failed_at IS NULL
                     AND o.id < v_id);
END
$$;
