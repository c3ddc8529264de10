"""The report's figures: matplotlib drawn to inline SVG, text kept as text (searchable, small).

Colour maps are perceptually uniform with monotone lightness (viridis, cividis), so every figure
reads in greyscale; evidence tiers differ by marker shape as well as colour.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import re
from html import escape

import numpy as np

MISSING = "no value stored"


# Text stays text in the SVG; ids are deterministic; applied per figure, never to the caller's rcParams.
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "metadb-report", "font.size": 9}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def styled(draw):
    """Run a figure function under the report's matplotlib settings."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with _pyplot().rc_context(STYLE):
            return draw(*args, **kwargs)
    return wrapper


_figures = itertools.count(1)


def to_svg(fig, alt: str) -> str:
    """The figure as an <svg> element with a role and a <title> (its alt text), at its natural size
    (the page's CSS shrinks it to fit narrow screens).

    Every id gets a per-figure prefix: many figures share one page, and matplotlib's clip-path and
    hatch ids (and our cell ids) would otherwise collide between them.
    """
    plt = _pyplot()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)
    prefix = f"f{next(_figures)}-"
    svg = re.sub(r'(id="|url\(#|href="#)', lambda m: m.group(1) + prefix, svg)
    return svg.replace(">", f' role="img" aria-label="{escape(alt)}"><title>{escape(alt)}</title>', 1)


