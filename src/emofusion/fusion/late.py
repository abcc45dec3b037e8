"""Late fusion: each modality's classifier votes, or their probabilities are averaged.

Majority vote tie rule: the class with the most votes wins; among tied classes the one with the
highest mean probability wins. The vote system's scores are
``(votes + 0.5 * mean_probability) / (n_models + 0.5)``, which sum to one and whose arg-max is
exactly that rule, so ROC/PR curves can be drawn for it too.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from emofusion.models.pipeline import accepts_groups

Rule = Literal["vote", "mean"]


def combine_probabilities(probabilities: list[np.ndarray], rule: Rule) -> np.ndarray:
    """Fuse per-model class probabilities.

    Args:
        probabilities: one (n, n_classes) array per model, columns in the same class order.
        rule: ``"mean"`` averages; ``"vote"`` counts arg-max votes (tie rule above).

    Returns:
        (n, n_classes) fused scores that sum to one per row.
    """
    stacked = np.stack(probabilities)  # (n_models, n, n_classes)
    mean = stacked.mean(axis=0)
    if rule == "mean":
        return mean
    votes = np.zeros_like(mean)
    rows = np.arange(mean.shape[0])
    for model_probabilities in stacked:
        votes[rows, model_probabilities.argmax(axis=1)] += 1
    return (votes + 0.5 * mean) / (len(stacked) + 0.5)


def select_columns(X: np.ndarray, columns: tuple[int, int]) -> np.ndarray:
    """The block ``X[:, start:stop]`` of one modality.

    A numeric X (n, d_total) gives its columns. An object X (n, n_modalities) holds one cell per
    row and modality: frame sequences and transcripts come back as that (n, 1) object column,
    pooled row vectors (d,) are stacked into an (n, d) float matrix.
    """
    block = X[:, columns[0]:columns[1]]
    if block.dtype == object and block.shape[1] == 1 and len(block) and isinstance(
            block[0, 0], np.ndarray) and block[0, 0].ndim == 1:
        return np.vstack(block[:, 0])
    return block


def fit_base(estimator, X, y: np.ndarray, groups: np.ndarray | None):
    """A fitted clone of `estimator`, given the speaker `groups` when its fit takes them."""
    params = {"groups": groups} if groups is not None and accepts_groups(estimator) else {}
    return clone(estimator).fit(X, y, **params)


class LateFusionClassifier(ClassifierMixin, BaseEstimator):
    """One classifier per modality block of X, fused by vote or mean probability.

    Args:
        estimators: list of (name, unfitted estimator), one per modality.
        columns: list of (start, stop) column ranges of each modality in X.
        rule: ``"vote"`` or ``"mean"``.
    """

    def __init__(self, estimators, columns, rule: Rule = "mean"):
        self.estimators = estimators
        self.columns = columns
        self.rule = rule

    def fit(self, X, y, groups=None):
        """Fit each modality's estimator on its block of X (n, d_total); `groups` (n,) are
        the speakers, passed to estimators that search or stop early by speaker."""
        fitted = [fit_base(est, select_columns(X, cols), y, groups)
                  for (_, est), cols in zip(self.estimators, self.columns, strict=True)]
        return self.use_fitted(fitted, y)

    def use_fitted(self, fitted: list, y) -> LateFusionClassifier:
        """Adopt already fitted modality estimators (one per entry of `estimators`, fitted on
        the same rows as `y`): how a run shares its unimodal models with the fusions."""
        self.classes_ = np.unique(y)
        self.estimators_ = list(fitted)
        return self

    def modality_probabilities(self, X) -> list[np.ndarray]:
        """Each modality model's (n, n_classes) probabilities."""
        check_is_fitted(self)
        return [est.predict_proba(select_columns(X, cols))
                for est, cols in zip(self.estimators_, self.columns, strict=True)]

    def fuse(self, probabilities: list[np.ndarray]) -> np.ndarray:
        """Fused (n, n_classes) scores of the modality models' (n, n_classes) probabilities (one
        array per modality, in `estimators` order); needs no fitting."""
        return combine_probabilities(probabilities, self.rule)

    def predict_proba(self, X):
        """Fused (n, n_classes) scores."""
        return self.fuse(self.modality_probabilities(X))

    def predict(self, X):
        """Fused class per row, shape (n,)."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
