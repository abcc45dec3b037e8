"""The run's `scoring` ranks the LDA default's own shrinkage search (it used to be ignored there
while the audit said it was used)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, get_scorer

import emofusion
from emofusion.config import build_config
from emofusion.evaluation.nested import fit_with_search
from emofusion.evaluation.splits import inner_folds
from emofusion.models.lda import ShrinkageLDA
from emofusion.models.pipeline import build_pipeline, core_classifier
from emofusion.models.registry import get_model

N_CLASSES = 4


def _speaker_data(n_speakers: int = 8, per_speaker: int = 40, d: int = 20):
    """(X (n, d), class codes (n,), speakers (n,)): weakly separable, imbalanced classes (55, 25,
    15 and 5 %), one shift per speaker."""
    rng = np.random.default_rng(0)
    y = rng.choice(N_CLASSES, size=n_speakers * per_speaker, p=[0.55, 0.25, 0.15, 0.05])
    speakers = np.repeat(np.arange(n_speakers), per_speaker)
    X = rng.standard_normal((len(y), d)) + rng.standard_normal((n_speakers, d))[speakers]
    X[:, :3] += 0.5 * y[:, None]
    return X, y, speakers


def _refit_scores(X, y, speakers, scoring: str, grid) -> dict[str, float]:
    """Per shrinkage value, the mean `scoring` of fixed-shrinkage refits over the same inner folds."""
    scorer = get_scorer(scoring)
    folds = inner_folds(y, speakers, 3)
    return {str(value): float(np.mean([
        scorer(ShrinkageLDA(shrinkage=value).fit(X[train], y[train]), X[held], y[held])
        for train, held in folds])) for value in grid}


@pytest.mark.parametrize("scoring", ["accuracy", "f1_macro", "matthews_corrcoef"])
def test_the_shrinkage_search_ranks_candidates_by_the_scoring(scoring):
    X, y, speakers = _speaker_data()
    model = ShrinkageLDA(shrinkage="cv", scoring=scoring).fit(X, y, groups=speakers)
    expected = _refit_scores(X, y, speakers, scoring, model.shrinkage_grid)
    assert model.cv_scores_.keys() == expected.keys()
    for value, score in expected.items():  # candidates are ranked in single precision
        assert model.cv_scores_[value] == pytest.approx(score, abs=2e-3)
    assert model.best_params_ == {"shrinkage": float(max(expected, key=expected.get))}
    assert model.best_score_ == pytest.approx(max(expected.values()), abs=2e-3)


def test_accuracy_and_balanced_accuracy_choose_differently_on_imbalanced_classes():
    X, y, speakers = _speaker_data()
    by_default = ShrinkageLDA(shrinkage="cv").fit(X, y, groups=speakers)
    by_accuracy = ShrinkageLDA(shrinkage="cv", scoring="accuracy").fit(X, y, groups=speakers)
    assert by_default.best_params_ != by_accuracy.best_params_
    accuracy_refits = _refit_scores(X, y, speakers, "accuracy", by_default.shrinkage_grid)
    assert by_accuracy.best_score_ == pytest.approx(max(accuracy_refits.values()), abs=2e-3)
    default_refits = _refit_scores(X, y, speakers, "balanced_accuracy", by_default.shrinkage_grid)
    assert by_default.best_score_ == pytest.approx(max(default_refits.values()), abs=2e-3)
    # the default's fast path is sklearn's balanced accuracy
    held_out = inner_folds(y, speakers, 3)[0][1]
    predicted = by_default.predict(X[held_out])
    assert balanced_accuracy_score(y[held_out], predicted) > 1 / N_CLASSES


def test_the_nested_search_passes_its_scoring_to_the_lda_default():
    X, y, speakers = _speaker_data()
    pipeline = build_pipeline(get_model("lda"), imbalance="none", seed=0)
    result = fit_with_search(pipeline, get_model("lda").grid, X, y, speakers, inner_folds=3,
                             scoring="matthews_corrcoef")
    lda = core_classifier(result.estimator)
    assert lda.scoring == "matthews_corrcoef"
    refits = _refit_scores(X, y, speakers, "matthews_corrcoef", lda.shrinkage_grid)
    assert result.inner_score == pytest.approx(max(refits.values()), abs=2e-3)


def test_a_run_with_a_scoring_reports_the_lda_search_in_that_scoring(small_demo_writer, tmp_path,
                                                                     fast_report):
    csv = small_demo_writer(tmp_path / "data", n_utterances=40, bad_files=False)
    inner_scores = {}
    for scoring in ("balanced_accuracy", "matthews_corrcoef"):
        config = build_config({"dataset": csv, "out": tmp_path / scoring, "split": "k2",
                               "jobs": 1, "systems": ["early"], "scoring": scoring})
        result = emofusion.run(config, progress=False)
        folds = json.loads((result.run_dir / "folds.json").read_text())
        inner_scores[scoring] = [fold["systems"]["early"]["inner_score"] for fold in folds]
        assert f"(scoring: {scoring})" in " ".join(result.audit["fitted_steps"])
    # the same candidates on the same folds, scored differently
    assert len(inner_scores["matthews_corrcoef"]) == 2
    assert inner_scores["matthews_corrcoef"] != pytest.approx(inner_scores["balanced_accuracy"])
