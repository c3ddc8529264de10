-- 008_backbone_identity: embeddings are keyed by a backbone identity, not an architecture name.
-- An identity is one feature space: `arch.tag`, tag = first 8 hex digits of
-- sha256(arch|weights_sha256|preprocessing|device_class|precision) (metadb/backbones.py: Identity).
-- embedding_stats.backbone, embedding_runs.backbone and similarities.backbone now hold identities.
--
-- Stores written before 008: each run gets the identity of what it recorded (its weights file's
-- hash, the architecture's preprocessing, its device; CUDA runs used bfloat16 autocast, so 'amp'),
-- which equals the identity a new embedding with the same weights gets. Unseeded random-init runs
-- were each a space of their own. A computed distance is kept only when both datasets were
-- embedded in one identity; the rest compared two feature spaces and are deleted.

CREATE TABLE backbones_008 (
    identity        VARCHAR PRIMARY KEY,   -- arch.tag
    arch            VARCHAR NOT NULL,      -- timm model name
    weights_source  VARCHAR,               -- file:<path>, package:<name>, hf-cache:<path>, random-init
    weights_sha256  VARCHAR,               -- of the weights file (random-init: of the seeded tensors)
    preprocessing   VARCHAR,               -- JSON: input_size, interpolation, mean, std, crop_pct
    device_class    VARCHAR,               -- cpu, cuda, mps
    precision       VARCHAR,               -- fp32, amp (bfloat16 autocast)
    feature_dim     INTEGER,
    registered_at   TIMESTAMP
);

CREATE TEMP TABLE legacy_008 AS
WITH runs AS (
    SELECT r.run_id, r.dataset, r.backbone AS arch,
           coalesce(json_extract_string(r.params, '$.weights'), b.weights_source) AS weights_source,
           coalesce(json_extract_string(r.params, '$.weights_sha256'), 'unseeded-random-init:' || r.run_id)
               AS weights_sha256,
           coalesce(b.preprocessing, json_extract(r.params, '$.preprocessing')::VARCHAR) AS preprocessing,
           CASE WHEN r.device LIKE 'cuda%' THEN 'cuda' ELSE coalesce(split_part(r.device, ':', 1), 'cpu') END
               AS device_class,
           CASE WHEN r.device LIKE 'cuda%' THEN 'amp' ELSE 'fp32' END AS precision,
           coalesce(b.feature_dim, (SELECT max(s.dim) FROM embedding_stats s WHERE s.run_id = r.run_id))
               AS feature_dim,
           r.computed_at
    FROM embedding_runs r LEFT JOIN backbones b ON b.name = r.backbone
)
SELECT *, arch || '.' || left(sha256(arch || '|' || weights_sha256 || '|' || preprocessing || '|' || device_class
                                     || '|' || precision), 8) AS identity
FROM runs;

INSERT INTO backbones_008
SELECT identity, arch, weights_source, weights_sha256, preprocessing, device_class, precision, feature_dim,
       max(computed_at)
FROM legacy_008
GROUP BY ALL;

UPDATE similarities SET backbone = la.identity
FROM legacy_008 la, legacy_008 lb
WHERE similarities.backbone <> '' AND la.arch = similarities.backbone AND lb.arch = similarities.backbone
  AND la.dataset = similarities.dataset_a AND lb.dataset = similarities.dataset_b AND la.identity = lb.identity;
DELETE FROM similarities
WHERE backbone <> '' AND coalesce(origin, 'computed') = 'computed'
  AND backbone NOT IN (SELECT identity FROM legacy_008);

UPDATE embedding_runs SET backbone = l.identity FROM legacy_008 l WHERE embedding_runs.run_id = l.run_id;
UPDATE embedding_stats SET backbone = l.identity FROM legacy_008 l WHERE embedding_stats.run_id = l.run_id;

DROP TABLE legacy_008;
DROP TABLE backbones;
ALTER TABLE backbones_008 RENAME TO backbones;
