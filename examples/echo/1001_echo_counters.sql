-- SPDX-License-Identifier: MIT
-- 1001_echo_counters: the example bot's table, one counter per chat.
-- Applications number their migrations from 1000 (tgring's own are below).
-- The CHECK is there for /set to show a refused write: the update is marked
-- failed and nothing of it is committed.
CREATE TABLE echo_counters (
    chat_id bigint PRIMARY KEY,
    n       bigint NOT NULL CHECK (n >= 0)
);
