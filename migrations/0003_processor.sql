-- SPDX-License-Identifier: MIT
-- 0003_processor: what the processor (src/tg/processor.c) needs in updates:
-- a lease per claimed update, the claim's token, a count of claims, and the
-- failure of an update whose handler failed; the processed mark as a function
-- that refuses when the caller does not hold the update; an index for the
-- retention's deletes.

-- The lease of the claim that is processing the update (past or null = free),
-- and the random token of that claim: the processed mark and a resent claim
-- find the updates a claim holds by it. attempts counts the claims, so that an
-- update whose processing kills its process every time is given up. A failed
-- update gets processed_at and failed_at both, so it never blocks its chat.
ALTER TABLE updates
    ADD COLUMN claimed_until timestamptz,
    ADD COLUMN claim_token   bigint,
    ADD COLUMN attempts      integer NOT NULL DEFAULT 0,
    ADD COLUMN failed_at     timestamptz,
    ADD COLUMN last_error    text;

-- The retention's deletes go oldest first and stop after a batch; received_at
-- is never updated, so the index costs an insert, not the marks.
CREATE INDEX updates_received_idx ON updates (received_at);

-- The processed mark, the first statement of an update's commit transaction.
-- It RAISEs (SQLSTATE P0T01, class P0: the client sees the transaction
-- refused at this statement) when the update is not held under the token or
-- is processed already: a commit resent after its first attempt committed, or
-- one whose lease ran out and whose update another process claimed. The raise
-- rolls back everything else of the transaction, i.e. that update's effects.
CREATE FUNCTION tgring_mark_processed(p_update_id bigint, p_token bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE updates SET processed_at = now(), claimed_until = NULL
     WHERE update_id = p_update_id AND claim_token = p_token AND processed_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tgring: update % is not held by claim % or is processed already',
            p_update_id, p_token USING ERRCODE = 'P0T01';
    END IF;
END
$$;
