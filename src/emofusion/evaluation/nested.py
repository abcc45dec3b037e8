"""Nested model selection: the search runs on the training speakers of one outer fold, with
inner folds that are themselves grouped by speaker.

`fit_with_search` tunes one model's grid. `SearchedClassifier` is the estimator form used by every
system: it searches one model, or a portfolio of model families (``auto``), on the inner folds
and refits the winner on all of its training rows.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from joblib import Memory
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import GridSearchCV, ParameterGrid, cross_val_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _num_features, _num_samples, check_is_fitted, column_or_1d

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


def _own_search_follows(pipeline, inner_folds: int, scoring: str) -> None:
    """Give a self-searching classifier (one with a ``cv`` parameter, e.g. ShrinkageLDA) the
    run's inner folds and criterion."""
    own_search = core_classifier(pipeline).get_params()
    if "cv" in own_search:
        own = {"cv": inner_folds, "scoring": scoring}
        _set_model_params(pipeline, {k: v for k, v in own.items() if k in own_search})


def _set_model_params(pipeline, params: dict[str, Any]) -> None:
    """Set the model's own parameters (`classifier_prefix` addresses them in the pipeline)."""
    prefix = classifier_prefix(pipeline)
    pipeline.set_params(**{f"{prefix}{k}": v for k, v in params.items()})


def _inner_speakers(splits, speakers: np.ndarray | None) -> list[tuple[list[str], list[str]]]:
    """Per inner split, (training speakers, validation speakers); empty without speakers."""
    return splitting.fold_speakers(splits, speakers) if speakers is not None else []


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The candidates of a model grid, in GridSearchCV's order (its ``cv_results_`` rows)."""
    return list(ParameterGrid(grid))


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
    inner = _inner_speakers(splits, speakers)
    fit_params = _fit_params(pipeline, speakers)
    prefix = classifier_prefix(pipeline)
    _own_search_follows(pipeline, inner_folds, scoring)
    if grid_size(grid) > 1:
        search = GridSearchCV(pipeline, prefixed_grid(grid, prefix), cv=splits, scoring=scoring,
                              n_jobs=1, refit=True, error_score="raise")
        search.fit(X, y, **fit_params)
        best = {k.removeprefix(prefix): v for k, v in search.best_params_.items()}
        return SearchResult(search.best_estimator_, best, float(search.best_score_), inner)
    fixed = {key: values[0] for key, values in grid.items()}
    _set_model_params(pipeline, fixed)
    pipeline.fit(X, y, **fit_params)
    chosen, score = _internal_search(pipeline.named_steps[CLASSIFIER_STEP], fixed, prefix)
    if score is None and score_always:
        score = _inner_score(clone(pipeline), X, y, speakers, inner_folds, scoring)
    return SearchResult(pipeline, chosen, score, inner)


def _inner_score(pipeline, X, y: np.ndarray, speakers: np.ndarray | None, inner_folds: int,
                 scoring: str) -> float:
    """Mean score of an unfitted pipeline on the speaker-grouped inner folds (the number
    GridSearchCV ranks its candidates by)."""
    splits = splitting.inner_folds(y, speakers, inner_folds)
    return float(np.mean(cross_val_score(pipeline, X, y, cv=splits, scoring=scoring,
                                         params=_fit_params(pipeline, speakers),
                                         error_score="raise")))


def score_grid_point(pipeline, grid: dict[str, list[Any]], index: int, X, y: np.ndarray,
                     speakers: np.ndarray | None, *, inner_folds: int, scoring: str,
                     portfolio: bool) -> float | None:
    """The inner score `fit_with_search` ranks candidate `index` of `grid` by, computed alone
    (one grid-candidate task): its mean score on the inner folds, or for a one-candidate grid
    the model's own search score (None when it has none and no portfolio needs a score)."""
    _own_search_follows(pipeline, inner_folds, scoring)
    if grid_size(grid) == 1:
        return fit_with_search(pipeline, grid, X, y, speakers, inner_folds=inner_folds,
                               scoring=scoring, score_always=portfolio).inner_score
    _set_model_params(pipeline, grid_points(grid)[index])
    return _inner_score(pipeline, X, y, speakers, inner_folds, scoring)


def refit_scored(pipeline, grid: dict[str, list[Any]], scores: list[float | None], X,
                 y: np.ndarray, speakers: np.ndarray | None, *, inner_folds: int,
                 scoring: str) -> SearchResult:
    """`fit_with_search` given every candidate's inner score (`score_grid_point`): the first
    best candidate refitted on all rows, as GridSearchCV's refit."""
    if grid_size(grid) == 1:
        result = fit_with_search(pipeline, grid, X, y, speakers, inner_folds=inner_folds,
                                 scoring=scoring)
        result.inner_score = scores[0] if result.inner_score is None else result.inner_score
        return result
    best = int(np.argmax(np.nan_to_num(np.array(scores, dtype=float), nan=-np.inf)))
    chosen = grid_points(grid)[best]
    _own_search_follows(pipeline, inner_folds, scoring)
    _set_model_params(pipeline, chosen)
    pipeline.fit(X, y, **_fit_params(pipeline, speakers))
    inner = _inner_speakers(splitting.inner_folds(y, speakers, inner_folds), speakers)
    return SearchResult(pipeline, chosen, scores[best], inner)


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


