"""A pretrained speaker encoder whose weights ship with a package: every layer, pooled.

``ge2e`` runs the GE2E speaker encoder of Resemblyzer (Wan et al. 2018, "Generalized end-to-end
loss for speaker verification": 3 LSTM layers of 256 units over 40 mel bands, 25 ms windows,
10 ms hop; trained on LibriSpeech, VoxCeleb 1 and 2) over the whole utterance and keeps, for
each LSTM layer, the mean and standard deviation of its outputs over frames: a ``(3, 512)``
array per utterance (kind ``"layers"``), so the layer, or the average of layers, is chosen on
the training speakers' inner folds (pooling ``select``) as for ``hf_audio``.

A speaker encoder is trained to ignore how one speaker varies, yet its lower layers keep much of
how the voice is produced (pitch, effort, timbre and their dynamics), which is what separates
emotions. It is the one pretrained speech network available offline here: the weights
(``pretrained.pt``, 17 MB, Apache-2.0) are inside the Resemblyzer wheel on PyPI, so
``pip install 'emofusion[audio]'`` brings them and nothing is downloaded at run time. Measured on
RAVDESS (README): well above the hand-crafted sets, speaker-independent and speaker-adaptive.

The audio is read at 16 kHz, raised to -30 dBFS when quieter (as Resemblyzer does) and trimmed of
leading and trailing silence (30 dB below the peak; Resemblyzer's voice-activity trimming is not
used, to avoid the webrtcvad dependency at run time).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from emofusion.errors import ConfigError, MissingExtraError, require
from emofusion.features.extractors.audio import AudioExtractor
from emofusion.features.extractors.base import ExtractionFailed, checked_device, torch_device
from emofusion.features.extractors.speech import FrameMoments

MEL_BANDS, HIDDEN, LAYERS = 40, 256, 3
TARGET_DBFS = -30.0
TRIM_DB = 30.0
MIN_FRAMES = 10
"""Shorter utterances (after trimming, 100 ms) fail."""


def packaged_weights() -> Path:
    """``pretrained.pt`` of the installed Resemblyzer package (found without importing it);
    `MissingExtraError` naming the ``audio`` extra when it is not installed."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("Resemblyzer", "audio", "The ge2e extractor")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


def load_layers(weights: Path, torch: Any) -> list[Any]:
    """The encoder's three LSTM layers (each a one-layer ``torch.nn.LSTM``, so every layer's
    outputs can be read) from a Resemblyzer checkpoint (``{"model_state": state dict}``)."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
        layers = []
        for k in range(LAYERS):
            lstm = torch.nn.LSTM(MEL_BANDS if k == 0 else HIDDEN, HIDDEN, 1, batch_first=True)
            lstm.load_state_dict({f"{name}_l0": state[f"lstm.{name}_l{k}"]
                                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
            layers.append(lstm.eval())
    except (OSError, KeyError, RuntimeError, TypeError) as exc:
        raise ConfigError(f"ge2e: cannot load the speaker-encoder weights {weights} ({exc}); "
                          "reinstall the audio extra (pip install 'emofusion[audio]') or give "
                          "a Resemblyzer checkpoint with weights=PATH") from exc
    return layers


class GE2E(AudioExtractor):
    """The GE2E speaker encoder's three LSTM layers, mean and std over frames: ``(3, 512)``.

    Parameters:
        weights: a Resemblyzer checkpoint (``pretrained.pt``); None: the one inside the
            installed Resemblyzer package.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (speed only, not recorded).
    """

    name = "ge2e"
    kind = "layers"
    chunk_size = 16
    in_process = True  # one loaded model encodes every utterance
    param_names = ("weights",)
    speed_names = ("device",)
    width = 2 * HIDDEN

    def __init__(self, weights: str | None = None, device: str = "cpu"):
        super().__init__(16000)
        self.weights = None if weights is None else str(Path(weights).resolve())
        self.device = checked_device(device, self.name)
        self._layers: list[Any] | None = None

    def prepare(self) -> None:
        self._encoder()

    def _encoder(self) -> list[Any]:
        """The three LSTM layers on the chosen device, loaded once."""
        if self._layers is None:
            torch = require("torch", "audio", "The ge2e extractor")
            weights = Path(self.weights) if self.weights else packaged_weights()
            device = torch_device(self.device, "audio")
            self._layers = [layer.to(device) for layer in load_layers(weights, torch)]
        return self._layers

    def mel_frames(self, signal: np.ndarray) -> np.ndarray:
        """``(T, 40)`` float32 mel power frames of the loudness-normalised, trimmed signal."""
        librosa = require("librosa", "audio", "The ge2e extractor")
        signal = np.asarray(signal, dtype=np.float32)
        rms = float(np.sqrt(np.mean(np.square(signal)))) if len(signal) else 0.0
        if rms > 0:
            signal = signal * max(1.0, 10 ** ((TARGET_DBFS - 20 * np.log10(rms)) / 20))
        signal, _ = librosa.effects.trim(signal, top_db=TRIM_DB)
        mel = librosa.feature.melspectrogram(y=signal, sr=self.sample_rate, n_fft=400,
                                             hop_length=160, n_mels=MEL_BANDS)
        return mel.astype(np.float32).T

    def from_signal(self, signal: np.ndarray) -> np.ndarray:
        """``(3, 512)`` pooled layers of mono samples ``(n,)`` at 16 kHz."""
        layers = self._encoder()
        torch = require("torch", "audio", "The ge2e extractor")
        mel = self.mel_frames(signal)
        if len(mel) < MIN_FRAMES or not np.any(mel):
            raise ExtractionFailed(
                f"the audio has less than {MIN_FRAMES * 10} ms of sound after trimming silence",
                "check the file and the start/end times, or drop this utterance")
        hidden = []
        with torch.inference_mode():
            outputs = torch.from_numpy(mel)[None].to(next(layers[0].parameters()).device)
            for layer in layers:
                outputs, _ = layer(outputs)
                hidden.append(outputs[0].float().cpu().numpy())
        moments = FrameMoments()
        moments.add(np.stack(hidden))
        return moments.pooled()
