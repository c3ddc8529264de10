"""All-pairs similarity on a real store: every measure's self-distance is its minimum, symmetric
measures are symmetric, values are cached until inputs change, and the queries and plot work."""

from __future__ import annotations

import pytest

from conftest import write_imagefolder
from metadb import api
from metadb.cli import cli
from metadb.embeddings import embed
from metadb.measures import measures
from metadb.similarity import compute

TINY = "mobilenetv3_small_050"
SMALL = "test_efficientnet"  # timm's 256-d test network: a fast feature space of its own


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    db = str(d / "s.duckdb")
    sets = {"tex": {"brick": "brick", "grass": "grass"}, "med": {"cell": "cell", "ihc": "immunohistochemistry"},
            "mix": {"brick": "gravel", "cell": "retina"}}
    for name, classes in sets.items():
        api.ingest(db, path=write_imagefolder(d / name, classes, size=64, n=6), name=name, workers=1)
        embed(db, name, TINY, random_init=True, workers=0)
    return db


# task2vec re-creates the embedding network, which random-init embeddings cannot give it
# (tests/test_published_measures.py runs it on a store embedded from a weights file).
@pytest.mark.parametrize("measure", sorted(set(measures.names()) - {"task2vec"}))
def test_self_distance_is_minimal_and_symmetric(three, measure):
    cols, rows = compute(three, measure, backbone=TINY)
    d = {(a, b): v for a, b, v, _ in rows}
    names = sorted({a for a, _ in d})
    assert names == ["med", "mix", "tex"]
    for a in names:
        assert d[(a, a)] == 0.0
        for b in names:
            key = (a, b) if (a, b) in d else (b, a)
            assert d[key] >= 0.0
            if a != b:
                assert d[key] > 0.0, (measure, a, b)
    m = measures.entry(measure).factory()
    if m.symmetric:
        from metadb import store

        con = store.connect(three)
        try:
            forward = m.pairwise(con, [("tex", "med")], TINY)[("tex", "med")]
            backward = m.pairwise(con, [("med", "tex")], TINY)[("med", "tex")]
        finally:
            con.close()
        assert forward == pytest.approx(backward, rel=1e-9)


def test_cached_until_inputs_change(three):
    _, first = compute(three, "frechet", backbone=TINY)
    _, again = compute(three, "frechet", backbone=TINY)
    assert {r[3] for r in again} == {"cached"} and [r[2] for r in again] == [r[2] for r in first]
    embed(three, "mix", TINY, random_init=True, workers=0)  # a new run: mix's pairs are recomputed
    _, after = compute(three, "frechet", backbone=TINY)
    status = {(a, b): s for a, b, _, s in after}
    assert status[("med", "tex")] == "cached" and status[("med", "mix")] == "computed"


def test_similar_query_matrix_and_plot(three, runner, tmp_path):
    compute(three, "otdd", backbone=TINY)
    cols, rows = api.query("similar", three, to="tex", measure="otdd")
    assert cols == ["rank", "dataset", "distance", "backbone"]
    assert [r[0] for r in rows] == [1, 2] and {r[1] for r in rows} == {"med", "mix"} and rows[0][2] <= rows[1][2]
    cols, rows = api.query("similarity_matrix", three, measure="otdd")
    assert len(rows) == 9
    png = tmp_path / "sim.png"
    r = runner.invoke(cli, ["similarity", "--measure", "otdd", "--backbone", TINY, "--plot", str(png), "--csv",
                            "--db", three])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(cli, ["similarity", "--measure", "frechet", "--db", three])
    assert r.exit_code == 1 and "measure frechet needs --backbone" in r.output


