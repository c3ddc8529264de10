"""`metadb confound`: the "Source Matters" study on any binary target, through the fine-tuning runner.

For each source x rate x fold a trial fine-tunes on the confounded training set (the runner's own
`run_trial`, with a `Confounder` on its spec), and is evaluated on the clean test set and on the
test set with the confounder on the negatives. The driver alone writes the store, one transaction
per trial: the derived dataset (lineage to the target, recipe and seed in `params`), the `runs` row
(kind 'confound', target = the derived dataset) and two outcomes, `auc_clean` and
`auc_confounded_negatives`, with kind, rate and recipe in `hyperparameters`. Outcomes are stored
under the derived dataset, never the target itself, so `best-source` on the target is untouched.
Trial ids hash the runner's id together with the recipe: the same command twice adds nothing, and
a killed study finishes the rest when rerun.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from metadb import store
from metadb.confound.variant import DEFAULT_SEED, KINDS, Confounder, image_recipe
from metadb.errors import MetadbError
from metadb.finetune import runner
from metadb.finetune.trial import TrialRecord, TrialSpec, run_trial
from metadb.imports.selection import reselect

METRICS = ("auc_clean", "auc_confounded_negatives")
PATIENT_COLUMNS = frozenset({"patient", "patient_id", "pid", "subject", "subject_id"})
TEST_NAME = "confounded_negatives"


@dataclass
class Summary:
    planned: int = 0
    skipped: int = 0
    records: list[tuple[TrialSpec, TrialRecord]] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.planned} trials: {len(self.records)} run, {self.skipped} already stored"


def parse_rates(text: str) -> list[float]:
    """'0,0.2,1' -> [0.0, 0.2, 1.0]; each a share in [0, 1]."""
    rates = []
    for part in (t.strip() for t in text.split(",")):
        try:
            r = float(part)
        except ValueError:
            raise MetadbError(f"--rate {part!r}: expected shares between 0 and 1, e.g. 0,0.5,1") from None
        if not 0 <= r <= 1:
            raise MetadbError(f"--rate {part}: a share of the positives, between 0 and 1")
        rates.append(r)
    return list(dict.fromkeys(rates))


def confounders(db, target: str, kind: str, rates: Sequence[float], positive: str | None = None,
                seed: int = DEFAULT_SEED, column: str | None = None, value: str | None = None,
                group: str | None = None) -> list[Confounder]:
    """One recipe per rate, checked against the stored target (binary; attribute columns present)."""
    if kind not in KINDS:
        raise MetadbError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    con = store.connect(runner._db_path(db), read_only=True)
    try:
        runner._target_row(con, target)
        classes = [r[0] for r in con.execute("SELECT label FROM classes WHERE dataset = ? ORDER BY label",
                                             [target]).fetchall()]
        layout, root = con.execute("SELECT layout, root FROM datasets WHERE name = ?", [target]).fetchone()
    finally:
        con.close()
    if len(classes) != 2:
        raise MetadbError(f"{target} has {len(classes)} classes ({', '.join(classes)}); confounding needs a binary target")
    positive = positive or classes[-1]
    if positive not in classes:
        raise MetadbError(f"--positive {positive!r}: not a class of {target} ({', '.join(classes)})")
    table: tuple[tuple[str, str, str], ...] = ()
    if kind == "attribute":
        group, table = attribute_table(layout, root, column, value, group)
    elif column or value:
        raise MetadbError(f"--column/--value belong to --kind attribute, not {kind}")
    return [Confounder(kind, r, positive, seed, column, value, group, table) for r in rates]


def attribute_table(layout: str, root: str, column: str | None, value: str | None,
                    group: str | None) -> tuple[str, tuple[tuple[str, str, str], ...]]:
    """(patient column, (path, value, patient) per image) from the target's labels CSV (the `csv` layout's extra
    columns); without --group, a column named patient, patient_id, pid, subject or subject_id."""
    if not column or value is None:
        raise MetadbError("--kind attribute needs --column (e.g. sex) and --value (e.g. F) of the labels CSV")
    if layout != "csv":
        raise MetadbError(f"--kind attribute reads columns of the target's labels CSV; this target's layout is {layout}",
                          "ingest it with --layout csv and a labels.csv holding path,label,split and the columns")
    path = Path(root)
    path = path if path.suffix.lower() == ".csv" else path / "labels.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    header = [h.strip() for h in (rows[0].keys() if rows else [])]
    if not group:  # the patient column under a name it commonly has (NIH ChestX-ray14: "Patient ID")
        group = next((h for h in header if h.lower().replace(" ", "_") in PATIENT_COLUMNS), None)
        if group is None:
            raise MetadbError(f"{path}: no patient column ({', '.join(sorted(PATIENT_COLUMNS))})",
                              "name the column that identifies a patient with --group")
    for need in (column, group):
        if need not in header:
            raise MetadbError(f"{path}: no column {need!r}; its columns: {', '.join(header)}")
    values = sorted({r[column].strip() for r in rows})
    if value not in values:
        raise MetadbError(f"--value {value!r}: column {column} of {path} holds {', '.join(values[:10])}")
    return group, tuple((r["path"].strip(), r[column].strip(), r[group].strip()) for r in rows)


def plan(db, target: str, sources: Sequence[str], protocol: str, recipes: Sequence[Confounder],
         overrides: dict[str, Any] | None = None, device: str | None = None, workers: int | None = None,
         progress: bool | None = None) -> list[TrialSpec]:
    """Every trial (source, rate, fold), from the runner's own plan with a confounder on each spec."""
    base = runner.plan(db, target, sources, protocol, overrides, None, device, workers, progress)
    specs = []
    for c in recipes:
        for s in base:
            key = {"finetune": s.run_id, "confounder": c.recipe()}
            rid = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
            specs.append(replace(s, run_id=rid, kind="confound", confounder=c))
    return specs


