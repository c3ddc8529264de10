"""The fine-tuning runner: real torch training on real images (scikit-learn digits), CPU, small.

The target is digits 3 vs 8 written as PNGs in metadb's imagefolder layout with train/val/test
splits and ingested like any dataset; trials train timm's `test_resnet` (a real, 0.4M-parameter
ResNet) at 16 px for a few epochs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from metadb import api
from metadb.cli import cli
from metadb.finetune import protocol as P
from metadb.finetune import runner
from metadb.finetune.trial import auc, run_trial

TINY = ["--architecture", "test_resnet", "--image-size", "16", "--batch-size", "32"]
TINY_DICT = {"architecture": "test_resnet", "image_size": "16", "batch_size": "32"}


@pytest.fixture(autouse=True)
def one_thread():
    """Two cores shared with other jobs: one intra-op thread is faster here and changes no result."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory) -> Path:
    """A store with `digits`: real 8x8 scikit-learn digits 3 and 8, 60/20/20 per class in train/val/test, and one
    unreadable file."""
    from PIL import Image
    from sklearn.datasets import load_digits

    base = tmp_path_factory.mktemp("digits")
    d = load_digits()
    for label in (3, 8):
        idx = np.flatnonzero(d.target == label)
        for split, part in (("train", idx[:60]), ("val", idx[60:80]), ("test", idx[80:100])):
            folder = base / "digits" / split / f"digit{label}"
            folder.mkdir(parents=True)
            for i in part:
                Image.fromarray((d.images[i] * 16).clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    (base / "digits" / "train" / "digit3" / "broken.png").write_bytes(b"not a png")  # ingest skips it; so must trials
    db = base / "template.duckdb"
    assert api.ingest(str(db), path=base / "digits", name="digits", workers=1).images_failed == 1
    return db


@pytest.fixture
def db(digits_store, tmp_path) -> str:
    path = tmp_path / "store.duckdb"
    shutil.copy(digits_store, path)
    return str(path)


def rows(db: str, sql: str) -> list[tuple]:
    return api.sql(sql, db)[1]


def test_a_trial_learns_and_a_seed_reproduces_it(db):
    """cats-scans recipe (Adam, balanced class weights, flip/rotate/shift), random init, 5 epochs."""
    spec = runner.plan(db, "digits", ["random"], "cats-scans", {**TINY_DICT, "epochs": "5", "lr": "1e-3"})[0]
    first = run_trial(spec)
    assert first.status == "finished" and first.n_train == 160 and first.n_val == 40 and first.n_test == 0
    assert first.val_auc > 0.9  # it learned: well above chance (0.5) after 5 epochs from random weights
    assert first.best_epoch == 5  # no early stopping in cats-scans: the last epoch is kept
    again = run_trial(spec)
    assert again.val_auc == pytest.approx(first.val_auc, abs=1e-6)
    assert again.val_loss == pytest.approx(first.val_loss, abs=1e-6)
    assert [c["train_loss"] for c in again.curves] == pytest.approx([c["train_loss"] for c in first.curves], abs=1e-6)
    assert Path(first.checkpoint_path).exists() and len(first.checkpoint_sha256) == 64


def test_grid_runs_every_combination_once_and_selects_lowest_val_loss(runner_cli, db):
    args = ["finetune", "--target", "digits", "--sources", "random", "--protocol", "juodelyte", "--db", db, *TINY,
            "--epochs", "1", "--folds", "2", "--train-per-class", "20", "--val-per-class", "10",
            "--grid", "lr=1e-3,1e-2", "momentum=0,0.9"]
    r = runner_cli.invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == "8 trials: 8 run, 0 already stored"
    runs = rows(db, "SELECT run_id, fold, val_loss, test_auc, hyperparameters FROM runs ORDER BY run_id")
    assert len(runs) == 8
    grid = {(json.loads(h)["lr"], json.loads(h)["momentum"], json.loads(h)["nesterov"]) for *_, h in runs}
    assert grid == {(1e-3, 0.0, True), (1e-3, 0.9, True), (1e-2, 0.0, True), (1e-2, 0.9, True)}  # typed JSON
    out = rows(db, """SELECT run_id, fold, value, is_selected, origin, metric, architecture FROM outcomes
                      ORDER BY run_id""")
    assert [(o[0], o[2]) for o in out] == [(r_[0], r_[3]) for r_ in runs]  # outcome = test AUC of each run
    assert {(o[4], o[5], o[6]) for o in out} == {("run", "auc", "test_resnet")}
    for fold in (1, 2):
        best = min((r_ for r_ in runs if r_[1] == fold), key=lambda r_: (r_[2], r_[0]))
        assert [o[0] for o in out if o[1] == fold and o[3]] == [best[0]]
    again = runner_cli.invoke(cli, args)
    assert again.exit_code == 0 and again.output.splitlines()[-1] == "8 trials: 0 run, 8 already stored"
    assert rows(db, "SELECT count(*) FROM runs")[0][0] == 8 and rows(db, "SELECT count(*) FROM outcomes")[0][0] == 8
    listed = runner_cli.invoke(cli, ["runs", "--target", "digits", "--db", db, "--json"])
    assert listed.exit_code == 0 and len(json.loads(listed.output)) == 8
    assert sum(row["selected"] for row in json.loads(listed.output)) == 2


def test_kill_9_mid_grid_then_rerun_finishes_without_duplicates(runner_cli, db):
    args = ["finetune", "--target", "digits", "--sources", "random", "--protocol", "cats-scans", "--db", db, *TINY,
            "--epochs", "1", "--folds", "3", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-u", "-c", "from metadb.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    first = proc.stdout.readline()  # printed after the first trial committed
    proc.kill()  # SIGKILL, during the second trial
    proc.wait()
    assert " random -> digits fold 1 " in first, first
    done = rows(db, "SELECT count(*) FROM runs")[0][0]
    assert done in (1, 2)
    assert rows(db, "SELECT count(*) FROM outcomes")[0][0] == done  # a run and its outcome commit together
    r = runner_cli.invoke(cli, args)  # the same command again
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == f"3 trials: {3 - done} run, {done} already stored"
    assert rows(db, "SELECT count(*), count(DISTINCT fold) FROM runs")[0] == (3, 3)
    assert rows(db, "SELECT count(*), count(*) FILTER (WHERE is_selected) FROM outcomes")[0] == (3, 3)


def test_pretrain_registers_a_model_that_finetune_uses(runner_cli, db):
    r = runner_cli.invoke(cli, ["pretrain", "--dataset", "digits", "--arch", "test_resnet", "--protocol", "cats-scans",
                                "--db", db, "--image-size", "16", "--epochs", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("digits-test_resnet: 1-output cats-scans model trained on digits (160 images)")
    model = rows(db, "SELECT source_dataset, weights_ref, weights_sha256, n_source_classes FROM models")
    run = rows(db, "SELECT checkpoint_path, checkpoint_sha256, kind, n_train, n_val, n_test FROM runs")
    assert model == [("digits", f"file:{Path(run[0][0]).resolve()}", run[0][1], 1)]
    assert run[0][2:] == ("pretrain", 160, 20, 20)  # cats-scans: stratified 80/10/10
    again = runner_cli.invoke(cli, ["pretrain", "--dataset", "digits", "--arch", "test_resnet", "--protocol",
                                    "cats-scans", "--db", db, "--image-size", "16", "--epochs", "1"])
    assert again.output == "digits-test_resnet: already pretrained and registered; nothing to do\n"
    r = runner_cli.invoke(cli, ["finetune", "--target", "digits", "--sources", "digits-test_resnet", "--protocol",
                                "cats-scans", "--db", db, "--image-size", "16", "--epochs", "1", "--folds", "2",
                                "--quiet"])
    assert r.exit_code == 0, r.output
    assert rows(db, "SELECT DISTINCT source, architecture, source_sha256 FROM runs WHERE kind = 'finetune'") == \
        [("digits-test_resnet", "test_resnet", run[0][1])]
    assert rows(db, "SELECT count(*) FROM outcomes WHERE source = 'digits-test_resnet' AND origin = 'run'") == [(2,)]
    # cats-scans has no test split: the outcome is each fold's validation AUC
    assert rows(db, "SELECT count(*) FROM outcomes o JOIN runs r USING (run_id) WHERE o.value = r.val_auc") == [(2,)]


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "three"], "Error: --epochs 'three': expected an integer for protocol field epochs"),
    (["--epoch", "3"], "Error: protocol has no field 'epoch'; fields: --architecture, --image-size,"),
    (["--optimizer", "rmsprop"], "Error: --optimizer 'rmsprop': expected one of adam, sgd"),
    (["--grid", "lr=1e-3,fast"], "Error: --grid lr= 'fast': expected a number for protocol field lr"),
    (["--grid", "batchsize=32"], "Error: protocol has no field 'batchsize'"),
    (["--lr", "-1"], "Error: --lr '-1': must not be negative"),
])
def test_protocol_override_errors_are_one_line(runner_cli, db, extra, message):
    r = runner_cli.invoke(cli, ["finetune", "--target", "digits", "--sources", "random", "--protocol", "juodelyte",
                                "--db", db, *extra])
    assert r.exit_code == 1 and r.output.startswith(message) and r.output.count("\n") == 1, r.output


