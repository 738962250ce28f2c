-- SPDX-License-Identifier: MIT
-- 0012_prune_by_id: the retention walks updates in update_id order from
-- where its previous round stopped, and updates_received_idx goes.
--
-- The index on received_at existed for the retention alone (0003), yet every
-- row version that is not HOT took an entry in it: each update's insert and
-- its processed mark. Without it, ingestion alone (bench/ab-ingest, store
-- only) took 28.7 against 30.7 µs of PostgreSQL's CPU per update by the
-- medians of eight runs each, and ran 6 % faster (bench/RESULTS.md,
-- 2026-12-03 18:00Z).
--
-- Telegram numbers a bot's updates in sequence, so update_id order is the
-- order they arrived in, give or take Telegram's redeliveries (never of an
-- update older than a day: the retention keeps at least 24 hours). A round
-- reads at most p_max updates above p_from in primary-key order and deletes
-- those processed and received more than p_hours ago, up to the first one
-- that is not (unprocessed, or younger): what follows it is younger as a
-- rule, and waits for a later round. It returns how many it deleted and the
-- highest update_id deleted (NULL: none), where the caller's next round
-- starts, so no round steps again over the index entries of the rows the
-- previous ones deleted (they stay until VACUUM). A process starts from the
-- smallest bigint: a row below every cursor (stored by hand, or not yet due
-- when an earlier process passed it) is found by the next process's first
-- round.
--
-- The plan: the walk is given its order by the primary key only (no sort, no
-- sequential scan), whatever the statistics say about the table.

DROP INDEX updates_received_idx;

CREATE FUNCTION tgring_prune_updates(p_hours bigint, p_max bigint, p_from bigint)
RETURNS TABLE (pruned bigint, upto bigint)
LANGUAGE sql VOLATILE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off SET jit = off
AS $$
    WITH walk AS (
        SELECT u.update_id,
               u.processed_at IS NOT NULL
                   AND u.received_at < now() - p_hours * interval '1 hour' AS due
          FROM updates u
         WHERE u.update_id > p_from
         ORDER BY u.update_id
         LIMIT p_max
    ), stop AS (
        SELECT min(w.update_id) AS at FROM walk w WHERE NOT w.due
    ), gone AS (
        DELETE FROM updates d
         USING walk w, stop s
         WHERE d.update_id = w.update_id AND w.due AND (s.at IS NULL OR w.update_id < s.at)
        RETURNING d.update_id
    )
    SELECT count(*), max(g.update_id) FROM gone g
$$;
