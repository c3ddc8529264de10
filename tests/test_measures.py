"""Measures against closed forms and independent computations; self-distance minimal, symmetry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import linalg
from scipy.spatial.distance import pdist

from metadb.measures import measures
from metadb.measures.gaussian import factor, oas_shrinkage, wasserstein2
from metadb.measures.mmd import mmd2


def _psd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d


def _eig(s):
    w, v = np.linalg.eigh(s)
    keep = w > w.max() * 1e-12
    return w[keep], v[:, keep]


def _fid_sqrtm(m1, s1, m2, s2):
    """The pytorch-fid / clean-fid recipe: scipy.linalg.sqrtm of the product."""
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("rank", [None, 5])
def test_frechet_matches_the_sqrtm_recipe(rank):
    rng = np.random.default_rng(0)
    d = 24
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _psd(rng, d, rank), _psd(rng, d)
    f1 = (m1, *factor(*_eig(s1), n=10_000, shrink=True))
    f2 = (m2, *factor(*_eig(s2), n=10_000, shrink=True))
    assert wasserstein2(*f1, *f2) == pytest.approx(_fid_sqrtm(m1, s1, m2, s2), rel=1e-6)


def _w2(x, y):
    return wasserstein2(*x, *y)


def test_all_pairs_over_forked_processes_equal_the_sqrtm_recipe_pair_by_pair():
    from metadb.measures.pair_pool import map_pairs

    rng = np.random.default_rng(3)
    d = 16
    gauss = {k: (rng.normal(size=d), _psd(rng, d)) for k in "abcde"}
    f = {k: (m, *factor(*_eig(s), n=10_000, shrink=True)) for k, (m, s) in gauss.items()}
    pairs = [(a, b) for a in "abcde" for b in "abcde" if a < b]
    got = map_pairs(_w2, f, pairs, workers=2)  # 10 pairs: two real worker processes
    assert got == [_w2(f[a], f[b]) for a, b in pairs]  # same float64 work, same order
    assert got == pytest.approx([_fid_sqrtm(*gauss[a], *gauss[b]) for a, b in pairs], rel=1e-6)


def test_frechet_of_diagonal_gaussians_is_the_closed_form():
    rng = np.random.default_rng(1)
    v1, v2 = rng.uniform(0.5, 2, 8), rng.uniform(0.5, 2, 8)
    m1, m2 = rng.normal(size=8), rng.normal(size=8)
    expected = ((m1 - m2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    got = wasserstein2(m1, *factor(v1, np.eye(8), 100, False), m2, *factor(v2, np.eye(8), 100, False))
    assert got == pytest.approx(expected, rel=1e-12)


def test_shrinkage_when_fewer_samples_than_dimensions():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 30))
    vals, vecs = _eig(np.cov(x, rowvar=False))
    alpha = oas_shrinkage(vals, 10, 30)
    assert 0 < alpha <= 1
    l, c = factor(vals, vecs, 10, shrink=True)
    shrunk = l @ l.T + c * np.eye(30)
    s = np.cov(x, rowvar=False)
    np.testing.assert_allclose(shrunk, (1 - alpha) * s + alpha * np.trace(s) / 30 * np.eye(30), atol=1e-12)
    # with the isotropic part the product trace still matches sqrtm
    other = _psd(rng, 30)
    f2 = factor(*_eig(other), 10_000, True)
    m = np.zeros(30)
    assert wasserstein2(m, l, c, m, *f2) == pytest.approx(_fid_sqrtm(m, shrunk, m, other), rel=1e-6)


def test_mmd_of_two_point_masses_is_the_closed_form():
    x, y = np.zeros((3, 2)), np.ones((4, 2))
    h = 1.5
    assert mmd2(x, y, h) == pytest.approx(2 - 2 * np.exp(-2 / (2 * h**2)), rel=1e-12)
    assert mmd2(x, x, h) == 0.0


def test_exact_ot_on_a_hand_solved_problem():
    # the class-Gaussian OT that `otdd` used to be lives on as `mixture-w2`
    from metadb.measures.mixture_w2 import mixture_w2 as exact_ot
    cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert exact_ot(np.array([0.5, 0.5]), np.array([0.5, 0.5]), cost) == pytest.approx(0.0, abs=1e-12)
    assert exact_ot(np.array([1.0, 0.0]), np.array([0.25, 0.75]), cost) == pytest.approx(0.75)


def test_every_measure_is_registered_with_a_docstring():
    assert set(measures.names()) >= {"frechet", "mmd", "otdd", "task2vec", "probe-fisher", "meta"}
    for e in measures.entries():
        assert e.summary and e.version


# --- stored vectors of real images: scikit-learn's digits, each image's 64 pixels as its embedding ---

def store_vectors(db: str, sets: dict[str, tuple[np.ndarray, list[str]]]) -> str:
    """Store each dataset's vectors as an embedding run through metadb's own writer; returns the identity."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from metadb import store
    from metadb.backbones import Identity
    from metadb.embeddings import GaussianAccumulator, _write

    dim = next(iter(sets.values()))[0].shape[1]
    ident = Identity("pixels", "none", "none", json.dumps({}), "cpu", "fp32", dim)
    con = store.connect(db)
    try:
        with store.transaction(con):
            for name, (x, labels) in sets.items():
                acc = GaussianAccumulator(dim)
                for label in sorted(set(labels)):
                    acc.add(label, x[np.array(labels) == label].astype(np.float64))
                path = f"{db}.{name}.parquet"
                pq.write_table(pa.table({"image_id": [str(i) for i in range(len(x))], "label": labels,
                                         "embedding": pa.FixedSizeListArray.from_arrays(
                                             x.astype(np.float32).ravel(), dim)}), path)
                _write(con, ident, name, acc, f"run-{name}", "cpu", 0, len(x), 0, path, 0.0, name)
    finally:
        con.close()
    return ident.name


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, [str(t) for t in d.target]


