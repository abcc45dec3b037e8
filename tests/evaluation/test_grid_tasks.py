"""Grid-candidate tasks: a search split into one inner-score task per grid point, then a refit
given all the scores, chooses and fits exactly what the search in one piece does (single grids,
the `auto` portfolio with an internally searching LDA, ties), in a search and in a run's fold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification

from emofusion.evaluation import experiment
from emofusion.fusion.systems import SystemPlan


def _plan(model: str, grid=None) -> SystemPlan:
    return SystemPlan(modalities=("audio",), early_name=None, fusions=(), report_unimodal=True,
                      models={"audio": model}, grid=grid, grid_model=model,
                      imbalance="class_weight", scaling="standard", inner_folds=3,
                      scoring="balanced_accuracy", seed=0)


@pytest.fixture(scope="module")
def speakers_data():
    """240 rows of 8 speakers, 3 classes, 20 features (a few informative)."""
    X, y = make_classification(240, 20, n_informative=4, n_classes=3, random_state=3)
    return X, y, np.repeat([f"s{k}" for k in range(8)], 30)


def _split_fit(search, X, y, groups):
    """The search as grid-candidate tasks: every point scored alone, then the refit."""
    points = search.grid_points((len(y), X.shape[1]))
    scores = {point: search.score_grid_point(*point, X, y, groups) for point in points}
    return search.set_params(inner_scores=scores).fit(X, y, groups), points


@pytest.mark.parametrize("model, grid", [("logreg", None), ("svm", {"C": [0.1, 1],
                                                                    "kernel": ["linear", "rbf"]}),
                                         ("auto", None)])
def test_scored_grid_points_choose_and_fit_what_the_search_in_one_piece_does(
        model, grid, speakers_data):
    X, y, groups = speakers_data
    whole = _plan(model, grid).base_estimator("audio").fit(X, y, groups)
    split, points = _split_fit(_plan(model, grid).base_estimator("audio"), X, y, groups)
    assert len(points) == {"logreg": 3, "svm": 4, "auto": 1 + 3 + 2}[model]
    assert split.model_ == whole.model_
    assert split.best_params_ == whole.best_params_
    assert split.inner_score_ == whole.inner_score_
    assert split.candidate_scores_ == whole.candidate_scores_
    assert split.inner_speakers_ == whole.inner_speakers_
    np.testing.assert_array_equal(split.predict_proba(X), whole.predict_proba(X))


def test_the_refit_takes_the_first_best_point_and_only_the_given_scores_decide(speakers_data):
    X, y, groups = speakers_data
    search = _plan("logreg").base_estimator("audio")
    tied = {("logreg", 0): 0.5, ("logreg", 1): 0.7, ("logreg", 2): 0.7}
    fitted = search.set_params(inner_scores=tied).fit(X, y, groups)
    assert fitted.best_params_ == {"C": 0.1}
    assert fitted.inner_score_ == 0.7
    assert search.set_params(inner_scores=None).fit(X, y, groups).best_params_ == {"C": 0.01}
    last_best = {("logreg", 0): 0.1, ("logreg", 1): 0.1, ("logreg", 2): 0.9}
    assert search.set_params(inner_scores=last_best).fit(X, y, groups).best_params_ == {"C": 1.0}


@pytest.fixture(scope="module")
def logreg_setup(clean_demo_csv, tmp_path_factory, fold_setup_maker):
    return fold_setup_maker(clean_demo_csv, tmp_path_factory.mktemp("o"), split="k3",
                            model="logreg")


def test_a_fold_task_given_its_grid_tasks_scores_equals_the_task_that_searches(logreg_setup):
    setup, folds = logreg_setup
    fold = folds[1]
    for name in ("acoustic", "early"):
        points = experiment.grid_point_tasks(fold, name, setup)
        assert points == [("logreg", 0), ("logreg", 1), ("logreg", 2)]
        scores = {point: experiment.score_grid_point(fold, name, point, setup)
                  for point in points}
        split = experiment.run_base(fold, name, setup, scores)
        whole = experiment.run_base(fold, name, setup)
        np.testing.assert_array_equal(split.probabilities, whole.probabilities)
        assert split.search == whole.search
        assert whole.search["inner_score"] == max(scores.values())
