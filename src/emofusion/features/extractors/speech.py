"""Self-supervised speech encoders through Hugging Face ``transformers``: every layer, pooled.

``hf_audio`` runs wav2vec 2.0, HuBERT, WavLM, data2vec-audio or Whisper's encoder (any
``AutoModel`` with a speech feature extractor) over an utterance and keeps, for every hidden
layer (the embedding output included), the mean and standard deviation over frames: an
``(L, 2 d)`` array per utterance (kind ``"layers"``), so the layer, or the average of layers, can
be chosen later on the training speakers only (`emofusion.models.layer_selector.LayerSelector`,
or the pooling ``layer<K>`` / ``mean`` / ``flat``).

Long files are cut into equal chunks of at most ``chunk_seconds`` (Whisper: at most its 30 s
window); frame sums and sums of squares are accumulated over chunks, so the statistics are those
of all frames of the file. Whisper pads every chunk to 30 s: only the frames covering the audio
are pooled.

Models load from a local folder, or from a hub id already in the local Hugging Face cache;
nothing is downloaded unless the environment variable ``EMOFUSION_ALLOW_DOWNLOAD=1`` is set.
Needs the ``speech`` extra: ``pip install 'emofusion[speech]'``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from emofusion.errors import ConfigError, require
from emofusion.features.extractors.audio import AudioExtractor
from emofusion.features.extractors.base import ExtractionFailed, checked_device, torch_device

ALLOW_DOWNLOAD_ENV = "EMOFUSION_ALLOW_DOWNLOAD"
"""Set to ``1`` to let ``hf_audio`` download a hub id that is not in the local cache."""

MIN_SECONDS = 0.1
"""Shorter utterances fail: the encoders' convolutional front ends need ~25 ms per frame."""


def downloads_allowed() -> bool:
    """True when the user opted in to downloads (``EMOFUSION_ALLOW_DOWNLOAD=1``)."""
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "") == "1"


