"""Choose an encoder layer on the training speakers only.

Self-supervised speech encoders (``hf_audio``) give one pooled row per layer, ``(L, w)`` per
utterance; which layer carries emotion best differs by model and corpus. `LayerSelector` takes
those arrays flattened (pooling ``select``, their default in a run, or ``flat``: ``(n, L * w)``)
and keeps one layer, the mean of all layers, or a weighted average of the layers. A run puts it
in front of every model of a ``select`` modality (and of early fusion). With ``layer="cv"`` it
scores every candidate by cross-validation over speaker-grouped inner folds of the data given to
`fit` (the training speakers of an outer fold), so the choice never sees a test speaker; a fixed
``layer`` does not learn anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from emofusion.errors import ConfigError
from emofusion.evaluation.splits import inner_folds
from emofusion.models.lda import ShrinkageLDA

LAYER_STEP_PREFIX = "layers_"
"""A run's pipeline step ``layers_<modality>`` is the `LayerSelector` of that modality's block."""

Layer = int | str | tuple[float, ...]
"""A layer index (negative counts from the last layer), ``"mean"`` (average of the layers) or
one weight per layer (a fixed weighted average)."""


def default_layer_scorer() -> Any:
    """The classifier that scores candidate layers: standardisation + Ledoit-Wolf shrinkage LDA
    (no inner search of its own, one fit per candidate and fold)."""
    return make_pipeline(StandardScaler(), ShrinkageLDA(shrinkage="auto"))


def score_weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Layer weights ``(L,)`` from the layers' inner scores: ``softmax(scores / temperature)``;
    a small temperature favours the best layers, a large one tends to the plain mean."""
    logits = (scores - scores.max()) / max(temperature, 1e-12)
    weights = np.exp(logits)
    return weights / weights.sum()


