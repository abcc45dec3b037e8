"""`TorchMLPClassifier`: pooled features -> 128-64 ReLU MLP with dropout (the `mlp` model)."""

from __future__ import annotations

from emofusion.models.deep._augment import LR_SCHEDULE, WARMUP_FRACTION
from emofusion.models.deep._base import TorchClassifier
from emofusion.models.deep._data import PooledStore
from emofusion.models.deep._modules import MLPNet


class TorchMLPClassifier(TorchClassifier):
    """Multilayer perceptron on pooled ``(n, d)`` float features.

    Inputs are standardised with the training part's column mean/std (stored as
    ``feature_means_`` / ``feature_stds_``). Architecture: ``[Linear, ReLU, Dropout]`` per entry
    of ``hidden_sizes``, then a Linear layer to the classes.

    Parameters:
        hidden_sizes: widths of the hidden layers, default ``(128, 64)``.
        dropout: dropout after each hidden layer.
        mixup_alpha: mixup of training batches with weight ~ Beta(alpha, alpha); 0 = off.
        lr_schedule: ``"cosine"`` (linear warm-up over ``warmup_fraction`` of all steps, then
            cosine decay) or ``"constant"``.
        lr, weight_decay: AdamW settings.
        max_epochs, batch_size: training length and mini-batch size.
        patience: epochs without validation-loss improvement before stopping.
        validation_fraction: share of the training speakers (with ``groups``) or rows held out
            for early stopping; 0 disables the split (then the training loss is monitored).
        class_weight: None, ``"balanced"`` or ``{label: weight}`` for the cross-entropy.
        random_state: seed (int) for initialisation, split and data order.
        device: ``"cpu"`` (default), ``"cuda"`` or ``"auto"``.
        n_threads: torch threads during fit/predict (default 1; None keeps torch's setting).
    """

    def __init__(self, hidden_sizes=(128, 64), dropout=0.3, mixup_alpha=0.0,
                 lr_schedule=LR_SCHEDULE, warmup_fraction=WARMUP_FRACTION, lr=1e-3,
                 weight_decay=1e-4, max_epochs=100, batch_size=32, patience=10,
                 validation_fraction=0.15, class_weight=None, random_state=None, device="cpu",
                 n_threads=1):
        self.hidden_sizes = hidden_sizes
        self.dropout = dropout
        self.mixup_alpha = mixup_alpha
        self.lr_schedule = lr_schedule
        self.warmup_fraction = warmup_fraction
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

    def _parse_fit(self, X, y):
        X, y = self._validate_matrix(X, y, reset=True)
        return PooledStore(X), self._check_y(y, len(X))

    def _parse_predict(self, X):
        return PooledStore(self._validate_matrix(X, reset=False))

    def _module_config(self, store, n_classes):
        return {"n_in": store.widths[0], "hidden_sizes": [int(h) for h in self.hidden_sizes],
                "n_classes": int(n_classes), "dropout": float(self.dropout)}

    @classmethod
    def _build_module(cls, config):
        return MLPNet(config["n_in"], config["hidden_sizes"], config["n_classes"],
                      config["dropout"], config.get("input_dropout", 0.0))
