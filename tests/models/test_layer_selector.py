"""LayerSelector: fixed, mean and weighted layers, the inner-CV choice grouped by speaker, and that
the choice is made on the training speakers only."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from emofusion.errors import ConfigError
from emofusion.models.layer_selector import LayerSelector, score_weights

WIDTH = 4
NOISE, GENUINE, IDENTITY = 0, 1, 2


def layered_speakers(seed: int, n_speakers: int = 16, per_speaker: int = 30):
    """X (n, 3 * WIDTH) flattened from (n, 3 layers, WIDTH), labels y, speakers.

    Layer 0 is noise; layer 1 carries the label for every speaker (shift 0.8 sd); layer 2 only
    identifies the speaker, and each speaker says mostly (90 %) one label: a speaker-leaking
    layer that looks best when inner folds mix speakers and is useless on new speakers.
    """
    rng = np.random.default_rng(seed)
    speakers = np.repeat(np.arange(n_speakers), per_speaker)
    majority = (np.arange(n_speakers) >= n_speakers // 2).astype(int)[speakers]
    y = np.where(rng.random(len(speakers)) < 0.9, majority, 1 - majority)
    noise = rng.normal(size=(len(y), WIDTH))
    genuine = 0.8 * y[:, None] + rng.normal(size=(len(y), WIDTH))
    identity = rng.normal(0, 3, size=(n_speakers, WIDTH))[speakers]
    identity += 0.3 * rng.normal(size=(len(y), WIDTH))
    return np.hstack([noise, genuine, identity]), y, speakers


def test_fixed_negative_and_mean_layers_select_the_right_columns():
    X = np.arange(2 * 3 * WIDTH, dtype=float).reshape(2, 3 * WIDTH)
    layers = X.reshape(2, 3, WIDTH)
    assert np.array_equal(LayerSelector(3, layer=1).fit_transform(X), layers[:, 1])
    last = LayerSelector(3, layer=-1).fit(X)
    assert last.layer_ == 2 and np.array_equal(last.transform(X), layers[:, 2])
    assert np.allclose(LayerSelector(3, layer="mean").fit_transform(X), layers.mean(axis=1))
    weighted = LayerSelector(3, layer=(1, 0, 3)).fit(X)
    assert weighted.layer_ == "weighted" and np.allclose(weighted.weights_, [0.25, 0, 0.75])
    assert np.allclose(weighted.transform(X), 0.25 * layers[:, 0] + 0.75 * layers[:, 2])
    assert not hasattr(last, "best_params_")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inner_folds_grouped_by_speaker_reject_the_speaker_leaking_layer(seed):
    X, y, speakers = layered_speakers(seed)
    knn = KNeighborsClassifier(15)  # memorises speakers: the leak is large when folds mix them
    mixed = LayerSelector(3, estimator=knn).fit(X, y)
    grouped = LayerSelector(3, estimator=knn).fit(X, y, groups=speakers)
    assert np.argmax(mixed.weights_) == IDENTITY
    assert grouped.layer_ in (GENUINE, "weighted") and grouped.weights_[GENUINE] > 0.9
    assert set(grouped.cv_scores_) == {0, 1, 2, "mean", "weighted"}
    assert grouped.cv_scores_[GENUINE] > max(grouped.cv_scores_[NOISE], grouped.cv_scores_[IDENTITY])


def test_layers_sharing_the_signal_are_averaged():
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1], 150)
    speakers = np.tile(np.arange(10), 30)
    layers = [rng.normal(size=(300, WIDTH)) + (0.5 * y[:, None] if k else 0) for k in range(3)]
    selector = LayerSelector(3).fit(np.hstack(layers), y, groups=speakers)
    assert selector.layer_ in ("mean", "weighted")  # two noisy copies beat either one
    assert selector.cv_scores_[selector.layer_] > max(selector.cv_scores_[1], selector.cv_scores_[2])
    assert selector.weights_.sum() == pytest.approx(1.0)


def test_the_choice_never_looks_at_test_speakers():
    X, y, speakers = layered_speakers(0)
    test = np.isin(speakers, [0, 1, 14, 15])  # two speakers of each majority label
    X = X.copy()
    X[test, :WIDTH] += 3.0 * y[test, None]  # on the test speakers only, layer 0 is near perfect
    pipeline = Pipeline([("layer", LayerSelector(3)), ("model", KNeighborsClassifier(15))])
    pipeline.fit(X[~test], y[~test], layer__groups=speakers[~test])
    assert pipeline.named_steps["layer"].layer_ == GENUINE
    assert np.array_equal(pipeline.named_steps["layer"].transform(X[test]),
                          X[test, WIDTH:2 * WIDTH])
    chosen_on_test = LayerSelector(3).fit(X[test], y[test], groups=speakers[test])
    assert np.argmax(chosen_on_test.weights_) == NOISE  # what looking at the test speakers picks


def test_frozen_clone_keeps_the_layer_without_searching():
    X, y, speakers = layered_speakers(3)
    searched = LayerSelector(3).fit(X, y, groups=speakers)
    frozen = clone(searched).set_params(**searched.best_params_).fit(X)
    assert frozen.layer_ == searched.layer_ and not hasattr(frozen, "cv_scores_")
    assert np.array_equal(frozen.transform(X), searched.transform(X))


def test_user_errors_are_config_errors():
    X = np.zeros((6, 10))
    with pytest.raises(ConfigError, match="n_layers=3"):
        LayerSelector(3, layer=0).fit(X)
    with pytest.raises(ConfigError, match="between -2 and 1"):
        LayerSelector(2, layer=2).fit(X)
    with pytest.raises(ConfigError, match="2 non-negative weights"):
        LayerSelector(2, layer=(1.0, -1.0)).fit(X)
    with pytest.raises(ConfigError, match="needs the labels"):
        LayerSelector(2).fit(X)
    fitted = LayerSelector(2, layer=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        fitted.transform(np.zeros((2, 12)))


def test_score_weights_favour_the_best_layers_and_tend_to_the_mean():
    scores = np.array([0.50, 0.70, 0.69])
    sharp = score_weights(scores, 0.02)
    assert sharp.sum() == pytest.approx(1.0) and np.argmax(sharp) == 1
    assert sharp[0] < 1e-3 < sharp[2] < sharp[1]
    assert np.allclose(score_weights(scores, 100.0), 1 / 3, atol=1e-3)


def test_a_portfolio_chooses_the_layer_once_per_set_of_rows(monkeypatch):
    from emofusion.evaluation.splits import inner_folds
    from emofusion.fusion.systems import SystemPlan

    X, y, speakers = layered_speakers(0)
    plan = SystemPlan(modalities=("ssl",), early_name=None, fusions=(), report_unimodal=True,
                      models={"ssl": "auto"}, grid=None, grid_model="auto",
                      imbalance="class_weight", scaling="standard", inner_folds=3,
                      scoring="balanced_accuracy", seed=0,
                      layer_blocks={"ssl": (("ssl", 0, 3 * WIDTH, 3),)})
    search = plan.base_estimator("ssl")
    assert len(search.grid_points(X.shape)) == 6  # lda, logreg x 3, svm_rbf x 2
    fitted_rows: list[int] = []
    real_fit = LayerSelector.fit

    def counting(self, X, y=None, groups=None):
        fitted_rows.append(len(X))
        return real_fit(self, X, y, groups)

    monkeypatch.setattr(LayerSelector, "fit", counting)
    search.fit(X, y, speakers)
    # each of the 3 inner splits' training rows and all rows, once (not once per candidate)
    splits = inner_folds(y, speakers, 3)
    assert sorted(fitted_rows) == sorted([len(train) for train, _ in splits] + [len(y)])
    assert search.search_record()["selected_layers"] == {"ssl": GENUINE}
    assert search.estimator_.memory is None  # no temporary cache folder kept in the model
