-- 009_metric_flags_and_lineage: why a stored score may not mean what its name promises, and the
-- near-duplicate threshold that lineage queries use.
-- scores.flags: e.g. ['saturated'] when the features interpolate the target (rank >= N - 1, as
-- when N <= D), where H-score is C - 1 and SFDA 1.0 for any features; params says why.
ALTER TABLE scores ADD COLUMN flags VARCHAR[];

-- settings: named values that queries read, seen with `SELECT * FROM settings` and changed with
-- `metadb sql --write "UPDATE settings SET value = '6' WHERE name = 'lineage_max_hamming'"`.
CREATE TABLE settings (
    name     VARCHAR PRIMARY KEY,
    value    VARCHAR NOT NULL,
    meaning  VARCHAR
);
INSERT INTO settings VALUES ('lineage_max_hamming', '4',
    'two images are the same picture when their 64-bit pHashes differ in at most this many bits '
    || '(image_matches, overlap, best_source exclude_lineage); JPEG recompression moves a few bits');
