-- 002_similarities: pairwise dataset distances, computed by measures or imported (e.g. expert, Task2Vec).
-- Every value is a distance: lower means more alike; a dataset's distance to itself is the minimum.

CREATE TABLE similarities (
    dataset_a           VARCHAR NOT NULL,
    dataset_b           VARCHAR NOT NULL,
    measure             VARCHAR NOT NULL,   -- frechet, mmd, otdd, task2vec, meta, expert, ...
    backbone            VARCHAR NOT NULL DEFAULT '',  -- '' when the measure uses no backbone
    value               DOUBLE,
    measure_version     VARCHAR,
    params              VARCHAR,            -- JSON
    inputs_fingerprint  VARCHAR,            -- of what it was computed from; a change means recompute
    source              VARCHAR,            -- 'computed', or the imported file
    computed_at         TIMESTAMP
);
