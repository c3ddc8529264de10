/*
name: similarity_matrix
question: What is the distance between every pair of datasets under a measure (both orientations, self included)?
params:
  measure VARCHAR = 'frechet'  distance measure
  backbone VARCHAR = NULL   backbone of the embeddings compared (default: any)
columns:
  dataset_a VARCHAR         row dataset
  dataset_b VARCHAR         column dataset
  distance DOUBLE           lower is more alike
  backbone VARCHAR          backbone ('' for none)
*/
CREATE OR REPLACE MACRO similarity_matrix(measure := 'frechet', backbone := NULL) AS TABLE
WITH args AS (SELECT measure AS how, backbone AS via),
sym AS (
    SELECT s.dataset_a AS a, s.dataset_b AS b, s.value, s.backbone AS bb FROM similarities s, args x
    WHERE s.measure = x.how AND (x.via IS NULL OR s.backbone = x.via)
    UNION
    SELECT s.dataset_b, s.dataset_a, s.value, s.backbone FROM similarities s, args x
    WHERE s.measure = x.how AND (x.via IS NULL OR s.backbone = x.via)
)
SELECT a AS dataset_a, b AS dataset_b, min(value)::DOUBLE AS distance, arg_min(bb, value)::VARCHAR AS backbone
FROM sym GROUP BY a, b ORDER BY a, b;
