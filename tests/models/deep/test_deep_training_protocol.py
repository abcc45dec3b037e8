"""Early stopping sees training speakers only; class weights; threads and RNG hygiene."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from deep_testdata import sequences

import emofusion
import emofusion.runner
from emofusion.config import build_config
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


TEST_SPEAKERS = ("spk6", "spk7")


def _write_official_split(folder: Path, test_perturbed: bool) -> Path:
    """8 speakers x 12 utterances, 3 classes, vector modalities 'a' (6,) and 'b' (3,); a
    ``split`` column puts spk6 and spk7 in the test set. With `test_perturbed`, every test
    label is changed and spk7's features are scrambled and scaled by 50; training rows and
    spk6's features are the same either way."""
    rng = np.random.default_rng(0)
    X, y, groups = _speaker_table(rng, d=9)
    if test_perturbed:
        y = np.where(np.isin(groups, TEST_SPEAKERS), (y + 1) % 3, y)
        scrambled = groups == TEST_SPEAKERS[1]
        X[scrambled] = rng.permutation(X[scrambled].ravel()).reshape(X[scrambled].shape) * 50
    rows = []
    for modality in ("a", "b"):
        (folder / modality).mkdir(parents=True)
    for i, (features, label, speaker) in enumerate(zip(X, y, groups, strict=True)):
        np.save(folder / "a" / f"u{i}.npy", features[:6].astype(np.float32))
        np.save(folder / "b" / f"u{i}.npy", features[6:].astype(np.float32))
        rows.append({"utterance_id": f"u{i:03d}", "speaker": speaker, "label": f"c{label}",
                     "split": "test" if speaker in TEST_SPEAKERS else "train",
                     "a_features": f"a/u{i}.npy", "b_features": f"b/u{i}.npy"})
    pd.DataFrame(rows).to_csv(folder / "dataset.csv", index=False)
    return folder / "dataset.csv"


def _leaky_folds(make_folds):
    """A deliberately broken engine: each fold also trains (and stops early) on its test rows."""
    def leaky(*args, **kwargs):
        return [replace(f, train=np.union1d(f.train, f.test)) for f in make_folds(*args, **kwargs)]
    return leaky


def _spk6_probabilities(csv: Path, out: Path, model: str) -> np.ndarray:
    """Predicted probabilities of spk6's utterances (whose features never change), in id order."""
    config = build_config({"dataset": csv, "out": out, "model": model, "split": "official",
                           "systems": ["early"], "jobs": 1, "inner_folds": 2, "use_cache": False,
                           "param_grid": {"max_epochs": [8]}})
    predictions = emofusion.run(config, progress=False).predictions
    rows = predictions[predictions["speaker"] == TEST_SPEAKERS[0]].sort_values("utterance_id")
    return rows.filter(like="proba_").to_numpy()


@pytest.mark.parametrize("model", ["mlp", "gru"])
@pytest.mark.parametrize("leak", [False, True], ids=["engine", "leaky_engine"])
def test_test_fold_content_cannot_influence_training(tmp_path, monkeypatch, fast_report, model,
                                                     leak):
    """Two experiments whose test speakers differ (labels changed, one speaker's features
    scrambled) must give the same predictions for the test speaker whose features did not
    change. A deliberately leaky engine that lets the test rows reach training (and early
    stopping) shows that the comparison detects such a leak."""
    if leak:
        monkeypatch.setattr(emofusion.runner, "make_outer_folds",
                            _leaky_folds(emofusion.runner.make_outer_folds))
    original = _spk6_probabilities(_write_official_split(tmp_path / "a", False),
                                   tmp_path / "run-a", model)
    # disturb every global RNG between the two experiments
    np.random.seed(123)
    torch.manual_seed(999)
    torch.rand(7)
    perturbed = _spk6_probabilities(_write_official_split(tmp_path / "b", True),
                                    tmp_path / "run-b", model)
    assert original.shape == (12, 3)
    if leak:
        assert np.abs(original - perturbed).max() > 1e-3
    else:
        np.testing.assert_array_equal(original, perturbed)


def test_early_stopping_holds_out_training_speakers_only():
    rng = np.random.default_rng(0)
    X, y, groups = _speaker_table(rng)
    train = ~np.isin(groups, TEST_SPEAKERS)
    for estimator in (TorchMLPClassifier(hidden_sizes=(16,), max_epochs=3, random_state=3),
                      SequenceClassifier(encoder="gru", hidden_size=8, max_epochs=2,
                                         random_state=3)):
        chosen = set(estimator.fit(X[train], y[train], groups=groups[train]).validation_groups_)
        assert chosen and chosen <= set(groups[train])


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