@contextmanager
def _shared_layer_choices(candidates):
    """Unfitted copies of the candidates (name, pipeline, grid); when their pipelines choose
    encoder layers (`LayerSelector` steps), with one fit cache for them all (sklearn's Pipeline
    ``memory``, a temporary folder): every grid point and portfolio member fits the same
    selector on the same inner-fold rows, so the layer choice is made once per set of rows
    instead of once per candidate (the same choices, much less time). Set ``memory`` back to
    None on the fitted pipelines."""
    copies = [(name, clone(pipeline), grid) for name, pipeline, grid in candidates]
    if not any(isinstance(step, LayerSelector) for _, pipeline, _ in copies
               for _, step in pipeline.steps):
        yield copies
        return
    with tempfile.TemporaryDirectory(prefix="emofusion-layers-") as folder:
        memory = Memory(folder, verbose=0)
        yield [(name, pipeline.set_params(memory=memory), grid) for name, pipeline, grid in copies]


def input_shape(X) -> tuple[int, int]:
    """(rows, columns) of a model input: a matrix, or an (n, 1) / (n,) object array of frames
    or transcripts (one column)."""
    return _num_samples(X), getattr(X, "shape", (0, 1))[1] if getattr(X, "ndim", 2) > 1 else 1


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
        inner_scores: the inner score of every grid point (`grid_points`: (candidate name,
            index) -> `score_grid_point`), computed beforehand by separate grid-candidate
            tasks on the same rows; `fit` then only refits the winner. None: `fit` searches.

    Fitted attributes: ``estimator_`` (the refitted winner), ``model_`` (its name),
    ``best_params_``, ``inner_score_``, ``inner_speakers_``, ``candidate_scores_`` (None for a
    candidate left out by its size limit).
    """

    def __init__(self, candidates=(), inner_folds: int = 3, scoring: str = "balanced_accuracy",
                 size_limits=None, inner_scores=None):
        self.candidates = candidates
        self.inner_folds = inner_folds
        self.scoring = scoring
        self.size_limits = size_limits
        self.inner_scores = inner_scores

    def _affordable(self, name: str, shape: tuple[int, int]) -> bool:
        max_rows, max_cells = (self.size_limits or {}).get(name, (None, None))
        return (max_rows is None or shape[0] <= max_rows) and (
            max_cells is None or shape[0] * shape[1] <= max_cells)

    def _tried(self, shape: tuple[int, int]) -> list[tuple[str, Any, dict[str, list[Any]]]]:
        """The candidates searched on training inputs of `shape` (rows, columns)."""
        return [(name, pipeline, grid) for position, (name, pipeline, grid)
                in enumerate(self.candidates)
                if not position or self._affordable(name, (shape[0],
                                                           _model_width(pipeline, shape[1])))]

    def grid_points(self, shape: tuple[int, int]) -> list[tuple[str, int]]:
        """(candidate name, grid index) of every grid point searched on training inputs of
        `shape` (rows, columns): one grid-candidate task each."""
        return [(name, index) for name, _, grid in self._tried(shape)
                for index in range(grid_size(grid))]

    def score_grid_point(self, name: str, index: int, X, y, groups=None) -> float | None:
        """The inner score of grid point `index` of candidate `name` on X (n, ...), y (n,) with
        speaker `groups` (n,): what `fit` ranks it by (`nested.score_grid_point`)."""
        pipeline, grid = next((p, g) for n, p, g in self.candidates if n == name)
        return score_grid_point(clone(pipeline), grid, index, X, column_or_1d(y), groups,
                                inner_folds=self.inner_folds, scoring=self.scoring,
                                portfolio=len(self.candidates) > 1)

    def _search(self, tried, X, y, groups, portfolio: bool):
        """Every tried candidate searched and refitted here: (candidate -> inner score, the
        `SearchResult` of a candidate by name)."""
        with _shared_layer_choices(tried) as searched:
            results = {name: fit_with_search(pipeline, grid, X, y, groups,
                                             inner_folds=self.inner_folds, scoring=self.scoring,
                                             score_always=portfolio)
                       for name, pipeline, grid in searched}
        for result in results.values():
            result.estimator.set_params(memory=None)
        return {name: r.inner_score for name, r in results.items()}, results.__getitem__

    def _from_scores(self, tried, X, y, groups):
        """The candidates ranked by the given `inner_scores` (each its best grid point's), and
        only the chosen one refitted (`refit_scored`): (candidate -> score, refit by name)."""
        points = {name: [self.inner_scores[name, i] for i in range(grid_size(grid))]
                  for name, _, grid in tried}
        scores = {name: (None if None in values else max(values))
                  for name, values in points.items()}

        def refitted(name: str) -> SearchResult:
            _, pipeline, grid = next(c for c in tried if c[0] == name)
            return refit_scored(clone(pipeline), grid, points[name], X, y, groups,
                                inner_folds=self.inner_folds, scoring=self.scoring)

        return scores, refitted

    def fit(self, X, y, groups=None):
        """Search on X (n, ...), y (n,) class codes; `groups` (n,) are the speakers."""
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        portfolio = len(self.candidates) > 1
        tried = self._tried(input_shape(X))
        if self.inner_scores is None:
            scores, refitted = self._search(tried, X, y, groups, portfolio)
        else:
            scores, refitted = self._from_scores(tried, X, y, groups)
        self.model_ = max(scores, key=lambda n: -np.inf if scores[n] is None else scores[n])
        best = refitted(self.model_)
        scores.update({name: None for name, _, _ in self.candidates if name not in scores})
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
