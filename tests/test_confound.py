"""`metadb confound` and `metadb query robustness` ("Source Matters", Juodelyte et al. 2024): real images, real
training on the CPU, small.

The target is scikit-learn's real 8x8 digits, even vs odd, each digit upscaled into the middle half of a 128 px
black canvas (an X-ray's dark margin is where the study's tag falls), in metadb's imagefolder layout with train
and test splits. Trials train timm's `test_resnet` at 64 px: there the study's R (font 1/16 of the side) is
about 3 px tall.
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from metadb import api
from metadb.cli import cli
from metadb.confound import transforms as T
from metadb.confound.variant import Alter, Confounder
from metadb.finetune import data as D
from metadb.finetune import protocol as P

TINY = ["--protocol", "source-matters", "--architecture", "test_resnet", "--image-size", "64", "--batch-size", "32",
        "--quiet"]


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def digit_canvas(image: np.ndarray, side: int = 128) -> Image.Image:
    canvas = Image.new("L", (side, side), 0)
    digit = Image.fromarray((image * 16).clip(0, 255).astype(np.uint8)).resize((side // 2, side // 2), Image.BILINEAR)
    canvas.paste(digit, (side // 4, side // 4))
    return canvas


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory) -> Path:
    """even vs odd: 24 training and 10 test images of each digit."""
    from sklearn.datasets import load_digits

    base = tmp_path_factory.mktemp("confound")
    d = load_digits()
    for digit in range(10):
        idx = np.flatnonzero(d.target == digit)
        for split, part in (("train", idx[:24]), ("test", idx[24:34])):
            folder = base / "digits" / split / ("odd" if digit % 2 else "even")
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                digit_canvas(d.images[i]).save(folder / f"{i}.png")
    db = base / "template.duckdb"
    api.ingest(str(db), path=base / "digits", name="digits", workers=1)
    return db


@pytest.fixture
def db(digits_store, tmp_path) -> str:
    path = tmp_path / "store.duckdb"
    shutil.copy(digits_store, path)
    return str(path)


def rows(db: str, sql: str) -> list[tuple]:
    return api.sql(sql, db)[1]


def camera(side: int) -> Image.Image:
    """scikit-image's real 512 x 512 photograph, at the side asked for."""
    from skimage import data

    return Image.fromarray(data.camera()).resize((side, side), Image.BILINEAR)


# --- the transforms against the study's recipe ------------------------------------------------------
def test_tag_is_the_studys_white_R_at_its_scaled_place():
    """include_tag.py draws 'R' in white, font 64, at (200, 200) on 1024 px chest X-rays. The ink's box was measured
    by running those PIL calls with matplotlib's bundled DejaVu Sans: x 206..242, y 213..259."""
    im = camera(1024).convert("RGB")
    out = np.asarray(T.tag(im)).astype(int)
    changed = np.argwhere((out != np.asarray(im)).any(axis=2))
    (y0, x0), (y1, x1) = changed.min(0), changed.max(0)
    assert x0 >= 206 and y0 >= 213 and x1 <= 242 and y1 <= 259
    assert (x1 - x0, y1 - y0) >= (30, 40)  # an R's width and cap height, not a speck
    ink = np.zeros((1024, 1024), bool)
    ink[213:260, 206:243] = True
    assert (out[~ink] == np.asarray(im).astype(int)[~ink]).all()  # nothing else is touched
    assert (out[changed[:, 0], changed[:, 1]] == 255).all(axis=1).sum() > 400  # the stroke itself is pure white
    assert T.tag_geometry(128, 128) == (8, (25.0, 25.0))  # scaled: 64/1024 and 200/1024 of the side
    assert T.tag_geometry(1024, 1024) == (64, (200.0, 200.0))  # the study's own figures
    assert np.asarray(T.tag(camera(128).convert("RGB")))[24:36, 24:32].max() == 255


