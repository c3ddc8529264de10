"""Which way is better for an outcome metric: declared once, in the store's `metric_directions` table.

AUC, accuracy and F1 are better high; loss, error and ECE low. The table (seeded by migration
007) and its SQL macro `metric_higher_is_better(metric)` are the one registry: best-source reads it
in SQL, rankings and regret read it here. A metric nobody declared has no direction, and callers
refuse to rank it rather than assume one.
"""

from __future__ import annotations

from metadb.errors import MetadbError


def higher_is_better(con, metric: str) -> bool | None:
    """True or False as declared for `metric` (`test_auc` reads as `auc`), None when undeclared."""
    return con.execute("SELECT metric_higher_is_better(?)", [metric]).fetchone()[0]


def require(con, metric: str) -> bool:
    """The declared direction, or a one-line error saying how to declare it."""
    direction, key = con.execute("SELECT metric_higher_is_better(?), metric_key(?)", [metric, metric]).fetchone()
    if direction is None:
        raise MetadbError(undeclared(metric), DECLARE.format(metric=key))
    return direction


def undeclared(metric: str) -> str:
    return f"outcome metric {metric!r} has no declared direction (is higher better?)"


DECLARE = ("declare it once: metadb sql --write \"INSERT INTO metric_directions VALUES ('{metric}', true, NULL)\" "
           "(false when lower is better)")


def oriented(values, higher: bool):
    """Values turned so that larger is better (negated for a lower-is-better metric)."""
    return values if higher else -values