class LayerSelector(TransformerMixin, BaseEstimator):
    """Keep one layer, the mean of the layers, or a weighted average of flattened layer features.

    Args:
        n_layers: L, the layers per utterance (features.json ``layers`` of an ``hf_audio``
            modality, e.g. 13 for a base-size wav2vec 2.0: the embeddings + 12 layers).
        layer: an int (fixed layer; -1 is the last), ``"mean"`` (average of all layers), a
            tuple of L weights (fixed weighted average), or ``"cv"``: the best of every single
            layer, ``"mean"`` and ``"weighted"`` (weights `score_weights` of the single layers'
            inner scores) by mean inner `scoring`, over folds grouped by the ``groups`` passed
            to `fit` (stratified folds when no groups are given; ties go to the earlier
            candidate).
        estimator: classifier used to score candidates for ``"cv"``; default
            `default_layer_scorer`.
        cv: number of inner folds for ``"cv"``.
        scoring: scikit-learn scorer name ranking the candidates.
        temperature: softmax temperature of the ``"weighted"`` candidate, in score units.
        columns: ``(start, stop)``: the flattened layers are these columns of X and every other
            column passes through (the kept layer takes the block's place; early fusion of an
            encoder's layers with other features); None = all of X.

    Attributes:
        layer_: the kept layer: an index in ``[0, L)``, ``"mean"`` or ``"weighted"``.
        weights_: ``(L,)`` weights of the layers in the output (one-hot for a single layer).
        cv_scores_: ``{candidate: mean inner score}`` (``"cv"`` only).
        best_params_: ``{"layer": ...}`` (``"cv"`` only): a clone with these parameters keeps
            the same output without searching again (the weights for ``"weighted"``).
        n_features_in_: X's width (``L * w`` without ``columns``).
    """

    def __init__(self, n_layers: int = 1, layer: Layer = "cv", estimator: Any = None, cv: int = 3,
                 scoring: str = "balanced_accuracy", temperature: float = 0.02,
                 columns: tuple[int, int] | None = None):
        self.n_layers = n_layers
        self.layer = layer
        self.estimator = estimator
        self.cv = cv
        self.scoring = scoring
        self.temperature = temperature
        self.columns = columns

    def _span(self, X: np.ndarray) -> tuple[int, int]:
        """(start, stop) of the layers block in X."""
        return (0, X.shape[1]) if self.columns is None else tuple(self.columns)

    def _layers(self, X: np.ndarray) -> np.ndarray:
        """``(n, L, w)`` view of ``X`` of shape ``(n, L * w)``."""
        if self.n_layers < 1 or X.shape[1] % self.n_layers:
            raise ConfigError(f"LayerSelector: {X.shape[1]} features cannot be split into "
                              f"n_layers={self.n_layers} layers of equal width; give the "
                              "modality's 'layers' from features.json and pooling 'select' "
                              "or 'flat'")
        return X.reshape(len(X), self.n_layers, -1)

    def _fixed(self, layer: Layer) -> tuple[Layer, np.ndarray]:
        """``(layer_, weights_)`` of a fixed choice; `ConfigError` when it is invalid."""
        if layer == "mean":
            return "mean", np.full(self.n_layers, 1.0 / self.n_layers)
        if isinstance(layer, (int, np.integer)) and -self.n_layers <= layer < self.n_layers:
            index = int(layer) % self.n_layers
            return index, np.eye(self.n_layers)[index]
        if isinstance(layer, (tuple, list, np.ndarray)) and len(layer) == self.n_layers:
            weights = np.asarray(layer, dtype=np.float64)
            if np.all(weights >= 0) and weights.sum() > 0:
                return "weighted", weights / weights.sum()
        raise ConfigError(f"LayerSelector: layer={layer!r} must be 'cv', 'mean', an index between "
                          f"{-self.n_layers} and {self.n_layers - 1}, or {self.n_layers} "
                          "non-negative weights")

    def _score(self, layers: np.ndarray, weights: np.ndarray, y: np.ndarray, folds: list) -> float:
        """Mean inner score of the weighted layers ``(n, w)``."""
        scorer = self.estimator if self.estimator is not None else default_layer_scorer()
        return float(np.mean(cross_val_score(
            clone(scorer), np.tensordot(layers, weights, axes=([1], [0])), y, cv=folds,
            scoring=self.scoring, error_score="raise")))

    def fit(self, X, y=None, groups=None) -> LayerSelector:
        """Choose the layer from X ``(n, L * w)``, labels y ``(n,)`` and speakers ``groups``."""
        X = validate_data(self, X, dtype=np.float64)
        start, stop = self._span(X)
        layers = self._layers(X[:, start:stop])
        self.__dict__.pop("cv_scores_", None)
        self.__dict__.pop("best_params_", None)
        if not (isinstance(self.layer, str) and self.layer == "cv"):
            self.layer_, self.weights_ = self._fixed(self.layer)
            return self
        if y is None:
            raise ConfigError("LayerSelector(layer='cv') needs the labels y to choose a layer")
        y = np.asarray(y)
        folds = inner_folds(y, None if groups is None else np.asarray(groups), self.cv)
        candidates: dict[Layer, np.ndarray] = {
            index: weights for index, weights in enumerate(np.eye(self.n_layers))}
        self.cv_scores_ = {c: self._score(layers, w, y, folds) for c, w in candidates.items()}
        layer_scores = np.array(list(self.cv_scores_.values()))
        candidates["mean"] = self._fixed("mean")[1]
        candidates["weighted"] = score_weights(layer_scores, self.temperature)
        for name in ("mean", "weighted"):
            self.cv_scores_[name] = self._score(layers, candidates[name], y, folds)
        order = list(candidates)
        self.layer_ = max(order, key=lambda c: (self.cv_scores_[c], -order.index(c)))
        self.weights_ = candidates[self.layer_]
        chosen = tuple(self.weights_.tolist()) if self.layer_ == "weighted" else self.layer_
        self.best_params_ = {"layer": chosen}
        return self

    def transform(self, X) -> np.ndarray:
        """The kept layer (or weighted average of layers) of X ``(n, L * w)``: ``(n, w)`` (with
        ``columns``, the other columns of X around it)."""
        check_is_fitted(self, "weights_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        start, stop = self._span(X)
        kept = np.tensordot(self._layers(X[:, start:stop]), self.weights_, axes=([1], [0]))
        return np.hstack([X[:, :start], kept, X[:, stop:]])