def test_bad_targets_sources_and_checkpoints_are_one_line(runner_cli, db, tmp_path):
    import timm
    import torch

    base = ["finetune", "--protocol", "cats-scans", "--db", db, *TINY, "--epochs", "1"]
    r = runner_cli.invoke(cli, [*base, "--target", "chest", "--sources", "random"])
    assert r.output == "Error: dataset 'chest' is not ingested; ingest it first; ingested: digits\n"
    r = runner_cli.invoke(cli, [*base, "--target", "digits", "--sources", "imagenet-r18"])
    assert r.output == "Error: --sources: no model 'imagenet-r18'; registered: none (metadb models add), or random, or all\n"
    wrong = tmp_path / "effnet.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), wrong)
    api.sql(f"""INSERT INTO models (name, architecture, weights_ref, weights_sha256, added_at)
                VALUES ('mine', 'test_resnet', 'file:{wrong}', 'x', now())""", db, True)
    r = runner_cli.invoke(cli, [*base, "--target", "digits", "--sources", "mine"])
    assert r.exit_code == 1 and r.output.startswith(f"Error: model mine: checkpoint {wrong} does not fit test_resnet (")
    assert r.output.count("\n") == 1, r.output
    assert rows(db, "SELECT count(*) FROM runs") == [(0,)]


