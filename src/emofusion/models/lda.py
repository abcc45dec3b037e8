"""Shrinkage LDA with an efficient, speaker-grouped search of the shrinkage intensity.

The model: class means and a pooled within-class covariance, features scaled to unit
within-class variance, the covariance shrunk towards a scaled identity,
``(1 - s) S + s mu I`` with ``S = Z'Z / n`` (Z: the class-centred, scaled rows), and Gaussian
class posteriors.

Primal form (d <= n). Everything the fit needs is a sum over rows (class counts, class sums,
the within-class scatter), so the statistics of any union of speakers is a sum of per-speaker
statistics. The internal cross-validation (``shrinkage="cv"``) therefore computes one Gram
matrix per fit, gets every inner training set by summing held-out blocks, and pays only one
single-precision Cholesky solve per candidate (candidates are only ranked there; the final
model is refined to double precision): the "efficient regularisation path" that makes a nested,
speaker-grouped search as cheap as a few plain fits (compare scikit-learn's RidgeCV /
LogisticRegressionCV).

Dual form (wide features, d > n, e.g. openSMILE ComParE: d = 6,373). A (d, d) Cholesky costs
O(d^3) per candidate and inner fold; the Woodbury identity
``(a Z'Z + b I)^-1 = (I - a Z' (b I + a Z Z')^-1 Z) / b`` needs instead the (n, n) Gram matrix
Z Z' of each training set, O(n^2 d) once, and an (n, n) solve per candidate, all in double
precision. ``ShrinkageLDA(shrinkage="cv")`` with speaker groups on n = 300 rows, d = 6,373
features (8 classes, 3 inner folds, 4 candidates, one BLAS thread on a shared machine): 27.7 s
CPU (56 s wall) in primal form, 0.3 s CPU (0.4 s wall) in dual form; n = 1,320, d = 6,373:
2.0 s CPU. Both forms give the same model to numerical precision (tests/models/test_lda_wide.py).

Robustness. Features are first put on unit within-class scale in double precision, and the
scatter is summed from class-centred rows (blocks merged by Chan et al.'s update), not as a
raw second moment minus the means' outer products, which cancels in single precision when
the within-class variance is tiny next to the means (near-identical utterances of a class).
A factorisation that round-off still makes fail falls back to a clipped eigendecomposition, so
a fit on finite input does not raise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from operator import add

import numpy as np
from scipy import linalg
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import get_scorer
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from emofusion.evaluation.metrics import balanced_accuracy
from emofusion.evaluation.splits import inner_folds

SOLVERS = ("auto", "primal", "dual")

DEFAULT_GRID = (0.3, 0.6, 0.8, 0.9)
"""Searched intensities. Across speakers, strong shrinkage generalises best: the inner-fold
optimum was 0.3-0.9 on RAVDESS (eGeMAPS, log-mel, both), MELD (MiniLM) and the generated
course corpus, while Ledoit-Wolf's estimate ("auto", 0.01-0.06 there) scored lowest every
time; it remains available as a candidate and as the `lda_lw` model."""


def _class_sums(X: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows per class (K,) and per-class sums of the rows X (n, d), shape (K, d)."""
    one_hot = np.zeros((len(X), n_classes))
    one_hot[np.arange(len(X)), codes] = 1.0
    return one_hot.sum(0), one_hot.T @ X


def _class_means(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """(K, d) class means from counts (K,) and sums (K, d); zero for an absent class."""
    return np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)


def _unit_scale(variances: np.ndarray) -> np.ndarray:
    """Standard deviations (d,) from within-class variances (d,), 1 for a (numerically) constant
    feature, whose scaled values then stay near 0 and leave the shrunk covariance definite."""
    scale = np.sqrt(np.clip(variances, 0, None))
    scale[scale <= 1e-12 * max(scale.max(), 1e-300)] = 1.0
    return scale


