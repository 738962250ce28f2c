-- SPDX-License-Identifier: MIT
-- 0005_pending_order: the claims walk what is still to do in id order and stop
-- after as many heads as they take, instead of reading the whole backlog for
-- every claim (src/tg/processor.c, src/tg/outbox.c). A candidate that is not
-- its chat's head is passed over with one probe of updates_unprocessed_idx or
-- outbox_chat_open_idx. Like those, these indexes hold only the rows still to
-- do, so they stay small however large the tables get.
CREATE INDEX updates_pending_idx ON updates (update_id) WHERE processed_at IS NULL;
CREATE INDEX outbox_open_idx ON outbox (id) WHERE sent_at IS NULL AND failed_at IS NULL;

-- Both tables are queues: every row is updated two or three times within
-- seconds of its insert, and the claims walk the partial indexes above from
-- their oldest entries, so dead entries left by processed and sent rows slow
-- every claim until a vacuum removes them. With the default scale factor (a
-- fifth of a table that keeps 48 hours of rows) that vacuum would come rarely;
-- these settings make it come every few thousand changes.
ALTER TABLE updates SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                         autovacuum_vacuum_insert_scale_factor = 0,
                         autovacuum_vacuum_insert_threshold = 20000,
                         autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 20000);
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                        autovacuum_vacuum_insert_scale_factor = 0,
                        autovacuum_vacuum_insert_threshold = 20000,
                        autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 20000);
