-- SPDX-License-Identifier: MIT
-- 0001_init: the inbox. Applied by `tgring migrate` in one transaction with
-- its row in schema_migrations; forward-only, like every file here.

-- The runner creates this table before it applies anything; repeated here so
-- that the file also stands alone (psql -f) and documents the shape.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- One row per Telegram update, keyed by update_id so that redeliveries are
-- deduplicated by the primary key (INSERT ... ON CONFLICT DO NOTHING).
-- The body is the request body exactly as received: bytea, because jsonb and
-- text reject content such as \u0000 that Telegram may send.
CREATE TABLE updates (
    update_id    bigint      PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    update_type  text,
    chat_id      bigint,
    from_id      bigint,
    body         bytea       NOT NULL,
    processed_at timestamptz
);

-- The processor claims the unprocessed updates of a chat in update_id order;
-- the index holds only those, so it stays small however large the table gets.
CREATE INDEX updates_unprocessed_idx ON updates (chat_id, update_id)
    WHERE processed_at IS NULL;