def test_embeddings_with_other_weights_are_never_compared_and_the_skip_is_said(tmp_path, runner):
    """`embed chest --weights rad.pth` then `embed isic` (same arch): two feature spaces, not one."""
    import timm
    import torch

    db = str(tmp_path / "s.duckdb")
    sets = {"chest": {"cell": "cell"}, "isic": {"brick": "brick"}, "pcam": {"ihc": "immunohistochemistry"}}
    for name, classes in sets.items():
        api.ingest(db, path=write_imagefolder(tmp_path / name, classes, size=32, n=4), name=name, workers=1)
    rad = timm.create_model(SMALL, num_classes=2)  # another network's weights, with its own 2-class head
    torch.save(rad.state_dict(), tmp_path / "rad.pth")
    first = embed(db, "chest", SMALL, weights=tmp_path / "rad.pth", workers=0)
    assert first.notes and "ignored its classifier head" in first.notes[0]
    plain = [embed(db, d, SMALL, random_init=True, workers=0).backbone for d in ("isic", "pcam")]
    assert plain[0] == plain[1] != first.backbone and first.backbone.startswith(f"{SMALL}.")
    r = runner.invoke(cli, ["similarity", "--measure", "frechet", "--backbone", SMALL, "--csv", "--db", db])
    assert r.exit_code == 0, r.output
    assert r.stderr == (f"compared 2 datasets embedded as {plain[0]} (random-init, cpu fp32); skipped chest (embedded "
                        f"only as {first.backbone}: other weights (file rad.pth)); pass --backbone {first.backbone} "
                        f"to compare those\n")
    assert {tuple(line.split(",")[:2]) for line in r.stdout.splitlines()[1:]} == {
        ("isic", "isic"), ("isic", "pcam"), ("pcam", "pcam")}
    assert api.sql("SELECT DISTINCT backbone FROM similarities", db)[1] == [(plain[0],)]
    embed(db, "chest", SMALL, random_init=True, workers=0)  # now chest is in both spaces
    rows = compute(db, "frechet", SMALL).rows
    assert {(a, b) for a, b, *_ in rows if a != b} == {("chest", "isic"), ("chest", "pcam"), ("isic", "pcam")}
    embed(db, "isic", SMALL, weights=tmp_path / "rad.pth", workers=0)
    rad_space = compute(db, "frechet", first.backbone)  # the full identity picks the other space
    assert {(a, b) for a, b, *_ in rad_space.rows if a != b} == {("chest", "isic")}
    assert rad_space.notes == [f"compared 2 datasets embedded as {first.backbone} (file rad.pth, cpu fp32); skipped "
                               f"pcam (embedded only as {plain[0]}: other weights (random-init)); pass --backbone "
                               f"{plain[0]} to compare those"]
    embed(db, "pcam", SMALL, weights=tmp_path / "rad.pth", workers=0)  # 3 datasets in each space: ambiguous
    r = runner.invoke(cli, ["similarity", "--measure", "frechet", "--backbone", SMALL, "--db", db])
    assert r.exit_code == 1 and r.output.count("\n") == 1
    assert r.output.startswith(f"Error: backbone {SMALL} names 2 feature spaces with 3 datasets each: ")
    assert r.output.endswith("pass one of them in full as --backbone\n")

    # Readers of stored distances (correlate, predictors) never pool the two spaces either.
    from metadb import store, transfer
    from metadb.errors import MetadbError

    con = store.connect(db, read_only=True)
    try:
        with pytest.raises(MetadbError, match=r"frechet distances are stored in 2 feature spaces .*; they are not mixed"):
            transfer.distances(con, "frechet")
        with pytest.raises(MetadbError, match="stored in 2 feature spaces"):
            transfer.distances(con, "frechet", SMALL)  # the architecture names both
        rad_d = transfer.distances(con, "frechet", first.backbone)
        plain_d = transfer.distances(con, "frechet", plain[0])
        assert rad_d[("chest", "isic")] == rad_space.rows[1][2] != plain_d[("chest", "isic")]
        assert rad_d[("chest", "isic")] == rad_d[("isic", "chest")] and ("chest", "pcam") not in rad_d
        with pytest.raises(MetadbError, match=r"no frechet distances with backbone 'resnet50'; stored in: '"):
            transfer.distances(con, "frechet", "resnet50")
        names = [n for n, *_ in transfer.distance_features(con) if n.startswith("distance_frechet")]
        assert sorted(names) == sorted(f"distance_frechet@{b}" for b in (first.backbone, plain[0]))
    finally:
        con.close()

    # best-source's similarity evidence comes from one space too: the one with most pairs for the
    # target, the newest on a tie (as the similar macro), never the smaller distance of the two
    query = "SELECT source, value FROM best_source('chest', measure := 'frechet') ORDER BY source"
    assert api.sql(query, db)[1] == [("isic", plain_d[("chest", "isic")]), ("pcam", plain_d[("chest", "pcam")])]
    rad_all = {(a, b): v for a, b, v, _ in compute(db, "frechet", first.backbone).rows}  # 2 pairs with chest now
    assert api.sql(query, db)[1] == [("isic", rad_all[("chest", "isic")]), ("pcam", rad_all[("chest", "pcam")])]
