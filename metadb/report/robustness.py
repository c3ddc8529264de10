"""The report's robustness section: AUC against confounder rate per source, clean and confounded.

Shown when the store holds `metadb confound` outcomes; numbers from `robustness(target)` (the
`source_robustness` macro plus the permutation test between sources).
"""

from __future__ import annotations

from html import escape

from metadb import api
from metadb.report import charts
from metadb.report.html import Section, code, figure, slug, table


def bases(ctx) -> list[str]:
    """Targets with confounded variants (all of them, or the report's target)."""
    rows = ctx.sql("""SELECT DISTINCT json_extract_string(params, '$.base') FROM datasets
                      WHERE layout = 'confound' ORDER BY 1""")[1]
    found = [r[0] for r in rows if r[0]]
    return [t for t in found if t == ctx.target] if ctx.target else found


def section(ctx) -> Section | None:
    parts = []
    for t in bases(ctx):
        try:
            cols, rows = api.query("robustness", ctx.db, target=t)
        except Exception:  # no finished outcome yet for this target's variants
            continue
        at = {c: i for i, c in enumerate(cols)}
        kinds = sorted({r[at["kind"]] for r in rows})
        for kind in kinds:
            mine = [r for r in rows if r[at["kind"]] == kind]
            lines: dict[str, list[tuple[float, float, float, float, float]]] = {}
            for r in mine:
                lines.setdefault(r[at["source"]], []).append(
                    tuple(r[at[c]] for c in ("rate", "auc_clean", "auc_clean_std", "auc_confounded",
                                             "auc_confounded_std")))
            svg = charts.robustness(lines, f"{t}: {kind}")
            parts.append(f'<h3 id="robustness-{slug(t)}-{slug(kind)}">{escape(t)}: {escape(kind)}</h3>'
                         '<div class="pair">'
                         + figure(svg, f"AUC against the share of training positives carrying the {escape(kind)} "
                                       "confounder, per source: solid on the clean test set, dashed with the "
                                       "confounder on the test negatives; bars are std over folds.")
                         + table(cols, mine, f"{code(f'robustness({t!r})')}: mean and std over folds; p-value of "
                                             "the permutation t-test between sources (Python, scipy).",
                                 f"robustness-{slug(t)}-{slug(kind)}")
                         + "</div>")
    if not parts:
        return None
    ctx.sources["Robustness"] = "robustness(target): outcomes auc_clean and auc_confounded_negatives of metadb confound"
    return Section("robustness", "Robustness to shortcuts", "".join(parts))
