/*
name: similarity_matrix
question: What is the distance between every pair of datasets under a measure, in one feature space (both orientations, self included)?
params:
  measure VARCHAR = 'frechet'  distance measure
  backbone VARCHAR = NULL   backbone identity or architecture name; NULL = any. One identity answers: the one with the most pairs
columns:
  dataset_a VARCHAR         row dataset
  dataset_b VARCHAR         column dataset
  distance DOUBLE           lower is more alike
  backbone VARCHAR          backbone identity ('' for none)
*/
CREATE OR REPLACE MACRO similarity_matrix(measure := 'frechet', backbone := NULL) AS TABLE
WITH args AS (SELECT measure AS how, backbone AS via),
rows_ AS (
    SELECT s.dataset_a, s.dataset_b, s.value, s.backbone AS bb, s.computed_at FROM similarities s, args x
    WHERE s.measure = x.how
      AND (x.via IS NULL OR s.backbone = x.via OR s.backbone IN (SELECT identity FROM backbones WHERE arch = x.via))
),
space AS (
    SELECT r.bb FROM rows_ r GROUP BY r.bb ORDER BY count(*) DESC, max(r.computed_at) DESC, r.bb LIMIT 1
),
sym AS (
    SELECT r.dataset_a AS a, r.dataset_b AS b, r.value, r.bb FROM rows_ r WHERE r.bb = (SELECT bb FROM space)
    UNION
    SELECT r.dataset_b, r.dataset_a, r.value, r.bb FROM rows_ r WHERE r.bb = (SELECT bb FROM space)
)
SELECT a AS dataset_a, b AS dataset_b, min(value)::DOUBLE AS distance, any_value(bb)::VARCHAR AS backbone
FROM sym GROUP BY a, b ORDER BY a, b;
