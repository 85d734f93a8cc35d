-- gmv-store ledger, version 3: each generated image keeps its recall list — the ids and
-- recall scores of its N recalled candidates and of a reserve beyond them — so that refresh
-- brings a match up to date from the stored list when training images are added or removed
-- (merge or drop, no search).

-- The list as last written whole: training point ids (uint64 little-endian), best first in
-- the one ranking order (better recall score, then smaller id), and their Qdrant recall
-- scores (float64 little-endian). One row per generated image with a list.
CREATE TABLE recall_lists (
    set_name     VARCHAR NOT NULL,
    generated_id VARCHAR NOT NULL,
    ids          BLOB NOT NULL,
    scores       BLOB NOT NULL
);

-- What changed since (a refresh writes these few hundred bytes per image, not the list):
-- the list is the first `length` of (base - dropped) + added, in the one order. Also the
-- re-rank line behind the top-k: its runners-up (ids, distances), closest first, so that a
-- top-k member leaving the recall set seldom needs a new re-rank. One row per image with a
-- list. Neither table has an index: refresh replaces thousands of rows at once by DELETE and
-- INSERT, several times faster than an UPDATE or an indexed table in DuckDB 2.0 (the code
-- keeps one row per image).
CREATE TABLE recall_changes (
    set_name         VARCHAR NOT NULL,
    generated_id     VARCHAR NOT NULL,
    added_ids        BLOB NOT NULL,
    added_scores     BLOB NOT NULL,
    dropped_ids      BLOB NOT NULL,
    length           INTEGER NOT NULL,
    complete         BOOLEAN NOT NULL,      -- the list holds every training image (a small training set)
    runner_ids       BLOB NOT NULL,
    runner_distances BLOB NOT NULL,
    runners_all      BOOLEAN NOT NULL       -- the top-k and these hold the whole recall set
);

-- Training images removed while generated images existed, not yet dropped from their lists
-- (the counterpart of pending_refresh; `gmv refresh` applies both).
CREATE TABLE pending_removal (
    point_id  UBIGINT PRIMARY KEY,
    queued_at TIMESTAMP NOT NULL
);

-- When the pending training points were written (µs; their points carry it as payload
-- `ingest_seq`): refresh selects them in Qdrant by a range on it. NULL for earlier rows.
ALTER TABLE pending_refresh ADD COLUMN seq BIGINT;

-- Earlier ledgers kept the recall scores but not the candidates' ids: their generated
-- images are re-scored once, by the next `gmv refresh`, which writes their lists.
INSERT INTO refresh_queue (set_name, generated_id, reason, queued_at)
SELECT set_name, generated_id, 'migrate', current_timestamp FROM generated_images
ON CONFLICT DO NOTHING;

-- The list replaces these (a contributor's recall rank is its place in the list).
ALTER TABLE generated_images DROP COLUMN recall_floor;
ALTER TABLE generated_images DROP COLUMN n_recalled;
ALTER TABLE generated_images DROP COLUMN recall_scores;

-- credits without recall_rank, and without an index: a refresh replaces the credit rows of
-- thousands of generated images at once, which is about ten times faster without one (a
-- lookup scans the column instead). The code keeps (set, generated image, rank) unique.
CREATE TABLE credits_v3 (
    set_name       VARCHAR NOT NULL,
    generated_id   VARCHAR NOT NULL,
    contributor_id VARCHAR NOT NULL,
    rank           INTEGER NOT NULL,        -- 1 = closest
    distance       DOUBLE NOT NULL,
    credit         DOUBLE NOT NULL
);
INSERT INTO credits_v3 SELECT set_name, generated_id, contributor_id, rank, distance, credit FROM credits;
DROP TABLE credits;
ALTER TABLE credits_v3 RENAME TO credits;
