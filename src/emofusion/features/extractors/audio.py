"""Acoustic extractors: eGeMAPS and ComParE (openSMILE), log-mel, MFCC and the 3-channel log-spectrogram.

All extractors read the utterance the same way (`load_audio`): soundfile (librosa/audioread as a
fallback for other formats), only the ``start``-``end`` segment when given, channels averaged to
mono, resampled to ``sample_rate`` (16 kHz by default) with a polyphase filter. The spectral
extractors share `power_spectrogram` (Hann window, frames centred on ``t * hop``, so
``T = 1 + n_samples // hop``) and `add_deltas`.

Needs the ``audio`` extra: ``pip install 'emofusion[audio]'``.
"""

from __future__ import annotations

from functools import cached_property
from math import gcd
from typing import Any, ClassVar

import numpy as np

from emofusion.errors import ConfigError, require
from emofusion.features.extractors.base import (
    ExtractionFailed,
    Extractor,
    Item,
    existing_file,
    segment,
)

LOG_FLOOR = 1e-6
"""Added to powers before the logarithm, so digital silence gives log(1e-6) ~ -13.8, not -inf."""


def _read_soundfile(path: str, start: float, end: float | None) -> tuple[np.ndarray, int]:
    """Read ``[start, end)`` seconds with soundfile: ``((n, channels) float32, rate)``."""
    sf = require("soundfile", "audio", "Reading audio files")
    info = sf.info(path)
    first = int(round(start * info.samplerate))
    stop = None if end is None else min(int(round(end * info.samplerate)), info.frames)
    if info.frames and first >= info.frames:
        raise ExtractionFailed(
            f"start time {start} s is beyond the end of the audio ({info.duration:.2f} s)",
            "fix the start/end columns of this utterance", path)
    data, rate = sf.read(path, start=first, stop=stop, dtype="float32", always_2d=True)
    return data, int(rate)


def _read_librosa(path: str, start: float, end: float | None) -> tuple[np.ndarray, int]:
    """Fallback reader (audioread/ffmpeg) for formats libsndfile cannot open."""
    librosa = require("librosa", "audio", "Reading audio files")
    import warnings

    duration = None if end is None else end - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, rate = librosa.load(path, sr=None, mono=False, offset=start, duration=duration)
    return np.atleast_2d(data).T.astype(np.float32), int(rate)


def resample(signal: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling of a 1-D ``signal`` from ``rate`` to ``target`` Hz."""
    if rate == target:
        return signal
    from scipy.signal import resample_poly

    divisor = gcd(rate, target)
    return resample_poly(signal, target // divisor, rate // divisor).astype(np.float32)


def load_audio(path: str, sample_rate: int = 16000, start: float = 0.0,
               end: float | None = None) -> np.ndarray:
    """Mono float32 samples ``(n,)`` of ``path`` between ``start`` and ``end`` seconds.

    Stereo is averaged to mono and the result resampled to ``sample_rate``. Raises
    `ExtractionFailed` when the file cannot be read or the segment is empty.
    """
    require("soundfile", "audio", "Reading audio files")  # a missing extra is not a bad file
    try:
        data, rate = _read_soundfile(path, start, end)
    except ExtractionFailed:
        raise
    except Exception as first_error:  # libsndfile cannot read it: try audioread
        try:
            data, rate = _read_librosa(path, start, end)
        except Exception:
            raise ExtractionFailed(
                f"cannot read audio file ({first_error})",
                "check that the file is a valid audio file (e.g. re-encode it as 16-bit WAV)",
                path) from first_error
    if data.size == 0:
        raise ExtractionFailed("the audio is empty (0 samples in the utterance's segment)",
                               "check the file and the start/end times", path)
    return resample(data.mean(axis=1), rate, sample_rate)


def frame_sizes(sample_rate: int, window_ms: float, hop_ms: float) -> tuple[int, int]:
    """``(window, hop)`` in samples for a window and hop given in milliseconds."""
    return int(round(sample_rate * window_ms / 1000)), int(round(sample_rate * hop_ms / 1000))


def hann(window: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``window`` samples, zero-padded on both sides to ``n_fft``."""
    taps = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)
    left = (n_fft - window) // 2
    return np.pad(taps, (left, n_fft - window - left)).astype(np.float32)


