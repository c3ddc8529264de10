"""Which run answers for a pair: a property of all stored runs, recomputed after every change.

A run stored with a selection rule (`min:val_loss`, `max:val_auc`) competes with every other
stored run of the same (source, target, fold, architecture, metric): the finished run with the
lowest (highest) selection value is `is_selected`, ties broken by file and row. `reselect` runs
inside the writer's transaction after each import, and metadb's own fine-tuning runs use the
same rule by storing `selection` and `selection_value` on their outcome rows and calling it, so
a grid imported in two batches, or half imported and half run by metadb, selects as one grid.
Rows without a rule (long, matrix and folds files) are each ground truth and are left alone.
"""

from __future__ import annotations

from metadb.errors import MetadbError
from metadb.imports import outcome_summary

GROUP = "source, target, coalesce(fold, -1), coalesce(architecture, ''), metric"


def parse_select(select: str | None) -> tuple[str, str] | None:
    if select is None:
        return None
    how, _, column = select.partition(":")
    if how not in ("min", "max") or not column:
        raise MetadbError(f"--select {select!r}: expected min:COLUMN or max:COLUMN, e.g. min:val_loss")
    return how, column


def reselect(con) -> list[str]:
    """Recompute `is_selected` for every run stored with a rule; refuse a group with two rules.

    Then brings best_source's outcome summary up to date (changed targets and those whose
    selection changed), in the same transaction. Returns a note on how many groups have a
    selected run (for the import's summary).
    """
    mixed = con.execute(f"""
        SELECT source, target, fold, architecture, metric, list(DISTINCT selection ORDER BY selection)
        FROM outcomes WHERE selection IS NOT NULL GROUP BY {GROUP}, fold, architecture
        HAVING count(DISTINCT selection) > 1 LIMIT 1""").fetchone()
    if mixed:
        s, t, fold, arch, metric, rules = mixed
        where = "".join(f", {k} {v}" for k, v in (("fold", fold), ("architecture", arch)) if v is not None)
        raise MetadbError(f"runs of {s}->{t} ({metric}{where}) would be selected by two rules: {' and '.join(rules)}",
                          "import every batch of one grid with the same --select")
    reselected = con.execute(f"""
        UPDATE outcomes SET is_selected = r.best
        FROM (SELECT rowid AS rid,
                     row_number() OVER (PARTITION BY {GROUP}
                                        ORDER BY (selection_value IS NOT NULL
                                                  AND (status IS NULL OR upper(status) = 'FINISHED')) DESC,
                                                 CASE WHEN selection LIKE 'max:%' THEN -selection_value
                                                      ELSE selection_value END,
                                                 file, file_row, run_id) = 1
                     AND selection_value IS NOT NULL AND (status IS NULL OR upper(status) = 'FINISHED') AS best
              FROM outcomes WHERE selection IS NOT NULL) r
        WHERE outcomes.rowid = r.rid AND outcomes.is_selected IS DISTINCT FROM r.best
        RETURNING outcomes.target""").fetchall()
    outcome_summary.refresh(con, {t for (t,) in reselected})
    groups = con.execute(f"""SELECT count(DISTINCT ({GROUP})) FILTER (WHERE is_selected), count(DISTINCT ({GROUP}))
                             FROM outcomes WHERE selection IS NOT NULL""").fetchone()
    if not groups[1]:
        return []
    note = f"selection: {groups[0]} of {groups[1]} stored run groups (source, target, fold, architecture) have a selected run"
    return [note + ("" if groups[0] == groups[1] else "; the others have no finished run with the selection value")]