def cluster_order(names: list[str], d: np.ndarray) -> list[int]:
    """Average-linkage leaf order, as `metadb similarity --plot` draws it (identity for 2 or fewer)."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    if len(names) <= 2:
        return list(range(len(names)))
    return [int(i) for i in leaves_list(linkage(squareform(d, checks=False), "average"))]


@styled
def heatmap(names: list[str], d: np.ndarray, title: str, label: str = "distance") -> str:
    """A distance heatmap, one rectangle per cell (id cell-i-j) with its value as a hover <title>.

    `d` is already in display order; NaN cells (pairs not stored) are hatched and say so on hover.
    """
    plt = _pyplot()
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    n = len(names)
    finite = d[np.isfinite(d)]
    norm = Normalize(float(finite.min()) if finite.size else 0.0, float(finite.max()) if finite.size else 1.0)
    cmap = plt.get_cmap("viridis_r")
    side = min(11.0, 2.8 + 0.42 * n)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), layout="constrained")
    tips = {}
    for i in range(n):
        for j in range(n):
            v = d[i, j]
            ok = math.isfinite(v)
            r = Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=cmap(norm(v)) if ok else "white",
                          hatch=None if ok else "///", edgecolor="white" if ok else "0.6", linewidth=0.5)
            r.set_gid(f"cell-{i}-{j}")
            ax.add_patch(r)
            tips[f"cell-{i}-{j}"] = f"{names[i]} × {names[j]}: " + (f"{v:.4g}" if ok else MISSING)
            if ok and n <= 14:
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7,
                        color="white" if norm(v) > 0.5 else "black")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks(range(n), names, rotation=60, ha="right")
    ax.set_yticks(range(n), names)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=label, shrink=0.8)
    ax.set_title(title)
    svg = to_svg(fig, f"Heatmap of {title}: {n} by {n} datasets, lower is more alike")
    return _add_tooltips(svg, tips)


def _add_tooltips(svg: str, tips: dict[str, str]) -> str:
    """Give each cell group a <title> child: browsers show it on hover, screen readers read it."""
    return re.sub(r'<g id="(f\d+-)(cell-\d+-\d+)">', lambda m: f'<g id="{m.group(1)}{m.group(2)}" class="cell">'
                  f'<title>{escape(tips[m.group(2)])}</title>', svg)


@styled
def ranked(sources: list[str], values: list[float], stds: list[float | None], evidence: list[str],
           metric: str, title: str) -> str:
    """Sources best first: a point per source, whiskers of one std over folds, marker shape per evidence.

    Points, not bars from zero: outcomes such as AUC crowd near 1, where bars would all look equal.
    """
    plt = _pyplot()
    styles = {"outcome": ("o", "#1f1f1f", "observed outcome"), "predicted": ("^", "#777777", "predicted")}
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.28 * len(sources)), layout="constrained")
    y = np.arange(len(sources))
    for kind, (marker, colour, label) in styles.items():
        idx = [k for k, e in enumerate(evidence) if e == kind]
        if not idx:
            continue
        err = [stds[k] if stds[k] is not None and math.isfinite(stds[k]) else 0.0 for k in idx]
        ax.errorbar([values[k] for k in idx], y[idx], xerr=err, fmt=marker, color=colour, ecolor="0.45",
                    capsize=3, markersize=6, label=label, linestyle="none")
    ax.set_yticks(y, sources)
    ax.set_ylim(len(sources) - 0.5, -0.5)
    ax.grid(axis="x", color="0.88")
    ax.set_xlabel(f"{metric} (higher is better; whiskers: ±1 std over folds or runs)")
    ax.legend(loc="lower left", fontsize=8, frameon=False, bbox_to_anchor=(0, 1.0), ncol=2)
    ax.set_title(title, loc="right")
    return to_svg(fig, f"{title}: sources ranked by {metric}, best {sources[0]} at {values[0]:.4g}")


@styled
def agreement(metrics: list[str], targets: list[str], tau: np.ndarray, title: str) -> str:
    """Weighted tau per metric (rows) and target (columns, the mean last), values written in."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2.2 + 0.55 * len(targets), 1.2 + 0.42 * len(metrics)), layout="constrained")
    masked = np.ma.masked_invalid(tau)
    im = ax.imshow(masked, cmap="cividis", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(metrics)):
        for j in range(len(targets)):
            v = tau[i, j]
            ax.text(j, i, "–" if not math.isfinite(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if math.isfinite(v) and v > 0.2 else "white" if math.isfinite(v) else "black",
                    fontweight="bold" if targets[j] == "(mean)" else "normal")
    ax.set_xticks(range(len(targets)), targets, rotation=60, ha="right")
    ax.set_yticks(range(len(metrics)), metrics)
    if "(mean)" in targets:
        ax.axvline(targets.index("(mean)") - 0.5, color="white", linewidth=2)
    fig.colorbar(im, ax=ax, label="weighted Kendall τ", shrink=0.9)
    ax.set_title(title)
    return to_svg(fig, f"{title}: weighted Kendall tau of {len(metrics)} metrics on {len(targets) - 1} targets "
                       "and their mean")


@styled
def curves(panels: dict[str, list[tuple[str, list[float], list[float]]]], ylabel: str, title: str) -> str:
    """Learning curves: one panel per target, one line per trial (label, epochs, values)."""
    plt = _pyplot()
    n = len(panels)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False, layout="constrained")
    styles = ["-", "--", ":", "-."]
    for ax, (target, lines) in zip(axes.flat, panels.items()):
        for k, (label, x, v) in enumerate(lines):
            ax.plot(x, v, styles[k % 4], color=plt.get_cmap("viridis")(k / max(1, len(lines) - 1) * 0.85),
                    label=label, linewidth=1.2)
        ax.set_title(target, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if len(lines) <= 6:
            ax.legend(fontsize=7, frameon=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return to_svg(fig, f"{title}: {ylabel} per epoch for {sum(len(v) for v in panels.values())} trials on "
                       f"{n} targets")


@styled
def robustness(lines: dict[str, list[tuple[float, float, float, float, float]]], title: str) -> str:
    """AUC vs confounder rate per source: (rate, clean, clean std, confounded, confounded std) points."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.0), layout="constrained")
    for k, (source, pts) in enumerate(sorted(lines.items())):
        pts = sorted(pts)
        colour = plt.get_cmap("viridis")(k / max(1, len(lines) - 1) * 0.85)
        x = [p[0] for p in pts]
        for col, style, what in ((1, "-o", "clean"), (3, "--s", "confounded negatives")):
            ax.errorbar(x, [p[col] for p in pts], yerr=[p[col + 1] or 0 for p in pts], fmt=style, color=colour,
                        markersize=4, capsize=2, linewidth=1.2, label=f"{source}, {what}")
    ax.set_xlabel("share of training positives confounded")
    ax.set_ylabel("test AUC")
    ax.set_title(title)
    ax.legend(fontsize=7, frameon=False)
    return to_svg(fig, f"{title}: AUC against confounder rate for {len(lines)} sources, clean and confounded")
