/*
name: similar
question: Which datasets are nearest to a given dataset under a distance measure?
params:
  to VARCHAR                the dataset asked about
  measure VARCHAR = 'frechet'  distance measure (frechet, mmd, otdd, task2vec, meta, or an imported one)
  backbone VARCHAR = NULL   backbone of the embeddings compared (default: any; the smallest distance wins)
columns:
  rank BIGINT               1 = nearest
  dataset VARCHAR           the other dataset
  distance DOUBLE           lower is more alike
  backbone VARCHAR          backbone the distance was computed with ('' for none)
*/
CREATE OR REPLACE MACRO "similar"("to", measure := 'frechet', backbone := NULL) AS TABLE
WITH args AS (SELECT "to" AS who, measure AS how, backbone AS via),
pairs AS (
    SELECT CASE WHEN s.dataset_a = a.who THEN s.dataset_b ELSE s.dataset_a END AS other, s.value, s.backbone AS bb
    FROM similarities s, args a
    WHERE s.measure = a.how AND a.who IN (s.dataset_a, s.dataset_b) AND s.dataset_a <> s.dataset_b
      AND (a.via IS NULL OR s.backbone = a.via)
),
best AS (
    SELECT other, min(value) AS distance, arg_min(bb, value) AS bb FROM pairs GROUP BY other
)
SELECT row_number() OVER (ORDER BY distance, other) AS rank, other AS dataset, distance::DOUBLE AS distance,
       bb::VARCHAR AS backbone
FROM best ORDER BY rank;