def _within_class_scale(X: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Within-class standard deviations (d,) of X (n, d) by `_unit_scale`, in double precision."""
    centred = X - _class_means(*_class_sums(X, codes, n_classes))[codes]
    return _unit_scale(np.einsum("ij,ij->j", centred, centred) / len(X))


@dataclass
class ClassStatistics:
    """Sufficient statistics of a set of rows.

    Attributes:
        counts: (K,) rows per class.
        sums: (K, d) per-class sums of the rows.
        scatter: (d, d) float32 within-class scatter about the set's own class means,
            sum of (x - mean_class)(x - mean_class)'. It is computed from centred rows: a raw
            second moment minus the means' outer products cancels in single precision when the
            within-class variance is small next to the means.
    """

    counts: np.ndarray
    sums: np.ndarray
    scatter: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, codes: np.ndarray, n_classes: int) -> ClassStatistics:
        counts, sums = _class_sums(X, codes, n_classes)
        centred = (X - _class_means(counts, sums)[codes]).astype(np.float32)
        return cls(counts, sums, centred.T @ centred)

    @property
    def means(self) -> np.ndarray:
        """(K, d) class means."""
        return _class_means(self.counts, self.sums)

    def __add__(self, other: ClassStatistics) -> ClassStatistics:
        """Statistics of the union of two row sets: the scatters add up with, per class, the
        term ``n1 n2 / (n1 + n2) (m1 - m2)(m1 - m2)'`` of the two sets' means (Chan et al.)."""
        counts = self.counts + other.counts
        weight = np.divide(self.counts * other.counts, counts, out=np.zeros_like(counts),
                           where=counts > 0)
        gap = self.means - other.means
        between = ((gap.T * weight) @ gap).astype(np.float32)
        return ClassStatistics(counts, self.sums + other.sums, self.scatter + other.scatter + between)


@dataclass
class Scatter(ABC):
    """Within-class scatter Z'Z of a training set, Z = (x - mean_class) / scale (the rows
    class-centred and scaled to unit within-class variance), and the discriminant it gives.
    `PrimalScatter` holds it as a (d, d) matrix, `DualScatter` through the rows (wide features).

    Attributes:
        counts: (K,) rows per class.
        means: (K, d) class means.
        scale: (d,) within-class standard deviations.
    """

    counts: np.ndarray
    means: np.ndarray
    scale: np.ndarray

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.counts.sum())

    @abstractmethod
    def trace(self) -> float:
        """trace(Z'Z)."""

    @abstractmethod
    def frobenius_sq(self) -> float:
        """Squared Frobenius norm of Z'Z."""

    @abstractmethod
    def solve(self, a: float, b: float, rhs: np.ndarray) -> np.ndarray:
        """Solution W (d, m) of ``(a Z'Z + b I) W = rhs`` for rhs (d, m), float64."""

    def row_norms(self, X: np.ndarray, X_squared: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Squared norms (n,) of the scaled, class-centred rows ``(x - mean_class) / scale``,
        from matrix-vector products only (no (n, d) temporary)."""
        inverse_var = 1.0 / self.scale**2
        cross = X @ (self.means * inverse_var).T  # (n, K)
        rows = np.arange(len(X))
        return X_squared @ inverse_var - 2.0 * cross[rows, codes] + \
            ((self.means**2) @ inverse_var)[codes]

    def ledoit_wolf(self, row_norms_sq: np.ndarray) -> float:
        """Ledoit-Wolf intensity (as sklearn's) from the scatter and the rows' `row_norms`."""
        d = len(self.scale)
        trace = row_norms_sq.sum() / self.n
        mu = trace / d
        delta_sum = self.frobenius_sq() / self.n**2
        beta = (float(np.sum(row_norms_sq**2)) / self.n - delta_sum) / (d * self.n)
        delta = (delta_sum - 2.0 * mu * trace + d * mu**2) / d
        beta = min(beta, delta)
        return 0.0 if beta <= 0 else float(beta / delta)

    def discriminant(self, intensity: float, priors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Linear scores ``x @ coef.T + intercept`` for a shrinkage intensity.

        Returns:
            coef (K, d) and intercept (K,) in the units of the rows the scatter was built from.
        """
        mu = self.trace() / (self.n * len(self.scale))
        b = max(intensity * mu, 1e-8 * mu, 1e-12)
        rhs = (self.means / self.scale).T
        weights = self.solve((1.0 - intensity) / self.n, b, rhs)
        with np.errstate(divide="ignore"):
            log_priors = np.log(priors)
        intercept = -0.5 * np.einsum("dk,dk->k", rhs, weights) + log_priors
        return (weights / self.scale[:, None]).T, intercept


@dataclass
class PrimalScatter(Scatter):
    """The scaled scatter as a (d, d) matrix, from summed `ClassStatistics`.

    Attributes:
        scaled: (d, d) Z'Z in float64 (final models, refined to double precision) or float32
            (candidates ranked in the search).
    """

    scaled: np.ndarray
    _single: np.ndarray | None = field(default=None, repr=False)
    _work: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(cls, stats: ClassStatistics, dtype=np.float64) -> PrimalScatter:
        scale = _unit_scale(np.diag(stats.scatter).astype(np.float64) / stats.counts.sum())
        scaled = stats.scatter.astype(dtype)  # always a copy, modified in place below
        scaled /= scale[:, None].astype(dtype)
        scaled /= scale[None, :].astype(dtype)
        return cls(stats.counts, stats.means, scale, scaled)

    def trace(self) -> float:
        return float(np.trace(self.scaled, dtype=np.float64))

    def frobenius_sq(self) -> float:
        return float(np.sum(np.square(self.scaled), dtype=np.float64))

    def solve(self, a: float, b: float, rhs: np.ndarray) -> np.ndarray:
        """Factorised in single precision (twice as fast); with a float64 `scaled` the solution
        is refined once in double precision, which restores double accuracy for these
        well-conditioned matrices."""
        if self._single is None:
            self._single = self.scaled if self.scaled.dtype == np.float32 else self.scaled.astype(np.float32)
            self._work = np.empty_like(self._single)  # one buffer for every candidate's factor
        solve = _shrunk_solver(self._single, a, b, out=self._work)
        weights = solve(rhs)
        if self.scaled.dtype == np.float64:
            weights += solve(rhs - (a * (self.scaled @ weights) + b * weights))
        return weights


@dataclass
class DualScatter(Scatter):
    """The scaled scatter through its rows, for wide features (d > n), in double precision:
    by the Woodbury identity ``(a Z'Z + b I)^-1 = (I - a Z' (b I + a Z Z')^-1 Z) / b``, each
    solve is one (n, n) Cholesky factorisation of the Gram matrix Z Z' instead of a (d, d) one.

    Attributes:
        rows: (n, d) Z.
        gram: (n, n) Z Z'.
    """

    rows: np.ndarray
    gram: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, codes: np.ndarray, n_classes: int) -> DualScatter:
        counts, sums = _class_sums(X, codes, n_classes)
        means = _class_means(counts, sums)
        rows = X - means[codes]
        scale = _unit_scale(np.einsum("ij,ij->j", rows, rows) / len(X))
        rows /= scale
        return cls(counts, means, scale, rows, rows @ rows.T)

    def trace(self) -> float:
        return float(np.trace(self.gram))

    def frobenius_sq(self) -> float:
        return float(np.sum(np.square(self.gram)))  # Z'Z and Z Z' share their eigenvalues

    def solve(self, a: float, b: float, rhs: np.ndarray) -> np.ndarray:
        solve = _shrunk_solver(self.gram, a, b)
        return (rhs - self.rows.T @ solve(a * (self.rows @ rhs))) / b


def _shrunk_solver(gram: np.ndarray, a: float, b: float,
                   out: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function solving ``(a gram + b I) W = rhs`` for rhs (m, k), returning float64 W, for a
    symmetric positive semi-definite gram (m, m): a Cholesky factorisation in gram's precision
    (into `out` if given). When round-off makes the matrix indefinite (a single-precision gram,
    or an intensity near 0 with collinear features), the solve goes through gram's
    eigendecomposition in double precision, eigenvalues clipped at 0, which cannot fail."""
    cov = np.multiply(gram, gram.dtype.type(a), out=out)
    cov[np.diag_indices_from(cov)] += gram.dtype.type(b)
    try:
        factor = linalg.cho_factor(cov, check_finite=False, overwrite_a=True)
    except linalg.LinAlgError:
        values, vectors = linalg.eigh(gram.astype(np.float64), check_finite=False)
        inverse = 1.0 / (a * np.clip(values, 0, None) + b)
        return lambda rhs: vectors @ (inverse[:, None] * (vectors.T @ rhs))
    return lambda rhs: linalg.cho_solve(factor, rhs.astype(cov.dtype), check_finite=False).astype(np.float64)


class ShrinkageLDA(ClassifierMixin, BaseEstimator):
    """Linear discriminant analysis with a shrunk pooled within-class covariance.

    Args:
        shrinkage: ``"auto"`` (Ledoit-Wolf), a float in [0, 1], or ``"cv"``: choose among
            `shrinkage_grid` by the cross-validated `scoring` over folds of whole `groups`
            (speakers) passed to `fit`, stratified folds when no groups are given.
        shrinkage_grid: candidates for ``"cv"`` (``"auto"`` allowed).
        cv: number of inner folds for ``"cv"``.
        scoring: scikit-learn scorer name ranking the ``"cv"`` candidates (the nested search's
            `scoring`); the default, balanced accuracy, is computed without sklearn's checks.
        class_weight: ``None`` (class frequencies as priors), ``"balanced"`` (equal priors) or
            a dict ``{class: weight}`` multiplying each class's frequency.
        solver: ``"primal"`` (a (d, d) system per solve), ``"dual"`` (an (n, n) one, for wide
            features) or ``"auto"``: dual when there are more features than rows (d > n). Both
            give the same model to numerical precision.

    Attributes:
        shrinkage_: the intensity used by the final model.
        solver_: the solver used, ``"primal"`` or ``"dual"``.
        best_params_: ``{"shrinkage": value}`` chosen by ``"cv"``; a clone with these parameters
            reproduces the final model without searching again.
        cv_scores_: mean inner `scoring` per candidate (``"cv"`` only).
        best_score_: the chosen candidate's mean inner `scoring` (``"cv"`` only).
        oof_proba_: (n, n_classes) probabilities of each training row from the inner fold that
            held it out, at the chosen shrinkage (``"cv"`` only): what refitting a frozen clone
            on those folds gives (to single precision in primal form), so stacking reuses them (see
            `emofusion.fusion.stacking.out_of_fold_probabilities`).
        cv_held_out_: the held-out row indices of each inner fold (``"cv"`` only).
    """

    def __init__(self, shrinkage="auto", shrinkage_grid=DEFAULT_GRID, cv=3, class_weight=None,
                 scoring="balanced_accuracy", solver="auto"):
        self.shrinkage = shrinkage
        self.shrinkage_grid = shrinkage_grid
        self.cv = cv
        self.class_weight = class_weight
        self.scoring = scoring
        self.solver = solver

    def fit(self, X, y, groups=None):
        """Fit on X (n, d) float and labels y (n,); `groups` (n,) are speakers for ``"cv"``."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        for stale in ("best_params_", "best_score_", "cv_scores_", "oof_proba_", "cv_held_out_"):
            self.__dict__.pop(stale, None)  # a refit without search must not report old ones
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"ShrinkageLDA needs at least two classes; got 1 class: {self.classes_}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        self.solver_ = "dual" if self.solver == "dual" or (
            self.solver == "auto" and X.shape[1] > X.shape[0]) else "primal"
        offset = X.mean(axis=0)
        # unit within-class scale in double precision first: single-precision sums stay in range
        unit = _within_class_scale(X, codes, len(self.classes_))
        weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        coef, intercept = self._fit_scaled((X - offset) / unit, codes, groups, weights)
        self.coef_ = coef / unit
        self.intercept_ = intercept - self.coef_ @ offset
        return self

    def _fit_scaled(self, X: np.ndarray, codes: np.ndarray, groups,
                    weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The search (``"cv"``) and the final discriminant, coef (K, d) and intercept (K,), on
        centred rows X (n, d) with class codes (n,) and class weights (K,)."""
        uses_ledoit_wolf = "auto" in (self.shrinkage, *(self.shrinkage_grid or ()))
        squared = X * X if uses_ledoit_wolf else None  # only Ledoit-Wolf needs it
        folds = inner_folds(codes, groups, self.cv, seed=0) if self.shrinkage == "cv" else []
        fold_scatters, scatter = _training_scatters(X, codes, len(self.classes_), folds,
                                                    dual=self.solver_ == "dual")
        chosen = self.shrinkage
        if folds:
            chosen = self._choose(X, squared, codes, fold_scatters, folds, weights)
            self.best_params_ = {"shrinkage": chosen}
        self.shrinkage_ = self._intensity(chosen, scatter, X, squared, codes)
        return scatter.discriminant(self.shrinkage_, _priors(scatter.counts, weights))

    @staticmethod
    def _intensity(value, scatter: Scatter, X: np.ndarray, squared: np.ndarray | None,
                   codes: np.ndarray, rows=slice(None)) -> float:
        """The intensity for a shrinkage value; "auto" uses the Ledoit-Wolf formula on `rows`."""
        if isinstance(value, str):
            if value != "auto":
                raise ValueError(f"shrinkage must be 'auto', 'cv' or in [0, 1], got {value!r}")
            return scatter.ledoit_wolf(scatter.row_norms(X, squared, codes)[rows])
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"shrinkage must be 'auto', 'cv' or in [0, 1], got {value}")
        return float(value)

    def _choose(self, X, squared, codes, scatters: list[Scatter], folds, weights):
        """The best of `shrinkage_grid` given each inner fold's training scatter; sets the
        search's attributes."""
        scorer = None if self.scoring == "balanced_accuracy" else get_scorer(self.scoring)
        scores = np.zeros(len(self.shrinkage_grid))
        held_out_scores = np.zeros((len(self.shrinkage_grid), len(X), len(self.classes_)))
        for scatter, (train, held_out) in zip(scatters, folds, strict=True):
            priors = _priors(scatter.counts, weights)
            X_held_out = X[held_out]
            for i, candidate in enumerate(self.shrinkage_grid):
                intensity = self._intensity(candidate, scatter, X, squared, codes, train)
                coef, intercept = scatter.discriminant(intensity, priors)
                held_out_scores[i, held_out] = X_held_out @ coef.T + intercept
                scores[i] += self._candidate_score(scorer, X_held_out, codes[held_out],
                                                   held_out_scores[i, held_out], coef,
                                                   intercept) / len(folds)
        self.cv_scores_ = dict(zip(map(str, self.shrinkage_grid), scores.round(4), strict=True))
        best = int(np.argmax(scores))
        self.best_score_ = float(scores[best])
        self.oof_proba_ = softmax(held_out_scores[best], axis=1)
        self.cv_held_out_ = [held_out for _, held_out in folds]
        return self.shrinkage_grid[best]

    def _candidate_score(self, scorer, X: np.ndarray, codes: np.ndarray, class_scores: np.ndarray,
                         coef: np.ndarray, intercept: np.ndarray) -> float:
        """One candidate's `scoring` on held-out rows X (m, d) with class codes (m,), given its
        class scores (m, K) and discriminant; `scorer` None is balanced accuracy."""
        if scorer is None:
            return balanced_accuracy(codes, np.argmax(class_scores, axis=1), len(self.classes_))
        candidate = ShrinkageLDA()  # a fitted view of the candidate, for the sklearn scorer
        candidate.classes_, candidate.coef_, candidate.intercept_ = (
            np.arange(len(self.classes_)), coef, intercept)
        candidate.n_features_in_ = X.shape[1]
        return float(scorer(candidate, X, codes))

    def _class_scores(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X @ self.coef_.T + self.intercept_

    def decision_function(self, X):
        """Class scores (n, n_classes); for two classes the score difference, shape (n,)."""
        scores = self._class_scores(X)
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict_proba(self, X):
        """Posterior class probabilities (n, n_classes)."""
        return softmax(self._class_scores(X), axis=1)

    def predict(self, X):
        """Most probable class per row, shape (n,)."""
        scores = self._class_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]


def _priors(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    weighted = counts * weights
    return weighted / weighted.sum()


def _training_scatters(X: np.ndarray, codes: np.ndarray, n_classes: int, folds, dual: bool
                       ) -> tuple[list[Scatter], Scatter]:
    """The scatters of each inner fold's training rows (for ranking: single precision in primal
    form) and of all rows X (n, d) (the final model).

    In primal form one pass over X gives each fold's held-out statistics; the folds partition
    the rows, so a fold's training statistics are the sum of the other folds' held-out ones.
    """
    if dual:
        return ([DualScatter.of(X[train], codes[train], n_classes) for train, _ in folds],
                DualScatter.of(X, codes, n_classes))
    held = [ClassStatistics.of(X[rows], codes[rows], n_classes) for _, rows in folds]
    trains = [reduce(add, held[:i] + held[i + 1:]) for i in range(len(held))]
    total = reduce(add, held) if held else ClassStatistics.of(X, codes, n_classes)
    return [PrimalScatter.of(train, np.float32) for train in trains], PrimalScatter.of(total)
