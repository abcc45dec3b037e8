"""`EmbeddingFusionHead`: the fusion head of an end-to-end audio + text system.

It takes *frozen* embeddings of each branch (e.g. `SpectrogramCNNClassifier.embed` and
`TextFinetuneClassifier.embed`), concatenates them, applies dropout and one linear layer.
"""

from __future__ import annotations

import numpy as np

from emofusion.models.deep._base import TorchClassifier
from emofusion.models.deep._data import PooledStore
from emofusion.models.deep._modules import MLPNet
from emofusion.models.deep.sequence import SequenceInputMixin


def _pooled_branches(store) -> np.ndarray:
    """Mean frame of every utterance and branch, concatenated; missing branches are zeros."""
    return np.concatenate([store.utterance_means(m) for m in range(store.n_modalities)], axis=1)


class EmbeddingFusionHead(SequenceInputMixin, TorchClassifier):
    """Concatenate frozen branch embeddings -> dropout -> linear.

    Input ``X``: object array ``(n, n_branches)`` whose cells are 1-D ``(d_b,)`` embeddings
    (``(T, d_b)`` cells are mean-pooled over frames first), or a numeric ``(n, d)`` matrix of
    already concatenated embeddings. Each branch is standardised with training statistics; a
    missing branch (``None`` / empty cell) contributes zeros, i.e. the training mean.

    Parameters:
        dropout: dropout on the concatenated embedding (default 0.5).
        lr, weight_decay, max_epochs, batch_size, patience, validation_fraction, class_weight,
        random_state, device, n_threads: as in `TorchMLPClassifier`.
    """

    def __init__(self, dropout=0.5, lr=1e-3, weight_decay=1e-4, max_epochs=100, batch_size=32,
                 patience=10, validation_fraction=0.15, class_weight=None, random_state=None,
                 device="cpu", n_threads=1):
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

    def _preprocess(self, store):
        store.standardise(self.feature_means_, self.feature_stds_)
        return PooledStore(_pooled_branches(store))

    def _module_config(self, store, n_classes):
        return {"n_in": int(store.widths[0]), "hidden_sizes": [], "n_classes": int(n_classes),
                "dropout": 0.0, "input_dropout": float(self.dropout)}

    @classmethod
    def _build_module(cls, config):
        return MLPNet(config["n_in"], config["hidden_sizes"], config["n_classes"],
                      config["dropout"], config["input_dropout"])
