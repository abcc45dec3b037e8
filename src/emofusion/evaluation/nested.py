"""Nested model selection: the search runs on the training speakers of one outer fold, with
inner folds that are themselves grouped by speaker.

`fit_with_search` tunes one model's grid. `SearchedClassifier` is the estimator form used by every
system: it searches one model, or a portfolio of model families (``auto``), on the inner folds
and refits the winner on all of its training rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _num_features, check_is_fitted, column_or_1d

from emofusion.evaluation import splits as splitting
from emofusion.models.layer_selector import LAYER_STEP_PREFIX, LayerSelector
from emofusion.models.pipeline import (
    CLASSIFIER_STEP,
    FittedEstimatorPredicts,
    accepts_groups,
    classifier_prefix,
    core_classifier,
    grid_size,
    prefixed_grid,
)


@dataclass
class SearchResult:
    """A model fitted on the training speakers after the nested search.

    Attributes:
        estimator: the refitted best pipeline.
        best_params: chosen hyper-parameters (the model's own parameter names).
        inner_score: mean inner-fold score of the best candidate (None without a search).
        inner_speakers: per inner split, (training speakers, validation speakers).
    """

    estimator: Any
    best_params: dict[str, Any]
    inner_score: float | None
    inner_speakers: list[tuple[list[str], list[str]]] = field(default_factory=list)


def _fit_params(pipeline, speakers: np.ndarray | None) -> dict[str, Any]:
    """The speakers for every step whose fit takes groups (the classifier's own search or early
    stopping, a `LayerSelector`)."""
    if speakers is None:
        return {}
    return {f"{name}__groups": speakers for name, step in pipeline.steps if accepts_groups(step)}


def fit_with_search(pipeline, grid: dict[str, list[Any]], X, y: np.ndarray,
                    speakers: np.ndarray | None, *, inner_folds: int, scoring: str,
                    score_always: bool = False) -> SearchResult:
    """Choose hyper-parameters by speaker-grouped CV on (X, y) and refit on all of it.

    Args:
        pipeline: unfitted pipeline whose classifier step is ``clf``.
        grid: the model's hyper-parameter grid; with one candidate no search is run.
        X: training inputs (n, ...) of ONE outer fold's training speakers.
        y: class codes (n,).
        speakers: (n,) speaker of each training row (None: stratified inner folds).
        inner_folds: number of speaker-grouped inner folds.
        scoring: scikit-learn scorer name of the search.
        score_always: also score a single candidate on the inner folds (portfolio comparison)
            when the model does not report its own inner score.
    """
    splits = splitting.inner_folds(y, speakers, inner_folds)
    inner = splitting.fold_speakers(splits, speakers) if speakers is not None else []
    fit_params = _fit_params(pipeline, speakers)
    prefix = classifier_prefix(pipeline)
    own_search = core_classifier(pipeline).get_params()
    if "cv" in own_search:  # a self-searching classifier: same inner folds and criterion
        own = {"cv": inner_folds, "scoring": scoring}
        pipeline.set_params(**{f"{prefix}{k}": v for k, v in own.items() if k in own_search})
    if grid_size(grid) > 1:
        search = GridSearchCV(pipeline, prefixed_grid(grid, prefix), cv=splits, scoring=scoring,
                              n_jobs=1, refit=True, error_score="raise")
        search.fit(X, y, **fit_params)
        best = {k.removeprefix(prefix): v for k, v in search.best_params_.items()}
        return SearchResult(search.best_estimator_, best, float(search.best_score_), inner)
    fixed = {key: values[0] for key, values in grid.items()}
    pipeline.set_params(**{f"{prefix}{k}": v for k, v in fixed.items()})
    pipeline.fit(X, y, **fit_params)
    chosen, score = _internal_search(pipeline.named_steps[CLASSIFIER_STEP], fixed, prefix)
    if score is None and score_always:
        score = float(np.mean(cross_val_score(clone(pipeline), X, y, cv=splits, scoring=scoring,
                                              params=fit_params, error_score="raise")))
    return SearchResult(pipeline, chosen, score, inner)


def _internal_search(classifier, fixed: dict[str, Any],
                     prefix: str) -> tuple[dict[str, Any], float | None]:
    """Parameters and inner score of a classifier that searches by itself on the same
    speaker-grouped folds (`best_params_`, `best_score_`, e.g. ShrinkageLDA(shrinkage="cv"))."""
    own = getattr(classifier, "best_params_", {})
    inner_prefix = prefix.removeprefix(f"{CLASSIFIER_STEP}__")
    chosen = {**fixed, **{k.removeprefix(inner_prefix): v for k, v in own.items()}}
    score = getattr(classifier, "best_score_", None)
    return chosen, None if score is None else float(score)


def _model_width(pipeline, width: int) -> int:
    """The width the pipeline's model sees for X of `width` columns: less what its
    `LayerSelector` steps drop (each keeps one layer's width of its block)."""
    for _, step in pipeline.steps:
        if isinstance(step, LayerSelector):
            start, stop = step.columns if step.columns is not None else (0, width)
            width -= (stop - start) - (stop - start) // step.n_layers
    return width


class SearchedClassifier(FittedEstimatorPredicts, ClassifierMixin, BaseEstimator):
    """One model, or a portfolio of models, chosen on speaker-grouped inner folds.

    Args:
        candidates: list of (name, unfitted pipeline, grid); each is tuned by `fit_with_search`
            on the same inner folds and the best inner score wins (the first on ties).
        inner_folds: number of speaker-grouped inner folds.
        scoring: scikit-learn scorer name.
        size_limits: candidate name -> (max training rows, max rows x features) beyond which
            that candidate is left out (its fits would cost too much; None = no limit). The
            first candidate is always tried.

    Fitted attributes: ``estimator_`` (the refitted winner), ``model_`` (its name),
    ``best_params_``, ``inner_score_``, ``inner_speakers_``, ``candidate_scores_`` (None for a
    candidate left out by its size limit).
    """

    def __init__(self, candidates=(), inner_folds: int = 3, scoring: str = "balanced_accuracy",
                 size_limits=None):
        self.candidates = candidates
        self.inner_folds = inner_folds
        self.scoring = scoring
        self.size_limits = size_limits

    def _affordable(self, name: str, shape: tuple[int, int]) -> bool:
        max_rows, max_cells = (self.size_limits or {}).get(name, (None, None))
        return (max_rows is None or shape[0] <= max_rows) and (
            max_cells is None or shape[0] * shape[1] <= max_cells)

    def fit(self, X, y, groups=None):
        """Search on X (n, ...), y (n,) class codes; `groups` (n,) are the speakers."""
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        portfolio = len(self.candidates) > 1
        shape = (len(y), getattr(X, "shape", (0, 1))[1] if getattr(X, "ndim", 2) > 1 else 1)
        results = {}
        for position, (name, pipeline, grid) in enumerate(self.candidates):
            if position and not self._affordable(name, (shape[0],
                                                        _model_width(pipeline, shape[1]))):
                continue
            results[name] = fit_with_search(clone(pipeline), grid, X, y, groups,
                                            inner_folds=self.inner_folds, scoring=self.scoring,
                                            score_always=portfolio)
        scores = {name: r.inner_score for name, r in results.items()}
        self.model_ = max(scores, key=lambda n: -np.inf if scores[n] is None else scores[n])
        scores.update({name: None for name, _, _ in self.candidates if name not in scores})
        best = results[self.model_]
        self.estimator_ = best.estimator
        self.best_params_ = best.best_params
        self.inner_score_ = best.inner_score
        self.inner_speakers_ = best.inner_speakers
        self.candidate_scores_ = scores if portfolio else {}
        self.classes_ = self.estimator_.classes_
        self.n_features_in_ = _num_features(X)
        return self

    def search_record(self) -> dict[str, Any]:
        """What folds.json records about this search."""
        check_is_fitted(self)
        record = {"model": self.model_, "best_params": self.best_params_,
                  "inner_score": self.inner_score_, "inner_speakers": self.inner_speakers_}
        if self.candidate_scores_:
            record["candidate_scores"] = self.candidate_scores_
        selectors = {name.removeprefix(LAYER_STEP_PREFIX): step
                     for name, step in self.estimator_.steps if isinstance(step, LayerSelector)}
        if selectors:  # per modality, the layer (index, "mean") or the layer weights it kept
            record["selected_layers"] = {
                modality: getattr(s, "best_params_", {"layer": s.layer_})["layer"]
                for modality, s in selectors.items()}
        documents = getattr(core_classifier(self.estimator_), "n_documents_", None)
        if documents is not None:
            record["n_fitted_documents"] = int(documents)
        return record