def test_lowpass_keeps_only_the_circle_of_frequencies():
    """include_lowpass.py: a centred circle of diameter 500 of 1024 in the shifted spectrum, the rest zeroed."""
    # the photograph's grey levels squeezed into 32..223, so the filter's ringing is never clipped at 0 or 255
    im = Image.fromarray((32 + np.asarray(camera(256), float) * 0.75).astype(np.uint8))
    out = np.asarray(T.lowpass(im)).astype(float)
    assert out.shape == (256, 256, 3) and (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    mask = T.lowpass_mask(256, 256).astype(bool)
    yy, xx = np.mgrid[:256, :256]
    r = np.hypot(yy - 128, xx - 128)
    assert mask[r <= 62].all() and not mask[r >= 64].any()  # radius 250/1024 * 256 = 62.5 px
    spectrum_before = np.fft.fftshift(np.fft.fft2(np.asarray(im, float)))
    spectrum_after = np.fft.fftshift(np.fft.fft2(out[..., 0]))
    before, after = np.abs(spectrum_before) ** 2, np.abs(spectrum_after) ** 2
    # PIL's circle is not symmetric about the zero frequency (one pixel off), so 177 kept frequencies lose their
    # mirror twin and the real part puts half their energy there, as in the study. Outside the circle and its
    # mirror image only the uint8 cast remains: white noise of variance 1/12 per pixel, i.e. N^2/12 of spectral
    # energy per frequency (N = 256^2 pixels)
    mirror = np.roll(mask[::-1, ::-1], 1, axis=(0, 1))
    assert (mask & ~mirror).sum() == 177
    outside = ~(mask | mirror)
    assert after[outside].mean() == pytest.approx(256 * 256 / 12, rel=0.05)
    assert after[outside].sum() < 0.005 * before[outside].sum()  # the photograph had 400 times more there
    # inside (with the twin) every frequency is kept: the difference is that same cast noise, and at zero
    # frequency the cast's floor, -0.5 per pixel
    kept = mask & mirror
    kept[128, 128] = False
    assert np.mean(np.abs(spectrum_after - spectrum_before)[kept] ** 2) == pytest.approx(256 * 256 / 12, rel=0.05)
    assert (spectrum_after - spectrum_before)[128, 128].real == pytest.approx(-0.5 * 256 * 256, abs=300)


def test_noise_has_the_photon_statistics_of_the_recipe():
    """include_noise.py: HU window [-1200, 800], mu = HU (0.1837 - 0.1662)/1000 + 0.1837, Poisson with mean
    N exp(-mu); its variance in grey levels is (255/2000 * 1000/0.0175)^2 / (N exp(-mu)) plus 1/12 from the
    uniform quantisation noise, at the study's two photon counts."""
    grey = np.asarray(camera(256), float)
    inside = (grey > 5) & (grey < 250)  # clipping at the window's ends would shrink the variance
    found = {}
    for photons in (T.PHOTONS_BASE, T.PHOTONS_CONFOUNDED):
        noisy = T.photon_noise(grey, photons, np.random.default_rng(0))
        residual = (noisy - grey - 0.5)[inside]
        expected = 1 / 12 + np.mean(T.noise_std(grey, photons)[inside] ** 2)
        assert residual.var() == pytest.approx(expected, rel=0.02)
        assert abs(residual.mean()) < 0.02
        found[photons] = residual.var()
    assert found[T.PHOTONS_CONFOUNDED] > 1.25 * found[T.PHOTONS_BASE]  # fewer photons: stronger noise
    out = T.noise(camera(256), T.PHOTONS_BASE, np.random.default_rng(0))
    assert out.size == (128, 128) and out.mode == "RGB"  # the study's 512 of 1024: half the side


def test_a_variant_marks_a_share_of_positives_and_reads_the_same_in_any_order(digits_store):
    layout, root, params, label_type = rows(str(digits_store), "SELECT layout, root, params, label_type FROM datasets")[0]
    items = D.read_items(layout, root, json.loads(params), label_type, "digits")
    p = P.load("source-matters", {"folds": "2"})
    idx = D.fold_indices(items, p, 1)
    positive = items.y == items.classes.index("odd")
    b = Confounder("tag", 0.5, "odd", 7).bind(items, idx, 1, 2)
    marked = np.array(sorted(b.alter_train.marked))
    assert positive[marked].all()
    assert len(set(marked) & set(idx[0])) == round(0.5 * positive[idx[0]].sum())
    assert len(set(marked) & set(idx[1])) == round(0.5 * positive[idx[1]].sum())
    test_idx, alter = b.tests["confounded_negatives"]
    assert (test_idx == idx[2]).all() and set(alter.marked) == set(idx[2][~positive[idx[2]]])
    assert not b.alter_test.marked  # the clean test is read as it is
    assert Confounder("tag", 0.5, "odd", 7).bind(items, idx, 1, 2).alter_train == b.alter_train  # seeded
    assert Confounder("tag", 0.5, "odd", 8).bind(items, idx, 1, 2).alter_train != b.alter_train
    im = camera(128).convert("RGB")
    noisy = Alter("noise", frozenset({3}), 7, True)
    assert np.array_equal(np.asarray(noisy(3, im)), np.asarray(noisy(3, im)))  # per-image seed: order-free
    assert not np.array_equal(np.asarray(noisy(3, im)), np.asarray(noisy(4, im)))


# --- attribute ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def patients_csv(tmp_path_factory) -> Path:
    """The csv layout's real format (path,label,split) plus sex and patient columns: 60 patients, 1-4 images each,
    labels from their digits (odd = positive), sex by patient."""
    from sklearn.datasets import load_digits

    base = tmp_path_factory.mktemp("patients") / "xrays"
    (base / "images").mkdir(parents=True)
    d = load_digits()
    rng = np.random.default_rng(3)
    out, i = [], 0
    for patient in range(60):
        sex = "F" if patient % 2 else "M"
        for _ in range(int(rng.integers(1, 5))):
            name = f"images/{i:04d}.png"
            digit_canvas(d.images[i], 32).save(base / name)
            out.append({"path": name, "label": "odd" if d.target[i] % 2 else "even", "sex": sex,
                        "patient": f"P{patient:03d}"})
            i += 1
    with open(base / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "sex", "patient"])
        w.writeheader()
        w.writerows(out)
    return base


