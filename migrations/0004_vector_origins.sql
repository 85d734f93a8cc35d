-- Where vectors given with the data (`gmv ingest --vectors`, `gmv value --vectors`) were read
-- from, so that `gmv repair` can read them again when a vector collection is lost (they
-- cannot be computed from the images). One row per point and named vector, removed with its
-- point (Store.removing); the digest shows that the file still holds the vector stored.
CREATE TABLE vector_origins (
    collection VARCHAR NOT NULL,   -- 'training' or 'generated'
    point_id   UBIGINT NOT NULL,
    vector     VARCHAR NOT NULL,   -- 'recall' or 'rerank'
    file       VARCHAR NOT NULL,   -- the .npy or Parquet file, absolute
    col        VARCHAR,            -- the Parquet column holding it; NULL for a .npy
    row_index  BIGINT NOT NULL,    -- its row in the file, from 0
    digest     UBIGINT NOT NULL    -- sources/vector_arrays.py vector_digests: the float32 bits dotted with fixed weights
);
