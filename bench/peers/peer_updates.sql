-- SPDX-License-Identifier: MIT
-- The peers' table, shaped like tgring's updates (migrations/0001_init.sql):
-- one row per update, deduplicated by update_id, the body's bytes as received.
-- Each peer creates it at start if it is missing.
CREATE TABLE IF NOT EXISTS peer_updates (
    update_id   bigint      PRIMARY KEY,
    update_type text,
    chat_id     bigint,
    from_id     bigint,
    body        bytea       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
