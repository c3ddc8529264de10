-- 004_embeddings: backbones, per-class embedding statistics, per-image embedding files.

CREATE TABLE backbones (
    name            VARCHAR PRIMARY KEY,   -- timm model name
    weights_source  VARCHAR,               -- file:<path>, package:<name>, hf-cache, random-init
    weights_sha256  VARCHAR,
    feature_dim     INTEGER,
    preprocessing   VARCHAR,               -- JSON: input_size, interpolation, mean, std, crop_pct
    registered_at   TIMESTAMP
);

-- Sufficient statistics per (dataset, class, backbone); label '' is the whole dataset.
-- The covariance is kept as its eigendecomposition (float64 .npy bytes): eigenvalues and the
-- eigenvectors of the non-zero ones, so Frechet and Bures distances need no matrix square root.
CREATE TABLE embedding_stats (
    dataset        VARCHAR NOT NULL,
    label          VARCHAR NOT NULL,
    backbone       VARCHAR NOT NULL,
    n              BIGINT,
    dim            INTEGER,
    mean           BLOB,
    eigvals        BLOB,
    eigvecs        BLOB,
    trace          DOUBLE,
    run_id         VARCHAR,
    computed_at    TIMESTAMP
);

CREATE TABLE embedding_runs (
    run_id          VARCHAR PRIMARY KEY,
    dataset         VARCHAR,
    backbone        VARCHAR,
    device          VARCHAR,
    params          VARCHAR,               -- JSON: batch size, preprocessing, weights
    images_ok       BIGINT,
    images_failed   BIGINT,
    per_image_path  VARCHAR,               -- Parquet of per-image embeddings, or NULL
    seconds         DOUBLE,
    computed_at     TIMESTAMP
);
