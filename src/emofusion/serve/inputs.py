"""What one request may send, checked before any feature is extracted.

Every problem raises `RequestProblem`: an HTTP status (400 malformed, 413 too large, 415 not a
supported medium, 422 well-formed but unusable) and one message that says what to fix. Nothing
here touches the file system: uploads are bytes, and no path is ever taken from a request.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from emofusion.errors import EmofusionError

AUDIO_SUFFIXES = {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg"}
"""libsndfile container name -> file suffix of the formats a request may upload."""
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SILENCE_PEAK = 1e-4
"""Peak amplitude (full scale 1.0, about -80 dBFS) below which a clip counts as silent."""
MIN_AUDIO_SECONDS = 0.1
_UNKNOWN_RIFF_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the size open


class RequestProblem(EmofusionError):
    """A request the service cannot answer; ``status`` is the HTTP status to send."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass
class Utterance:
    """One utterance as a request sends it; every part is optional.

    Attributes:
        audio: the bytes of a wav, flac or ogg file.
        text: the transcript.
        video: the bytes of a video file, written with ``video_suffix`` for the decoder.
        features: modality name -> float array (d,) or (T, d).
        speaker: who speaks, for a speaker-adaptive model (see `serve.enrolment`).
    """

    audio: bytes | None = None
    text: str | None = None
    video: bytes | None = None
    video_suffix: str = ".mp4"
    features: dict[str, np.ndarray] = field(default_factory=dict)
    speaker: str | None = None

    def given(self) -> list[str]:
        """Names of the raw inputs present: ``audio``, ``text``, ``video``."""
        return [name for name in ("audio", "text", "video") if getattr(self, name) is not None]


@dataclass(frozen=True)
class AudioClip:
    """A checked audio upload: the original bytes, the suffix of its format, its length."""

    data: bytes
    suffix: str
    seconds: float
    sample_rate: int


def _libsndfile_reason(error: Exception) -> str:
    """libsndfile's message without the in-memory object it names."""
    return str(error).rsplit(": ", 1)[-1].strip() or type(error).__name__


def _check_riff_length(data: bytes) -> None:
    """A WAV whose header promises more bytes than were sent was cut off in transit."""
    if data[:4] != b"RIFF" or len(data) < 8:
        return
    declared = int.from_bytes(data[4:8], "little")
    if declared not in _UNKNOWN_RIFF_SIZES and declared + 8 > len(data):
        raise RequestProblem(
            f"audio: the WAV file is truncated ({len(data)} bytes received, its header says "
            f"{declared + 8}); upload the complete file", 422)


def check_audio(data: bytes, max_seconds: float) -> AudioClip:
    """Decode an audio upload completely and refuse what no model should hear.

    Raises:
        RequestProblem: empty upload, not wav/flac/ogg, truncated or undecodable, no samples,
            shorter than `MIN_AUDIO_SECONDS`, longer than ``max_seconds``, or silent.
    """
    import soundfile

    if not data:
        raise RequestProblem("audio: the uploaded file is empty (0 bytes); choose a recording", 422)
    try:
        info = soundfile.info(io.BytesIO(data))
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        raise RequestProblem(
            f"audio: cannot read the upload as wav, flac or ogg ({_libsndfile_reason(error)}); "
            "send a complete audio file in one of these formats", 415) from error
    if info.format not in AUDIO_SUFFIXES:
        raise RequestProblem(f"audio: {info.format} files are not accepted; convert the "
                             "recording to wav, flac or ogg", 415)
    _check_riff_length(data)
    seconds = len(samples) / rate
    if len(samples) == 0:
        raise RequestProblem("audio: the file holds no samples (empty recording); "
                             "record or upload speech", 422)
    if seconds < MIN_AUDIO_SECONDS:
        raise RequestProblem(f"audio: {seconds:.3f} s is too short; send at least "
                             f"{MIN_AUDIO_SECONDS} s of speech", 422)
    if seconds > max_seconds:
        raise RequestProblem(f"audio: {seconds:.1f} s is longer than this service accepts "
                             f"({max_seconds:g} s); cut the recording into utterances", 413)
    if float(np.abs(samples).max()) < SILENCE_PEAK:
        raise RequestProblem("audio: the recording is silent (peak below -80 dBFS); check the "
                             "microphone and record speech", 422)
    return AudioClip(data, AUDIO_SUFFIXES[info.format], seconds, int(rate))


def check_text(text: str, max_chars: int) -> str:
    """The transcript, stripped; any script is fine.

    Raises:
        RequestProblem: empty, longer than ``max_chars``, or not encodable as UTF-8 (lone
            surrogates).
    """
    stripped = text.strip()
    if not stripped:
        raise RequestProblem("text: the transcript is empty; type what was said, or leave "
                             "the field out", 422)
    if len(stripped) > max_chars:
        raise RequestProblem(f"text: {len(stripped)} characters is more than this service "
                             f"accepts ({max_chars}); send one utterance's transcript", 413)
    try:
        stripped.encode("utf-8")
    except UnicodeEncodeError as error:
        raise RequestProblem(f"text: not valid Unicode ({error.reason} at character "
                             f"{error.start}); send UTF-8 text", 400) from error
    return stripped


def feature_arrays(value: object) -> dict[str, np.ndarray]:
    """``{modality: nested list of numbers}`` -> ``{modality: float64 array}``.

    Raises:
        RequestProblem: not an object, an empty name, ragged rows, or non-numbers.
    """
    if not isinstance(value, dict):
        raise RequestProblem("features: expected a JSON object {\"modality\": [numbers] or "
                             "[[numbers], ...]}", 400)
    arrays = {}
    for name, cells in value.items():
        if not isinstance(cells, list):
            raise RequestProblem(f"features.{name}: expected an array of numbers (d,) or of "
                                 f"rows (T, d), got {type(cells).__name__}", 400)
        try:
            arrays[str(name)] = np.asarray(cells, dtype=np.float64)
        except (ValueError, TypeError) as error:
            raise RequestProblem(f"features.{name}: not a rectangular array of numbers "
                                 f"({error}); every row must have the same width", 400) from error
    return arrays


def parse_features(text: str) -> dict[str, np.ndarray]:
    """Feature arrays from a JSON string (the ``features`` form field)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestProblem(f"features: not valid JSON ({error.msg} at line {error.lineno} "
                             f"column {error.colno}); send an object {{\"modality\": [...]}}",
                             400) from error
    return feature_arrays(value)


def decode_base64(value: str, name: str) -> bytes:
    """The bytes of a base64 field of a batch item."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestProblem(f"{name}: not valid base64 ({error}); encode the file's bytes "
                             "with standard base64", 400) from error


def video_suffix(filename: str | None) -> str:
    """The suffix the video decoder should see: the upload's own when it is a known video
    suffix, else ``.mp4``. Only the suffix is used; the name never becomes a path."""
    suffix = PurePath(filename or "").suffix.lower()
    return suffix if suffix in VIDEO_SUFFIXES else ".mp4"
