"""The end-to-end audio + text system: `EndToEndFusionClassifier` trains a spectrogram CNN and a
text encoder, then `EmbeddingFusionHead` on their *frozen* embeddings (`embed`): concatenation,
dropout and one linear layer.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

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


def _is_text_column(column: np.ndarray) -> bool:
    """True when the cells are transcripts (str, some may be None) rather than frame arrays."""
    return (any(isinstance(cell, str) for cell in column)
            and all(cell is None or isinstance(cell, str) for cell in column))


class EndToEndFusionClassifier(ClassifierMixin, BaseEstimator):
    """The end-to-end audio + text system as one estimator: per input column a branch trained on
    the training data (a spectrogram CNN for frame columns, a fine-tuned text encoder for
    transcript columns), then the fusion head on their frozen embeddings.

    Input ``X``: object array ``(n, n_columns)``; a column holds either ``(T_i, 3 * F)``
    log-spectrogram frames (``spectrogram3`` features) or transcripts (``str``). One column gives
    its branch with a re-trained head.

    Every part uses the same training rows and `groups`: each branch and the head stop early on
    speakers held out of the training data (never on test data). As in the published system, the
    head is trained on the branches' embeddings of the rows they were trained on.

    Parameters:
        cnn: unfitted estimator for frame columns (default ``SpectrogramCNNClassifier()``).
        text: unfitted estimator for transcript columns (default ``TextFinetuneClassifier()``).
        head: unfitted estimator on the concatenated embeddings (default ``EmbeddingFusionHead()``).
        class_weight, random_state, device, n_threads: passed to every part.

    Fitted: ``branches_`` (one fitted clone per column), ``head_``, ``text_columns_``,
    ``classes_``, ``n_features_in_`` (number of columns).
    """

    def __init__(self, cnn=None, text=None, head=None, class_weight=None, random_state=None,
                 device="cpu", n_threads=1):
        self.cnn = cnn
        self.text = text
        self.head = head
        self.class_weight = class_weight
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads

    def _part(self, estimator, default):
        part = clone(estimator) if estimator is not None else default()
        return part.set_params(class_weight=self.class_weight, random_state=self.random_state,
                               device=self.device, n_threads=self.n_threads)

    def _columns(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=object)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2 or len(X) == 0:
            raise ValueError(f"{type(self).__name__} takes an (n, n_columns) object array, got {X.shape}.")
        return X

    def _embeddings(self, X) -> np.ndarray:
        """(n, sum of embedding widths) frozen embeddings of every branch."""
        return np.hstack([branch.embed(X[:, [j]]) for j, branch in enumerate(self.branches_)])

    def fit(self, X, y, groups=None):
        """Fit each branch on its column, then the head on their embeddings."""
        from emofusion.models.deep.spectrogram import SpectrogramCNNClassifier
        from emofusion.models.deep.text import TextFinetuneClassifier

        X = self._columns(X)
        self.text_columns_ = [j for j in range(X.shape[1]) if _is_text_column(X[:, j])]
        self.branches_ = [
            self._part(self.text, TextFinetuneClassifier) if j in self.text_columns_
            else self._part(self.cnn, SpectrogramCNNClassifier)
            for j in range(X.shape[1])]
        for j, branch in enumerate(self.branches_):
            branch.fit(X[:, [j]], y, groups=groups)
        self.head_ = self._part(self.head, EmbeddingFusionHead).fit(self._embeddings(X), y, groups=groups)
        self.classes_ = self.head_.classes_
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n, n_classes) from the head."""
        check_is_fitted(self)
        X = self._columns(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} columns, but {type(self).__name__} was fitted "
                             f"with {self.n_features_in_}.")
        text_columns = [j for j in range(X.shape[1]) if _is_text_column(X[:, j])]
        if not set(text_columns) <= set(self.text_columns_):
            raise ValueError(f"columns {text_columns} hold transcripts, but {type(self).__name__} "
                             f"was fitted with transcripts in columns {self.text_columns_}.")
        return self.head_.predict_proba(self._embeddings(X))

    def predict(self, X) -> np.ndarray:
        """Most probable class per row (n,)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