def power_spectrogram(signal: np.ndarray, sample_rate: int, window_ms: float, hop_ms: float,
                      n_fft: int | None = None) -> np.ndarray:
    """Power spectrum ``|STFT|^2`` of shape ``(T, n_fft // 2 + 1)``, ``T = 1 + n // hop``.

    Frames are centred on ``t * hop`` (the signal is zero-padded by ``n_fft // 2`` on both sides,
    as ``librosa.stft(center=True)``). ``n_fft`` defaults to the window length rounded up to a
    power of two.
    """
    window, hop = frame_sizes(sample_rate, window_ms, hop_ms)
    n_fft = n_fft or 1 << (window - 1).bit_length()
    padded = np.pad(signal.astype(np.float32), n_fft // 2)
    padded = np.pad(padded, (0, max(n_fft - len(padded), 0)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    return np.abs(np.fft.rfft(frames * hann(window, n_fft), axis=1)) ** 2


def time_derivative(features: np.ndarray, n: int = 2) -> np.ndarray:
    """Regression delta over ``+-n`` frames of ``(T, d)`` features (edges repeated): ``(T, d)``."""
    padded = np.pad(features, ((n, n), (0, 0)), mode="edge")
    steps = len(features)
    weighted = sum(k * (padded[n + k:n + k + steps] - padded[n - k:n - k + steps])
                   for k in range(1, n + 1))
    return weighted / (2 * sum(k * k for k in range(1, n + 1)))


def add_deltas(features: np.ndarray, order: int) -> np.ndarray:
    """``[features | delta | delta-delta ...]`` up to ``order``: ``(T, d * (order + 1))``."""
    blocks = [features]
    for _ in range(order):
        blocks.append(time_derivative(blocks[-1]))
    return np.concatenate(blocks, axis=1)


class AudioExtractor(Extractor):
    """Reads the utterance's audio with `load_audio` and hands the samples to `from_signal`."""

    source: ClassVar[str] = "audio"

    def __init__(self, sample_rate: int = 16000):
        if sample_rate < 8000:
            raise ConfigError(f"sample_rate={sample_rate} is too low; use 16000")
        self.sample_rate = int(sample_rate)

    def compute(self, item: Item) -> np.ndarray:
        start, end = segment(item)
        path = existing_file(item, "audio_path", "audio")
        return self.from_signal(load_audio(path, self.sample_rate, start, end))

    def from_signal(self, signal: np.ndarray) -> np.ndarray:
        """Features of mono samples ``(n,)`` at ``sample_rate``."""
        raise NotImplementedError


class _OpenSmileExtractor(AudioExtractor):
    """Shared openSMILE set-up; subclasses choose the feature set and level."""

    feature_set: ClassVar[str] = "eGeMAPSv02"
    feature_level: ClassVar[str] = ""
    param_names = ("sample_rate",)

    @cached_property
    def _smile(self) -> Any:
        opensmile = require("opensmile", "audio", f"{self.feature_set} features")
        return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, self.feature_set),
                               feature_level=getattr(opensmile.FeatureLevel, self.feature_level))

    def prepare(self) -> None:
        self._smile  # noqa: B018 - builds the openSMILE configuration once per process

    def _smile_frames(self, signal: np.ndarray) -> np.ndarray:
        return self._smile.process_signal(signal, self.sample_rate).to_numpy(dtype=np.float32)


class Egemaps(_OpenSmileExtractor):
    """eGeMAPSv02 functionals (Eyben et al. 2016): one ``(88,)`` vector per utterance."""

    name = "egemaps"
    kind = "vector"
    feature_level = "Functionals"
    width = 88

    def from_signal(self, signal: np.ndarray) -> np.ndarray:
        return self._smile_frames(signal).reshape(-1)


class EgemapsLLD(_OpenSmileExtractor):
    """eGeMAPSv02 low-level descriptors: ``(T, 25)``, 10 ms hop (openSMILE's 20/60 ms windows)."""

    name = "egemaps_lld"
    feature_level = "LowLevelDescriptors"
    width = 25

    def from_signal(self, signal: np.ndarray) -> np.ndarray:
        return self._smile_frames(signal)


class Compare(Egemaps):
    """ComParE 2016 functionals (Schuller et al. 2016): one ``(6373,)`` vector per utterance."""

    name = "compare"
    feature_set = "ComParE_2016"
    width = 6373


class CompareLLD(EgemapsLLD):
    """ComParE 2016 low-level descriptors: ``(T, 65)``, 10 ms hop (deltas not included)."""

    name = "compare_lld"
    feature_set = "ComParE_2016"
    width = 65


class LogMel(AudioExtractor):
    """Log mel filterbank energies ``(T, n_mels)``: ``log(mel power + 1e-6)``.

    Defaults: 64 mels over 0 Hz - Nyquist, 25 ms Hann window (FFT 512 at 16 kHz), 10 ms hop, so
    ``T = 1 + n_samples // 160`` ~ duration / 10 ms.
    """

    name = "logmel"
    param_names = ("sample_rate", "n_mels", "window_ms", "hop_ms", "fmin", "fmax")

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64, window_ms: float = 25.0,
                 hop_ms: float = 10.0, fmin: float = 0.0, fmax: float | None = None):
        super().__init__(sample_rate)
        self.n_mels, self.window_ms, self.hop_ms = int(n_mels), float(window_ms), float(hop_ms)
        self.fmin, self.fmax = float(fmin), None if fmax is None else float(fmax)
        self.width = self.n_mels

    @cached_property
    def _mel_basis(self) -> np.ndarray:
        librosa = require("librosa", "audio", "Log-mel features")
        window, _ = frame_sizes(self.sample_rate, self.window_ms, self.hop_ms)
        return librosa.filters.mel(sr=self.sample_rate, n_fft=1 << (window - 1).bit_length(),
                                   n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax)

    def log_mel(self, signal: np.ndarray) -> np.ndarray:
        """``(T, n_mels)`` log mel energies of mono samples ``(n,)``."""
        power = power_spectrogram(signal, self.sample_rate, self.window_ms, self.hop_ms)
        return np.log(power @ self._mel_basis.T + LOG_FLOOR)

    def from_signal(self, signal: np.ndarray) -> np.ndarray:
        return self.log_mel(signal)


