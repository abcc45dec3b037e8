"""Turn a model name and the run's options into a scikit-learn pipeline.

Scaling and resampling live inside the pipeline, so cross-validation and grid search refit them
on each training part only: nothing is fitted on held-out speakers. Resampling is done by
`GroupResampledClassifier`, which resamples the speaker groups together with the rows, so
classifiers that search or stop early on speaker-grouped folds (the default LDA, the PyTorch
models) still see whole speakers after over-sampling.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from imblearn.over_sampling import SMOTE, RandomOverSampler
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _num_features, check_is_fitted, column_or_1d

from emofusion.errors import ConfigError
from emofusion.models.registry import ModelSpec

CLASSIFIER_STEP = "clf"
RESAMPLED_PREFIX = "estimator__"


def accepts_groups(estimator) -> bool:
    """Whether `estimator.fit` takes speaker `groups` (searches or stops early by speaker)."""
    return "groups" in inspect.signature(estimator.fit).parameters


def resampled_groups(sampler, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                     n_resampled: int) -> np.ndarray:
    """The speaker of every row a fitted sampler returned.

    RandomOverSampler reports the source row of each output row (`sample_indices_`). SMOTE
    returns the original rows followed by synthetic ones; each synthetic row gets the speaker of
    its nearest original row of the same class (it lies on a segment starting there).
    """
    indices = getattr(sampler, "sample_indices_", None)
    if indices is not None:
        return np.asarray(groups)[indices]
    X_new, y_new = sampler.X_synthetic_, sampler.y_synthetic_
    out = np.empty(n_resampled, dtype=np.asarray(groups).dtype)
    out[:len(X)] = groups
    for label in np.unique(y_new):
        rows = np.flatnonzero(y == label)
        synthetic = np.flatnonzero(y_new == label)
        nearest = NearestNeighbors(n_neighbors=1).fit(X[rows]).kneighbors(
            X_new[synthetic], return_distance=False)[:, 0]
        out[len(X) + synthetic] = np.asarray(groups)[rows[nearest]]
    return out


def make_sampler(method: str, y, random_state: int, smote=SMOTE):
    """The over-sampler of `method` for labels y. SMOTE interpolates between a row and one of
    its k = min(5, smallest class - 1) same-class neighbours (small inner folds have few rows of
    a rare class); with a class of one row there is nothing to interpolate and rows are repeated."""
    if method not in ("oversample", "smote"):
        raise ConfigError(f"unknown resampling method '{method}'; use oversample or smote")
    smallest = int(np.unique(y, return_counts=True)[1].min())
    if method == "oversample" or smallest < 2:
        return RandomOverSampler(random_state=random_state)
    return smote(k_neighbors=min(5, smallest - 1), random_state=random_state)


class _RecordingSMOTE(SMOTE):
    """SMOTE that keeps its synthetic rows, so their speakers can be assigned."""

    def _fit_resample(self, X, y):
        X_res, y_res = super()._fit_resample(X, y)
        self.X_synthetic_, self.y_synthetic_ = X_res[len(X):], y_res[len(X):]
        return X_res, y_res


class FittedEstimatorPredicts:
    """Mixin: predictions come from the fitted `estimator_` (nothing is resampled or searched
    at prediction time)."""

    def predict_proba(self, X):
        """(n, n_classes) probabilities of the fitted `estimator_`."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    def predict(self, X):
        """Class per row, shape (n,)."""
        check_is_fitted(self)
        return self.estimator_.predict(X)


