"""Early stopping sees training speakers only; class weights; threads and RNG hygiene."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from deep_testdata import sequences
from sklearn.base import clone

from emofusion.models.deep import SequenceClassifier, TorchMLPClassifier
from emofusion.models.deep._base import class_weights, validation_split


def _speaker_table(rng, n_speakers=8, per_speaker=12, d=6):
    groups = np.repeat([f"spk{i}" for i in range(n_speakers)], per_speaker)
    y = np.tile(np.arange(3), len(groups) // 3 + 1)[: len(groups)]
    X = rng.normal(size=(len(groups), d)) + y[:, None] * 0.8
    return X, y, groups


def test_fit_takes_no_outside_validation_data():
    for cls in (TorchMLPClassifier, SequenceClassifier):
        assert list(inspect.signature(cls.fit).parameters) == ["self", "X", "y", "groups"]


@pytest.mark.parametrize("make", [
    lambda: TorchMLPClassifier(hidden_sizes=(16,), max_epochs=15, random_state=3),
    lambda: SequenceClassifier(encoder="gru", hidden_size=8, attention_size=8, max_epochs=6,
                               random_state=3),
])
def test_test_fold_content_cannot_influence_training(make):
    """Same training fold inside two experiments whose test folds differ drastically."""
    rng = np.random.default_rng(0)
    X, y, groups = _speaker_table(rng)
    test_speakers = {"spk6", "spk7"}
    is_test = np.isin(groups, list(test_speakers))
    train = np.flatnonzero(~is_test)
    probe = rng.normal(size=(10, X.shape[1]))

    # experiment 2: the test fold is scrambled and its labels flipped
    X2, y2 = X.copy(), y.copy()
    X2[is_test] = rng.permutation(X2[is_test].ravel()).reshape(X2[is_test].shape) * 50.0
    y2[is_test] = 2 - y2[is_test]

    base = make()
    first = clone(base).fit(X[train], y[train], groups=groups[train])
    # disturb every global RNG between the two experiments
    np.random.seed(123)
    torch.manual_seed(999)
    torch.rand(7)
    second = clone(base).fit(X2[train], y2[train], groups=groups[train])

    np.testing.assert_array_equal(first.predict_proba(probe), second.predict_proba(probe))
    assert [h["val_loss"] for h in first.history_] == [h["val_loss"] for h in second.history_]
    for est in (first, second):
        chosen = set(est.validation_groups_)
        assert chosen and chosen <= set(groups[train])
        assert not chosen & test_speakers


def test_validation_split_holds_out_whole_training_speakers():
    y = np.arange(60) % 3
    groups = np.repeat(np.arange(10) * 7, 6)
    fit_rows, val_rows, chosen = validation_split(y, groups, 0.2, np.random.default_rng(0))
    assert len(chosen) == 2 and set(chosen) <= set(groups)
    assert set(groups[val_rows]) == set(chosen)
    assert not set(groups[fit_rows]) & set(chosen)
    assert len(fit_rows) + len(val_rows) == 60
    # a tiny fraction still holds out one speaker, never all of them
    _, _, one = validation_split(y, groups, 0.01, np.random.default_rng(0))
    assert len(one) == 1
    _, _, most = validation_split(y, groups, 0.99, np.random.default_rng(0))
    assert len(most) == 9


def test_validation_split_without_groups_is_stratified():
    y = np.repeat([0, 1, 2], [30, 20, 10])
    fit_rows, val_rows, chosen = validation_split(y, None, 0.2, np.random.default_rng(0))
    assert chosen is None and len(val_rows) == 12
    np.testing.assert_array_equal(np.bincount(y[val_rows]), [6, 4, 2])
    assert not set(fit_rows) & set(val_rows)


def test_early_stopping_restores_best_epoch():
    rng = np.random.default_rng(0)
    X, y, groups = _speaker_table(rng)
    est = TorchMLPClassifier(hidden_sizes=(64,), lr=0.05, max_epochs=60, patience=3,
                             random_state=0).fit(X, y, groups)
    losses = [h["val_loss"] for h in est.history_]
    assert est.best_epoch_ == int(np.argmin(losses)) + 1
    assert len(losses) <= est.best_epoch_ + 3
    assert est.n_validation_samples_ > 0


def test_class_weight_changes_the_loss():
    rng = np.random.default_rng(0)
    y = np.array([0] * 90 + [1] * 10)
    X = rng.normal(size=(100, 4)) + y[:, None] * 0.7
    kw = dict(hidden_sizes=(16,), max_epochs=30, validation_fraction=0.0, random_state=0)
    plain = TorchMLPClassifier(**kw).fit(X, y)
    balanced = TorchMLPClassifier(class_weight="balanced", **kw).fit(X, y)
    assert plain.history_[0]["train_loss"] != balanced.history_[0]["train_loss"]
    assert (balanced.predict(X) == 1).sum() > (plain.predict(X) == 1).sum()
    np.testing.assert_allclose(class_weights("balanced", np.array([0, 1]), y), [100 / 180, 5.0])
    np.testing.assert_allclose(class_weights({"b": 3.0}, np.array(["a", "b"]), y), [1.0, 3.0])
    with pytest.raises(ValueError, match="class_weight"):
        class_weights("auto", np.array([0, 1]), y)


def test_threads_and_global_rng_are_restored():
    rng = np.random.default_rng(0)
    X, y = sequences(20, rng, widths=(3,))
    before_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        state = torch.get_rng_state()
        SequenceClassifier(encoder="attention", hidden_size=8, max_epochs=2,
                           random_state=0).fit(X, y)
        assert torch.get_num_threads() == 2
        assert torch.equal(state, torch.get_rng_state())
    finally:
        torch.set_num_threads(before_threads)


def test_device_auto_falls_back_to_cpu():
    rng = np.random.default_rng(0)
    X, y, _ = _speaker_table(rng, n_speakers=3)
    est = TorchMLPClassifier(hidden_sizes=(8,), max_epochs=2, device="auto",
                             random_state=0).fit(X, y)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(est.module_.parameters()).device.type == expected
