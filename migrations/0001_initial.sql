-- gmv-store ledger, version 1. Internal tables may change; the views at the end are the
-- stable SQL interface (documented in README "SQL reference").

CREATE TABLE training_images (
    contributor_id VARCHAR PRIMARY KEY,     -- first 16 hex digits of sha256
    point_id       UBIGINT NOT NULL,        -- Qdrant point id: the first 16 hex digits of sha256 as an integer
    sha256         VARCHAR NOT NULL UNIQUE, -- of the canonical pixels (shape + uint8 bytes)
    source         VARCHAR NOT NULL,        -- file path, file.npz#i, mnist:train#i
    owner          VARCHAR,
    label          VARCHAR,
    meta           JSON,
    height         INTEGER NOT NULL,
    width          INTEGER NOT NULL,
    channels       INTEGER NOT NULL,
    ingested_at    TIMESTAMP NOT NULL
);

CREATE TABLE generated_sets (
    set_name   VARCHAR PRIMARY KEY,
    k          INTEGER NOT NULL,            -- top-k contributors credited per generated image
    recall     INTEGER NOT NULL,            -- N candidates recalled before re-ranking
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE generated_images (
    set_name     VARCHAR NOT NULL,
    generated_id VARCHAR NOT NULL,          -- first 16 hex digits of sha256
    point_id     UBIGINT NOT NULL,
    sha256       VARCHAR NOT NULL,
    source       VARCHAR NOT NULL,
    label        VARCHAR,                   -- the class or prompt it was generated for
    meta         JSON,
    quality      DOUBLE NOT NULL,           -- q_j > 0
    valued_at    TIMESTAMP NOT NULL,
    recall_floor DOUBLE,                    -- Qdrant recall score of the last recalled candidate
    n_recalled   INTEGER NOT NULL,          -- candidates recalled (< N when the training set is small)
    recall_scores BLOB NOT NULL,            -- Qdrant recall scores of all recalled candidates, best first
                                            -- (float64 little-endian: read and written without per-value objects)
    PRIMARY KEY (set_name, generated_id)
);

-- One row per (generated image, top-k contributor): V(x_i, x^_j) of Eq. 6.
CREATE TABLE credits (
    set_name       VARCHAR NOT NULL,
    generated_id   VARCHAR NOT NULL,
    contributor_id VARCHAR NOT NULL,
    rank           INTEGER NOT NULL,        -- 1 = closest
    distance       DOUBLE NOT NULL,
    credit         DOUBLE NOT NULL,
    recall_rank    INTEGER NOT NULL,        -- its rank in the recall stage (refresh needs it)
    PRIMARY KEY (set_name, generated_id, rank)
);

-- Running sums per (set, contributor), updated by difference on every write.
CREATE TABLE value_sums (
    set_name       VARCHAR NOT NULL,
    contributor_id VARCHAR NOT NULL,
    value_sum      DOUBLE NOT NULL,
    n_credits      INTEGER NOT NULL,
    PRIMARY KEY (set_name, contributor_id)
);

-- In-flight work touching Qdrant, so an interrupted command is rolled back or forward.
CREATE TABLE journal (
    op_id      BIGINT PRIMARY KEY,
    kind       VARCHAR NOT NULL,            -- 'ingest' | 'value' | ...
    collection VARCHAR NOT NULL,
    point_ids  UBIGINT[] NOT NULL,
    detail     JSON,
    started_at TIMESTAMP NOT NULL
);

-- Training images added while generated images existed, not yet matched against them.
CREATE TABLE pending_refresh (
    contributor_id VARCHAR PRIMARY KEY,
    point_id       UBIGINT NOT NULL,
    queued_at      TIMESTAMP NOT NULL
);

-- Generated images whose top-k may have changed and must be re-scored.
CREATE TABLE refresh_queue (
    set_name     VARCHAR NOT NULL,
    generated_id VARCHAR NOT NULL,
    reason       VARCHAR NOT NULL,          -- 'ingest' | 'forget'
    queued_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (set_name, generated_id)
);

-- Audit of removals: what was removed, when, and the values it had; never image content.
CREATE TABLE forget_log (
    forget_id    BIGINT PRIMARY KEY,
    forgotten_at TIMESTAMP NOT NULL,
    kind         VARCHAR NOT NULL,          -- 'training' | 'generated' | 'set'
    selector     VARCHAR NOT NULL,          -- the ids, --owner or --source given
    n_images     INTEGER NOT NULL,
    ids          VARCHAR[] NOT NULL,        -- contributor or generated ids removed
    values_before JSON NOT NULL             -- {set_name: summed value of the removed images}
);

-- ---------------------------------------------------------------- stable views
CREATE VIEW contributors AS
SELECT contributor_id, source, sha256, owner, label, meta, height, width, ingested_at
FROM training_images;

CREATE VIEW generated AS
SELECT generated_id, set_name, source, sha256, label, quality, meta, valued_at
FROM generated_images;

CREATE VIEW scores AS
SELECT set_name, generated_id, contributor_id, rank, distance, credit
FROM credits;

CREATE VIEW sets AS
SELECT s.set_name, s.k, s.recall, s.created_at,
       (SELECT count(*) FROM generated_images g WHERE g.set_name = s.set_name) AS m
FROM generated_sets s;

-- phi_i = value_sum / m (paper Eq. 5), m = generated images valued in the set.
CREATE VIEW contributor_values AS
SELECT v.set_name, v.contributor_id,
       v.value_sum / s.m AS value,
       v.value_sum, v.n_credits
FROM value_sums v JOIN sets s USING (set_name)
WHERE v.n_credits > 0;

CREATE VIEW forgotten AS
SELECT forget_id, forgotten_at, kind, selector, n_images, ids, values_before FROM forget_log;

CREATE VIEW owner_values AS
SELECT cv.set_name, t.owner,
       sum(cv.value) AS value, sum(cv.value_sum) AS value_sum,
       count(*) AS n_contributors, sum(cv.n_credits) AS n_credits
FROM contributor_values cv JOIN training_images t USING (contributor_id)
GROUP BY cv.set_name, t.owner;
