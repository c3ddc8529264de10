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


def test_meta_distance_is_over_z_scored_shared_features_and_refuses_pairs_that_share_none(tmp_path):
    from metadb import store
    from metadb.errors import MetadbError
    from metadb.measures import create_measure

    con = store.connect(str(tmp_path / "m.duckdb"))
    rows = [("a", "x", 1.0), ("a", "y", 10.0), ("b", "x", 3.0), ("b", "y", 30.0), ("c", "x", 2.0), ("c", "y", 20.0),
            ("d", "z", 5.0)]  # d: another extractor's feature only
    con.executemany("INSERT INTO meta_features VALUES (?, 'e', '1', ?, ?, '{}', 'r', now())", [list(r) for r in rows])
    store.refresh_wide_view(con)
    # x over a, b, c, d = (1, 3, 2, NaN): mean 2, population std sqrt(2/3); y likewise x10: z-scores coincide
    z = np.sqrt(3 / 2)
    assert create_measure("meta").pairwise(con, [("a", "b"), ("a", "a")], None) == pytest.approx(
        {("a", "b"): np.hypot(2 * z, 2 * z), ("a", "a"): 0.0})
    with pytest.raises(MetadbError, match="meta: a and d share no meta-feature that varies"):
        create_measure("meta").pairwise(con, [("a", "d")], None)
    con.close()


# --- stored vectors of real images: scikit-learn's digits, each image's 64 pixels as its embedding ---

