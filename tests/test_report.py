"""`metadb report`: the page generated from the published evidence packs, opened in a real headless
Chromium (Debian's package, unpacked by `make browser` into .cache/chromium) driven by Playwright.

No test here skips: without a browser the browser tests fail with a one-line reason.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from metadb import api
from metadb.cli import cli
from metadb.published.importer import import_packs

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "chromium"
SCREENSHOT = ROOT / ".cache" / "report-screenshot.png"


def chromium() -> tuple[str, dict[str, str]]:
    """(executable, environment) of a headless Chromium: $METADB_CHROMIUM, make browser's copy, or the system's."""
    local = CACHE / "usr/lib/chromium/chromium-headless-shell"
    for candidate in (os.environ.get("METADB_CHROMIUM"), local, shutil.which("chromium-headless-shell"),
                      "/usr/lib/chromium/chromium-headless-shell", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            libs = [CACHE / p for p in ("usr/lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu/pulseaudio",
                                        "usr/lib/chromium")]
            path = ":".join([*map(str, libs), os.environ.get("LD_LIBRARY_PATH", "")])
            return str(candidate), {**os.environ, "LD_LIBRARY_PATH": path}
    pytest.fail("no headless Chromium: run `make browser` (Debian's chromium-headless-shell into .cache/chromium) "
                "or set METADB_CHROMIUM", pytrace=False)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A store holding both published packs (cats-scans and Juodelyte et al. 2024)."""
    db = tmp_path_factory.mktemp("report") / "published.duckdb"
    for _ in import_packs(db):
        pass
    return db


@pytest.fixture(scope="module")
def page_file(published: Path) -> Path:
    from metadb.report import write

    path, size = write(published.with_name("report.html"), published)
    assert size < 3_000_000, f"report is {size / 1e6:.1f} MB, more than a supplement should carry"
    return path


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'", pytrace=False)
    executable, env = chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"], env=env)
        yield b
        b.close()


