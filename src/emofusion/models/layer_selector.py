"""Choose an encoder layer on the training speakers only.

Self-supervised speech encoders (``hf_audio``) give one pooled row per layer, ``(L, w)`` per
utterance; which layer carries emotion best differs by model and corpus. `LayerSelector` takes
those arrays flattened (pooling ``flat``: ``(n, L * w)``) and keeps one layer, or the mean of all
layers. With ``layer="cv"`` it scores every candidate by cross-validation over speaker-grouped
inner folds of the data given to `fit` (the training speakers of an outer fold), so the choice
never sees a test speaker; a fixed ``layer`` does not learn anything.
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

Layer = int | str
"""A layer index (negative counts from the last layer) or ``"mean"`` (average of the layers)."""


def default_layer_scorer() -> Any:
    """The classifier that scores candidate layers: standardisation + Ledoit-Wolf shrinkage LDA
    (no inner search of its own, one fit per candidate and fold)."""
    return make_pipeline(StandardScaler(), ShrinkageLDA(shrinkage="auto"))


class LayerSelector(TransformerMixin, BaseEstimator):
    """Keep one layer, or the mean of the layers, of flattened per-layer features.

    Args:
        n_layers: L, the layers per utterance (features.json ``layers`` of an ``hf_audio``
            modality, e.g. 13 for a base-size wav2vec 2.0: the embeddings + 12 layers).
        layer: an int (fixed layer; -1 is the last), ``"mean"`` (average of all layers), or
            ``"cv"``: the candidate (every single layer, and ``"mean"``) with the best mean
            inner `scoring`, over folds grouped by the ``groups`` passed to `fit` (stratified
            folds when no groups are given; ties go to the earlier candidate).
        estimator: classifier used to score candidates for ``"cv"``; default
            `default_layer_scorer`.
        cv: number of inner folds for ``"cv"``.
        scoring: scikit-learn scorer name ranking the candidates.

    Attributes:
        layer_: the kept layer: an index in ``[0, L)`` or ``"mean"``.
        cv_scores_: ``{candidate: mean inner score}`` (``"cv"`` only).
        best_params_: ``{"layer": layer_}`` (``"cv"`` only): a clone with these parameters
            keeps the same layer without searching again.
        n_features_in_: ``L * w``.
    """

    def __init__(self, n_layers: int = 1, layer: Layer = "cv", estimator: Any = None, cv: int = 3,
                 scoring: str = "balanced_accuracy"):
        self.n_layers = n_layers
        self.layer = layer
        self.estimator = estimator
        self.cv = cv
        self.scoring = scoring

    def _layers(self, X: np.ndarray) -> np.ndarray:
        """``(n, L, w)`` view of ``X`` of shape ``(n, L * w)``."""
        if self.n_layers < 1 or X.shape[1] % self.n_layers:
            raise ConfigError(f"LayerSelector: {X.shape[1]} features cannot be split into "
                              f"n_layers={self.n_layers} layers of equal width; give the "
                              "modality's 'layers' from features.json and pooling 'flat'")
        return X.reshape(len(X), self.n_layers, -1)

    def _fixed_layer(self, layer: Layer) -> Layer:
        """``layer`` as an index in ``[0, L)`` or ``"mean"``; `ConfigError` when invalid."""
        if layer == "mean":
            return "mean"
        if isinstance(layer, (int, np.integer)) and -self.n_layers <= layer < self.n_layers:
            return int(layer) % self.n_layers
        raise ConfigError(f"LayerSelector: layer={layer!r} must be 'cv', 'mean' or an index "
                          f"between {-self.n_layers} and {self.n_layers - 1}")

    @staticmethod
    def _select(layers: np.ndarray, layer: Layer) -> np.ndarray:
        """``(n, w)``: one layer of ``(n, L, w)``, or the mean over layers."""
        return layers.mean(axis=1) if layer == "mean" else layers[:, layer]

    def fit(self, X, y=None, groups=None) -> LayerSelector:
        """Choose the layer from X ``(n, L * w)``, labels y ``(n,)`` and speakers ``groups``."""
        X = validate_data(self, X, dtype=np.float64)
        layers = self._layers(X)
        self.__dict__.pop("cv_scores_", None)
        self.__dict__.pop("best_params_", None)
        if self.layer != "cv":
            self.layer_ = self._fixed_layer(self.layer)
            return self
        if y is None:
            raise ConfigError("LayerSelector(layer='cv') needs the labels y to choose a layer")
        y = np.asarray(y)
        folds = inner_folds(y, None if groups is None else np.asarray(groups), self.cv)
        scorer = self.estimator if self.estimator is not None else default_layer_scorer()
        candidates: list[Layer] = [*range(self.n_layers), "mean"]
        self.cv_scores_ = {
            candidate: float(np.mean(cross_val_score(
                clone(scorer), self._select(layers, candidate), y, cv=folds,
                scoring=self.scoring, error_score="raise")))
            for candidate in candidates}
        self.layer_ = max(candidates, key=lambda c: (self.cv_scores_[c], -candidates.index(c)))
        self.best_params_ = {"layer": self.layer_}
        return self

    def transform(self, X) -> np.ndarray:
        """The kept layer of X ``(n, L * w)``: ``(n, w)``."""
        check_is_fitted(self, "layer_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._select(self._layers(X), self.layer_)
