"""Pickle and skops round trips store numpy state dicts, never pickled torch modules."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import skops.io as sio
import torch
from deep_testdata import sequences

from emofusion.models.deep import (
    EmbeddingFusionHead,
    SequenceClassifier,
    SpectrogramCNNClassifier,
    TorchMLPClassifier,
)


def _fitted(kind):
    rng = np.random.default_rng(0)
    if kind == "mlp":
        X = rng.normal(size=(40, 5))
        y = np.array(["angry", "happy"] * 20)
        return TorchMLPClassifier(hidden_sizes=(8, 4), max_epochs=3, random_state=0).fit(X, y), X
    if kind == "fusion":
        X, y = sequences(30, rng, widths=(4, 3))
        est = SequenceClassifier(encoder="gru", fusion="attention", hidden_size=8, n_heads=2,
                                 modality_dropout=0.2, max_epochs=2, random_state=0)
        return est.fit(X, y, np.arange(30) % 5), X
    if kind == "cnn":
        X, y = sequences(24, rng, widths=(12,))
        est = SpectrogramCNNClassifier(channels=(4, 8), max_epochs=2, random_state=0)
        return est.fit(X, y), X
    X, y = sequences(30, rng, widths=(6, 2), t_range=(1, 2))
    return EmbeddingFusionHead(max_epochs=3, random_state=0).fit(X, y), X


@pytest.mark.parametrize("kind", ["mlp", "fusion", "cnn", "e2e"])
def test_skops_round_trip(kind):
    est, X = _fitted(kind)
    expected = est.predict_proba(X)
    data = sio.dumps(est)
    untrusted = sio.get_untrusted_types(data=data)
    assert untrusted and all(t.startswith("emofusion.") for t in untrusted), untrusted
    loaded = sio.loads(data, trusted=untrusted)
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)
    np.testing.assert_array_equal(loaded.classes_, est.classes_)
    assert loaded.best_epoch_ == est.best_epoch_


@pytest.mark.parametrize("kind", ["mlp", "fusion"])
def test_pickle_state_holds_arrays_not_modules(kind):
    est, X = _fitted(kind)
    state = est.__getstate__()
    assert "module_" not in state
    assert all(isinstance(v, np.ndarray) for v in state["module_state_"].values())
    assert isinstance(state["module_config_"], dict)
    assert not any(isinstance(v, torch.nn.Module) for v in state.values())
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    # the restored estimator can be refitted
    loaded.set_params(max_epochs=1)
    loaded.fit(X, np.arange(len(X)) % 2)


def test_unfitted_estimator_round_trips():
    est = SequenceClassifier(encoder="lstm", hidden_size=7)
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.get_params() == est.get_params()
