"""Training aids of the deep estimators: SpecAugment-style masking, mixup, learning-rate schedule.

All three act inside `TorchClassifier._train` only: validation batches (early stopping) and
prediction never see a mask or a mixed input, and the schedule only sets the optimiser's rate.
Randomness comes from torch's global RNG, which `fit` forks and seeds (reproducible fits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SCHEDULES = ("constant", "cosine")

# Defaults of the sequence and spectrogram models, chosen by nested search on the training
# speakers of each outer fold (docs/deep_models.md, "Training aids"): the value most folds chose.
TIME_MASKS = 2
TIME_MASK_FRACTION = 0.1
FREQ_MASKS = 0
FREQ_MASK_FRACTION = 0.1
SEQUENCE_MIXUP_ALPHA = 0.2
LR_SCHEDULE = "constant"
WARMUP_FRACTION = 0.1


def _band_mask(limits: torch.Tensor, n_masks: int, fraction: float, size: int) -> torch.Tensor:
    """(B, size) boolean mask, True inside the masked bands.

    Row b gets ``n_masks`` bands, each of a width drawn uniformly from
    ``0 .. floor(fraction * limits[b])`` and placed uniformly inside ``0 .. limits[b]``, so no
    band reaches past ``limits[b]`` (an utterance's real length).
    """
    limits = limits.to(torch.float64)[:, None]
    widths = torch.floor(torch.rand(len(limits), n_masks, dtype=torch.float64, device=limits.device)
                         * (torch.floor(fraction * limits) + 1.0))
    starts = torch.floor(torch.rand(len(limits), n_masks, dtype=torch.float64, device=limits.device)
                         * (limits - widths + 1.0))
    position = torch.arange(size, device=limits.device, dtype=torch.float64)[None, None, :]
    inside = (position >= starts[..., None]) & (position < (starts + widths)[..., None])
    return inside.any(dim=1)


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, *, time_masks: int,
                 time_mask_fraction: float, freq_masks: int, freq_mask_fraction: float,
                 n_channels: int = 1) -> torch.Tensor:
    """SpecAugment-style masking of one modality's standardised frames (0 = the training mean).

    Args:
        x: ``(B, T, n_channels * F)`` padded frames (a ``(B, d)`` matrix is returned unchanged:
            pooled inputs have no time or frequency axis to mask).
        lengths: ``(B,)`` real frame counts; time masks stay inside them.
        time_masks, time_mask_fraction: per utterance, this many runs of consecutive frames,
            each at most ``floor(fraction * length)`` frames long, are set to 0.
        freq_masks, freq_mask_fraction: per utterance, this many bands of consecutive feature
            columns (at most ``floor(fraction * F)`` wide) are set to 0 in every frame; with
            ``n_channels`` > 1 the same bands are masked in every channel block of width F.

    Returns:
        A masked copy of x (same shape); x itself is not modified.
    """
    if x.dim() != 3:
        return x
    B, T, D = x.shape
    keep = torch.ones(B, T, D, dtype=torch.bool, device=x.device)
    if time_masks and time_mask_fraction > 0:
        keep &= ~_band_mask(lengths, int(time_masks), float(time_mask_fraction), T)[:, :, None]
    if freq_masks and freq_mask_fraction > 0:
        n_bins = D // n_channels
        bins = torch.full((B,), n_bins, device=x.device)
        bands = _band_mask(bins, int(freq_masks), float(freq_mask_fraction), n_bins)
        keep &= ~bands.repeat(1, n_channels)[:, None, :]
    return x * keep.to(x.dtype)


def mixup(xs: list[torch.Tensor], lengths: torch.Tensor, alpha: float):
    """Mixup of a training batch with a shuffled copy of itself.

    Args:
        xs: per modality, ``(B, T_m, d_m)`` padded frames or a ``(B, d)`` matrix.
        lengths: ``(B, M)`` frame counts.
        alpha: the mixing weight ``lam`` is drawn from Beta(alpha, alpha).

    Returns:
        ``(mixed xs, lengths, partner (B,) row permutation, lam)``: input ``lam * x + (1 - lam) *
        x[partner]``; each mixed utterance is as long as the longer of its two sources (padding
        is 0, so the shorter one contributes nothing beyond its end).
    """
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = torch.randperm(len(lengths), device=lengths.device)
    mixed = [lam * x + (1.0 - lam) * x[partner] for x in xs]
    return mixed, torch.maximum(lengths, lengths[partner]), partner, lam


def mixup_cross_entropy(logits: torch.Tensor, target: torch.Tensor, partner: torch.Tensor,
                        lam: float, weight: torch.Tensor | None) -> torch.Tensor:
    """``lam * CE(logits, target) + (1 - lam) * CE(logits, target[partner])`` (class-weighted):
    the loss of mixup, whose targets are the mix of both sources' labels."""
    return (lam * F.cross_entropy(logits, target, weight=weight)
            + (1.0 - lam) * F.cross_entropy(logits, target[partner], weight=weight))


@dataclass
class LearningRateSchedule:
    """Learning-rate factor per optimiser step.

    ``"constant"``: factor 1. ``"cosine"``: linear warm-up over the first
    ``W = ceil(warmup_fraction * total_steps)`` steps (factor ``(step + 1) / W``, steps counted
    from 0), then cosine decay ``0.5 * (1 + cos(pi * (step - W) / (total_steps - W)))`` towards 0
    at ``total_steps``. Early stopping may end training before the decay does.
    """

    kind: str
    warmup_fraction: float
    total_steps: int

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")

    def factor(self, step: int) -> float:
        if self.kind == "constant":
            return 1.0
        warmup = math.ceil(self.warmup_fraction * self.total_steps)
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(self.total_steps - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    def apply(self, optimizer, base_rates: list[float], step: int) -> None:
        """Set every parameter group's rate to its base rate times the factor of ``step``."""
        factor = self.factor(step)
        for group, rate in zip(optimizer.param_groups, base_rates, strict=True):
            group["lr"] = rate * factor