def test_protocol_files_resolve_and_overrides_are_typed(runner_cli):
    for name in P.available():
        assert P.load(name).name == name
    listed = json.loads(runner_cli.invoke(cli, ["protocols", "--json"]).output)
    assert {row["field"]: row["juodelyte"] for row in listed}["fold-seed"] == 24 and len(listed) == len(P.FIELD_TYPES) - 1
    p = P.load("juodelyte", {"epochs": "3", "image_size": "64", "nesterov": "false"})
    assert (p.epochs, p.image_size, p.nesterov, p.fold_seed, p.train_per_class) == (3, 64, False, 24, 100)
    overrides, grid = P.parse_overrides(["--epochs", "3", "--grid", "lr=1e-4,1e-3", "momentum=0,0.9", "--image-size=64"])
    assert overrides == {"epochs": "3", "image_size": "64"} and grid == {"lr": ["1e-4", "1e-3"], "momentum": ["0", "0.9"]}
    points = P.expand_grid(P.load("juodelyte"), grid)
    assert [(q.lr, q.momentum) for q in points] == [(1e-4, 0.0), (1e-4, 0.9), (1e-3, 0.0), (1e-3, 0.9)]


def test_auc_averages_follow_each_studys_code():
    """cats-scans: roc_auc_score(ovr, weighted); juodelyte getAUC: plain mean of per-class OvR AUCs."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.RandomState(0)
    y = np.array([0] * 10 + [1] * 30 + [2] * 60)
    probs = rng.dirichlet(np.ones(3), size=len(y)) + np.eye(3)[y] * 0.3
    probs /= probs.sum(1, keepdims=True)
    per_class = [roc_auc_score(y == k, probs[:, k]) for k in range(3)]
    assert auc(y, probs, False, "ovr-macro") == pytest.approx(np.mean(per_class), abs=1e-12)
    assert auc(y, probs, False, "ovr-weighted") == pytest.approx(np.dot(per_class, [0.1, 0.3, 0.6]), abs=1e-12)
    binary = y[:40]  # classes 0 and 1 only: the binary AUC of the positive column
    assert auc(binary, probs[:40, :2], False, "ovr-macro") == pytest.approx(roc_auc_score(binary, probs[:40, 1]))


@pytest.fixture
def runner_cli():
    from click.testing import CliRunner

    return CliRunner()


@pytest.mark.parametrize("n_val, fold, train_head, val_head", [
    (80, 1, [421, 105, 222, 119, 347, 352], [39, 58, 67, 16]),
    (80, 3, [9, 60, 383, 159, 491, 437], [1, 74, 20, 23]),
    (40, 3, [380, 305, 186, 300, 128, 228], [0, 1, 2, 3]),  # val split <= 25 x C: kept whole, no draw
])
def test_juodelyte_folds_are_the_studys_own_draws(n_val, fold, train_head, val_head):
    """Reference figures from running Juodelyte et al.'s src/data_split.py make_splits (seed 24) on
    index-valued arrays of 500 training and `n_val` validation images with two classes."""
    from metadb.finetune.data import Items, fold_indices

    splits = np.array(["train"] * 500 + ["val"] * n_val + ["test"] * 10)
    items = Items(list(range(len(splits))), np.arange(len(splits)) % 2, ["a", "b"], False, splits)
    train, val, test = fold_indices(items, P.load("juodelyte"), fold)
    assert (len(train), len(val), len(test)) == (200, min(n_val, 50), 10)
    assert train[:6].tolist() == train_head
    assert (val[:4] - 500).tolist() == val_head


BEST_SOURCE_COLUMNS = ("rank", "source", "evidence", "value", "std", "n", "metric", "architecture", "setting")


def test_mlflow_logging_round_trips_to_the_same_best_source(runner_cli, db, tmp_path, monkeypatch):
    """A grid logged to MLflow, exported as mlflow.search_runs does and imported into a second store, ranks
    the sources exactly as the grid's own runs do: same rows, same values to 1e-9, same fold counts."""
    import mlflow
    import timm
    import torch

    from metadb.models import add

    torch.manual_seed(0)
    weights = tmp_path / "effnet.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), weights)
    add(db, "effnet", "test_efficientnet", weights=str(weights))  # a second source, of another architecture
    uri = f"file:{tmp_path / 'mlruns'}"
    args = ["finetune", "--target", "digits", "--sources", "random,effnet", "--protocol", "juodelyte", "--db", db,
            *TINY, "--epochs", "2", "--folds", "2", "--train-per-class", "20", "--val-per-class", "10",
            "--grid", "lr=1e-3,1e-2", "--quiet", "--mlflow", uri]
    half = runner_cli.invoke(cli, [*args[:args.index("--grid")], "--lr", "1e-3", "--quiet"])  # no --mlflow yet
    assert half.output.splitlines()[-1] == "4 trials: 4 run, 0 already stored", half.output
    r = runner_cli.invoke(cli, args)  # the stored half is logged first, the rest as each trial commits
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == "8 trials: 4 run, 4 already stored; 8 logged to MLflow"
    again = runner_cli.invoke(cli, args)  # stored and logged: nothing to train, nothing to log
    assert again.output.splitlines()[-1] == "8 trials: 0 run, 8 already stored", again.output

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    exported = mlflow.search_runs(experiment_names=["metadb"])
    assert len(exported) == 8 and set(exported["status"]) == {"FINISHED"}
    run = exported[exported["tags.metadb.run_id"] == rows(db, "SELECT min(run_id) FROM runs")[0][0]].iloc[0]
    stored = rows(db, f"SELECT source, fold, hyperparameters, val_loss, test_auc, best_epoch, curves_path FROM runs "
                      f"WHERE run_id = '{run['tags.metadb.run_id']}'")[0]
    protocol = json.loads(stored[2])
    # the studies' parameter names, the kept epoch's metrics, and the outcome metadb stores as `auc`
    assert (run["params.source_flag"], run["params.target_flag"], int(run["params.fold"])) == (stored[0], "digits",
                                                                                                 stored[1])
    assert float(run["params.lr"]) == protocol["lr"] and float(run["params.wd"]) == protocol["weight_decay"]
    assert int(run["params.batch_size"]) == 32 and int(run["params.epochs"]) == 2
    assert (run["metrics.val_loss"], run["metrics.test_auc"], run["metrics.auc"]) == (stored[3], stored[4], stored[4])
    history = mlflow.tracking.MlflowClient().get_metric_history(run["run_id"], "epoch_val_loss")
    import pyarrow.parquet as pq

    assert [(m.step, m.value) for m in history] == [(e["epoch"], e["val_loss"])
                                                    for e in pq.read_table(stored[6]).to_pylist()]
    export = tmp_path / "runs.csv"
    exported.to_csv(export, index=False)

    other = str(tmp_path / "imported.duckdb")
    r = runner_cli.invoke(cli, ["outcomes", "import", str(export), "--format", "mlflow", "--metric", "auc",
                                "--select", "min:val_loss", "--db", other])
    assert r.exit_code == 0, r.output
    ours, theirs = (api.query("best_source", d, target="digits") for d in (db, other))
    pick = lambda res: [tuple(row[res[0].index(c)] for c in BEST_SOURCE_COLUMNS) for row in res[1]]  # noqa: E731
    mine, imported = pick(ours), pick(theirs)
    assert [r_[:3] + r_[5:] for r_ in mine] == [r_[:3] + r_[5:] for r_ in imported]
    assert {r_[7] for r_ in mine} == {"test_resnet", "test_efficientnet"} and [r_[5] for r_ in mine] == [2, 2]
    for a, b in zip(mine, imported):
        assert a[3] == pytest.approx(b[3], abs=1e-9) and a[4] == pytest.approx(b[4], abs=1e-9)
    assert {row[ours[0].index("origin")] for row in ours[1]} == {"run"}


def test_mlflow_missing_is_a_one_line_error(db):
    """Without MLflow installed, --mlflow fails before training, naming the extra to install."""
    code = ("import sys; sys.modules['mlflow'] = None\n"  # what an environment without mlflow imports
            "from metadb.cli import main; main()")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, "finetune", "--target", "digits", "--sources", "random",
                          "--protocol", "cats-scans", "--db", db, "--mlflow", "file:./mlruns"],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 1
    assert out.stdout + out.stderr == ("Error: --mlflow needs MLflow, which is not installed; "
                                       "pip install metadb[mlflow] (or mlflow-skinny)\n")
    assert rows(db, "SELECT count(*) FROM runs") == [(0,)]
