"""The searchers' Gaussian-process surrogate: its fit, its ranking by expected improvement and its posterior
samples."""

from __future__ import annotations

import random

import numpy as np

from engine.searchers.surrogate import LENGTH_GRID, NOISE_GRID, GaussianProcess, expected_improvement


def test_the_gaussian_process_fits_and_ranks_by_expected_improvement() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(40, 6)).astype(float)
    y = x @ np.array([3.0, -1.0, 0.5, 0.0, 2.0, -2.0]) + rng.normal(0, 0.05, 40)
    gp = GaussianProcess().fit(x, y)
    mean, std = gp.predict(x)
    assert np.corrcoef(mean, y)[0, 1] > 0.95
    best = np.array([[1.0, 0, 1, 0, 1, 0]])
    worst = np.array([[0.0, 1, 0, 0, 0, 1]])
    m, s = gp.predict(np.vstack([best, worst]))
    ei = expected_improvement(m, s, gp.best_mean)
    assert ei[0] > ei[1] >= 0


def test_the_fast_fit_is_the_textbook_gaussian_process() -> None:
    """The fit uses Cholesky factors and triangular solves; it must pick the (length, noise) pair of the
    highest log marginal likelihood and predict what the textbook formulas with explicit inverses give."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 2, size=(60, 8)).astype(float)
    y = x @ rng.normal(size=8) + rng.normal(0, 0.3, 60)
    gp = GaussianProcess().fit(x, y)
    z = (y - y.mean()) / y.std()
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)

    def likelihood(rate: float, noise: float) -> float:
        kernel = np.exp(-0.5 * rate * d2) + noise * np.eye(len(z))
        return -0.5 * z @ np.linalg.inv(kernel) @ z - 0.5 * np.linalg.slogdet(kernel)[1]

    rate, noise = max(((r, n) for r in LENGTH_GRID for n in NOISE_GRID), key=lambda pair: likelihood(*pair))
    assert gp.rate == rate
    inverse = np.linalg.inv(np.exp(-0.5 * rate * d2) + noise * np.eye(len(z)))
    candidates = rng.integers(0, 2, size=(10, 8)).astype(float) * 0.8
    cross = np.exp(-0.5 * rate * ((candidates[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    mean, std = gp.predict(candidates)
    assert np.allclose(mean, y.mean() + y.std() * cross @ inverse @ z)
    assert np.allclose(std, y.std() * np.sqrt(1.0 - np.einsum("ij,jk,ik->i", cross, inverse, cross)))
    train_mean = y.mean() + y.std() * np.exp(-0.5 * rate * d2) @ inverse @ z
    assert np.isclose(gp.best_mean, train_mean.max())


def test_posterior_samples_follow_the_gaussian_process_and_repeat_with_their_rng() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, size=(30, 5)).astype(float)
    gp = GaussianProcess().fit(x, x @ np.array([1.0, -2.0, 0.5, 0.0, 1.5]) + rng.normal(0, 0.1, 30))
    candidates = rng.integers(0, 2, size=(8, 5)).astype(float) * 0.7  # off the training points: real doubt
    mean, std = gp.predict(candidates)
    draws = np.array([gp.sample(candidates, random.Random(seed)) for seed in range(2000)])
    assert np.allclose(draws.mean(0), mean, atol=4 * std.max() / np.sqrt(2000))
    assert np.allclose(draws.std(0), std, rtol=0.1)
    assert np.array_equal(gp.sample(candidates, random.Random(7)), gp.sample(candidates, random.Random(7)))
