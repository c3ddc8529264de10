/*
name: image_matches
question: Which images of different datasets are the same picture (perceptual hashes within a Hamming distance), and how far apart are their hashes?
params:
  dataset VARCHAR = NULL        only pairs with an image of this dataset, which is then dataset_a (default: all pairs)
  max_distance INTEGER = NULL   most differing pHash bits for a match, 0..20 (default: settings 'lineage_max_hamming', 4)
columns:
  dataset_a VARCHAR             dataset of the first image
  image_a VARCHAR               its image id
  path_a VARCHAR                its path under the dataset root
  dataset_b VARCHAR             dataset of the second image
  image_b VARCHAR               its image id
  path_b VARCHAR                its path under the dataset root
  distance INTEGER              differing bits between the two pHashes (0 = identical hash)
*/
CREATE OR REPLACE MACRO image_matches(dataset := NULL, max_distance := NULL) AS TABLE
-- Pigeonhole band join: split the 64-bit hash into t + 1 bands; two hashes within Hamming t agree
-- exactly on at least one band, so an equi-join on (band, band value) finds every match, and
-- bit_count(xor) keeps the true ones. Much faster than comparing all N x M pairs.
-- Degenerate hashes are ignored: a flat image hashes to 0 (black) or 1 << 63 (any other grey;
-- only the DC coefficient is non-zero), and a hash within t bits of those cannot be told apart
-- from a flat image at this threshold (flat images, single gradients).
WITH t AS (
    SELECT coalesce(max_distance, (SELECT s.value::INTEGER FROM settings s WHERE s.name = 'lineage_max_hamming'), 4)
           AS t
),
checked AS (
    SELECT CASE WHEN t.t BETWEEN 0 AND 20 THEN t.t
                ELSE error('max_distance: ' || t.t || '; expected 0..20 differing bits of 64 (default 4)') END AS t
    FROM t
),
hashes AS (
    SELECT i.dataset AS ds, i.image_id AS id, i.path, i.phash AS h FROM images i, checked c
    WHERE i.phash IS NOT NULL
      AND bit_count(xor(i.phash, 0::BIGINT)) > c.t
      AND bit_count(xor(i.phash, (-9223372036854775807 - 1)::BIGINT)) > c.t
),
bands AS (  -- band b covers bits [lo, hi); t + 1 bands of 64 / (t + 1) bits (t = 0: the whole hash)
    SELECT r.b, (r.b * 64) // (c.t + 1) AS lo, ((r.b + 1) * 64) // (c.t + 1) AS hi
    FROM checked c, range(0, 21) r(b) WHERE r.b <= c.t
),
keyed AS (
    SELECT h.ds, h.id, h.path, h.h, bd.b,
           CASE WHEN bd.hi - bd.lo = 64 THEN h.h ELSE (h.h >> bd.lo) & ((1::BIGINT << (bd.hi - bd.lo)) - 1) END AS key
    FROM hashes h, bands bd
),
side_a AS (SELECT k.* FROM keyed k WHERE dataset IS NULL OR k.ds = dataset),
side_b AS (SELECT k.* FROM keyed k WHERE dataset IS NULL OR k.ds <> dataset)
SELECT DISTINCT a.ds AS dataset_a, a.id AS image_a, a.path AS path_a, b.ds AS dataset_b, b.id AS image_b,
       b.path AS path_b, bit_count(xor(a.h, b.h))::INTEGER AS distance
FROM side_a a JOIN side_b b ON a.b = b.b AND a.key = b.key AND a.ds <> b.ds, checked c
WHERE (dataset IS NOT NULL OR a.ds < b.ds) AND bit_count(xor(a.h, b.h)) <= c.t
ORDER BY dataset_a, dataset_b, distance, image_a, image_b;