def store_vectors(db: str, sets: dict[str, tuple[np.ndarray, list[str]]]) -> str:
    """Store each dataset's vectors as an embedding run through metadb's own writer; returns the identity."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from metadb import store
    from metadb.backbones import Identity
    from metadb.class_gaussians import GaussianAccumulator
    from metadb.embeddings import _write

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


def _mp_frechet(m1, a1, m2, a2, dps=40):
    """The closed form in 40-digit arithmetic (mpmath) for S = A A^T / cols: the reference for singular S."""
    import mpmath as mp

    with mp.workdps(dps):
        s1 = mp.matrix(a1.tolist()) * mp.matrix(a1.T.tolist()) / a1.shape[1]
        s2 = mp.matrix(a2.tolist()) * mp.matrix(a2.T.tolist()) / a2.shape[1]
        ev = mp.eig(s1 * s2, left=False, right=False)
        cross = sum(mp.sqrt(mp.re(e)) for e in ev if mp.re(e) > 0)
        d = len(m1)
        base = mp.fsum((mp.mpf(x) - mp.mpf(y)) ** 2 for x, y in zip(m1, m2))
        return float(base + mp.fsum(s1[i, i] + s2[i, i] for i in range(d)) - 2 * cross)


def _ready(m, s, n=10_000, shrink=True):
    from metadb.measures.gaussian import prepare_pairs

    return prepare_pairs(m, *_eig(s), n, shrink)


@pytest.mark.parametrize("d", [24, 150])
def test_pairs_through_cholesky_and_dsygst_match_sqrtm_to_1e10(d):
    from metadb.measures.gaussian import wasserstein2_ready

    rng = np.random.default_rng(10)
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _psd(rng, d), _psd(rng, d) + 0.1 * np.eye(d)
    r1, r2 = _ready(m1, s1), _ready(m2, s2)
    assert r1.chol is not None and r2.chol is not None  # positive definite: the dsygst path
    ref = _fid_sqrtm(m1, s1, m2, s2)
    assert wasserstein2_ready(r1, r2) == pytest.approx(ref, rel=1e-10)
    assert wasserstein2_ready(r2, r1) == pytest.approx(ref, rel=1e-10)
    old = wasserstein2(m1, *factor(*_eig(s1), 10_000, True), m2, *factor(*_eig(s2), 10_000, True))
    assert wasserstein2_ready(r1, r2) == pytest.approx(old, rel=1e-12)


def test_pairs_with_oas_shrinkage_when_fewer_samples_than_dimensions_match_sqrtm():
    from metadb.measures.gaussian import wasserstein2_ready

    rng = np.random.default_rng(11)
    d = 40
    x, y = rng.normal(size=(12, d)) * rng.uniform(0.5, 2, d), rng.normal(size=(300, d))
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    alpha = oas_shrinkage(_eig(sx)[0], 12, d)
    shrunk = (1 - alpha) * sx + alpha * np.trace(sx) / d * np.eye(d)  # sklearn's OAS estimate, by its formula
    rx, ry = _ready(x.mean(0), sx, n=12), _ready(y.mean(0), sy, n=300)
    assert rx.chol is not None  # singular sample covariance, positive definite once shrunk
    ref = _fid_sqrtm(x.mean(0), shrunk, y.mean(0), sy)
    assert wasserstein2_ready(rx, ry) == pytest.approx(ref, rel=1e-10)
    assert wasserstein2_ready(ry, rx) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("ranks", [(7, None), (7, 9)])
def test_pairs_of_rank_deficient_covariances_are_exact(ranks):
    """Singular S (no shrinkage) takes the thin-factor path; exact to 1e-12 against 40-digit arithmetic.

    sqrtm of the singular product S1 S2 is itself only good to ~1e-8 here (square roots of
    rounding-level eigenvalues), which is why the 1e-10 reference is mpmath, not sqrtm.
    """
    from metadb.measures.gaussian import wasserstein2_ready

    rng = np.random.default_rng(12)
    d = 30
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    a1, a2 = rng.normal(size=(d, ranks[0])), rng.normal(size=(d, ranks[1] or d))
    s1, s2 = a1 @ a1.T / a1.shape[1], a2 @ a2.T / a2.shape[1]
    r1, r2 = _ready(m1, s1, shrink=False), _ready(m2, s2, shrink=False)
    assert r1.thin is not None and r1.thin.shape[1] == ranks[0]
    exact = _mp_frechet(m1, a1, m2, a2)
    assert wasserstein2_ready(r1, r2) == pytest.approx(exact, rel=1e-12)
    assert wasserstein2_ready(r2, r1) == pytest.approx(exact, rel=1e-12)
    assert wasserstein2_ready(r1, r2) == pytest.approx(_fid_sqrtm(m1, s1, m2, s2), rel=1e-7)


def test_dropping_a_small_eigenpair_moves_frechet_by_up_to_sqrt_of_w_times_lambda_max():
    """Why `prepare_pairs` truncates nothing: the bound |dFD| <= 2 sqrt(w lambda_max(S2)) holds and is not loose.

    An eigenvalue at embed's floor (1e-12 of the largest) still moves the distance by ~1e-7 relative.
    """
    from metadb.measures.gaussian import PairReady, wasserstein2_ready

    rng = np.random.default_rng(13)
    d = 20
    v = np.linalg.qr(rng.normal(size=(d, d)))[0]
    w = np.geomspace(1.0, 1e-12, d)
    s2 = _psd(rng, d)
    r2 = _ready(np.zeros(d), s2)
    full = PairReady(np.zeros(d), float(w.sum()), thin=v * np.sqrt(w))
    cut = PairReady(np.zeros(d), float(w.sum()), thin=v[:, :-1] * np.sqrt(w[:-1]))  # same trace, one pair fewer
    moved = abs(wasserstein2_ready(full, r2) - wasserstein2_ready(cut, r2))
    bound = 2 * np.sqrt(w[-1] * np.linalg.eigvalsh(s2).max())
    assert moved <= bound
    assert moved / wasserstein2_ready(full, r2) > 1e-9  # far above the 1e-12 accuracy asked of the distance


def test_one_off_preparation_over_forked_processes_equals_in_process():
    from metadb.measures.gaussian import prepare_pairs
    from metadb.measures.pair_pool import map_items

    rng = np.random.default_rng(14)
    d = 16
    items = {k: (rng.normal(size=d), _eig(_psd(rng, d, rank))) for k, rank in zip("abc", (None, 4, None))}

    def prep(item):
        return prepare_pairs(item[0], *item[1], 10_000, True)

    got = map_items(prep, items, workers=2)
    for k, item in items.items():
        want = prep(item)
        for field in ("mean", "cov", "chol", "thin"):
            a, b = getattr(got[k], field), getattr(want, field)
            assert (a is None and b is None) or np.array_equal(a, b)
