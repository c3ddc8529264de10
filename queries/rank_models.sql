/*
name: rank_models
question: Which registered pretrained models score best on a target under a transferability metric?
params:
  target VARCHAR            the target dataset
  metric VARCHAR = 'logme'  the score to rank by (higher is better)
columns:
  rank BIGINT               1 = best
  model VARCHAR             registered model
  architecture VARCHAR      its timm architecture
  source_dataset VARCHAR    what it was pretrained on
  value DOUBLE              the score
  n BIGINT                  target images scored
  flags VARCHAR[]           why the score may carry no ranking information ('saturated', 'unstable'; reason in scores.params)
*/
CREATE OR REPLACE MACRO rank_models(target, metric := 'logme') AS TABLE
WITH args AS (SELECT target AS tgt, metric AS how)
SELECT row_number() OVER (ORDER BY s.value DESC, m.name) AS rank, m.name AS model, m.architecture,
       m.source_dataset, s.value::DOUBLE AS value, s.n::BIGINT AS n,
       s.flags
FROM scores s JOIN models m ON m.name = s.source, args a
WHERE s.target = a.tgt AND s.metric = a.how
ORDER BY rank;