@pytest.fixture(scope="module")
def opened(browser, page_file: Path):
    """The report opened from disk, with every console message, page error and request recorded."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    seen = {"console": [], "errors": [], "requests": []}
    page.on("console", lambda m: seen["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.goto(page_file.as_uri(), wait_until="load")
    yield page, seen
    page.close()


def test_page_loads_from_disk_without_errors_or_network(opened, page_file):
    page, seen = opened
    assert [m for m in seen["console"] if m[0] in ("error", "warning")] == []
    assert seen["errors"] == []
    assert seen["requests"] == [page_file.as_uri()]  # the file itself, nothing else: no CDN, no fonts
    headings = page.locator("h2").all_inner_texts()
    assert headings == ["Datasets", "Similarity", "Best source per target", "Metric agreement", "Provenance"]


def test_best_source_for_chest_lists_imagenet_first_as_the_query_does(opened, published):
    page, _ = opened
    table = page.locator("#best-source-chest")
    header = table.locator("thead th").all_inner_texts()
    cols, rows = api.query("best_source", published, target="chest")
    assert header == cols  # whatever columns the query returns, in its order
    sources = table.locator(f"tbody td:nth-child({cols.index('source') + 1})").all_inner_texts()
    assert sources[0] == "imagenet"
    assert sources == [r[cols.index("source")] for r in rows]
    assert table.locator("caption").inner_text().startswith("Best source for chest")


def test_heatmap_has_n_squared_cells_with_stored_values_on_hover(opened, published):
    page, _ = opened
    _, rows = api.sql("SELECT DISTINCT dataset_a FROM similarities WHERE measure = 'expert' UNION "
                      "SELECT DISTINCT dataset_b FROM similarities WHERE measure = 'expert'", published)
    n = len(rows)
    figure = page.locator("#similarity-expert + figure")
    assert figure.locator("svg g.cell").count() == n * n == 81
    titles = figure.locator("svg g.cell > title").all_text_contents()
    (expert,), = api.sql("SELECT value FROM similarities WHERE measure = 'expert' AND "
                         "dataset_a = 'chest' AND dataset_b = 'isic'", published)[1]
    assert f"chest × isic: {expert:.4g}" in titles and f"isic × chest: {expert:.4g}" in titles
    assert "chest × kimia: 3" in titles
    missing = [t.split(":")[0].split(" × ") for t in titles if t.endswith("no value stored")]
    assert sum(a != b for a, b in missing) == 2 * 15  # the 15 pairs no expert rated, both orientations
    assert sum(a == b for a, b in missing) == 6  # experts rated only the three targets against themselves
    assert figure.locator("svg[role=img] > title").count() == 1  # alt text


def test_clicking_a_column_header_sorts_the_table(opened):
    page, _ = opened
    table = page.locator("#best-source-chest")
    value = table.locator("thead th", has_text="value")
    col = table.locator("thead th").all_inner_texts().index("value") + 1
    values = lambda: [float(v) for v in table.locator(f"tbody td:nth-child({col})").all_inner_texts()]  # noqa: E731
    assert values() == sorted(values(), reverse=True)  # best first, as the query ranks
    value.locator("button").click()
    assert value.get_attribute("aria-sort") == "ascending"
    assert values() == sorted(values()) and values()[-1] == pytest.approx(0.9867, abs=1e-4)
    value.locator("button").click()
    assert value.get_attribute("aria-sort") == "descending" and values() == sorted(values(), reverse=True)
    name = page.locator("#datasets-table thead th", has_text="name").first
    name.locator("button").click()
    names = page.locator("#datasets-table tbody td:nth-child(1)").all_inner_texts()
    assert names == sorted(names) and len(names) == 23


def test_renders_at_phone_width_without_horizontal_scrolling(browser, page_file):
    page = browser.new_page(viewport={"width": 375, "height": 740})
    page.goto(page_file.as_uri())
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.evaluate("document.body.scrollWidth") <= 375
    widest = page.evaluate("Math.max(...Array.from(document.querySelectorAll('.plot svg'), "
                           "s => s.getBoundingClientRect().right))")
    assert widest <= 375  # figures shrink to fit; wide tables scroll inside their own box
    page.close()


def test_full_page_screenshot_for_a_person(opened, capsys):
    page, _ = opened
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    from PIL import Image

    width, height = Image.open(SCREENSHOT).size
    assert width == 1280 and height > 5000
    with capsys.disabled():
        print(f"\nreport screenshot: {SCREENSHOT} ({width}x{height})")


def test_one_target_view_and_a_one_line_error_for_an_unknown_target(runner, published, tmp_path):
    out = tmp_path / "chest.html"
    result = runner.invoke(cli, ["report", "--out", str(out), "--target", "chest", "--db", str(published)])
    assert result.exit_code == 0, result.output
    assert f"report written to {out}" in result.output
    html = out.read_text()
    assert 'id="best-source-chest"' in html and 'id="best-source-isic"' not in html
    assert "Metric agreement" not in html  # chest has outcomes but no scores
    result = runner.invoke(cli, ["report", "--out", str(tmp_path / "x.html"), "--target", "nope", "--db",
                                 str(published)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: target 'nope' is not in the store") and "Traceback" not in result.output
    assert not (tmp_path / "x.html").exists()


def test_sections_appear_only_with_their_data(runner, db, tmp_path):
    api.migrate(db)
    from metadb.report import build

    html = build(db)
    assert re.findall(r"<h2[^>]*>([^<]*)</h2>", html) == ["Provenance"]


def test_heatmap_order_is_similarity_plot_order(db, tmp_path):
    """The report clusters a complete distance matrix in the order `metadb similarity --plot` draws."""
    import matplotlib

    from metadb.outcomes import import_similarities
    from metadb.report import build
    from metadb.similarity import plot

    names = ["chest", "isic", "kimia", "stl10", "textures"]
    d = [[0, 4, 1, 9, 8], [4, 0, 5, 7, 6], [1, 5, 0, 9, 9], [9, 7, 9, 0, 2], [8, 6, 9, 2, 0]]
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,distance\n" + "".join(f"{names[i]},{names[j]},{d[i][j]}\n"
                                              for i in range(5) for j in range(i, 5)))
    import_similarities(db, str(csv), "expert")
    cols, rows = api.query("similarity_matrix", db, measure="expert")
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        plot([r for r in rows if r[0] <= r[1]], tmp_path / "plot.svg", "expert")
    ticks = re.findall(r'<g id="ytick_\d+">.*?<text[^>]*>([^<]+)</text>', (tmp_path / "plot.svg").read_text(), re.S)
    drawn = [t for t in ticks if t in names]  # the heatmap's row labels, not the colour bar's
    html = build(db)
    diagonal = [re.search(rf'cell-{i}-{i}" class="cell"><title>(\S+) ×', html).group(1) for i in range(5)]
    assert diagonal == drawn and sorted(drawn) == names and drawn != names


def test_demo_ends_with_a_report_beside_its_data(db, tmp_path, capsys):
    from metadb.commands.demo import demo_report

    api.migrate(db)
    demo_report(db, tmp_path / "demo-data")
    out = tmp_path / "demo-report.html"
    assert out.read_text().startswith("<!doctype html>")
    assert f"report of the store written to {out}" in capsys.readouterr().out


def test_predictor_evaluation_and_one_metric_per_axis(published, tmp_path):
    """With a stored predictor: its leave-one-target-out table, and chest's chart keeps its predicted
    test_auc rows (fitted on Juodelyte's targets) off the axis of its observed auc outcomes."""
    from metadb import predictors
    from metadb.report import build

    db = tmp_path / "predicted.duckdb"
    shutil.copy(published, db)
    predictors.fit(db, "ridge")
    html = build(db)
    from metadb.predictor_evaluation import evaluate

    cols, rows = evaluate(db, ("ridge",), "test_auc", per_target=False)
    assert "<h2 id=\"predictors-h\">Predictor evaluation</h2>" in html
    table = re.search(r'<table class="sortable" id="predictor-eval-ridge-test-auc">.*?</table>', html, re.S).group(0)
    assert re.findall(r"<th [^>]*><button[^>]*>([^<]+)</button>", table) == cols
    ridge = next(r for r in rows if r[0] == "ridge")
    shown = next(tr for tr in re.findall(r"<tr>(.*?)</tr>", table) if ">ridge<" in tr)
    assert f'data-sort="{ridge[3]!r}"' in shown and ">nleep<" in table  # the predictor beside the single metrics
    chest = html[html.index('id="best-chest"'):html.index('id="best-source-chest"')]
    # the Juodelyte-trained predictor knows too few features of cats-scans' chest sources to predict
    # them (uninformed pairs are not predicted), so chest's chart and table hold outcomes only
    predicted = sum(r[2] == "predicted" for r in api.query("best_source", db, target="chest")[1])
    assert predicted == 0 and "rows in another metric" not in chest and "imagenet" in chest


def test_runs_section_with_learning_curves(db, tmp_path):
    """metadb's own trials (schema 014 `runs`, when present): a table and one curve panel per target."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from metadb.report import build

    api.migrate(db)
    if not api.sql("SELECT 1 FROM information_schema.tables WHERE table_name = 'runs'", db)[1]:
        api.sql("""CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, source VARCHAR NOT NULL,
                   target VARCHAR NOT NULL, architecture VARCHAR NOT NULL, protocol VARCHAR NOT NULL, fold INTEGER,
                   status VARCHAR, val_auc DOUBLE, curves_path VARCHAR)""", db, write=True)
    for k, (source, target) in enumerate([("imagenet", "chest"), ("random", "chest"), ("imagenet", "isic")]):
        curve = tmp_path / f"curve{k}.parquet"
        pq.write_table(pa.table({"epoch": [1, 2, 3], "val_auc": [0.6, 0.7 + k / 100, 0.8]}), curve)
        api.sql(f"""INSERT INTO runs (run_id, kind, source, target, architecture, protocol, fold, status, val_auc,
                                      curves_path)
                    VALUES ('r{k}', 'finetune', '{source}', '{target}', 'resnet18', 'cats-scans', 1, 'finished',
                            0.8, '{curve}')""", db, write=True)
    html = build(db)
    assert re.findall(r"<h2[^>]*>([^<]*)</h2>", html) == ["Runs", "Provenance"]
    assert html.count('<tr><td data-sort="r') == 3
    assert "Learning curves: val_auc per epoch for 3 trials on 2 targets" in html
