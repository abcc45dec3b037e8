"""Sequence models: masking, one-frame utterances, missing modalities, determinism, learning."""

from __future__ import annotations

import numpy as np
import pytest
from deep_testdata import few_frames_task, frame_means, sequences
from sklearn.linear_model import LogisticRegression

from emofusion.models.deep import SequenceClassifier

ENCODERS = ["attention", "gru", "lstm", "transformer"]
FUSIONS = ["concat", "gated", "attention"]


def _small(**kw):
    params = dict(hidden_size=16, attention_size=8, n_heads=2, max_epochs=3, batch_size=8,
                  random_state=0)
    params.update(kw)
    return SequenceClassifier(**params)


@pytest.fixture(scope="module")
def bimodal():
    rng = np.random.default_rng(0)
    X, y = sequences(48, rng, widths=(5, 3))
    return X, y, np.arange(48) % 6


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_padding_does_not_change_output(bimodal, encoder, fusion):
    X, y, groups = bimodal
    est = _small(encoder=encoder, fusion=fusion, modality_dropout=0.3).fit(X, y, groups)
    rng = np.random.default_rng(5)
    alone = X[:1].copy()
    batch = np.empty((2, 2), dtype=object)
    batch[0] = alone[0]
    batch[1, 0] = rng.normal(size=(40, 5)).astype(np.float32)
    batch[1, 1] = rng.normal(size=(25, 3)).astype(np.float32)
    np.testing.assert_allclose(est.predict_proba(alone)[0], est.predict_proba(batch)[0],
                               atol=1e-5, rtol=0)
    # and inside a large bucketed prediction
    many = np.concatenate([batch, X], axis=0)
    np.testing.assert_allclose(est.predict_proba(alone)[0], est.predict_proba(many)[0],
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_one_frame_utterances(encoder):
    rng = np.random.default_rng(1)
    X, y = sequences(30, rng, widths=(4,), t_range=(1, 2))  # every utterance T = 1
    assert all(c.shape[0] == 1 for c in X[:, 0])
    est = _small(encoder=encoder).fit(X, y)
    proba = est.predict_proba(X)
    assert proba.shape == (30, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # a 1-D cell is one frame too
    one = np.empty((1, 1), dtype=object)
    one[0, 0] = X[0, 0][0]
    np.testing.assert_allclose(est.predict_proba(one), proba[:1], atol=1e-12)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_missing_modality_degrades_instead_of_failing(bimodal, fusion):
    X, y, groups = bimodal
    est = _small(encoder="attention", fusion=fusion, modality_dropout=0.3).fit(X, y, groups)
    probe = X[:4].copy()
    probe[0, 0] = None
    probe[1, 1] = np.zeros((0, 3), dtype=np.float32)
    probe[2, 0] = None
    probe[2, 1] = None  # nothing at all: prior-like output
    proba = est.predict_proba(probe)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    full = est.predict_proba(X[:4])
    assert not np.allclose(proba[0], full[0])  # the missing modality is really ignored
    np.testing.assert_allclose(proba[3], full[3])


def test_training_with_missing_cells_and_modality_dropout(bimodal):
    X, y, groups = bimodal
    X = X.copy()
    X[::5, 1] = None
    est = _small(encoder="gru", fusion="gated", modality_dropout=0.5).fit(X, y, groups)
    assert np.isfinite(est.predict_proba(X)).all()


@pytest.mark.parametrize("params", [
    dict(encoder="gru"),
    dict(encoder="transformer"),
    dict(encoder="attention", fusion="gated", modality_dropout=0.4),
])
def test_same_seed_same_model(bimodal, params):
    X, y, groups = bimodal
    a = _small(**params).fit(X, y, groups).predict_proba(X)
    b = _small(**params).fit(X, y, groups).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    c = _small(**params, random_state=1).fit(X, y, groups).predict_proba(X)
    assert not np.array_equal(a, c)


def test_input_validation_messages(bimodal):
    X, y, _ = bimodal
    est = _small(encoder="attention").fit(X, y)
    with pytest.raises(ValueError, match="modality columns"):
        est.predict_proba(X[:, :1])
    bad = X[:2].copy()
    bad[0, 0] = np.ones((3, 7), dtype=np.float32)
    with pytest.raises(ValueError, match="features per frame"):
        est.predict_proba(bad)
    nan = X[:2].copy()
    nan[0, 0] = np.full((2, 5), np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match="NaN"):
        est.predict_proba(nan)


def test_standardisation_uses_training_frames_only(bimodal):
    X, y, groups = bimodal
    est = _small(encoder="attention", max_epochs=1, validation_fraction=0.0).fit(X, y)
    frames = np.concatenate(list(X[:, 1])).astype(np.float64)
    np.testing.assert_allclose(est.feature_means_[1], frames.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(est.feature_stds_[1], frames.std(axis=0), rtol=1e-6)
    assert est.modality_widths_ == [5, 3] and est.n_features_in_ == 2


def test_attention_and_gru_learn_few_frame_emotion():
    """Emotion visible in a few frames of long sequences: frame-level models beat the mean."""
    rng = np.random.default_rng(1)
    X_train, y_train = few_frames_task(160, rng)
    X_test, y_test = few_frames_task(100, rng)
    baseline = LogisticRegression().fit(frame_means(X_train), y_train)
    base_acc = baseline.score(frame_means(X_test), y_test)
    assert base_acc < 0.65
    for encoder in ("attention", "gru"):
        est = SequenceClassifier(encoder=encoder, hidden_size=16, attention_size=16, lr=5e-3,
                                 max_epochs=25, patience=6, random_state=0)
        acc = est.fit(X_train, y_train).score(X_test, y_test)
        assert acc > base_acc + 0.25, (encoder, acc, base_acc)
