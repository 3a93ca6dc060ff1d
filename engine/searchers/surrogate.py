"""A small Gaussian-process surrogate that ranks candidate mutations by expected improvement.

Candidates are sparse feature dicts (``Space.encode``); the kernel is an exponentiated squared
distance between them, which on one-hot features is the exponentiated Hamming kernel used for
categorical architecture search. Its length scale and noise are picked from a fixed grid by the
log marginal likelihood, so fitting is deterministic and needs no optimiser.

A :class:`LinearModel` predicts what adds up over blocks (a tower's size).

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


class LinearModel:
    """Bayesian linear regression: for quantities nearly additive in the features, such as the log of a tower's
    parameter count in its blocks, where a GP's stationary kernel doubts every new combination of blocks.

    The weights' prior spread is the targets' (a feature never seen leaves its effect as uncertain as the
    targets), the intercept is free, and the noise is estimated from the residuals, so an exact fit predicts
    sharply and a rough one admits its doubt.

    Example::

        >>> mean, std = LinearModel().fit(features, np.log(params)).predict(candidate_features)
    """

    def fit(self, x: np.ndarray, y: np.ndarray, rounds: int = 10) -> LinearModel:
        design = np.hstack([x, np.ones((len(x), 1))])
        self._mu = float(y.mean())
        centred = y - self._mu
        spread = max(float(centred.var()), 1e-12)
        floor = spread * 1e-4
        self._noise = floor
        for _ in range(rounds):  # the noise and the weights given it, to a fixed point
            prior = np.full(design.shape[1], self._noise / spread)
            prior[-1] = 1e-9
            self._inverse = np.linalg.inv(design.T @ design + np.diag(prior))
            self._weights = self._inverse @ design.T @ centred
            residuals = centred - design @ self._weights
            freedom = max(len(y) - float(np.trace(design @ self._inverse @ design.T)), 1.0)
            self._noise = max(float(residuals @ residuals) / freedom, floor)
        weights = x * math.sqrt(spread)
        covariance = weights @ weights.T + self._noise * np.eye(len(y))  # of the centred targets, under the prior
        factor = np.linalg.cholesky(covariance)
        projected = solve_triangular(factor, centred, lower=True, check_finite=False)
        #: log p(y | the features, the fitted noise), up to a constant: compares feature sets on the same targets
        self.log_evidence = -0.5 * float(projected @ projected) - float(np.log(np.diag(factor)).sum())
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and standard deviation (of a new observation, noise included)."""
        design = np.hstack([x, np.ones((len(x), 1))])
        doubt = np.einsum("ij,jk,ik->i", design, self._inverse, design)
        return self._mu + design @ self._weights, np.sqrt(self._noise * (1.0 + doubt))


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """P(Z <= z) for a standard normal Z, element by element."""
    return np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in z])


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """EI of maximising: E[max(f - best, 0)] under N(mean, std^2)."""
    gain = mean - best
    z = gain / std
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return gain * normal_cdf(z) + std * pdf
