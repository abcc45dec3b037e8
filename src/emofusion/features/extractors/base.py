"""Common interface of the offline feature extractors.

An extractor turns one utterance *item* (a dict or table row with ``audio_path``, ``transcript``,
``video_path``, ``start``, ``end``) into one float32 array: ``(T, d)`` for a ``"sequence"``
extractor, ``(d,)`` for a ``"vector"`` one. Everything an extractor needs to be rebuilt is in
``params()``, which `emofusion.features.extract` records in ``features.json`` so a new utterance
can be predicted with exactly the same features.

Per-utterance data problems (missing or unreadable file, empty audio, no face) raise
`ExtractionFailed`; the driver turns it into an `emofusion.errors.Problem` instead of stopping.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from emofusion.errors import ConfigError, EmofusionError, Problem, require

Item = Mapping[str, Any]

DEVICES = ("cpu", "cuda", "auto")
"""Where PyTorch extractors run: ``"auto"`` is CUDA when PyTorch sees a GPU, else the CPU."""


class ExtractionFailed(EmofusionError):
    """One utterance cannot be extracted; ``reason`` and ``fix`` become a `Problem`.

    ``retry`` is False for problems of the input itself (remembered until the input changes)
    and True for unexpected errors (tried again on the next run).
    """

    def __init__(self, reason: str, fix: str, path: str = "", retry: bool = False):
        super().__init__(f"{reason} -> {fix}")
        self.reason = reason
        self.fix = fix
        self.path = path
        self.retry = retry

    def problem(self, utterance_id: str) -> Problem:
        """The failure as a `Problem` about ``utterance_id``."""
        return Problem(reason=self.reason, fix=self.fix, utterance_id=utterance_id, path=self.path)


@dataclass
class Extracted:
    """The result of one utterance: the feature array and optional statistics.

    Attributes:
        array: float32 ``(T, d)`` (sequence) or ``(d,)`` (vector).
        stats: small JSON-serialisable counts, e.g. ``{"frames": 10, "faces": 7}``.
    """

    array: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


class Extractor:
    """Base class: subclasses set the class attributes and implement `compute` (or `extract`).

    Class attributes:
        name: registry name, e.g. ``"logmel"``.
        source: ``"audio"``, ``"text"`` or ``"visual"``: the item field the extractor reads.
        kind: ``"sequence"`` (``(T, d)`` per utterance), ``"vector"`` (``(d,)``) or ``"layers"``
            (``(L, d)``: one pooled row per layer of a neural encoder, L fixed by the model).
        version: bumped when the output of the code changes, so cached features are recomputed.
        chunk_size: how many utterances one parallel task handles.
        in_process: run in the driver's process instead of worker processes (for big models
            whose loading costs more than the parallelism gains).
        param_names: the attributes `params` returns (the output-determining constructor args).
        speed_names: constructor args that change only speed or placement (``batch_size``,
            ``device``): passed to worker processes by `settings`, never recorded.

    Instance attribute ``width`` is the feature dimension ``d``; ``None`` until known.
    """

    name: ClassVar[str] = ""
    source: ClassVar[str] = ""
    kind: ClassVar[str] = "sequence"
    version: ClassVar[int] = 1
    chunk_size: ClassVar[int] = 16
    in_process: ClassVar[bool] = False
    param_names: ClassVar[tuple[str, ...]] = ()
    speed_names: ClassVar[tuple[str, ...]] = ()

    width: int | None = None

    def params(self) -> dict[str, Any]:
        """Constructor arguments that determine the output (JSON-serialisable).

        ``type(self)(**self.params())`` rebuilds an equivalent extractor.
        """
        return {key: getattr(self, key) for key in self.param_names}

    def settings(self) -> dict[str, Any]:
        """`params` plus the speed-only arguments: everything a worker needs to rebuild it."""
        return {key: getattr(self, key) for key in self.param_names + self.speed_names}

    def prepare(self) -> None:
        """Load models or resources; called once per process before extracting (default: no-op)."""

    def compute(self, item: Item) -> np.ndarray:
        """Feature array of one utterance; raise `ExtractionFailed` for bad input."""
        raise NotImplementedError

    def extract(self, item: Item) -> Extracted:
        """`compute` plus statistics; override when the extractor has something to count."""
        return Extracted(self.compute(item))

    def __call__(self, item: Item) -> np.ndarray:
        """Checked float32 feature array of one utterance: ``(T, d)``, ``(L, d)`` or ``(d,)``."""
        return self.checked(self.extract(item)).array

    def extract_batch(self, items: list[Item]) -> list[Extracted | ExtractionFailed]:
        """Extract several utterances; failures are returned in place, not raised."""
        return [self.attempt(lambda item=item: self.extract(item)) for item in items]

    def attempt(self, make: Callable[[], Extracted]) -> Extracted | ExtractionFailed:
        """``self.checked(make())``, or the `ExtractionFailed` it raised."""
        try:
            return self.checked(make())
        except ExtractionFailed as failure:
            return failure

    def checked(self, result: Extracted) -> Extracted:
        """Cast to float32 and verify rank, width, emptiness and finiteness of ``result.array``."""
        array = np.asarray(result.array, dtype=np.float32)
        ndim = 1 if self.kind == "vector" else 2
        if array.ndim != ndim:
            raise RuntimeError(f"{self.name} returned shape {array.shape}, expected {ndim} dims")
        if self.width is None:
            self.width = int(array.shape[-1])
        elif array.shape[-1] != self.width:
            raise RuntimeError(f"{self.name} returned width {array.shape[-1]}, not {self.width}")
        if array.shape[0] == 0:
            raise ExtractionFailed(
                f"{self.name} produced no frames (the input is too short)",
                "check the file and the start/end times, or drop this utterance")
        if not np.all(np.isfinite(array)):
            raise ExtractionFailed(
                f"{self.name} produced NaN or infinite values (silent or too short input?)",
                "check the file and the start/end times, or drop this utterance")
        result.array = array
        return result


def field_text(item: Item, key: str) -> str:
    """``item[key]`` as a stripped string; ``""`` when missing, None or NaN."""
    value = item.get(key, "") if hasattr(item, "get") else ""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def field_time(item: Item, key: str) -> float | None:
    """``item[key]`` as seconds, or None when missing/NaN/empty (meaning: the file's edge)."""
    value = item.get(key) if hasattr(item, "get") else None
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    seconds = float(value)
    return None if math.isnan(seconds) else seconds


def segment(item: Item) -> tuple[float, float | None]:
    """``(start, end)`` seconds of the utterance; start 0 and end None mean the whole file."""
    start, end = field_time(item, "start"), field_time(item, "end")
    start = max(start or 0.0, 0.0)
    if end is not None and end <= start:
        raise ExtractionFailed(f"end time {end} s is not after start time {start} s",
                               "fix the start/end columns of this utterance")
    return start, end


def existing_file(item: Item, key: str, what: str) -> str:
    """The path in ``item[key]``; raise `ExtractionFailed` when it is empty or does not exist."""
    path = field_text(item, key)
    if not path:
        raise ExtractionFailed(f"no {what} file given ({key} is empty)",
                               f"add the {what} file to the table or drop the {what} modalities")
    if not os.path.isfile(path):
        raise ExtractionFailed(f"{what} file not found", f"check the path in column {key}", path)
    return path


def checked_device(device: str, extractor: str) -> str:
    """``device`` when it is one of `DEVICES`; raise `ConfigError` otherwise."""
    if device not in DEVICES:
        raise ConfigError(f"{extractor}: device={device!r} must be one of {', '.join(DEVICES)}")
    return device


def torch_device(device: str, extra: str) -> Any:
    """The ``torch.device`` for ``"cpu"``, ``"cuda"`` or ``"auto"``.

    Raises `ConfigError` for ``"cuda"`` when PyTorch sees no GPU (no silent fall-back to CPU).
    """
    torch = require("torch", extra, "PyTorch feature extractors")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but PyTorch sees no CUDA GPU "
                          "(torch.cuda.is_available() is False); use --device cpu or auto")
    return torch.device(device)
