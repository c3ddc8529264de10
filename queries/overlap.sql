/*
name: overlap
question: Which pairs of ingested datasets share images (perceptual hashes within a few bits: the same picture, recompressed or resized), and what share of each dataset is shared?
params:
  dataset VARCHAR = NULL        only pairs involving this dataset (default: all pairs)
  max_distance INTEGER = NULL   most differing pHash bits for a match (default: settings 'lineage_max_hamming', 4)
columns:
  dataset_a VARCHAR             first dataset of the pair
  dataset_b VARCHAR             second dataset of the pair
  matched_pairs BIGINT          image pairs within max_distance (listed by image_matches)
  share_a DOUBLE                fraction of dataset_a's images with a match in dataset_b
  share_b DOUBLE                fraction of dataset_b's images with a match in dataset_a
  max_distance INTEGER          the threshold used
*/
CREATE OR REPLACE MACRO overlap(dataset := NULL, max_distance := NULL) AS TABLE
-- Flat images (uniform grey or black) are ignored: they all hash alike. See image_matches.
WITH m AS (
    SELECT * FROM image_matches(max_distance := max_distance) x WHERE dataset IS NULL OR dataset IN (x.dataset_a, x.dataset_b)
),
pairs AS (
    SELECT m.dataset_a, m.dataset_b, count(*) AS matched_pairs, count(DISTINCT m.image_a) AS images_a,
           count(DISTINCT m.image_b) AS images_b
    FROM m GROUP BY ALL
),
totals AS (
    SELECT i.dataset AS ds, count(*) AS n FROM images i GROUP BY ALL
)
SELECT p.dataset_a, p.dataset_b, p.matched_pairs, (p.images_a / ta.n)::DOUBLE AS share_a,
       (p.images_b / tb.n)::DOUBLE AS share_b,
       coalesce(max_distance, (SELECT s.value::INTEGER FROM settings s WHERE s.name = 'lineage_max_hamming'), 4)::INTEGER
           AS max_distance
FROM pairs p
JOIN totals ta ON ta.ds = p.dataset_a
JOIN totals tb ON tb.ds = p.dataset_b
ORDER BY p.matched_pairs DESC, p.dataset_a, p.dataset_b;
