-- SPDX-License-Identifier: MIT
-- 0004_outbox_heads: the sender claims only the oldest unsent row of each chat
-- (src/tg/outbox.c), so that one chat's messages leave strictly in id order
-- even after a row was put back. The claim asks, for each candidate, whether an
-- older open row of its chat exists: one probe of this index, which, like
-- outbox_due_idx, holds only the rows still to send.
CREATE INDEX outbox_chat_open_idx ON outbox (chat_id, id)
    WHERE sent_at IS NULL AND failed_at IS NULL;