def test_mmd_grows_with_separation_one_bandwidth_per_matrix(digits, tmp_path):
    """Shifted copies of one real sample: with a bandwidth per pair, MMD^2 of the farthest copy fell below a nearer one."""
    from metadb import api
    from metadb.similarity import compute

    x, labels = digits[0][:200], digits[1][:200]
    scale = np.median(np.linalg.norm(x[:, None] - x[None], axis=-1))
    shifts = [0.25, 0.5, 1, 2, 4, 8]
    db = str(tmp_path / "s.duckdb")
    ident = store_vectors(db, {"base": (x, labels), **{f"shift{k}": (x + t * scale / 8, labels)
                                                        for k, t in enumerate(shifts)}})  # along (1, ..., 1)/8
    rows = compute(db, "mmd", ident).rows
    d = {(a, b): v for a, b, v, _ in rows}
    from_base = [d[("base", f"shift{k}")] for k in range(len(shifts))]
    assert all(u < v for u, v in zip(from_base, from_base[1:])), from_base
    params = [json.loads(p) for (p,) in api.sql("SELECT params FROM similarities WHERE measure = 'mmd'", db)[1]]
    assert len({p["bandwidth"] for p in params}) == 1 and len(params) == 28
    assert params[0]["bandwidth_from"] == ["base"] + [f"shift{k}" for k in range(6)]
    pooled = np.vstack([x] + [x + t * scale / 8 for t in shifts])
    assert params[0]["bandwidth"] == pytest.approx(np.median(pdist(pooled)))  # 1,400 points: all of them


