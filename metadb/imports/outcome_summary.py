"""Keep `outcome_summary` (migration 017) equal to what best_source would aggregate from `outcomes`.

best_source reads the summary instead of aggregating up to millions of outcome rows per call.
`refresh` runs inside the writer's transaction (reselect calls it after every outcome write), so
the summary commits or rolls back with the rows it summarises. Only targets whose outcome row
count changed, or whose selection changed, are recomputed: one pass over the `target` column
finds them, and the aggregation reads only their rows.
"""

from __future__ import annotations

from collections.abc import Iterable


def changed_targets(con) -> list[str]:
    """Targets whose stored row count differs from the count their summary was computed from."""
    return [r[0] for r in con.execute("""
        SELECT coalesce(o.target, s.target) FROM (SELECT target, count(*) AS rows FROM outcomes GROUP BY target) o
        FULL JOIN outcome_summary_rows s ON o.target = s.target
        WHERE o.rows IS DISTINCT FROM s.rows""").fetchall()]


def refresh(con, also: Iterable[str] = ()) -> int:
    """Recompute the summary of changed targets and of `also` (targets whose selection changed).

    Returns how many targets were recomputed.
    """
    targets = sorted(set(changed_targets(con)) | set(also))
    if not targets:
        return 0
    con.execute("DELETE FROM outcome_summary WHERE list_contains(?, target)", [targets])
    con.execute("DELETE FROM outcome_summary_rows WHERE list_contains(?, target)", [targets])
    con.execute("INSERT INTO outcome_summary SELECT * FROM outcome_summary_of(?::VARCHAR[])", [targets])
    con.execute("""INSERT INTO outcome_summary_rows SELECT target, count(*) FROM outcomes
                   WHERE list_contains(?, target) GROUP BY target""", [targets])
    return len(targets)


def refresh_all(con) -> int:
    """Recompute every target's summary: after hand-written SQL, which may change values in place."""
    targets = [r[0] for r in con.execute("SELECT target FROM outcomes UNION SELECT target FROM outcome_summary_rows")
               .fetchall()]
    return refresh(con, targets)