def test_attribute_splits_keep_patients_apart_and_build_the_test_the_opposite_way(patients_csv, tmp_path):
    from metadb.confound import study

    db = str(tmp_path / "p.duckdb")
    api.ingest(db, path=patients_csv, name="xrays", layout="csv", workers=1)
    group, found = study.attribute_table("csv", str(patients_csv), "sex", "F", None)  # found by its name
    assert group == "patient"
    table = {p: (v, g) for p, v, g in found}
    items = D.read_items("csv", str(patients_csv), {}, "single-label", "xrays")
    none = np.array([], dtype=np.int64)
    for rate in (0.0, 0.5, 1.0):
        c = study.confounders(db, "xrays", "attribute", [rate], None, 42, "sex", "F", "patient")[0]
        for fold in (1, 2, 3):
            b = c.bind(items, (none, none, none), fold, 3)
            conf = b.tests["confounded_negatives"][0]
            group = lambda ix: {table[items.records[k].path][1] for k in ix}  # noqa: E731
            assert not group(b.train) & group(b.val) and not (group(b.train) | group(b.val)) & group(b.test)
            assert set(conf) <= set(b.test)
            pos = lambda k: items.y[k] == items.classes.index("odd")  # noqa: E731
            female = lambda k: table[items.records[k].path][0] == "F"  # noqa: E731
            fit = np.concatenate([b.train, b.val])
            positives = [k for k in fit if pos(k)]
            share = np.mean([female(k) for k in positives])
            n = len(positives)
            assert share == pytest.approx(round(rate * n) / n)  # the rate sets the share of F among positives
            assert not any(female(k) for k in fit if not pos(k))  # training negatives: all M
            assert all(not female(k) for k in conf if pos(k)) and all(female(k) for k in conf if not pos(k))
    r = CliRunner().invoke(cli, ["confound", "--target", "xrays", "--kind", "attribute", "--column", "sex", "--value",
                                 "F", "--group", "patient", "--rate", "0.5", "--sources", "random", "--db", db, *TINY,
                                 "--image-size", "32", "--epochs", "1", "--folds", "2"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == "2 trials: 2 run, 0 already stored"
    assert rows(db, "SELECT DISTINCT target FROM outcomes") == [("xrays+sex=F@0.5",)]
    params = json.loads(rows(db, "SELECT params FROM datasets WHERE name = 'xrays+sex=F@0.5'")[0][0])
    assert (params["base"], params["column"], params["value"], params["group"], params["seed"]) == \
        ("xrays", "sex", "F", "patient", 42) and len(params["attributes_sha256"]) == 64


# --- the study, trained ------------------------------------------------------------------------------
def test_tag_shortcut_is_learned_at_rate_1_not_at_rate_0_and_a_rerun_adds_nothing(db, tmp_path):
    import timm
    import torch

    torch.manual_seed(1)
    weights = tmp_path / "other.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), weights)
    runner = CliRunner()
    added = runner.invoke(cli, ["models", "add", "other", "--arch", "test_resnet", "--weights", str(weights),
                                "--db", db])
    assert added.exit_code == 0, added.output
    args = ["confound", "--target", "digits", "--kind", "tag", "--rate", "0,1", "--sources", "random,other",
            "--db", db, *TINY, "--epochs", "12", "--folds", "2"]
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == "8 trials: 8 run, 0 already stored"
    # stored: 8 runs, 16 outcomes under two derived datasets, none under digits itself (best-source untouched)
    assert rows(db, "SELECT kind, count(*) FROM runs GROUP BY kind") == [("confound", 8)]
    assert rows(db, """SELECT target, metric, count(*) FROM outcomes GROUP BY ALL ORDER BY ALL""") == [
        ("digits+tag@0", "auc_clean", 4), ("digits+tag@0", "auc_confounded_negatives", 4),
        ("digits+tag@1", "auc_clean", 4), ("digits+tag@1", "auc_confounded_negatives", 4)]
    lineage = rows(db, "SELECT name, derived_from, layout, is_stub, params FROM datasets WHERE layout = 'confound'")
    assert [(n, d, s) for n, d, _, s, _ in lineage] == [("digits+tag@0", ["digits"], True),
                                                      ("digits+tag@1", ["digits"], True)]
    recipe = json.loads(lineage[1][4])
    assert (recipe["base"], recipe["kind"], recipe["rate"], recipe["positive"], recipe["seed"]) == \
        ("digits", "tag", 1.0, "odd", 42) and recipe["font_fraction"] == 64 / 1024
    hp = json.loads(rows(db, "SELECT hyperparameters FROM outcomes LIMIT 1")[0][0])
    assert hp["confounder"] == "tag" and hp["rate"] in (0.0, 1.0) and hp["image_size"] == 64
    assert rows(db, "SELECT metric_higher_is_better('auc_clean'), metric_higher_is_better('auc_confounded_negatives')") \
        == [(True, True)]

    listed = runner.invoke(cli, ["query", "robustness", "--target", "digits", "--db", db, "--json"])
    assert listed.exit_code == 0, listed.output
    got = {(row["source"], row["rate"]): row for row in json.loads(listed.output)}
    folds = rows(db, """SELECT o.source, CAST(json_extract(d.params, '$.rate') AS DOUBLE), o.fold, o.metric, o.value
                        FROM outcomes o JOIN datasets d ON d.name = o.target ORDER BY ALL""")
    per = {}
    for source, rate, fold, metric, value in folds:
        per.setdefault((source, rate, metric), []).append(value)
    for (source, rate), row in got.items():
        clean, conf = np.array(per[(source, rate, "auc_clean")]), np.array(per[(source, rate, "auc_confounded_negatives")])
        assert row["auc_clean"] == pytest.approx(clean.mean()) and row["auc_clean_std"] == pytest.approx(clean.std(ddof=1))
        assert row["auc_confounded"] == pytest.approx(conf.mean())
        assert row["gap"] == pytest.approx((clean - conf).mean()) and row["gap_std"] == pytest.approx((clean - conf).std(ddof=1))
        other = per[("other" if source == "random" else "random", rate, "auc_confounded_negatives")]
        assert row["versus"] == ("other" if source == "random" else "random")
        assert row["p_value"] == pytest.approx(exact_permutation_p(conf, np.array(other)))
    for source in ("random", "other"):
        assert got[(source, 1.0)]["gap"] > 0.3  # the shortcut was learned: confounded negatives look positive
        assert abs(got[(source, 0.0)]["gap"]) < 0.05  # no confounder in training: the tag changes nothing
    mean = lambda rate, col: np.mean([got[(s, rate)][col] for s in ("random", "other")])  # noqa: E731
    assert mean(1.0, "auc_confounded") < mean(1.0, "auc_clean") - 0.4

    sql = rows(db, "SELECT source, rate, n_folds, gap FROM source_robustness('digits') ORDER BY ALL")
    assert [(s, r_, n) for s, r_, n, _ in sql] == [("other", 0.0, 2), ("other", 1.0, 2), ("random", 0.0, 2),
                                                   ("random", 1.0, 2)]
    assert [g for *_, g in sql] == pytest.approx([got[(s, r_)]["gap"] for s, r_, *_ in sql])
    cli_bin = Path(sys.executable).parent / "duckdb"  # the pinned DuckDB CLI runs the same macro on the store
    out = subprocess.run([str(cli_bin if cli_bin.exists() else shutil.which("duckdb")), "-readonly", "-csv", db, "-c",
                          "SELECT source, rate, n_folds FROM source_robustness('digits') ORDER BY ALL"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["source,rate,n_folds", "other,0.0,2", "other,1.0,2", "random,0.0,2", "random,1.0,2"]
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and again.output.splitlines()[-1] == "8 trials: 0 run, 8 already stored"
    assert rows(db, "SELECT count(*) FROM runs") == [(8,)] and rows(db, "SELECT count(*) FROM outcomes") == [(16,)]

    from metadb import report

    page = report.build(db)
    assert 'id="robustness"' in page and "digits: tag" in page and "robustness(&#x27;digits&#x27;)" in page
    assert 'id="best-digits-tag-0"' not in page  # variants are not best-source targets


def exact_permutation_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p of Student's t over every relabelling of the pooled folds (what scipy does when 10,000
    permutations exceed the number of distinct splits)."""
    def t(x, y):
        sp = ((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / (len(x) + len(y) - 2)
        return (x.mean() - y.mean()) / np.sqrt(sp * (1 / len(x) + 1 / len(y)))

    pooled = np.concatenate([a, b])
    observed = abs(t(a, b))
    splits = [np.array(c) for c in itertools.combinations(range(len(pooled)), len(a))]
    hits = sum(abs(t(pooled[s], np.delete(pooled, s))) >= observed * (1 - 1e-12) for s in splits)
    return hits / len(splits)


def test_permutation_test_is_the_studys_exact_test():
    from metadb.analyses.robustness import permutation_ttest

    a = np.array([0.15, 0.21, 0.28, 0.14, 0.07])  # five folds each, fully separated:
    b = np.array([0.60, 0.61, 0.59, 0.54, 0.54])  # p = 2 / C(10, 5) = 0.0079, the notebook's recurring value
    t, p = permutation_ttest(a, b)
    assert p == pytest.approx(2 / 252) and p == pytest.approx(exact_permutation_p(a, b))
    assert t < 0
    c = np.array([0.5, 0.62, 0.58, 0.55, 0.6])
    assert permutation_ttest(c, b)[1] == pytest.approx(exact_permutation_p(c, b))


@pytest.mark.parametrize("extra, message", [
    (["--kind", "tag", "--rate", "0,1.5"], "Error: --rate 1.5: a share of the positives, between 0 and 1"),
    (["--kind", "tag", "--rate", "half"], "Error: --rate 'half': expected shares between 0 and 1"),
    (["--kind", "tag", "--rate", "1", "--positive", "seven"], "Error: --positive 'seven': not a class of digits"),
    (["--kind", "attribute", "--rate", "1", "--group", "patient"],
     "Error: --kind attribute needs --column (e.g. sex) and --value (e.g. F) of the labels CSV"),
    (["--kind", "attribute", "--rate", "1", "--column", "sex", "--value", "F", "--group", "patient"],
     "Error: --kind attribute reads columns of the target's labels CSV; this target's layout is imagefolder"),
    (["--kind", "tag", "--rate", "1", "--grid", "lr=1e-3,1e-4"], "Error: --grid: confound varies --rate only"),
])
def test_bad_input_is_one_line(db, extra, message):
    r = CliRunner().invoke(cli, ["confound", "--target", "digits", "--sources", "random", "--db", db, *TINY, *extra])
    assert r.exit_code == 1 and r.output.startswith(message) and r.output.count("\n") == 1, r.output
    assert rows(db, "SELECT count(*) FROM runs") == [(0,)]


def test_robustness_without_variants_says_what_to_run(db):
    r = CliRunner().invoke(cli, ["query", "robustness", "--target", "digits", "--db", db])
    assert r.exit_code == 1 and r.output.startswith("Error: no confounded outcomes derived from digits; run one first")


def test_kill_9_mid_study_then_rerun_finishes_without_duplicates(db):
    """Each trial commits its run, both outcomes and (once) its derived dataset together; a killed study reruns the rest."""
    import os

    from conftest import ROOT

    args = ["confound", "--target", "digits", "--kind", "noise", "--rate", "0,1", "--sources", "random", "--db", db,
            *TINY, "--image-size", "32", "--epochs", "1", "--folds", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-u", "-c", "from metadb.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    first = proc.stdout.readline()  # printed after the first trial committed
    proc.kill()
    proc.wait()
    assert " random -> digits+noise@0 fold 1: finished" in first, first
    done = rows(db, "SELECT count(*) FROM runs")[0][0]
    assert done in (1, 2) and rows(db, "SELECT count(*) FROM outcomes")[0][0] == 2 * done
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == f"4 trials: {4 - done} run, {done} already stored"
    assert rows(db, "SELECT count(*), count(DISTINCT run_id) FROM runs") == [(4, 4)]
    assert rows(db, "SELECT count(*) FROM outcomes WHERE is_selected") == [(8,)]
    assert rows(db, "SELECT name FROM datasets WHERE layout = 'confound' ORDER BY 1") == \
        [("digits+noise@0",), ("digits+noise@1",)]
