"""Classical classifiers on pooled features, registered by name.

All are scikit-learn estimators. `ShrinkageLDA` is the fast default: linear discriminant analysis
whose covariance is shrunk with the analytic Ledoit-Wolf intensity, so it needs no search and
fits with one Gram matrix and one Cholesky solve.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from emofusion.models.registry import ModelSpec, register


def ledoit_wolf_intensity(centered: np.ndarray, gram: np.ndarray) -> float:
    """Ledoit-Wolf shrinkage intensity towards a scaled identity.

    Args:
        centered: (n, d) centred data.
        gram: ``centered.T @ centered`` (d, d) or ``centered @ centered.T`` (n, n): both have the
            same Frobenius norm, so the smaller one is passed in.

    Returns:
        The intensity in [0, 1] (same formula as `sklearn.covariance.ledoit_wolf_shrinkage`).
    """
    n, d = centered.shape
    row_norms_sq = np.einsum("ij,ij->i", centered, centered)
    trace = row_norms_sq.sum() / n
    mu = trace / d
    beta_sum = float(np.sum(row_norms_sq**2))
    delta_sum = float(np.sum(gram**2)) / n**2
    beta = (beta_sum / n - delta_sum) / (d * n)
    delta = (delta_sum - 2.0 * mu * trace + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta <= 0 else float(beta / delta)


def solve_shrunk_covariance(scaled: np.ndarray, gram: np.ndarray, intensity: float,
                            rhs: np.ndarray) -> np.ndarray:
    """Solve ``((1 - s) Z'Z / n + s mu I) W = rhs`` for W (d, k).

    Uses the (d, d) primal system when n >= d and the Woodbury identity on the (n, n) dual
    system otherwise, so the cost is cubic in min(n, d).

    Args:
        scaled: Z, (n, d) centred and scaled data.
        gram: Z'Z (d, d) when n >= d, else ZZ' (n, n).
        intensity: shrinkage s in [0, 1].
        rhs: (d, k) right-hand side.
    """
    n, d = scaled.shape
    mu = np.trace(gram) / (n * d)
    a = (1.0 - intensity) / n
    b = max(intensity * mu, 1e-8 * mu, 1e-12)
    system = a * gram
    system[np.diag_indices_from(system)] += b
    factor = linalg.cho_factor(system, check_finite=False)
    if n >= d:
        return linalg.cho_solve(factor, rhs, check_finite=False)
    inner = linalg.cho_solve(factor, a * (scaled @ rhs), check_finite=False)
    return (rhs - scaled.T @ inner) / b


def _gram(scaled: np.ndarray) -> np.ndarray:
    """Z'Z (d, d) when n >= d, else ZZ' (n, n); single-precision product, double result (the
    data are standardised, so float32 accumulation loses nothing the shrinkage would keep)."""
    single = scaled.astype(np.float32)
    product = single.T @ single if len(scaled) >= scaled.shape[1] else single @ single.T
    return product.astype(np.float64)


class ShrinkageLDA(ClassifierMixin, BaseEstimator):
    """Linear discriminant analysis with a shrunk pooled within-class covariance.

    Features are scaled to unit within-class variance before shrinkage (as scikit-learn's LDA
    does), so the intensity does not depend on feature units.

    Args:
        shrinkage: ``"auto"`` for the Ledoit-Wolf intensity, or a float in [0, 1].
        class_weight: ``None`` uses the training class frequencies as priors, ``"balanced"``
            equal priors (better unweighted accuracy on imbalanced data); a dict
            ``{class: weight}`` multiplies each class's frequency.
    """

    def __init__(self, shrinkage="auto", class_weight=None):
        self.shrinkage = shrinkage
        self.class_weight = class_weight

    def fit(self, X, y):
        """Fit on X (n, d) float and labels y (n,)."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"ShrinkageLDA needs at least two classes; got 1 class: {self.classes_}")
        counts = np.bincount(codes).astype(float)
        one_hot = np.zeros((len(X), len(counts)))
        one_hot[np.arange(len(X)), codes] = 1.0
        means = (one_hot.T @ X) / counts[:, None]
        scaled = X - means[codes]
        scale = np.sqrt(np.einsum("ij,ij->j", scaled, scaled) / len(X))
        scale[scale == 0] = 1.0
        scaled /= scale
        gram = _gram(scaled)
        intensity = self._intensity(scaled, gram)
        scaled_means = means / scale
        weights = solve_shrunk_covariance(scaled, gram, intensity, scaled_means.T)
        weighted = counts * compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        priors = weighted / weighted.sum()
        self.coef_ = (weights / scale[:, None]).T
        self.intercept_ = -0.5 * np.einsum("kd,dk->k", scaled_means, weights) + np.log(priors)
        self.shrinkage_ = intensity
        return self

    def _intensity(self, centered: np.ndarray, gram: np.ndarray) -> float:
        if self.shrinkage == "auto":
            return ledoit_wolf_intensity(centered, gram)
        if not 0.0 <= float(self.shrinkage) <= 1.0:
            raise ValueError(f"shrinkage must be 'auto' or in [0, 1], got {self.shrinkage}")
        return float(self.shrinkage)

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


def _spec(name: str, description: str, build, grid=None, weighted: bool = True,
          scale_invariant: bool = False) -> None:
    register(ModelSpec(name=name, description=description, build=build, grid=grid or {},
                       supports_class_weight=weighted, scale_invariant=scale_invariant))


_spec("lda", "Shrinkage LDA (Ledoit-Wolf, analytic; fast strong default, no search needed)",
      lambda seed, cw: ShrinkageLDA(class_weight=cw), scale_invariant=True)
_spec("svm", "SVC with probabilities; grid C {0.1,1,10} x kernel {linear,rbf,poly} (course grid)",
      lambda seed, cw: SVC(probability=True, class_weight=cw, random_state=seed),
      {"C": [0.1, 1, 10], "kernel": ["linear", "rbf", "poly"]})
_spec("svm_rbf", "RBF SVC with probabilities; grid C {1,10}",
      lambda seed, cw: SVC(kernel="rbf", probability=True, class_weight=cw, random_state=seed),
      {"C": [1, 10]})
_spec("logreg", "Multinomial logistic regression; grid C {0.01,0.1,1}",
      lambda seed, cw: LogisticRegression(max_iter=2000, class_weight=cw),
      {"C": [0.01, 0.1, 1.0]})
_spec("rf", "Random forest; grid n_estimators {50,100,200} x max_depth {None,10,20} (course grid)",
      lambda seed, cw: RandomForestClassifier(class_weight=cw, random_state=seed, n_jobs=1),
      {"n_estimators": [50, 100, 200], "max_depth": [None, 10, 20]})
_spec("gb", "Histogram gradient boosting; grid learning_rate {0.05,0.1}",
      lambda seed, cw: HistGradientBoostingClassifier(class_weight=cw, random_state=seed),
      {"learning_rate": [0.05, 0.1]})
_spec("knn", "k nearest neighbours; grid k {5,15,31}",
      lambda seed, cw: KNeighborsClassifier(), {"n_neighbors": [5, 15, 31]}, weighted=False)
_spec("mlp_sklearn", "scikit-learn MLP 128-64 with early stopping inside the training data",
      lambda seed, cw: MLPClassifier(hidden_layer_sizes=(128, 64), early_stopping=True,
                                     max_iter=300, random_state=seed),
      {"alpha": [1e-4, 1e-2]}, weighted=False)
