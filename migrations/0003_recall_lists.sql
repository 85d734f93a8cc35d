-- gmv-store ledger, version 3: each generated image keeps its recall list — the ids and
-- recall scores of its N recalled candidates and of a reserve beyond them — so that refresh
-- and forget bring a match up to date from the stored list (merge or drop, no search).

CREATE TABLE recall_lists (
    set_name     VARCHAR NOT NULL,
    generated_id VARCHAR NOT NULL,
    ids          BLOB NOT NULL,             -- training point ids (uint64 little-endian), best first in the
                                            -- one ranking order (better recall score, then smaller id)
    scores       BLOB NOT NULL,             -- their Qdrant recall scores (float64 little-endian)
    complete     BOOLEAN NOT NULL,          -- the list holds every training image (a small training set)
    PRIMARY KEY (set_name, generated_id)
);

-- Training images removed while generated images existed, not yet dropped from their lists
-- (the counterpart of pending_refresh; `gmv refresh` applies both).
CREATE TABLE pending_removal (
    point_id  UBIGINT PRIMARY KEY,
    queued_at TIMESTAMP NOT NULL
);

-- Earlier ledgers kept the recall scores but not the candidates' ids: their generated
-- images are re-scored once, by the next `gmv refresh`, which writes their lists.
INSERT INTO refresh_queue (set_name, generated_id, reason, queued_at)
SELECT set_name, generated_id, 'migrate', current_timestamp FROM generated_images
ON CONFLICT DO NOTHING;

-- The list replaces these (a contributor's recall rank is its place in the list).
ALTER TABLE generated_images DROP COLUMN recall_floor;
ALTER TABLE generated_images DROP COLUMN n_recalled;
ALTER TABLE generated_images DROP COLUMN recall_scores;
ALTER TABLE credits DROP COLUMN recall_rank;
