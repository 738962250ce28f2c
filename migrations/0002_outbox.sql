-- SPDX-License-Identifier: MIT
-- 0002_outbox: the outbox, one row per Bot API request to make. The processor
-- inserts rows in the transaction of the update that caused them; the sender
-- claims due rows with a lease, sends them and marks each (db_outbox_* in
-- include/db.h). Rows are kept after they are sent or failed.
CREATE TABLE outbox (
    id            bigserial   PRIMARY KEY,
    chat_id       bigint      NOT NULL,
    method        text        NOT NULL,          -- Bot API method, e.g. 'sendMessage'
    body          text        NOT NULL,          -- JSON request body, as the Bot API gets it
    not_before    timestamptz NOT NULL DEFAULT now(),
    attempts      integer     NOT NULL DEFAULT 0, -- sends tried (retry and fail count them)
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    failed_at     timestamptz,                   -- gave up for good
    claimed_until timestamptz,                   -- lease of the claim being sent; past = free
    -- Random id of the claim that set claimed_until: a claim sent again after
    -- its connection broke finds the rows its first attempt leased by it.
    claim_token   bigint,
    update_id     bigint                         -- the update that caused it, if any
);

-- The rows still to send, the only ones the sender looks at; the index holds
-- only those, so it stays small however large the table gets.
CREATE INDEX outbox_due_idx ON outbox (not_before, id)
    WHERE sent_at IS NULL AND failed_at IS NULL;
