-- A set valued with exact search (`gmv value --exact`) is refreshed and verified with exact
-- search too; sets valued through an HNSW index keep using it. Fixed per set, like k and N.
ALTER TABLE generated_sets ADD COLUMN exact BOOLEAN NOT NULL DEFAULT FALSE;

CREATE OR REPLACE VIEW sets AS
SELECT s.set_name, s.k, s.recall, s.exact, s.created_at,
       (SELECT count(*) FROM generated_images g WHERE g.set_name = s.set_name) AS m
FROM generated_sets s;
