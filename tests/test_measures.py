"""Measures against closed forms and independent computations; self-distance minimal, symmetry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

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
    exact_ot = pytest.importorskip("metadb.measures.mixture_w2").exact_ot
    cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert exact_ot(np.array([0.5, 0.5]), np.array([0.5, 0.5]), cost) == pytest.approx(0.0, abs=1e-12)
    assert exact_ot(np.array([1.0, 0.0]), np.array([0.25, 0.75]), cost) == pytest.approx(0.75)


def test_every_measure_is_registered_with_a_docstring():
    assert set(measures.names()) >= {"frechet", "mmd", "otdd", "task2vec", "probe-fisher", "meta"}
    for e in measures.entries():
        assert e.summary and e.version
