"""Training aids: SpecAugment-style masks, mixup and the learning-rate schedule act on training
batches exactly as specified, and never on validation or prediction batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from deep_testdata import sequences

from emofusion.models.deep import SequenceClassifier, SpectrogramCNNClassifier, TorchMLPClassifier, _base
from emofusion.models.deep._augment import (
    LearningRateSchedule,
    mixup,
    mixup_cross_entropy,
    spec_augment,
)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of every run of True values in a 1-D boolean array."""
    padded = np.concatenate([[False], flags, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2], strict=True))


def test_spec_augment_masks_bands_inside_each_utterance_and_copies():
    torch.manual_seed(0)
    n_channels, n_bins, T = 3, 10, 20
    x = torch.ones(64, T, n_channels * n_bins)
    lengths = torch.tensor([20, 10, 5, 1] * 16)
    out = spec_augment(x, lengths, time_masks=2, time_mask_fraction=0.5, freq_masks=2,
                       freq_mask_fraction=0.3, n_channels=n_channels)
    assert torch.equal(x, torch.ones_like(x))  # the input is not modified
    out = out.numpy()
    assert set(np.unique(out)) <= {0.0, 1.0}
    masked_steps = masked_bands = 0
    for b, length in enumerate(lengths.tolist()):
        columns = (out[b] == 0).all(axis=0)          # zero in every frame: frequency bands
        blocks = columns.reshape(n_channels, n_bins)
        assert (blocks == blocks[0]).all()           # the same bands in every channel
        bands = _runs(blocks[0])
        assert len(bands) <= 2 and blocks[0].sum() <= 2 * 3  # 2 bands of at most 3 bins
        steps = (out[b][:, ~columns] == 0).all(axis=1)  # zero in the other columns: time masks
        assert not steps[length:].any()              # never beyond the utterance
        runs = _runs(steps[:length])
        assert len(runs) <= 2 and steps.sum() <= 2 * (length // 2)  # 2 runs, each <= L/2
        assert (out[b][~steps][:, ~columns] == 1).all()  # nothing else is touched
        masked_steps += int(steps.sum())
        masked_bands += len(bands)
    assert masked_steps > 0 and masked_bands > 0
    pooled = torch.ones(4, 6)
    assert spec_augment(pooled, torch.ones(4), time_masks=2, time_mask_fraction=1.0, freq_masks=2,
                        freq_mask_fraction=1.0) is pooled  # no time or frequency axis


class _Recording:
    """Mixin: record (training mode, input frames, lengths) of every forward call."""

    def _new_module(self, config, device, restoring=False):
        module = super()._new_module(config, device, restoring)
        self.calls_ = []
        module.register_forward_pre_hook(lambda mod, args: self.calls_.append(
            (mod.training, args[0][0].detach().clone(), args[1][:, 0].clone())))
        return module


class _RecordingSequence(_Recording, SequenceClassifier):
    pass


class _RecordingSpectrogram(_Recording, SpectrogramCNNClassifier):
    pass


def _zero_masks(x: torch.Tensor, lengths: torch.Tensor):
    """Per utterance, (frames that are all zero, columns that are zero in all real frames)."""
    for xb, length in zip(x.numpy(), lengths.tolist(), strict=True):
        real = xb[:length]
        yield (real == 0).all(axis=1), (real == 0).all(axis=0)


@pytest.mark.parametrize("estimator, n_channels", [
    (_RecordingSequence(encoder="attention", hidden_size=8, attention_size=8), 1),
    (_RecordingSpectrogram(channels=(4,)), 3),
])
def test_masks_reach_training_batches_only(estimator, n_channels):
    rng = np.random.default_rng(0)
    X, y = sequences(40, rng, widths=(12,), t_range=(8, 16))
    estimator.set_params(time_masks=2, time_mask_fraction=0.3, freq_masks=1,
                         freq_mask_fraction=0.5, max_epochs=3, batch_size=8, random_state=0)
    estimator.fit(X, y, np.arange(40) % 5)
    train = [c for c in estimator.calls_ if c[0]]
    evaluation = [c for c in estimator.calls_ if not c[0]]
    assert train and evaluation  # validation batches ran in eval mode
    steps, bands = 0, 0
    for _, x, lengths in train:
        for frames, columns in _zero_masks(x, lengths):
            steps += int(frames.sum())
            bands += int(columns.any())
            if n_channels > 1:  # a band covers the same bins of spectrogram, delta, delta-delta
                blocks = columns.reshape(n_channels, -1)
                assert (blocks == blocks[0]).all()
    assert steps > 0 and bands > 0
    estimator.calls_.clear()
    estimator.predict_proba(X)
    calls = estimator.calls_ + evaluation
    assert calls and not any(training for training, _, _ in calls)
    for _, x, lengths in calls:  # real frames of validation / prediction batches: never zeroed
        for b, length in enumerate(lengths.tolist()):
            assert (x[b, :length] != 0).all()


def test_mixup_mixes_inputs_and_loss_targets():
    torch.manual_seed(3)
    xs = [torch.randn(6, 4, 2), torch.randn(6, 3)]
    lengths = torch.tensor([[4, 1], [2, 1], [3, 1], [1, 1], [4, 1], [2, 1]])
    mixed, mixed_lengths, partner, lam = mixup(xs, lengths, alpha=0.4)
    assert 0.0 < lam < 1.0 and sorted(partner.tolist()) == list(range(6))
    for x, m in zip(xs, mixed, strict=True):
        torch.testing.assert_close(m, lam * x + (1 - lam) * x[partner])
    assert torch.equal(mixed_lengths, torch.maximum(lengths, lengths[partner]))
    logits = torch.randn(6, 3)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    weight = torch.tensor([1.0, 2.0, 0.5])
    loss = mixup_cross_entropy(logits, target, partner, lam, weight)
    expected = (lam * F.cross_entropy(logits, target, weight=weight)
                + (1 - lam) * F.cross_entropy(logits, target[partner], weight=weight))
    torch.testing.assert_close(loss, expected)
    assert not torch.isclose(loss, F.cross_entropy(logits, target, weight=weight))


def test_fit_trains_on_mixed_targets_only_with_mixup(monkeypatch):
    seen = []

    def spy(logits, target, partner, lam, weight):
        seen.append((target.clone(), partner.clone(), lam))
        return mixup_cross_entropy(logits, target, partner, lam, weight)

    monkeypatch.setattr(_base, "mixup_cross_entropy", spy)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5))
    y = np.arange(60) % 3
    TorchMLPClassifier(hidden_sizes=(8,), mixup_alpha=0.0, max_epochs=2, random_state=0).fit(X, y)
    assert seen == []
    est = TorchMLPClassifier(hidden_sizes=(8,), mixup_alpha=0.4, max_epochs=2, batch_size=16,
                             patience=None, validation_fraction=0, random_state=0).fit(X, y)
    assert len(seen) == 2 * 4  # every training step of 2 epochs x 4 batches
    assert all(0.0 < lam < 1.0 for _, _, lam in seen)
    assert any((target != target[partner]).any() for target, partner, _ in seen)
    assert len(est.history_) == 2


