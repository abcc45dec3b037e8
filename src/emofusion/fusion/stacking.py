"""Stacking: a meta-learner trained on out-of-fold probabilities of the training speakers.

The base models' out-of-fold probabilities come from speaker-grouped folds of the training data,
so the meta-learner never sees a probability that a model produced for an utterance it was
trained on, and never sees the test speakers at all. The same folds choose the meta-learner:
logistic regression on the stacked probabilities, their plain mean, or one modality alone
(when the other modalities only add noise), whichever scores best on the training speakers'
inner folds (ties go to logistic regression, then the mean).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.utils.validation import check_is_fitted, validate_data

from emofusion.evaluation.nested import SearchedClassifier
from emofusion.evaluation.splits import fold_speakers, inner_folds
from emofusion.fusion.late import LateFusionClassifier, fit_base, select_columns


def make_meta_learner(seed: int = 0, class_weight: str | None = None) -> LogisticRegression:
    """The default meta-learner: multinomial logistic regression on the stacked probabilities
    (``class_weight="balanced"`` when the run treats the classes equally)."""
    return LogisticRegression(C=1.0, max_iter=1000, random_state=seed, class_weight=class_weight)


class FixedWeighting(ClassifierMixin, BaseEstimator):
    """A fixed combination rule over stacked probabilities: the weighted mean of the modalities'
    probability blocks (a soft vote over probabilities already computed). It learns nothing, so
    it stands beside a learned meta-learner as a candidate; scikit-learn's learning checks do
    not apply to it.

    Args:
        weights: (M,) non-negative weights of the M modalities (one-hot keeps one modality).

    Input X: (n, M * K) probabilities, K classes per modality, modalities side by side.
    """

    def __init__(self, weights: tuple[float, ...] = (1.0,)):
        self.weights = weights

    def fit(self, X, y):
        """Check X (n, M * K) and the class codes y (n,) in 0..K-1 (a block's columns are the
        classes 0..K-1, as stacking's out-of-fold probabilities have them)."""
        X, y = validate_data(self, X, y)
        self.weights_ = np.asarray(self.weights, dtype=np.float64) / np.sum(self.weights)
        n_classes, rest = divmod(X.shape[1], len(self.weights_))
        if rest or not np.isin(y, np.arange(n_classes)).all():
            raise ValueError(f"FixedWeighting needs {len(self.weights_)} blocks of class "
                             f"probabilities and class codes as y; got {X.shape[1]} columns")
        self.classes_ = np.arange(n_classes)
        return self

    def predict_proba(self, X):
        """(n, K) weighted mean of the M probability blocks of X (n, M * K)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return weighted_probabilities(np.split(X, len(self.weights_), axis=1), self.weights_)

    def predict(self, X):
        """Class code per row (n,)."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def meta_candidates(names: list[str], seed: int, class_weight: str | None) -> dict[str, object]:
    """The meta-learners a stacking system chooses from, in tie-breaking order: ``logreg``
    (`make_meta_learner`), ``mean`` of all modalities, then each modality alone
    (`FixedWeighting`)."""
    one_hot = np.eye(len(names))
    return {"logreg": make_meta_learner(seed, class_weight),
            "mean": FixedWeighting(tuple(np.ones(len(names)))),
            **{name: FixedWeighting(tuple(one_hot[k])) for k, name in enumerate(names)}}


def weighted_probabilities(probabilities: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """(n, K) weighted sum of M (n, K) probability arrays with (M,) weights summing to 1."""
    return np.tensordot(np.stack(probabilities, axis=1), weights, axes=([1], [0]))


def frozen_clone(estimator):
    """An unfitted copy of `estimator` with the hyper-parameters its own internal search chose.

    Estimators that tune themselves (like `ShrinkageLDA(shrinkage="cv")`) report the choice in
    ``best_params_``; fixing it means refits on subsets (out-of-fold probabilities) do not
    search again. Works on a single estimator, on the steps of a Pipeline, and on a fitted
    `SearchedClassifier` (its chosen model).
    """
    if isinstance(estimator, SearchedClassifier):
        return frozen_clone(estimator.estimator_)
    copy = clone(estimator)
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return copy.set_params(**getattr(estimator, "best_params_", {}))
    for name, step in steps:
        chosen = getattr(step, "best_params_", {})
        copy.set_params(**{f"{name}__{key}": value for key, value in chosen.items()})
    return copy


def _own_out_of_fold(estimator, folds, n_classes: int) -> np.ndarray | None:
    """The out-of-fold probabilities a fitted classifier computed in its own search on exactly
    these folds (`oof_proba_`, `cv_held_out_`), or None. Only a bare classifier or a one-step
    pipeline qualifies: a scaler or resampler before it would differ between the two."""
    if isinstance(estimator, SearchedClassifier):
        estimator = estimator.estimator_
    steps = getattr(estimator, "steps", [(None, estimator)])
    if len(steps) != 1:
        return None
    model = steps[0][1]
    held_out = getattr(model, "cv_held_out_", None)
    if held_out is None or len(held_out) != len(folds) or not all(
            np.array_equal(mine, theirs) for mine, (_, theirs) in zip(held_out, folds, strict=True)):
        return None
    out = np.zeros((len(model.oof_proba_), n_classes))
    out[:, model.classes_] = model.oof_proba_
    return out


def out_of_fold_probabilities(estimator, X, y: np.ndarray, folds, n_classes: int,
                              groups: np.ndarray | None = None) -> np.ndarray:
    """(n, n_classes) probabilities of `estimator` for each row from a model not trained on it.

    `y` holds class codes 0..n_classes-1; a class missing from an inner training fold gets
    probability 0. When `estimator` (fitted on X, y) already produced these probabilities in its
    own search over the same folds, they are reused instead of refitting. `groups` (n,) are the
    speakers, passed on to models that stop early by speaker.
    """
    reused = _own_out_of_fold(estimator, folds, n_classes)
    if reused is not None:
        return reused
    out = np.zeros((len(y), n_classes))
    template = frozen_clone(estimator)
    for train, held_out in folds:
        model = fit_base(template, X[train], y[train], None if groups is None else groups[train])
        out[np.ix_(held_out, model.classes_)] = model.predict_proba(X[held_out])
    return out


def modality_out_of_fold(estimator, X, y: np.ndarray, groups: np.ndarray | None, n_folds: int,
                         seed: int = 0) -> np.ndarray:
    """(n, n_classes) out-of-fold probabilities of one fitted modality estimator on the rows it
    was fitted on (X, y with these speaker `groups`), over the stacking inner folds
    (`inner_folds` of `n_folds`, `seed`); classes are the sorted values of `y`."""
    classes, codes = np.unique(y, return_inverse=True)
    folds = inner_folds(codes, groups, n_folds, seed)
    return out_of_fold_probabilities(estimator, X, codes, folds, len(classes), groups)


class StackingFusionClassifier(ClassifierMixin, BaseEstimator):
    """Per-modality classifiers whose out-of-fold probabilities feed a meta-learner.

    Args:
        estimators: list of (name, unfitted estimator), one per modality.
        columns: list of (start, stop) column ranges of each modality in X.
        n_folds: speaker-grouped folds used for the out-of-fold probabilities.
        random_state: seed of the meta-learner and of the fallback stratified folds.
        class_weight: the meta-learner's, None or ``"balanced"``.
        scoring: scikit-learn scorer that chooses the meta-learner on the inner folds.
    """

    def __init__(self, estimators, columns, n_folds: int = 3, random_state: int = 0,
                 class_weight: str | None = None, scoring: str = "balanced_accuracy"):
        self.estimators = estimators
        self.columns = columns
        self.n_folds = n_folds
        self.random_state = random_state
        self.class_weight = class_weight
        self.scoring = scoring

    def fit(self, X, y, groups=None):
        """Fit on X (n, d_total), y (n,); `groups` (speakers) make the inner folds speaker-free
        and reach the modality estimators that search or stop early by speaker."""
        _, codes = np.unique(y, return_inverse=True)
        blocks = [select_columns(X, cols) for cols in self.columns]
        fitted = [fit_base(est, block, codes, groups)
                  for (_, est), block in zip(self.estimators, blocks, strict=True)]
        out_of_fold = [modality_out_of_fold(est, block, codes, groups, self.n_folds,
                                            self.random_state)
                       for est, block in zip(fitted, blocks, strict=True)]
        return self.use_fitted(fitted, y, groups, out_of_fold)

    def use_fitted(self, fitted: list, y, groups, out_of_fold: list[np.ndarray]
                   ) -> StackingFusionClassifier:
        """Adopt already fitted modality estimators (fitted on exactly the rows of `y` with
        these `groups`) and fit the meta-learner on their out-of-fold probabilities
        (`modality_out_of_fold`, one (n, n_classes) array per modality)."""
        self.fit_meta(out_of_fold, y, groups)
        _, codes = np.unique(y, return_inverse=True)
        self.base_ = LateFusionClassifier(self.estimators, self.columns).use_fitted(fitted, codes)
        return self

    def fit_meta(self, out_of_fold: list[np.ndarray], y, groups=None) -> StackingFusionClassifier:
        """Fit only the meta-learner on the modality models' out-of-fold probabilities (one
        (n, n_classes) array per modality, rows as `y` (n,)); `fuse` then combines the
        modalities' probabilities of new rows. The meta-learner `meta_` is the best of
        `meta_candidates` by `scoring` over the speaker-grouped inner folds of these
        out-of-fold probabilities; the choice is `meta_choice_`, every candidate's score
        `meta_scores_`; `groups` (n,) name the speakers of the inner folds in
        `inner_speakers_`."""
        self.classes_, codes = np.unique(y, return_inverse=True)
        folds = inner_folds(codes, groups, self.n_folds, self.random_state)
        stacked = np.hstack(out_of_fold)
        candidates = meta_candidates([name for name, _ in self.estimators], self.random_state,
                                     self.class_weight)
        self.meta_scores_ = {name: float(np.mean(cross_val_score(
            candidate, stacked, codes, cv=folds, scoring=self.scoring, error_score="raise")))
            for name, candidate in candidates.items()}
        self.meta_choice_ = max(self.meta_scores_, key=self.meta_scores_.get)
        self.meta_ = candidates[self.meta_choice_].fit(stacked, codes)
        self.inner_speakers_ = [] if groups is None else fold_speakers(folds, groups)
        return self

    def fuse(self, probabilities: list[np.ndarray]) -> np.ndarray:
        """(n, n_classes) meta-learner probabilities of the modality models' (n, n_classes)
        probabilities (one array per modality, in `estimators` order)."""
        check_is_fitted(self, "meta_")
        return self.meta_.predict_proba(np.hstack(probabilities))

    def predict_proba(self, X):
        """(n, n_classes) probabilities of the meta-learner."""
        check_is_fitted(self)
        return self.fuse(self.base_.modality_probabilities(X))

    def predict(self, X):
        """Class per row, shape (n,)."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