def chunk_bounds(n_samples: int, max_samples: int) -> list[tuple[int, int]]:
    """``[(first, stop), ...]``: ``n_samples`` cut into the fewest equal chunks of at most
    ``max_samples`` (equal lengths, so no chunk is a tiny remainder)."""
    n_chunks = max(1, math.ceil(n_samples / max_samples))
    edges = np.linspace(0, n_samples, n_chunks + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


class FrameMoments:
    """Running per-layer frame statistics over chunks.

    `add` takes hidden states ``(L, T, d)``; `pooled` returns ``(L, 2 d)`` = [mean ‖ std] over
    all frames added, the same as pooling the concatenated frames at once.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.sums: np.ndarray | None = None
        self.squares: np.ndarray | None = None

    def add(self, hidden: np.ndarray) -> None:
        """Add one chunk's hidden states ``(L, T, d)``."""
        hidden = np.asarray(hidden, dtype=np.float64)
        sums, squares = hidden.sum(axis=1), np.square(hidden).sum(axis=1)
        self.sums = sums if self.sums is None else self.sums + sums
        self.squares = squares if self.squares is None else self.squares + squares
        self.frames += hidden.shape[1]

    def pooled(self) -> np.ndarray:
        """``(L, 2 d)`` float32: per layer the frame mean, then the frame standard deviation."""
        if self.sums is None or self.squares is None or self.frames == 0:
            raise ExtractionFailed("the speech encoder produced no frames (input too short)",
                                   "check the file and the start/end times")
        mean = self.sums / self.frames
        std = np.sqrt(np.maximum(self.squares / self.frames - np.square(mean), 0.0))
        return np.concatenate([mean, std], axis=1).astype(np.float32)


class HFAudio(AudioExtractor):
    """Every layer of a Hugging Face speech encoder, mean and std over frames: ``(L, 2 d)``.

    Parameters:
        model: local checkpoint folder (``config.json``, weights, ``preprocessor_config.json``)
            or a hub id in the local Hugging Face cache, e.g. ``facebook/wav2vec2-base``.
        chunk_seconds: longer files are encoded in equal chunks of at most this length.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (speed only, not recorded).

    ``L`` is the number of hidden layers + 1 (the input embeddings), ``d`` the hidden size; the
    audio is resampled to the feature extractor's sampling rate (16 kHz for all these models).
    """

    name = "hf_audio"
    kind = "layers"
    chunk_size = 4
    in_process = True  # one loaded model encodes every utterance
    param_names = ("model", "chunk_seconds")
    speed_names = ("device",)

    def __init__(self, model: str, chunk_seconds: float = 20.0, device: str = "cpu"):
        super().__init__()
        if float(chunk_seconds) < 1.0:
            raise ConfigError(f"hf_audio: chunk_seconds={chunk_seconds} is too short; use >= 1")
        self.model = str(Path(model).resolve()) if Path(model).exists() else str(model)
        self.chunk_seconds = float(chunk_seconds)
        self.device = checked_device(device, self.name)
        self._processor: Any = None
        self._encoder: Any = None

    def _load(self, transformers: Any) -> tuple[Any, Any]:
        """``(feature extractor, model)`` from the folder or the local cache, never downloaded
        unless allowed; `ConfigError` with the fix when they cannot be loaded."""
        local_only = not downloads_allowed()
        try:
            processor = transformers.AutoFeatureExtractor.from_pretrained(
                self.model, local_files_only=local_only)
            model = transformers.AutoModel.from_pretrained(self.model, local_files_only=local_only)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"hf_audio: cannot load the speech model {self.model!r} ({exc}). Give a local "
                "folder with config.json, the weights and preprocessor_config.json, or a hub id "
                f"already in the Hugging Face cache; set {ALLOW_DOWNLOAD_ENV}=1 to allow "
                "downloading it.") from exc
        return processor, model

    def prepare(self) -> None:
        if self._encoder is not None:
            return
        transformers = require("transformers", "speech", "The hf_audio extractor")
        transformers.utils.logging.disable_progress_bar()
        processor, model = self._load(transformers)
        encoder = model.get_encoder() if model.config.is_encoder_decoder else model
        self._encoder = encoder.eval().to(torch_device(self.device, "speech"))
        self._processor = processor
        self.sample_rate = int(processor.sampling_rate)
        config = model.config
        self.width = 2 * int(getattr(config, "hidden_size", None) or config.d_model)

    def compute(self, item: Any) -> np.ndarray:
        self.prepare()  # the model's sampling rate decides how the audio is read
        return super().compute(item)

    def _max_chunk_samples(self) -> int:
        """Chunk length in samples: ``chunk_seconds``, capped by a fixed input window
        (Whisper's 30 s)."""
        window = getattr(self._processor, "n_samples", None)
        limit = int(self.chunk_seconds * self.sample_rate)
        return min(limit, int(window)) if window else limit

    def _encode(self, chunk: np.ndarray) -> np.ndarray:
        """Hidden states ``(L, T, d)`` of one chunk, cut to the frames covering its audio."""
        torch = require("torch", "speech", "The hf_audio extractor")
        inputs = self._processor(chunk, sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = inputs.to(self._encoder.device)
        with torch.inference_mode():
            hidden = self._encoder(**inputs, output_hidden_states=True).hidden_states
        states = torch.stack(hidden)[:, 0].float().cpu().numpy()
        window = getattr(self._processor, "n_samples", None)
        if window:  # the input was padded to the model's fixed window: drop the padding frames
            states = states[:, :max(1, math.ceil(states.shape[1] * len(chunk) / window))]
        return states

    def from_signal(self, signal: np.ndarray) -> np.ndarray:
        """``(L, 2 d)`` pooled layers of mono samples ``(n,)`` at ``sample_rate``."""
        self.prepare()
        if len(signal) < MIN_SECONDS * self.sample_rate:
            raise ExtractionFailed(
                f"the audio is shorter than {MIN_SECONDS} s ({len(signal)} samples)",
                "check the file and the start/end times, or drop this utterance")
        moments = FrameMoments()
        for first, stop in chunk_bounds(len(signal), self._max_chunk_samples()):
            moments.add(self._encode(signal[first:stop]))
        return moments.pooled()
