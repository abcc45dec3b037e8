"""Offline feature extractors: a registry from name to class.

Importing this package is cheap: the heavy libraries (librosa, openSMILE, PyTorch, sentence-transformers,
transformers, vaderSentiment, OpenCV, torchvision) are imported when an extractor first needs
them, and a missing one raises `emofusion.errors.MissingExtraError` naming the extra to install.
See ``docs/extractors.md``.
"""

from __future__ import annotations

from typing import Any

from emofusion.errors import ConfigError
from emofusion.features.extractors.affect import Vader
from emofusion.features.extractors.audio import (
    MFCC,
    Compare,
    CompareLLD,
    Egemaps,
    EgemapsLLD,
    LogMel,
    Spectrogram3,
    load_audio,
)
from emofusion.features.extractors.base import Extracted, ExtractionFailed, Extractor
from emofusion.features.extractors.speech import HFAudio
from emofusion.features.extractors.text import HFText, MiniLM, TextExtractor
from emofusion.features.extractors.visual import FaceHOG, FaceLBP, FaceResNet, sample_frames
from emofusion.features.extractors.voice import GE2E

EXTRACTORS: dict[str, type[Extractor]] = {
    cls.name: cls
    for cls in (Egemaps, EgemapsLLD, Compare, CompareLLD, LogMel, MFCC, Spectrogram3, GE2E,
                HFAudio, MiniLM, HFText, Vader, FaceHOG, FaceLBP, FaceResNet)
}
"""Extractor classes by name."""


def build_extractor(name: str, params: dict[str, Any] | None = None) -> Extractor:
    """An extractor from its registry ``name`` and constructor ``params``.

    Raises `ConfigError` for an unknown name or parameter.
    """
    if name not in EXTRACTORS:
        raise ConfigError(f"Unknown feature extractor {name!r}; "
                          f"choose from {', '.join(sorted(EXTRACTORS))}")
    try:
        return EXTRACTORS[name](**(params or {}))
    except TypeError as exc:
        raise ConfigError(f"Invalid parameters {params} for extractor {name!r}: {exc}") from exc


__all__ = [
    "EXTRACTORS", "Extracted", "ExtractionFailed", "Extractor", "TextExtractor",
    "build_extractor", "load_audio", "sample_frames",
]