def test_shrinkage_is_recorded_per_pair_a_choice_and_announced_when_it_decides_the_nearest(digits, tmp_path, runner):
    """30 zeros (n < D = 64) are nearer 30 nines with OAS shrinkage but nearer 150 sixes without it."""
    from metadb import api
    from metadb.cli import cli
    from metadb.similarity import compute

    x, y = digits[0], np.array(digits[1])
    db = str(tmp_path / "s.duckdb")
    ident = store_vectors(db, {"zeros": (x[y == "0"][:30], ["0"] * 30), "sixes": (x[y == "6"][:150], ["6"] * 150),
                               "nines": (x[y == "9"][:30], ["9"] * 30)})
    oas = compute(db, "frechet", ident)
    assert oas.notes == ["OAS shrinkage (applied where a dataset or class has fewer images than feature dimensions) "
                         "decided the order: nearest to zeros is nines with it, sixes without; --shrinkage none "
                         "compares without it"]
    params = dict(api.sql("SELECT dataset_a || '-' || dataset_b, params FROM similarities", db)[1])
    zs = json.loads(params["sixes-zeros"])
    assert zs["shrinkage"] == "oas" and zs["shrunk"] and zs["n"] == {"sixes": 150, "zeros": 30} and zs["dim"] == 64
    assert zs["alpha"]["sixes"] == 0.0 and 0 < zs["alpha"]["zeros"] < 1
    none = compute(db, "frechet", ident, shrinkage="none")
    assert none.notes == [] and {r[3] for r in none.rows} == {"computed"}  # another choice, other cached values
    assert json.loads(api.sql("SELECT params FROM similarities WHERE dataset_a = 'sixes' AND dataset_b = 'zeros'",
                              db)[1][0][0])["alpha"] == {"sixes": 0.0, "zeros": 0.0}
    r = runner.invoke(cli, ["similarity", "--measure", "mmd", "--backbone", ident, "--shrinkage", "oas", "--db", db])
    assert r.exit_code == 1 and r.output == ("Error: measure mmd applies no covariance shrinkage; --shrinkage is for "
                                             "frechet, mixture-w2\n")
    r = runner.invoke(cli, ["similarity", "--measure", "mixture-w2", "--backbone", ident, "--shrinkage", "none",
                            "--csv", "--db", db])
    assert r.exit_code == 0 and r.output.startswith("dataset_a,dataset_b,distance,status\n")


def test_mixture_w2_closed_forms():
    """One component each: W2^2 of the two Gaussians. Point masses: W2^2 of the discrete measures."""
    from scipy.optimize import linear_sum_assignment

    from metadb.measures.mixture_w2 import mixture_w2

    rng = np.random.default_rng(3)
    m1, m2, s1, s2 = rng.normal(size=6), rng.normal(size=6), _psd(rng, 6), _psd(rng, 6)
    w2 = _fid_sqrtm(m1, s1, m2, s2)
    assert mixture_w2(np.array([4.0]), np.array([9.0]), np.array([[w2]])) == pytest.approx(w2)
    a, b = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    cost = ((a[:, None] - b[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    assert mixture_w2(np.ones(5), np.ones(5), cost) == pytest.approx(cost[rows, cols].mean())
    assert mixture_w2(np.array([1.0, 0.0]), np.array([0.25, 0.75]), np.array([[0.0, 1.0], [1.0, 0.0]])) == \
        pytest.approx(0.75)


def test_mixture_w2_on_stored_classes_is_the_ot_of_class_gaussians(digits, tmp_path):
    from metadb import store
    from metadb.measures import create_measure

    x, y = digits[0], np.array(digits[1])
    pick = lambda *ds: (np.vstack([x[y == d][:90] for d in ds]), [d for d in ds for _ in range(90)])
    db = str(tmp_path / "s.duckdb")
    ident = store_vectors(db, {"a": pick("0", "1"), "b": pick("1", "0"), "c": pick("0", "7")})
    con = store.connect(db)
    try:
        m = create_measure("mixture-w2")
        d = m.pairwise(con, [("a", "b"), ("a", "c"), ("a", "a")], ident)
    finally:
        con.close()
    assert d[("a", "b")] == pytest.approx(0.0, abs=1e-6) and d[("a", "a")] == 0.0
    ones, sevens = x[y == "1"][:90], x[y == "7"][:90]  # a -> c moves the ones' half onto the sevens
    assert d[("a", "c")] == pytest.approx(0.5 * _fid_sqrtm(ones.mean(0), np.cov(ones, rowvar=False),
                                                          sevens.mean(0), np.cov(sevens, rowvar=False)), rel=1e-6)
    assert m.details_[("a", "c")] == {"shrunk": False, "alpha": {"a": {}, "c": {}}}  # 90 > 64: no shrinkage