class GroupResampledClassifier(FittedEstimatorPredicts, ClassifierMixin, BaseEstimator):
    """Over-sample the training rows (and their speaker groups), then fit a classifier.

    Args:
        estimator: the classifier.
        method: ``"oversample"`` (random over-sampling) or ``"smote"``.
        random_state: the sampler's seed.
    """

    def __init__(self, estimator=None, method: str = "oversample", random_state: int = 0):
        self.estimator = estimator
        self.method = method
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = get_tags(self.estimator).input_tags.sparse
        return tags

    def _sampler(self, y):
        return make_sampler(self.method, y, self.random_state, smote=_RecordingSMOTE)

    def fit(self, X, y, groups=None):
        """Resample X (n, d), y (n,) and groups (n,), then fit the classifier on the result."""
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        sampler = self._sampler(y)
        X_res, y_res = sampler.fit_resample(X, y)
        params = {}
        if groups is not None and accepts_groups(self.estimator):
            params["groups"] = resampled_groups(sampler, np.asarray(X), np.asarray(y),
                                                np.asarray(groups), len(y_res))
        self.estimator_ = clone(self.estimator).fit(X_res, y_res, **params)
        self.classes_ = self.estimator_.classes_
        self.n_features_in_ = _num_features(X)
        return self

    @property
    def best_params_(self) -> dict[str, Any]:
        """The wrapped classifier's own search choice, addressed through this wrapper."""
        check_is_fitted(self)
        chosen = getattr(self.estimator_, "best_params_", {})
        return {f"{RESAMPLED_PREFIX}{key}": value for key, value in chosen.items()}

    @property
    def best_score_(self) -> float | None:
        check_is_fitted(self)
        return getattr(self.estimator_, "best_score_", None)



def build_pipeline(spec: ModelSpec, *, imbalance: str = "none", scaling: str = "standard",
                   seed: int = 0) -> Pipeline:
    """scaler -> classifier (wrapped in a group-aware resampler when asked).

    Args:
        spec: the model.
        imbalance: ``none``, ``class_weight``, ``oversample`` (random) or ``smote``.
        scaling: the run's scaling; ``none`` means no scaler. Pooled models that are not
            scale-invariant get a StandardScaler fitted on the training rows otherwise (after
            per-speaker normalisation it only rescales); sequence models standardise inside.
        seed: random state of resampler and classifier.
    """
    check_resampling(spec, imbalance)
    steps: list[tuple[str, Any]] = []
    if scaling != "none" and spec.input == "pooled" and not spec.scale_invariant:
        steps.append(("scale", StandardScaler()))
    classifier = spec.build(seed, "balanced" if imbalance == "class_weight" else None)
    if imbalance in ("oversample", "smote"):
        if "resample" in classifier.get_params():  # resamples its own vectors (text models)
            classifier.set_params(resample=imbalance)
        else:
            classifier = GroupResampledClassifier(classifier, imbalance, random_state=seed)
    steps.append((CLASSIFIER_STEP, classifier))
    return Pipeline(steps)


def check_resampling(spec: ModelSpec, imbalance: str) -> None:
    """SMOTE interpolates feature vectors: refuse it for models fed frame sequences, whose rows
    can only be repeated (``oversample``) or weighted (``class_weight``)."""
    if imbalance != "smote" or spec.input == "pooled" or spec.portfolio:
        return
    if spec.input == "text" and "resample" in spec.build(0, None).get_params():
        return
    raise ConfigError(f"--imbalance smote interpolates feature vectors, but model '{spec.name}' "
                      f"takes {spec.input} input; use --imbalance oversample or class_weight")


def classifier_prefix(pipeline: Pipeline) -> str:
    """How the pipeline addresses its model's own parameters (``clf__`` or, behind the
    resampler, ``clf__estimator__``)."""
    resampled = isinstance(pipeline.named_steps[CLASSIFIER_STEP], GroupResampledClassifier)
    return f"{CLASSIFIER_STEP}__{RESAMPLED_PREFIX if resampled else ''}"


def core_classifier(pipeline: Pipeline):
    """The model itself (behind a resampler, the wrapped classifier)."""
    step = pipeline.named_steps[CLASSIFIER_STEP]
    return step.estimator if isinstance(step, GroupResampledClassifier) else step


def prefixed_grid(grid: dict[str, list[Any]], prefix: str = f"{CLASSIFIER_STEP}__") -> dict[str, list[Any]]:
    """A model grid with keys addressed to the pipeline's classifier (see `classifier_prefix`)."""
    return {f"{prefix}{key}": list(values) for key, values in grid.items()}


def grid_size(grid: dict[str, list[Any]]) -> int:
    """Number of candidates in a grid."""
    size = 1
    for values in grid.values():
        size *= len(values)
    return size
