"""`SpectrogramCNNClassifier`: end-to-end CNN over 3-channel log-spectrogram images.

Cell convention: each utterance is a ``(T, n_channels * F)`` float array whose columns are the
channels one after the other, ``[log-spectrogram F | delta F | delta-delta F]``. The estimator
reshapes a cell to ``(T, n_channels, F)`` and transposes it to the ``(n_channels, F, T)`` image a
CNN expects. The default backbone is a small CNN with masked global average pooling, so any
T >= 1 works and padding never changes the output. Optional torchvision backbones (``"alexnet"``,
``"resnet34"``) are imported only when asked for; ImageNet weights are read from a local file.
"""

from __future__ import annotations

import torch
from torch import nn

from emofusion.errors import MissingExtraError
from emofusion.models.deep._augment import (
    FREQ_MASK_FRACTION,
    FREQ_MASKS,
    LR_SCHEDULE,
    TIME_MASK_FRACTION,
    TIME_MASKS,
    WARMUP_FRACTION,
)
from emofusion.models.deep._base import TorchClassifier
from emofusion.models.deep._modules import ResizedBackbone, SmallSpectrogramCNN, SpectrogramNet
from emofusion.models.deep.sequence import SequenceInputMixin

BACKBONES = ("small", "alexnet", "resnet34")


def _torchvision_backbone(name: str, weights_path, image_size: int) -> ResizedBackbone:
    try:
        import torchvision
    except ImportError as exc:
        raise MissingExtraError(
            "torchvision", "torchvision", f"The '{name}' spectrogram backbone"
        ) from exc
    if name == "resnet34":
        net = torchvision.models.resnet34(weights=None)
    else:
        net = torchvision.models.alexnet(weights=None)
    if weights_path:
        state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    if name == "resnet34":
        out_dim = int(net.fc.in_features)
        net.fc = nn.Identity()
    else:
        out_dim = int(net.classifier[-1].in_features)
        net.classifier[-1] = nn.Identity()
    return ResizedBackbone(net, out_dim, image_size)


class SpectrogramCNNClassifier(SequenceInputMixin, TorchClassifier):
    """CNN classifier on log-spectrogram (+ delta + delta-delta) images of variable length.

    Input ``X``: object array ``(n, 1)`` of ``(T_i, n_channels * F)`` float cells (see the module
    docstring for the column order), or a numeric ``(n, n_channels * F)`` matrix (T = 1).
    Columns are standardised with training-frame mean/std before the reshape.

    Parameters:
        backbone: ``"small"`` (default; conv3x3-BN-ReLU-maxpool blocks of ``channels``),
            ``"alexnet"`` or ``"resnet34"`` (need the ``torchvision`` extra; each utterance's real
            frames are resized to ``image_size`` x ``image_size``).
        channels: conv widths of the small backbone, default ``(16, 32, 64)``.
        n_channels: image channels stacked in the cell columns (default 3).
        pretrained_weights: path of a local torchvision state-dict file (ImageNet weights) for
            the torchvision backbones; never downloaded.
        image_size: resize target of the torchvision backbones (default 224).
        time_masks, time_mask_fraction, freq_masks, freq_mask_fraction: SpecAugment-style masking
            of training batches as in `SequenceClassifier`; a frequency band is masked in all
            ``n_channels`` channels (spectrogram, delta, delta-delta).
        lr_schedule, warmup_fraction: as in `SequenceClassifier`.
        dropout, lr, weight_decay, max_epochs, batch_size, patience, validation_fraction,
        class_weight, random_state, device, n_threads: as in `TorchMLPClassifier`.
    """

    _max_modalities = 1

    def __init__(self, backbone="small", channels=(16, 32, 64), n_channels=3,
                 pretrained_weights=None, image_size=224, time_masks=TIME_MASKS,
                 time_mask_fraction=TIME_MASK_FRACTION, freq_masks=FREQ_MASKS,
                 freq_mask_fraction=FREQ_MASK_FRACTION, lr_schedule=LR_SCHEDULE,
                 warmup_fraction=WARMUP_FRACTION, dropout=0.3, lr=1e-3, weight_decay=1e-4,
                 max_epochs=40, batch_size=16, patience=8,
                 validation_fraction=0.15, class_weight=None, random_state=None, device="cpu",
                 n_threads=1):
        self.backbone = backbone
        self.channels = channels
        self.n_channels = n_channels
        self.pretrained_weights = pretrained_weights
        self.image_size = image_size
        self.time_masks = time_masks
        self.time_mask_fraction = time_mask_fraction
        self.freq_masks = freq_masks
        self.freq_mask_fraction = freq_mask_fraction
        self.lr_schedule = lr_schedule
        self.warmup_fraction = warmup_fraction
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads

    def _frequency_channels(self) -> int:
        return int(self.n_channels)

    def _module_config(self, store, n_classes):
        width = store.widths[0]
        if width % int(self.n_channels):
            raise ValueError(
                f"{type(self).__name__}: frames have {width} columns, which is not a multiple of "
                f"n_channels={self.n_channels}; cells must be (T, n_channels * F)."
            )
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{self.backbone}'; choose {', '.join(BACKBONES)}")
        if self.backbone != "small" and int(self.n_channels) != 3:
            raise ValueError(f"the '{self.backbone}' backbone needs n_channels=3")
        return {
            "backbone": str(self.backbone), "channels": [int(c) for c in self.channels],
            "n_channels": int(self.n_channels), "n_classes": int(n_classes),
            "dropout": float(self.dropout), "image_size": int(self.image_size),
            # weights are only loaded for a fresh fit; a restored model gets its own state dict
            "pretrained_weights": None if self.pretrained_weights is None
            else str(self.pretrained_weights),
        }

    @classmethod
    def _build_module(cls, config, *, load_weights: bool = True):
        if config["backbone"] == "small":
            backbone = SmallSpectrogramCNN(config["n_channels"], config["channels"])
        else:
            backbone = _torchvision_backbone(
                config["backbone"],
                config["pretrained_weights"] if load_weights else None,
                config["image_size"],
            )
        return SpectrogramNet(backbone, config["n_channels"], config["n_classes"],
                              config["dropout"])

    def _new_module(self, config, device, restoring=False):
        # pretrained weights are loaded for a fresh fit only; a restored model has its own state
        return self._build_module(config, load_weights=not restoring).to(device)
