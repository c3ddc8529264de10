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
WITH img AS (
    SELECT i.dataset AS ds, i.phash FROM images i WHERE i.phash IS NOT NULL
),
hashes AS (
    SELECT DISTINCT ds, phash FROM img
),
pairs AS (
    SELECT a.ds AS dataset_a, b.ds AS dataset_b, count(*) AS shared_hashes
    FROM hashes a JOIN hashes b ON a.phash = b.phash AND a.ds < b.ds
    WHERE dataset IS NULL OR dataset IN (a.ds, b.ds)
    GROUP BY ALL
),
covered AS (  -- images of ds whose hash also occurs in other
    SELECT x.ds, h.ds AS other, count(*) AS n
    FROM img x JOIN hashes h ON x.phash = h.phash AND x.ds <> h.ds
    GROUP BY ALL
),
totals AS (
    SELECT i.dataset AS ds, count(*) AS n FROM images i GROUP BY ALL
)
SELECT p.dataset_a, p.dataset_b, p.shared_hashes,
       (ca.n / ta.n)::DOUBLE AS share_a, (cb.n / tb.n)::DOUBLE AS share_b
FROM pairs p
JOIN covered ca ON ca.ds = p.dataset_a AND ca.other = p.dataset_b
JOIN covered cb ON cb.ds = p.dataset_b AND cb.other = p.dataset_a
JOIN totals ta ON ta.ds = p.dataset_a
JOIN totals tb ON tb.ds = p.dataset_b
ORDER BY p.shared_hashes DESC, p.dataset_a, p.dataset_b;
