"""`SequenceClassifier`: frame-sequence models and model-level multimodal fusion.

One estimator covers the `gru`, `lstm`, `transformer` and `attention` models (one modality) and
the `fusion_concat`, `fusion_gated` and `fusion_attention` models (one encoder per modality, then
fusion): see `SequenceNet` in `_modules.py`.
"""

from __future__ import annotations

import numpy as np

from emofusion.models.deep._augment import (
    FREQ_MASK_FRACTION,
    FREQ_MASKS,
    LR_SCHEDULE,
    SEQUENCE_MIXUP_ALPHA,
    TIME_MASK_FRACTION,
    TIME_MASKS,
    WARMUP_FRACTION,
)
from emofusion.models.deep._base import TorchClassifier
from emofusion.models.deep._data import SequenceStore, _as_object_matrix, parse_cells
from emofusion.models.deep._modules import SequenceNet


def _matrix_as_frames(X: np.ndarray) -> SequenceStore:
    """A numeric (n, d) matrix as one modality with one frame per utterance."""
    X = np.asarray(X, dtype=np.float32)
    return SequenceStore([X], np.ones((len(X), 1), dtype=np.int64))


class SequenceInputMixin:
    """Input handling shared by the estimators that consume the frame-sequence object array."""

    #: None = any number of modality columns
    _max_modalities: int | None = None

    def _parse_fit(self, X, y):
        cells = _as_object_matrix(X)
        if cells is None:
            X, y = self._validate_matrix(X, y, reset=True)
            self.modality_widths_ = [int(X.shape[1])]
            self.input_kind_ = "matrix"
            return _matrix_as_frames(X), self._check_y(y, len(X))
        self._check_modality_count(cells.shape[1])
        store = parse_cells(cells, None, what=type(self).__name__)
        if store.n < 1:
            raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
        y = self._check_y(y, store.n)
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_features_in_ = int(cells.shape[1])
        self.modality_widths_ = store.widths
        self.input_kind_ = "sequence"
        return store, y

    def _parse_predict(self, X):
        cells = _as_object_matrix(X)
        if cells is None:
            if self.input_kind_ == "matrix":
                return _matrix_as_frames(self._validate_matrix(X, reset=False))
            X = self._validate_matrix_free(X)
            cells = np.empty((len(X), 1), dtype=object)
            cells[:, 0] = list(X[:, None, :])
        return parse_cells(cells, self.modality_widths_, what=type(self).__name__)

    def _validate_matrix_free(self, X):
        from sklearn.utils.validation import check_array

        return check_array(X, dtype=[np.float64, np.float32])

    def _check_modality_count(self, m: int) -> None:
        if self._max_modalities is not None and m > self._max_modalities:
            raise ValueError(
                f"{type(self).__name__} takes {self._max_modalities} modality column(s), got {m}."
            )


class SequenceClassifier(SequenceInputMixin, TorchClassifier):
    """Recurrent / attention / Transformer classifier over frame sequences, with optional
    model-level fusion of several modalities.

    Input ``X``: a 2-D object array ``(n, n_modalities)`` whose cells are float ``(T_i, d_m)``
    frame arrays (T may differ per utterance and modality; ``T >= 1``), or a numeric ``(n, d)``
    matrix (= one modality, one frame per utterance). At prediction a cell that is ``None`` or has
    0 rows is a *missing* modality: its embedding is zeroed exactly as modality dropout does in
    training, so the prediction degrades instead of failing.

    Frames are standardised per modality with the frame mean/std of the training part
    (``feature_means_``, ``feature_stds_``). Batches are bucketed by length and padded; padding
    never changes the output (masking + packed RNNs + key padding masks).

    Parameters:
        encoder: per-modality encoder: ``"gru"``/``"lstm"`` (bidirectional, ``hidden_size`` per
            direction), ``"transformer"`` (``d_model = hidden_size``), ``"attention"`` (linear
            projection only). All end with learned attention pooling (masked softmax over frames).
        hidden_size: encoder width (default 64).
        n_layers: RNN / Transformer layers; None = 1 for RNNs, 2 for the Transformer.
        n_heads: Transformer and cross-modal attention heads (default 4).
        attention_size: width of the attention-pooling scorer (default 64).
        fusion: ``"concat"``, ``"gated"`` (gated multimodal unit) or ``"attention"`` (cross-modal
            self-attention over modality embeddings). Irrelevant with one modality except for
            the extra layers of gated/attention.
        modality_dropout: probability of zeroing each modality's embedding per training sample
            (never all modalities of a sample).
        time_masks, time_mask_fraction: SpecAugment-style time masking of training batches:
            per utterance and modality, ``time_masks`` runs of at most ``time_mask_fraction`` of
            its frames are set to the training mean (0 after standardisation).
        freq_masks, freq_mask_fraction: the same over feature columns (frequency bands of
            log-mel frames), each band at most ``freq_mask_fraction`` of the columns wide.
        mixup_alpha: mixup of training batches with weight ~ Beta(alpha, alpha); 0 = off.
        lr_schedule: ``"cosine"`` (linear warm-up over ``warmup_fraction`` of all steps, then
            cosine decay) or ``"constant"``.
        dropout, lr, weight_decay, max_epochs, batch_size, patience, validation_fraction,
        class_weight, random_state, device, n_threads: as in `TorchMLPClassifier`.
    """

    def __init__(self, encoder="gru", hidden_size=64, n_layers=None, n_heads=4,
                 attention_size=64, fusion="concat", modality_dropout=0.0, time_masks=TIME_MASKS,
                 time_mask_fraction=TIME_MASK_FRACTION, freq_masks=FREQ_MASKS,
                 freq_mask_fraction=FREQ_MASK_FRACTION, mixup_alpha=SEQUENCE_MIXUP_ALPHA,
                 lr_schedule=LR_SCHEDULE, warmup_fraction=WARMUP_FRACTION, dropout=0.2,
                 lr=2e-3, weight_decay=1e-4, max_epochs=30, batch_size=64, patience=5,
                 validation_fraction=0.15, class_weight=None, random_state=None, device="cpu",
                 n_threads=1):
        self.encoder = encoder
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.attention_size = attention_size
        self.fusion = fusion
        self.modality_dropout = modality_dropout
        self.time_masks = time_masks
        self.time_mask_fraction = time_mask_fraction
        self.freq_masks = freq_masks
        self.freq_mask_fraction = freq_mask_fraction
        self.mixup_alpha = mixup_alpha
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

    def _module_config(self, store, n_classes):
        n_layers = self.n_layers
        if n_layers is None:
            n_layers = 2 if self.encoder == "transformer" else 1
        return {
            "widths": [int(w) for w in store.widths], "n_classes": int(n_classes),
            "encoder": str(self.encoder), "hidden": int(self.hidden_size),
            "n_layers": int(n_layers), "n_heads": int(self.n_heads),
            "attention_size": int(self.attention_size), "fusion": str(self.fusion),
            "dropout": float(self.dropout), "modality_dropout": float(self.modality_dropout),
        }

    @classmethod
    def _build_module(cls, config):
        return SequenceNet(
            config["widths"], config["n_classes"], encoder=config["encoder"],
            hidden=config["hidden"], n_layers=config["n_layers"], n_heads=config["n_heads"],
            attention_size=config["attention_size"], fusion=config["fusion"],
            dropout=config["dropout"], modality_dropout=config["modality_dropout"],
        )


__all__ = ["SequenceClassifier", "SequenceInputMixin"]
