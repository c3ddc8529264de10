/*
name: similar
question: Which datasets are nearest to a given dataset under a distance measure, in one feature space?
params:
  to VARCHAR                the dataset asked about
  measure VARCHAR = 'frechet'  distance measure (frechet, mmd, mixture-w2, otdd, task2vec, meta, or an imported one)
  backbone VARCHAR = NULL   backbone identity (resnet50.3fa9c1d2) or architecture name; NULL = any. Distances from two identities are never ranked together: the identity with the most pairs for this dataset answers
columns:
  rank BIGINT               1 = nearest
  dataset VARCHAR           the other dataset
  distance DOUBLE           lower is more alike
  backbone VARCHAR          backbone identity the distance was computed in ('' for none)
*/
CREATE OR REPLACE MACRO "similar"("to", measure := 'frechet', backbone := NULL) AS TABLE
WITH args AS (SELECT "to" AS who, measure AS how, backbone AS via),
pairs AS (
    SELECT CASE WHEN s.dataset_a = a.who THEN s.dataset_b ELSE s.dataset_a END AS other, s.value, s.backbone AS bb,
           s.computed_at
    FROM similarities s, args a
    WHERE s.measure = a.how AND a.who IN (s.dataset_a, s.dataset_b) AND s.dataset_a <> s.dataset_b
      AND (a.via IS NULL OR s.backbone = a.via OR s.backbone IN (SELECT identity FROM backbones WHERE arch = a.via))
),
space AS (
    SELECT bb FROM pairs GROUP BY bb ORDER BY count(DISTINCT other) DESC, max(computed_at) DESC, bb LIMIT 1
),
best AS (
    SELECT other, min(value) AS distance, any_value(bb) AS bb FROM pairs WHERE bb = (SELECT bb FROM space)
    GROUP BY other
)
SELECT row_number() OVER (ORDER BY distance, other) AS rank, other AS dataset, distance::DOUBLE AS distance,
       bb::VARCHAR AS backbone
FROM best ORDER BY rank;
