"""Stacking chooses its meta-learner on the training speakers' inner folds: logistic regression
on the stacked probabilities, their mean, or one modality alone."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from sklearn.dummy import DummyClassifier

from emofusion.config import build_config
from emofusion.fusion import stacking
from emofusion.fusion.stacking import StackingFusionClassifier
from emofusion.models.saved import SAVED_MODEL_TYPES
from emofusion.runner import run

N_CLASSES = 4


def _opinions(n_speakers: int = 6, per_speaker: int = 20, seed: int = 0):
    """Labels (n,), speakers (n,) and two modalities' (n, 4) probabilities: ``good`` puts 0.7 on
    the true class, ``misleading`` puts 0.9 on the next class (so the mean is wrong too)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n_speakers * per_speaker)
    speakers = np.repeat([f"s{k}" for k in range(n_speakers)], per_speaker)
    good = np.full((len(y), N_CLASSES), 0.1)
    good[np.arange(len(y)), y] = 0.7
    misleading = np.full((len(y), N_CLASSES), 0.1 / 3)
    misleading[np.arange(len(y)), (y + 1) % N_CLASSES] = 0.9
    return y, speakers, [good, misleading]


def _stacking() -> StackingFusionClassifier:
    return StackingFusionClassifier([("good", None), ("misleading", None)], [], n_folds=3)


def test_a_modality_alone_is_chosen_when_it_beats_the_learned_meta_learner(monkeypatch):
    monkeypatch.setattr(stacking, "make_meta_learner",
                        lambda seed, class_weight: DummyClassifier(strategy="prior"))
    y, speakers, probabilities = _opinions()
    fitted = _stacking().fit_meta(probabilities, y, speakers)
    assert fitted.meta_choice_ == "good"
    assert fitted.meta_scores_["good"] == 1.0
    assert fitted.meta_scores_["mean"] == fitted.meta_scores_["misleading"] == 0.0
    assert fitted.meta_scores_["logreg"] == pytest.approx(1 / N_CLASSES)
    assert np.array_equal(fitted.fuse(probabilities), probabilities[0])
    assert all(not set(train) & set(held_out) for train, held_out in fitted.inner_speakers_)
    # a model file holding the fixed rule loads without --trust
    written = sio.get_untrusted_types(data=sio.dumps(fitted))
    assert "emofusion.fusion.stacking.FixedWeighting" in written
    assert set(written) <= SAVED_MODEL_TYPES


def test_ties_keep_logistic_regression_and_its_fusion():
    y, speakers, probabilities = _opinions(seed=1)
    fitted = _stacking().fit_meta(probabilities, y, speakers)
    # logistic regression learns the misleading modality's shift as well: a tie at 1.0
    assert fitted.meta_scores_["logreg"] == fitted.meta_scores_["good"] == 1.0
    assert fitted.meta_choice_ == "logreg"
    expected = fitted.meta_.predict_proba(np.hstack(probabilities))
    assert np.allclose(fitted.fuse(probabilities), expected)


def test_a_run_records_the_meta_learner_chosen_in_each_fold(clean_demo_csv, tmp_path):
    result = run(build_config({"dataset": clean_demo_csv, "out": tmp_path / "run", "split": "k3",
                               "jobs": 1, "systems": ["stacking"], "cache_dir": tmp_path / "c",
                               "n_bootstrap": 100}), progress=False)
    candidates = {"logreg", "mean", "visual", "acoustic", "lexical"}
    chosen = result.audit["model_selection"]["stacking"]["chosen_in_folds"]
    assert sum(chosen.values()) == 3 and set(chosen) <= candidates
    for output in result.folds:
        record = output.searches["stacking"]
        assert set(record["meta_scores"]) == candidates
        assert record["inner_score"] == max(record["meta_scores"].values())


def test_fixed_weighting_is_the_weighted_mean_of_the_probability_blocks():
    y, _, probabilities = _opinions()
    stacked = np.hstack(probabilities)
    mean = stacking.FixedWeighting((1.0, 3.0)).fit(stacked, y)
    np.testing.assert_allclose(mean.predict_proba(stacked),
                               0.25 * probabilities[0] + 0.75 * probabilities[1])
    assert np.array_equal(mean.predict(stacked), (y + 1) % N_CLASSES)  # the misleading one wins
    with pytest.raises(ValueError, match="2 blocks"):
        stacking.FixedWeighting((1.0, 1.0)).fit(stacked[:, :7], y)