def run(db, target: str, sources: Sequence[str], protocol: str, recipes: Sequence[Confounder],
        overrides: dict[str, Any] | None = None, device: str | None = None, workers: int | None = None,
        progress: bool | None = None, execute: Callable[[TrialSpec], TrialRecord] = run_trial,
        on_record: Callable[[TrialSpec, TrialRecord], None] | None = None) -> Summary:
    """Run every trial not yet stored; each finished one commits its derived dataset, run and outcomes."""
    specs = plan(db, target, sources, protocol, recipes, overrides, device, workers, progress)
    done = runner.stored_run_ids(db, [s.run_id for s in specs])
    todo = [s for s in specs if s.run_id not in done]
    summary = Summary(len(specs), len(specs) - len(todo))
    for spec in todo:
        rec = execute(spec)
        commit(db, spec, rec)
        summary.records.append((spec, rec))
        if on_record:
            on_record(spec, rec)
    return summary


def commit(db, spec: TrialSpec, rec: TrialRecord) -> None:
    """One transaction: the derived dataset (once), the run row, both outcomes and the selection."""
    c: Confounder = spec.confounder
    derived = c.derived_name(spec.target)
    con = store.connect(runner._db_path(db))
    try:
        with store.transaction(con):
            _derived_dataset(con, spec.target, derived, c)
            runner._commit_in(con, replace(spec, target=derived), rec)
            confounded = rec.extra_tests.get(TEST_NAME, (None, None))[1]
            if rec.status == "finished" and rec.test_auc is not None and confounded is not None:
                params = json.dumps({"protocol": spec.protocol.name, **spec.protocol.as_dict(), "confounder": c.kind,
                                     "rate": c.rate, "base_target": spec.target, "recipe": c.recipe()})
                pretraining = "random-init" if spec.source.weights_ref == "random-init" else None
                for metric, value in zip(METRICS, (rec.test_auc, confounded)):
                    if value == value:  # NaN: one-class test set; the run row still says what happened
                        con.execute("""INSERT INTO outcomes (source, target, architecture, pretraining, protocol, metric,
                                           value, fold, seed, hyperparameters, run_id, status, is_selected, file,
                                           file_row, imported_at, origin, selection, selection_value)
                                       VALUES (?, ?, ?, ?, 'fine-tune', ?, ?, ?, ?, ?, ?, 'FINISHED', false, NULL, NULL,
                                               now(), 'run', 'min:val_loss', ?)""",
                                    [spec.source.name, derived, spec.source.architecture, pretraining, metric, value,
                                     spec.fold, spec.protocol.seed, params, spec.run_id, rec.val_loss])
                reselect(con)
    finally:
        con.close()


def _derived_dataset(con, target: str, derived: str, c: Confounder) -> None:
    """The variant as a dataset row: lineage to the target, the recipe and seed as its parameters.

    Stored as a stub (nothing is ingested: its images are the target's, altered as they are read).
    """
    params = json.dumps({"base": target, **c.recipe()}, sort_keys=True)
    have = con.execute("SELECT params FROM datasets WHERE name = ?", [derived]).fetchone()
    if have is not None:
        if have[0] != params:
            raise MetadbError(f"dataset {derived} is stored with another recipe ({have[0]})",
                              "its labels CSV or the recipe changed; pass another --seed to keep both")
        return
    title, label_type, modality, domain = con.execute(
        "SELECT title, label_type, modality, domain FROM datasets WHERE name = ?", [target]).fetchone()
    con.execute("""INSERT INTO datasets (name, title, modality, domain, label_type, derived_from, layout, params,
                                         is_stub, ingested_at)
                   VALUES (?, ?, ?, ?, ?, [?], 'confound', ?, true, now())""",
                [derived, f"{title or target}, confounded: {c.kind} on {c.rate:g} of {c.positive}", modality, domain,
                 label_type, target, params])


def trial_line(spec: TrialSpec, rec: TrialRecord) -> str:
    c: Confounder = spec.confounder
    confounded = rec.extra_tests.get(TEST_NAME, (None, float("nan")))[1]
    clean = rec.test_auc if rec.test_auc is not None else float("nan")
    return (f"{spec.run_id} {spec.source.name} -> {c.derived_name(spec.target)} fold {spec.fold}: {rec.status}, "
            f"AUC clean {clean:.4f}, confounded negatives {confounded:.4f}, {rec.wall_s:.1f} s on {rec.device}")


__all__ = ["Confounder", "KINDS", "METRICS", "confounders", "image_recipe", "parse_rates", "plan", "run"]