def test_cosine_schedule_values():
    schedule = LearningRateSchedule("cosine", warmup_fraction=0.1, total_steps=100)
    factors = [schedule.factor(s) for s in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5)
    assert factors[99] == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert LearningRateSchedule("constant", 0.1, 100).factor(57) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        LearningRateSchedule("step", 0.1, 100)


def test_fit_sets_the_scheduled_rate_at_every_step(monkeypatch):
    rates = []
    step = _base.AdamW.step

    def recording_step(self):
        rates.append(self.param_groups[0]["lr"])
        step(self)

    monkeypatch.setattr(_base.AdamW, "step", recording_step)
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(50, 4)), np.arange(50) % 2
    est = TorchMLPClassifier(hidden_sizes=(8,), lr=0.01, lr_schedule="cosine", warmup_fraction=0.2,
                             max_epochs=6, batch_size=10, patience=None, validation_fraction=0,
                             random_state=0).fit(X, y)
    schedule = LearningRateSchedule("cosine", 0.2, 6 * 5)
    assert rates == pytest.approx([0.01 * schedule.factor(s) for s in range(30)])
    assert [h["lr"] for h in est.history_] == pytest.approx(rates[4::5])
    rates.clear()
    TorchMLPClassifier(hidden_sizes=(8,), lr=0.01, lr_schedule="constant", max_epochs=2,
                       batch_size=10, validation_fraction=0, random_state=0).fit(X, y)
    assert rates == [0.01] * 10
