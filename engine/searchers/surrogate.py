"""A small Gaussian-process surrogate that ranks candidate mutations by expected improvement.

Candidates are sparse feature dicts (``Space.encode``); the kernel is an exponentiated squared
distance between them, which on one-hot features is the exponentiated Hamming kernel used for
categorical architecture search. Its length scale and noise are picked from a fixed grid by the
log marginal likelihood, so fitting is deterministic and needs no optimiser.

Example::

    >>> gp = GaussianProcess().fit(train_features, scores)
    >>> mean, std = gp.predict(candidate_features)
    >>> expected_improvement(mean, std, gp.best_mean)
    >>> gp.sample(candidate_features, random.Random(0))   # one posterior draw (Thompson sampling)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
from scipy.linalg import solve_triangular

Features = dict[str, float]

LENGTH_GRID = (0.25, 0.5, 1.0, 2.0)
NOISE_GRID = (0.01, 0.1, 0.3)


class Vectorizer:
    """Maps sparse feature dicts onto the columns of a dense matrix (columns in sorted name order)."""

    def __init__(self, rows: Sequence[Features]) -> None:
        names = sorted({name for row in rows for name in row})
        self.columns = {name: i for i, name in enumerate(names)}

    def transform(self, rows: Sequence[Features]) -> np.ndarray:
        matrix = np.zeros((len(rows), len(self.columns)))
        for r, row in enumerate(rows):
            for name, value in row.items():
                column = self.columns.get(name)
                if column is not None:
                    matrix[r, column] = value
        return matrix


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)


class GaussianProcess:
    """GP regression with an exponentiated squared-distance kernel on standardised targets."""

    def __init__(self, lengths: Sequence[float] = LENGTH_GRID, noises: Sequence[float] = NOISE_GRID) -> None:
        self.lengths = tuple(lengths)
        self.noises = tuple(noises)

    def fit(self, x: np.ndarray, y: np.ndarray) -> GaussianProcess:
        self._x = x
        self._mu = float(y.mean())
        spread = float(y.std())
        self._sd = spread if spread > 0 else 1.0
        z = (y - self._mu) / self._sd
        d2 = _squared_distances(x, x)
        identity = np.eye(len(z))
        best = None
        # A Cholesky factor per (length, noise) pair: on a few hundred trials twelve of them cost half of
        # four eigendecompositions, and the engine fits before every proposal.
        for rate in self.lengths:
            kernel = np.exp(-0.5 * rate * d2)
            for noise in self.noises:
                factor = np.linalg.cholesky(kernel + noise * identity)
                projected = solve_triangular(factor, z, lower=True, check_finite=False)  # L^-1 z
                likelihood = -0.5 * float(projected @ projected) - float(np.log(np.diag(factor)).sum())
                if best is None or likelihood > best[0]:
                    best = (likelihood, rate, kernel, factor, projected)
        _, self.rate, kernel, self._factor, projected = best
        self._alpha = solve_triangular(self._factor.T, projected, lower=False, check_finite=False)  # K^-1 z
        self.best_mean = float(self._mu + self._sd * (kernel @ self._alpha).max())  # the best posterior mean
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent function, in target units."""
        mean, reduction = self._posterior(x)
        var = np.maximum(1.0 - (reduction * reduction).sum(1), 1e-12)
        return self._mu + self._sd * mean, self._sd * np.sqrt(var)

    def sample(self, x: np.ndarray, rng: random.Random) -> np.ndarray:
        """One draw of the latent function at the rows of ``x`` from the joint posterior (Thompson
        sampling), in target units; the normal deviates come from ``rng``, so a seeded rng repeats it."""
        mean, reduction = self._posterior(x)
        covariance = np.exp(-0.5 * self.rate * _squared_distances(x, x)) - reduction @ reduction.T
        w, v = np.linalg.eigh(covariance)
        deviates = np.array([rng.gauss(0.0, 1.0) for _ in range(len(x))])
        return self._mu + self._sd * (mean + v @ (np.sqrt(np.maximum(w, 0.0)) * deviates))

    def _posterior(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The standardised posterior mean at ``x``, and ``R`` with prior minus posterior covariance R R'."""
        cross = np.exp(-0.5 * self.rate * _squared_distances(x, self._x))
        return cross @ self._alpha, solve_triangular(self._factor, cross.T, lower=True, check_finite=False).T


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """EI of maximising: E[max(f - best, 0)] under N(mean, std^2)."""
    gain = mean - best
    z = gain / std
    cdf = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in z])
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return gain * cdf + std * pdf
