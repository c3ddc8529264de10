-- 001_core: datasets, their classes and images, long-form meta-features, ingest provenance.
-- JSON is kept as VARCHAR so the DuckDB CLI reads the store without loading any extension.

CREATE TABLE datasets (
    name          VARCHAR PRIMARY KEY,
    title         VARCHAR,
    modality      VARCHAR,
    anatomy       VARCHAR,
    domain        VARCHAR,        -- 'medical' or 'natural'
    label_type    VARCHAR,        -- 'single-label', 'multi-label' or 'ordinal'
    licence       VARCHAR,
    source_url    VARCHAR,
    derived_from  VARCHAR[],      -- lineage: datasets this one was made from
    layout        VARCHAR,        -- loader that read it
    root          VARCHAR,        -- where it was read from
    params        VARCHAR,        -- loader parameters (JSON)
    n_images      BIGINT,
    n_classes     BIGINT,
    fingerprint   VARCHAR,        -- of the input files and extractor versions; unchanged = no-op
    is_stub       BOOLEAN DEFAULT false,  -- known only by name (e.g. from an imported outcome)
    ingested_at   TIMESTAMP
);

CREATE TABLE classes (
    dataset  VARCHAR NOT NULL,
    label    VARCHAR NOT NULL,
    count    BIGINT NOT NULL
);

CREATE TABLE images (
    dataset         VARCHAR NOT NULL,
    image_id        VARCHAR NOT NULL,
    path            VARCHAR NOT NULL,   -- relative to the dataset root; container#index for HDF5/NPZ
    label           VARCHAR,            -- single label, or sorted positives joined by '|'
    labels          VARCHAR[],
    split           VARCHAR,
    width           INTEGER,            -- original size, from the file header
    height          INTEGER,
    channels        INTEGER,
    bit_depth       INTEGER,
    format          VARCHAR,
    file_bytes      BIGINT,
    content_hash    VARCHAR,            -- blake2b-128 of the file (or pixel) bytes
    phash           BIGINT,             -- 64-bit DCT perceptual hash
    intensity_mean  DOUBLE,
    intensity_std   DOUBLE,
    entropy         DOUBLE,
    sharpness       DOUBLE,             -- variance of the Laplacian at the working resolution
    dynamic_range   DOUBLE              -- 99th minus 1st intensity percentile
);

CREATE TABLE meta_features (
    dataset      VARCHAR NOT NULL,
    extractor    VARCHAR NOT NULL,
    version      VARCHAR NOT NULL,
    name         VARCHAR NOT NULL,
    value        DOUBLE,
    params       VARCHAR,               -- extractor parameters (JSON)
    run_id       VARCHAR,
    computed_at  TIMESTAMP
);

CREATE TABLE ingest_runs (
    run_id          VARCHAR PRIMARY KEY,
    dataset         VARCHAR,
    command         VARCHAR,
    metadb_version  VARCHAR,
    params          VARCHAR,            -- JSON
    started_at      TIMESTAMP,
    ended_at        TIMESTAMP,
    status          VARCHAR,
    images_ok       BIGINT,
    images_failed   BIGINT,
    fingerprint     VARCHAR
);

CREATE TABLE ingest_errors (
    run_id   VARCHAR,
    dataset  VARCHAR,
    path     VARCHAR,
    reason   VARCHAR
);

-- Rebuilt after every ingest with one column per meta-feature name (see store.refresh_wide_view).
CREATE VIEW meta_features_wide AS SELECT DISTINCT dataset FROM meta_features;
