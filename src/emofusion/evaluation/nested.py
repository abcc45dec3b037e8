"""Nested model selection: the grid search runs on the training speakers of one outer fold,
with inner folds that are themselves grouped by speaker."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import GridSearchCV

from emofusion.evaluation import splits as splitting
from emofusion.models.pipeline import CLASSIFIER_STEP, grid_size, prefixed_grid


@dataclass
class SearchResult:
    """A model fitted on the training speakers after the nested search.

    Attributes:
        estimator: the refitted best pipeline.
        best_params: chosen hyper-parameters (classifier parameter names).
        inner_score: mean inner-fold score of the best candidate (None without a search).
        inner_speakers: per inner split, (training speakers, validation speakers).
    """

    estimator: Any
    best_params: dict[str, Any]
    inner_score: float | None
    inner_speakers: list[tuple[list[str], list[str]]] = field(default_factory=list)


def accepts_groups(pipeline) -> bool:
    """Whether the pipeline's classifier takes `groups` in fit (speaker-aware early stopping)."""
    classifier = pipeline.named_steps[CLASSIFIER_STEP]
    return "groups" in inspect.signature(classifier.fit).parameters


def fit_with_search(pipeline, grid: dict[str, list[Any]], X, y: np.ndarray,
                    speakers: np.ndarray, *, inner_folds: int, scoring: str) -> SearchResult:
    """Choose hyper-parameters by speaker-grouped CV on (X, y) and refit on all of it.

    Args:
        pipeline: unfitted pipeline whose classifier step is ``clf``.
        grid: classifier hyper-parameter grid; with one candidate no search is run.
        X: training inputs (n, ...) of ONE outer fold's training speakers.
        y: class codes (n,).
        speakers: (n,) speaker of each training row.
        inner_folds: number of speaker-grouped inner folds.
    """
    splits = splitting.inner_folds(y, speakers, inner_folds)
    inner = splitting.fold_speakers(splits, speakers)
    fit_params = {f"{CLASSIFIER_STEP}__groups": speakers} if accepts_groups(pipeline) else {}
    if "cv" in pipeline.named_steps[CLASSIFIER_STEP].get_params():  # a self-searching classifier
        pipeline.set_params(**{f"{CLASSIFIER_STEP}__cv": inner_folds})
    if grid_size(grid) > 1:
        search = GridSearchCV(pipeline, prefixed_grid(grid), cv=splits, scoring=scoring,
                              n_jobs=1, refit=True, error_score="raise")
        search.fit(X, y, **fit_params)
        best = {k.split("__", 1)[1]: v for k, v in search.best_params_.items()}
        return SearchResult(search.best_estimator_, best, float(search.best_score_), inner)
    fixed = {key: values[0] for key, values in grid.items()}
    pipeline.set_params(**{f"{CLASSIFIER_STEP}__{k}": v for k, v in fixed.items()})
    pipeline.fit(X, y, **fit_params)
    return SearchResult(pipeline, *_internal_search(pipeline.named_steps[CLASSIFIER_STEP], fixed), inner)


def _internal_search(classifier, fixed: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    """Parameters and inner score of a classifier that searches by itself on the same
    speaker-grouped folds (`best_params_`, `best_score_`, e.g. ShrinkageLDA(shrinkage="cv"))."""
    chosen = {**fixed, **getattr(classifier, "best_params_", {})}
    score = getattr(classifier, "best_score_", None)
    return chosen, None if score is None else float(score)