class MFCC(LogMel):
    """MFCCs ``(T, n_mfcc * (deltas + 1))``: DCT-II of the log-mel frames, then deltas.

    Defaults: 40 coefficients from 64 mels, no deltas (``(T, 40)``); ``n_mfcc=13, deltas=2``
    gives the classic ``(T, 39)`` [static | delta | delta-delta].
    """

    name = "mfcc"
    param_names = LogMel.param_names + ("n_mfcc", "deltas")

    def __init__(self, sample_rate: int = 16000, n_mfcc: int = 40, deltas: int = 0,
                 n_mels: int = 64, window_ms: float = 25.0, hop_ms: float = 10.0,
                 fmin: float = 0.0, fmax: float | None = None):
        super().__init__(sample_rate, n_mels, window_ms, hop_ms, fmin, fmax)
        if not 0 < n_mfcc <= n_mels:
            raise ConfigError(f"mfcc: n_mfcc={n_mfcc} must be between 1 and n_mels={n_mels}")
        if deltas not in (0, 1, 2):
            raise ConfigError(f"mfcc: deltas={deltas} must be 0, 1 or 2")
        self.n_mfcc, self.deltas = int(n_mfcc), int(deltas)
        self.width = self.n_mfcc * (self.deltas + 1)

    def from_signal(self, signal: np.ndarray) -> np.ndarray:
        from scipy.fft import dct

        cepstra = dct(self.log_mel(signal), type=2, norm="ortho", axis=1)[:, :self.n_mfcc]
        return add_deltas(cepstra, self.deltas)


class Spectrogram3(AudioExtractor):
    """3-channel log power spectrogram of end-to-end CNN systems, stored flat as ``(T, 3 * F)``.

    40 ms Hann windows every 20 ms (FFT length = window, 25 Hz bins at 16 kHz); the power
    spectrum is cut to ``0 - max_freq`` Hz (321 bins for 8 kHz) and, when ``n_bands`` is set,
    averaged into ``n_bands`` equal-width bands; then ``log(power + 1e-6)``. Layout is
    channel-major: columns ``[0, F)`` log spectrum, ``[F, 2F)`` its delta (time derivative over
    +-2 frames), ``[2F, 3F)`` delta-delta. ``array.reshape(T, 3, F)`` recovers the channels.
    """

    name = "spectrogram3"
    param_names = ("sample_rate", "window_ms", "hop_ms", "max_freq", "n_bands")

    def __init__(self, sample_rate: int = 16000, window_ms: float = 40.0, hop_ms: float = 20.0,
                 max_freq: float = 8000.0, n_bands: int | None = None):
        super().__init__(sample_rate)
        self.window_ms, self.hop_ms = float(window_ms), float(hop_ms)
        self.max_freq = float(min(max_freq, sample_rate / 2))
        self.n_bands = None if n_bands is None else int(n_bands)
        bins = self._n_bins()
        if self.n_bands is not None and not 0 < self.n_bands <= bins:
            raise ConfigError(f"spectrogram3: n_bands={n_bands} must be between 1 and {bins}")
        self.width = 3 * (self.n_bands or bins)

    def _n_fft(self) -> int:
        return frame_sizes(self.sample_rate, self.window_ms, self.hop_ms)[0]

    def _n_bins(self) -> int:
        """Frequency bins from 0 Hz up to and including ``max_freq``."""
        return int(np.floor(self.max_freq * self._n_fft() / self.sample_rate)) + 1

    def log_spectrum(self, signal: np.ndarray) -> np.ndarray:
        """``(T, F)`` log power, cut to ``max_freq`` and pooled to ``n_bands`` when set."""
        power = power_spectrogram(signal, self.sample_rate, self.window_ms, self.hop_ms,
                                  n_fft=self._n_fft())[:, :self._n_bins()]
        if self.n_bands:
            bands = np.array_split(np.arange(power.shape[1]), self.n_bands)
            power = np.stack([power[:, band].mean(axis=1) for band in bands], axis=1)
        return np.log(power + LOG_FLOOR)

    def from_signal(self, signal: np.ndarray) -> np.ndarray:
        return add_deltas(self.log_spectrum(signal), order=2)
