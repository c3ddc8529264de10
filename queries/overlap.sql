/*
name: overlap
question: Which pairs of ingested datasets share images (identical perceptual hash), and what share of each dataset is shared?
params:
  dataset VARCHAR = NULL    only pairs involving this dataset (default: all pairs)
columns:
  dataset_a VARCHAR         first dataset of the pair
  dataset_b VARCHAR         second dataset of the pair
  shared_hashes BIGINT      distinct perceptual hashes found in both
  share_a DOUBLE            fraction of dataset_a's images whose hash occurs in dataset_b
  share_b DOUBLE            fraction of dataset_b's images whose hash occurs in dataset_a
*/
CREATE OR REPLACE MACRO overlap(dataset := NULL) AS TABLE
WITH hashes AS (
    SELECT DISTINCT i.dataset, i.phash FROM images i WHERE i.phash IS NOT NULL
),
pairs AS (
    SELECT a.dataset AS dataset_a, b.dataset AS dataset_b, count(*) AS shared_hashes
    FROM hashes a JOIN hashes b ON a.phash = b.phash AND a.dataset < b.dataset
    GROUP BY ALL
),
shares AS (
    SELECT p.dataset_a, p.dataset_b, p.shared_hashes,
           (SELECT count(*) FROM images x WHERE x.dataset = p.dataset_a
              AND x.phash IN (SELECT y.phash FROM images y WHERE y.dataset = p.dataset_b))
             / (SELECT count(*) FROM images x WHERE x.dataset = p.dataset_a) AS share_a,
           (SELECT count(*) FROM images x WHERE x.dataset = p.dataset_b
              AND x.phash IN (SELECT y.phash FROM images y WHERE y.dataset = p.dataset_a))
             / (SELECT count(*) FROM images x WHERE x.dataset = p.dataset_b) AS share_b
    FROM pairs p
)
SELECT dataset_a, dataset_b, shared_hashes, share_a::DOUBLE AS share_a, share_b::DOUBLE AS share_b
FROM shares
WHERE dataset IS NULL OR dataset IN (dataset_a, dataset_b)
ORDER BY shared_hashes DESC, dataset_a, dataset_b;
