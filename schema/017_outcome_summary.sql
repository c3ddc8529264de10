-- 017_outcome_summary: best-source's outcome evidence, aggregated once per write instead of per call.
--
-- best_source (queries/best_source.sql) ranks sources by the mean of a target's selected outcomes
-- per (source, metric, architecture). Aggregating them on every call costs 60 ms at 10 million
-- rows (200k rows per target); this table holds that aggregate, computed by the same expressions,
-- so a call reads a few hundred rows. One row per evidence scope ('all', and 'own' or
-- 'published' by the rows' origin), target, source, metric and architecture. It is maintained
-- inside the writer's transaction by metadb.imports.outcome_summary.refresh (called by reselect,
-- which every outcome write runs): targets whose row count changed, or whose selection changed,
-- are recomputed. best_source with `by` (a per-setting ranking) still reads outcomes itself.

CREATE TABLE outcome_summary (
    scope         VARCHAR NOT NULL,   -- own (not from a published pack), published, or all (both, pooled)
    target        VARCHAR NOT NULL,
    source        VARCHAR NOT NULL,
    metric        VARCHAR NOT NULL,
    architecture  VARCHAR,
    alone         BOOLEAN NOT NULL,   -- the group's only scope, so it also answers evidence 'all'
    n             BIGINT NOT NULL,    -- selected outcome rows aggregated
    value         DOUBLE,             -- their mean
    std           DOUBLE,             -- their sample std
    setting       VARCHAR,            -- says when the rows pool runs of different hyperparameters
    origin        VARCHAR             -- where they came from (import paths shortened to file names)
);

CREATE TABLE outcome_summary_rows (  -- outcome rows per target when its summary was computed
    target  VARCHAR NOT NULL,
    rows    BIGINT NOT NULL
);

-- The summary rows of the given targets (all targets when NULL): the aggregate best_source used
-- to compute per call. An 'all' row is stored only for a group with both own and published
-- rows (rare), so the table stays about as large as the number of groups. Sorted by target, so
-- a call's scan skips the row groups of other targets.
CREATE MACRO outcome_summary_of(targets) AS TABLE
WITH sel AS (
    SELECT o.target, o.source, o.metric, o.architecture, o.value, o.selection IS NULL AS plain, o.hyperparameters,
           CASE WHEN coalesce(o.origin LIKE 'published:%', false) THEN 'published' ELSE 'own' END AS scope,
           CASE WHEN o.origin = 'import' OR o.origin IS NULL THEN 'import:' || coalesce(o.file, '?') ELSE o.origin END AS origin
    FROM outcomes o
    WHERE o.is_selected AND (targets IS NULL OR list_contains(targets, o.target))
),
mixed AS (
    SELECT s.target, s.source, s.metric, s.architecture FROM sel s GROUP BY ALL HAVING count(DISTINCT s.scope) > 1
),
scoped AS (
    SELECT * FROM sel
    UNION ALL
    SELECT s.* REPLACE ('all' AS scope) FROM sel s SEMI JOIN mixed m
        ON s.target = m.target AND s.source = m.source AND s.metric = m.metric
           AND s.architecture IS NOT DISTINCT FROM m.architecture
),
grouped AS (
    SELECT s.scope, s.target, s.source, s.metric, s.architecture, count(*) AS n, avg(s.value) AS value,
           stddev_samp(s.value) AS std,
           CASE WHEN min(coalesce(s.hyperparameters, '')) FILTER (WHERE s.plain)
                     <> max(coalesce(s.hyperparameters, '')) FILTER (WHERE s.plain)
                THEN 'pooled over different settings (rank per setting with --by)' END AS setting,
           regexp_replace(string_agg(DISTINCT s.origin, ', ' ORDER BY s.origin), 'import:[^,]*[/\\]', 'import:', 'g') AS origin
    FROM scoped s
    GROUP BY s.scope, s.target, s.source, s.metric, s.architecture
)
SELECT g.scope, g.target, g.source, g.metric, g.architecture,
       count(*) OVER (PARTITION BY g.target, g.source, g.metric, g.architecture) = 1 AS alone,
       g.n, g.value, g.std, g.setting, g.origin
FROM grouped g
ORDER BY g.target, g.source, g.metric, g.architecture, g.scope;

INSERT INTO outcome_summary SELECT * FROM outcome_summary_of(NULL);
INSERT INTO outcome_summary_rows SELECT target, count(*) FROM outcomes GROUP BY target;
