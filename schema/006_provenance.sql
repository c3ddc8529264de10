-- 006_provenance: where every outcome, score and distance came from, and how informed a prediction is.
-- origin: 'import' (a user's file; see `file`), 'published:<pack>@<version>' (an evidence pack
-- shipped with metadb), 'run' (metadb's own fine-tuning). Rows stored before 006 were imports.

ALTER TABLE outcomes ADD COLUMN origin VARCHAR DEFAULT 'import';
ALTER TABLE scores ADD COLUMN origin VARCHAR DEFAULT 'import';
ALTER TABLE similarities ADD COLUMN origin VARCHAR DEFAULT 'import';
UPDATE similarities SET origin = 'computed' WHERE source = 'computed';

-- A prediction is only as good as what was known about its pair: how many of the predictor's
-- features were known (not imputed) for it, and which (JSON list).
ALTER TABLE predictions ADD COLUMN n_features_known INTEGER;
ALTER TABLE predictions ADD COLUMN features_known VARCHAR;
