"""Generated demo dataset in the IEMOCAP course layout.

`write_demo_dataset` writes a synthetic stand-in for the course release of IEMOCAP features so that
the whole pipeline (validation, pooling, models, fusion, speaker-independent evaluation, report)
can run without the corpus. The layout matches the course release::

    <out_dir>/dataset.csv                 file_name_list, speakers, visual_features,
                                          acoustic_features, lexical_features, emotion_labels
    <out_dir>/features/visual_features/Session1/Ses01F_impro01_F000.npy     float32 (T_v, 2048)
    <out_dir>/features/acoustic_features/Session1/Ses01F_impro01_F000.npy   float32 (T_a, 128)
    <out_dir>/features/lexical_features/Session1/Ses01F_impro01_F000.npy    float32 (1, 768)
    <out_dir>/PLANTED_PROBLEMS.json        the bad files planted on purpose (list of dicts)
    <out_dir>/README.md                    what this folder is

or, with ``zip_features=True``, ``<out_dir>/features.zip`` holding the ``features/...`` members
instead of the ``features`` folder. The CSV holds absolute-looking paths such as
``/features/visual_features/Session1/<id>.npy`` as in the course release; they resolve relative to
the CSV's folder.

Labels are integer codes into `LABEL_NAMES` (0 anger, 1 sadness, 2 happiness, 3 neutral), drawn in
the class balance of the usual 5,531-utterance four-class IEMOCAP set. There are ten speakers
F01, M01, ..., F05, M05 (the digit is the session) with roughly equal numbers of utterances.

The features are generated to be realistic enough for comparing methods, not to resemble any real
embedding:

* every modality carries the class in a small latent space (arousal, valence and one axis per
  class) with utterance-level latent noise; a shared per-utterance intensity, a shared deviation
  in arousal/valence and about 10% of "ambiguous" utterances (expressed like another class in
  every modality) cap the accuracy. The latent is embedded into the full width (densely for
  lexical; as non-negative channels on sparse sets of "units" for the sequences) with
  per-dimension offsets and scales and unit Gaussian noise on every value;
* speaker effects: each speaker has a low-rank feature offset, an overall scale (both removable by
  per-speaker normalisation), its own twist on the class means and its own class priors, so random
  splits score higher than speaker splits;
* in the visual and acoustic sequences only one contiguous segment of 20-40% of the frames carries
  the emotion (with per-frame jitter); the other frames carry a tenth of it, so statistics pooling
  (mean, max, ...) tends to beat the mean alone by a little;
* the modalities differ: acoustic separates arousal (anger vs sadness) well but confuses anger
  and happiness; lexical separates valence (sadness vs happiness) but partly confuses anger and
  neutral; visual is the weakest (non-negative, ResNet-like features). Fusion therefore helps.

With the default sizes and 5,531 utterances, PCA + logistic regression on pooled features under a
leave-one-session-out split reaches an unweighted accuracy of about 0.48 (visual), 0.57
(acoustic), 0.59 (lexical) and 0.72 (early fusion); a random split adds a few points.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from emofusion.errors import ConfigError

__all__ = [
    "CLASS_COUNTS",
    "CSV_COLUMNS",
    "DEFAULT_MEAN_FRAMES",
    "DEFAULT_WIDTHS",
    "LABEL_NAMES",
    "MODALITIES",
    "PLANTED_PROBLEM_KINDS",
    "SPEAKERS",
    "write_demo_dataset",
]

LABEL_NAMES: tuple[str, ...] = ("anger", "sadness", "happiness", "neutral")
CLASS_COUNTS: tuple[int, ...] = (1103, 1084, 1636, 1708)
"""Utterances per class in the 5,531-utterance IEMOCAP set; labels follow these proportions."""
SPEAKERS: tuple[str, ...] = tuple(f"{g}{s:02d}" for s in range(1, 6) for g in "FM")
MODALITIES: tuple[str, ...] = ("visual", "acoustic", "lexical")
DEFAULT_WIDTHS: dict[str, int] = {"visual": 2048, "acoustic": 128, "lexical": 768}
DEFAULT_MEAN_FRAMES: dict[str, int] = {"visual": 30, "acoustic": 10, "lexical": 1}
CSV_COLUMNS: tuple[str, ...] = (
    "file_name_list",
    "speakers",
    "visual_features",
    "acoustic_features",
    "lexical_features",
    "emotion_labels",
)
PLANTED_PROBLEM_KINDS: dict[str, str] = {
    "missing_file": "lexical",  # row in the CSV, no .npy written
    "empty_array": "visual",  # shape (0, d)
    "nan_values": "acoustic",  # one frame is all NaN
    "wrong_width": "visual",  # shape (T, d - 1)
    "corrupt_file": "acoustic",  # .npy cut off in the middle of the data: np.load fails
}
"""Problem planted when ``bad_files=True`` -> modality it is planted on (one utterance each)."""

_DIALOG_NAMES = tuple(
    [f"impro{i:02d}" for i in range(1, 9)]
    + [f"script{i:02d}_{j}" for i, j in ((1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 1), (3, 2))]
)
# Affect coordinates per class (anger, sadness, happiness, neutral).
_AROUSAL = np.array([1.0, -1.0, 0.75, -0.25])
_VALENCE = np.array([-0.6, -0.9, 1.0, 0.05])
_N_SPEAKER_DIMS = 8
_AMBIGUOUS_FRACTION = 0.10
_PRIOR_CONCENTRATION = 60.0
_SHARED_AFFECT_NOISE = 0.4  # std of the utterance's arousal/valence deviation, shared by modalities
_CHANNEL_ENERGY = 8.0  # squared norm of a sequence channel's loadings, in unit-noise dimensions
_CHUNK_ELEMENTS = 8_000_000  # floats generated at once per modality (32 MB)


@dataclass(frozen=True)
class _Profile:
    """How one modality carries the emotion.

    Attributes:
        arousal, valence, per_class: gains of the latent class means (arousal axis, valence axis,
            one axis per class).
        utterance_noise: standard deviation of the utterance-level latent noise.
        frame_noise: standard deviation of the frame-level latent noise (sequences only).
        signal_gain: scale of the latent signal in feature space, relative to unit feature noise.
        speaker_offset: scale of the per-speaker low-rank offset.
        speaker_twist: standard deviation of each speaker's perturbation of the class means.
        gated: a sequence in which only a contiguous segment of the frames carries the class; the
            signed latent is split into non-negative channels, each loading on a sparse set of
            feature dimensions (units that fire). Otherwise the latent is spread densely.
        relu: features are non-negative (CNN activations).
    """

    arousal: float
    valence: float
    per_class: float
    utterance_noise: float
    frame_noise: float
    signal_gain: float
    speaker_offset: float
    speaker_twist: float
    gated: bool
    relu: bool


_PROFILES: dict[str, _Profile] = {
    "visual": _Profile(arousal=0.5, valence=0.8, per_class=0.5, utterance_noise=0.7,
                       frame_noise=1.0, signal_gain=1.5, speaker_offset=1.0, speaker_twist=0.3,
                       gated=True, relu=True),
    "acoustic": _Profile(arousal=2.5, valence=0.3, per_class=0.6, utterance_noise=0.7,
                         frame_noise=0.6, signal_gain=2.0, speaker_offset=1.0, speaker_twist=0.3,
                         gated=True, relu=False),
    "lexical": _Profile(arousal=0.5, valence=2.3, per_class=0.8, utterance_noise=1.0,
                        frame_noise=0.0, signal_gain=5.0, speaker_offset=1.0, speaker_twist=0.3,
                        gated=False, relu=False),
}
_GATE_BACKGROUND = 0.1  # fraction of the utterance's signal outside the emotional segment


def write_demo_dataset(
    out_dir: Path,
    *,
    n_utterances: int = 1200,
    seed: int = 0,
    bad_files: bool = True,
    widths: dict[str, int] | None = None,
    mean_frames: dict[str, int] | None = None,
    zip_features: bool = False,
) -> Path:
    """Write a generated dataset in the IEMOCAP course layout and return the path of dataset.csv.

    Args:
        out_dir: folder to write into (created if needed).
        n_utterances: number of utterances (CSV rows), at least 10 (one per speaker).
        seed: seed of the numpy Generator; the same arguments give byte-identical files.
        bad_files: plant exactly one of each problem in `PLANTED_PROBLEM_KINDS` (in five
            different utterances, kept in the CSV) and list them in PLANTED_PROBLEMS.json.
        widths: feature width per modality (keys visual/acoustic/lexical); defaults
            `DEFAULT_WIDTHS` (2048, 128, 768).
        mean_frames: typical frame count per modality; defaults `DEFAULT_MEAN_FRAMES` (30, 10, 1).
            Visual and acoustic counts vary with utterance duration between about a quarter and
            twice the mean; the lexical count is used as is.
        zip_features: write ``features.zip`` (members ``features/<modality>_features/...``)
            instead of the ``features`` folder.

    Returns:
        ``out_dir / "dataset.csv"``.

    Files per utterance: visual float32 (T_v, widths["visual"]), acoustic float32
    (T_a, widths["acoustic"]), lexical float32 (mean_frames["lexical"], widths["lexical"]).

    Raises:
        ConfigError: invalid sizes, or `out_dir` already holds the other features layout.
    """
    out_dir = Path(out_dir)
    width = _merge_sizes("widths", DEFAULT_WIDTHS, widths)
    frames = _merge_sizes("mean_frames", DEFAULT_MEAN_FRAMES, mean_frames)
    min_n = len(SPEAKERS) + (len(PLANTED_PROBLEM_KINDS) if bad_files else 0)
    if n_utterances < min_n:
        raise ConfigError(
            f"The demo dataset needs at least {min_n} utterances (one per speaker"
            f"{' plus the planted bad files' if bad_files else ''}); got n_utterances="
            f"{n_utterances}. Ask for more utterances."
        )
    other = out_dir / ("features" if zip_features else "features.zip")
    if other.exists():
        raise ConfigError(
            f"{other} already exists from an earlier demo in the other layout "
            f"({'folder' if zip_features else 'zip'}); the dataset would be ambiguous. "
            "Remove it or choose an empty output folder."
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    seeds = np.random.SeedSequence(seed).spawn(1 + len(MODALITIES))
    rng = np.random.default_rng(seeds[0])
    table = _make_table(rng, n_utterances)
    planted = _choose_planted(rng, n_utterances) if bad_files else {}

    sink = _Sink(out_dir, zip_features)
    try:
        for m, modality_seed in zip(MODALITIES, seeds[1:], strict=True):
            _write_modality(
                np.random.default_rng(modality_seed), m, table, width[m], frames[m],
                {i: p for (i, mod), p in planted.items() if mod == m}, sink,
            )
    finally:
        sink.close()

    csv_path = out_dir / "dataset.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for i, uid in enumerate(table.ids):
            writer.writerow([uid, SPEAKERS[table.speaker[i]]]
                            + [_csv_path(m, table, i) for m in MODALITIES]
                            + [int(table.label[i])])

    problems = [
        {"utterance_id": table.ids[i], "modality": m, "problem": p, "path": _csv_path(m, table, i)}
        for (i, m), p in sorted(planted.items(), key=lambda kv: list(PLANTED_PROBLEM_KINDS)
                                .index(kv[1]))
    ]
    (out_dir / "PLANTED_PROBLEMS.json").write_text(json.dumps(problems, indent=2) + "\n",
                                                   encoding="utf-8")
    (out_dir / "README.md").write_text(
        _readme(n_utterances, seed, problems, width, zip_features), encoding="utf-8"
    )
    return csv_path


@dataclass
class _Table:
    """Per-utterance metadata, sorted by utterance id.

    ids: (n,) str; speaker: (n,) int index into SPEAKERS; label: (n,) int class;
    expressed: (n,) int class the features are generated from; intensity: (n,) float;
    affect: (n, 2) shared deviation from the class's arousal and valence;
    duration: (n,) float relative duration (median 1).
    """

    ids: list[str]
    speaker: np.ndarray
    label: np.ndarray
    expressed: np.ndarray
    intensity: np.ndarray
    affect: np.ndarray
    duration: np.ndarray


def _merge_sizes(
    name: str, defaults: dict[str, int], given: dict[str, int] | None
) -> dict[str, int]:
    """Defaults overridden by `given`, checked to be positive integers for known modalities."""
    merged = dict(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            raise ConfigError(
                f"{name} has an unknown modality '{key}'; use the keys {', '.join(defaults)}."
            )
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name}['{key}'] must be a positive integer; got {value!r}.")
        merged[key] = int(value)
    return merged


def _make_table(rng: np.random.Generator, n: int) -> _Table:
    """Speakers, labels, utterance ids and shared per-utterance factors, sorted by id."""
    n_spk, n_cls = len(SPEAKERS), len(LABEL_NAMES)
    speaker = rng.permutation(np.arange(n) % n_spk)
    p = np.asarray(CLASS_COUNTS, dtype=float) / sum(CLASS_COUNTS)
    priors = rng.dirichlet(_PRIOR_CONCENTRATION * p, size=n_spk)  # (n_spk, n_cls)
    for _ in range(50):  # keep speaker-specific priors but make their average exactly p
        priors *= p / priors.mean(axis=0)
        priors /= priors.sum(axis=1, keepdims=True)
    cum = np.cumsum(priors, axis=1)
    label = np.minimum((rng.random(n)[:, None] > cum[speaker]).sum(axis=1), n_cls - 1)
    ambiguous = rng.random(n) < _AMBIGUOUS_FRACTION
    expressed = np.where(ambiguous, (label + rng.integers(1, n_cls, n)) % n_cls, label)
    intensity = np.clip(rng.lognormal(0.0, 0.35, n), 0.3, 2.5)
    affect = _SHARED_AFFECT_NOISE * rng.standard_normal((n, 2))
    duration = rng.lognormal(0.0, 0.4, n)

    dialog = rng.integers(0, 2 * len(_DIALOG_NAMES), n)
    counters: dict[tuple[str, str], int] = {}
    ids = []
    for i in range(n):
        name = SPEAKERS[speaker[i]]
        session = int(name[1:])
        prefix_gender = "FM"[dialog[i] % 2]
        base = f"Ses{session:02d}{prefix_gender}_{_DIALOG_NAMES[dialog[i] // 2]}"
        k = counters.get((base, name[0]), 0)
        counters[(base, name[0])] = k + 1
        ids.append(f"{base}_{name[0]}{k:03d}")
    order = np.argsort(np.asarray(ids), kind="stable")
    return _Table(
        ids=[ids[i] for i in order],
        speaker=speaker[order],
        label=label[order],
        expressed=expressed[order],
        intensity=intensity[order],
        affect=affect[order],
        duration=duration[order],
    )


def _choose_planted(rng: np.random.Generator, n: int) -> dict[tuple[int, str], str]:
    """(utterance index, modality) -> problem kind, five distinct utterances."""
    rows = rng.choice(n, size=len(PLANTED_PROBLEM_KINDS), replace=False)
    kinds = PLANTED_PROBLEM_KINDS.items()
    return {(int(i), m): kind for i, (kind, m) in zip(rows, kinds, strict=True)}


def _session(table: _Table, i: int) -> int:
    return int(SPEAKERS[table.speaker[i]][1:])


def _rel_path(modality: str, table: _Table, i: int) -> str:
    return f"features/{modality}_features/Session{_session(table, i)}/{table.ids[i]}.npy"


def _csv_path(modality: str, table: _Table, i: int) -> str:
    return "/" + _rel_path(modality, table, i)


def _frame_counts(rng: np.random.Generator, table: _Table, modality: str, mean: int) -> np.ndarray:
    """(n,) int frame count per utterance: about `mean` x relative duration, clipped."""
    n = len(table.ids)
    if not _PROFILES[modality].gated:
        return np.full(n, mean, dtype=np.int64)
    jitter = rng.lognormal(0.0, 0.1, n)
    lo, hi = max(1, round(mean / 4)), max(1, 2 * mean)
    return np.clip(np.rint(mean * table.duration * jitter), lo, hi).astype(np.int64)


def _directions(rng: np.random.Generator, k: int, d: int) -> np.ndarray:
    """(k, d) float32 dense unit-norm directions, orthonormal when k <= d."""
    raw = rng.standard_normal((d, k))
    if k <= d:
        q, _ = np.linalg.qr(raw)
        return np.ascontiguousarray(q.T, dtype=np.float32)
    return (raw / np.linalg.norm(raw, axis=0)).T.astype(np.float32)


def _sparse_loadings(rng: np.random.Generator, k: int, d: int) -> np.ndarray:
    """(k, d) float32 non-negative loadings, each row on about d / (2k) random dimensions.

    Row norms are about sqrt(_CHANNEL_ENERGY) whatever `d`, so the signal strength does not
    depend on the width.
    """
    per_row = max(1, d // (2 * k))
    out = np.zeros((k, d), dtype=np.float32)
    for row in out:
        row[rng.choice(d, per_row, replace=False)] = rng.uniform(0.5, 1.5, per_row)
    return out * np.float32(np.sqrt(_CHANNEL_ENERGY / per_row))


def _write_modality(
    rng: np.random.Generator,
    modality: str,
    table: _Table,
    d: int,
    mean_t: int,
    planted: dict[int, str],
    sink: _Sink,
) -> None:
    """Generate and write one modality's (T_i, d) float32 arrays for all utterances.

    Per frame: ``x = base + dim_scale * speaker_scale * (noise + signal + speaker_offset)`` with
    unit Gaussian noise, the utterance's latent emotion (gated and frame-jittered for sequences)
    mapped through the loadings, and the speaker's low-rank offset; ReLU for visual.
    """
    prof = _PROFILES[modality]
    n, n_spk, n_cls = len(table.ids), len(SPEAKERS), len(LABEL_NAMES)

    # Latent class means (n_cls, k): arousal, valence and one axis per class.
    means = np.column_stack(
        [prof.arousal * _AROUSAL, prof.valence * _VALENCE, prof.per_class * np.eye(n_cls)]
    )
    k = means.shape[1]
    twist = prof.speaker_twist * rng.standard_normal((n_spk, n_cls, k))
    spk_latent = prof.speaker_offset * rng.standard_normal((n_spk, _N_SPEAKER_DIMS))
    spk_scale = rng.lognormal(0.0, 0.2, n_spk)
    if prof.gated:  # channels relu(+z), relu(-z) on sparse units, speaker offset dense
        loadings = np.vstack([prof.signal_gain * _sparse_loadings(rng, 2 * k, d),
                              _directions(rng, _N_SPEAKER_DIMS, d)])
    else:
        loadings = _directions(rng, k + _N_SPEAKER_DIMS, d)
        loadings[:k] *= prof.signal_gain
    base = (0.5 if prof.relu else 0.0) + 0.5 * rng.standard_normal(d).astype(np.float32)
    dim_scale = rng.lognormal(0.0, 0.25, d).astype(np.float32)

    z = table.intensity[:, None] * (means[table.expressed] + twist[table.speaker, table.expressed])
    z[:, 0] += prof.arousal * table.affect[:, 0]
    z[:, 1] += prof.valence * table.affect[:, 1]
    z += prof.utterance_noise * rng.standard_normal((n, k))  # (n, k) utterance latent
    z = z.astype(np.float32)
    counts = _frame_counts(rng, table, modality, mean_t)
    seg_len = np.maximum(1, np.rint(counts * rng.uniform(0.2, 0.4, n))).astype(np.int64)
    seg_start = np.floor(rng.random(n) * (counts - seg_len + 1)).astype(np.int64)
    spk_latent = spk_latent.astype(np.float32)
    row_scale = spk_scale.astype(np.float32)[table.speaker]

    spk_of_utt = table.speaker

    def frames(lo: int, hi: int, chunk_seed: np.random.SeedSequence) -> np.ndarray:
        """(sum of counts[lo:hi], d) float32 frames of utterances lo..hi-1, stacked."""
        chunk_rng = np.random.default_rng(chunk_seed)
        t = counts[lo:hi]
        utt = np.repeat(np.arange(lo, hi), t)  # (F,) utterance of each frame
        frame_z = z[utt]  # (F, k)
        if prof.gated:
            pos = np.arange(len(utt)) - np.repeat(np.cumsum(t) - t, t)
            active = (pos >= seg_start[utt]) & (pos < seg_start[utt] + seg_len[utt])
            frame_z *= np.where(active, 1.0, _GATE_BACKGROUND).astype(np.float32)[:, None]
            frame_z += prof.frame_noise * chunk_rng.standard_normal(frame_z.shape,
                                                                    dtype=np.float32)
            frame_z = np.concatenate([np.maximum(frame_z, 0), np.maximum(-frame_z, 0)], axis=1)
        frame_latent = np.concatenate([frame_z, spk_latent[spk_of_utt[utt]]], axis=1)
        block = chunk_rng.standard_normal((len(utt), d), dtype=np.float32)  # feature noise
        block += frame_latent @ loadings
        block *= row_scale[utt][:, None]
        block *= dim_scale
        block += base
        if prof.relu:
            np.maximum(block, 0.0, out=block)
        return block

    # Chunks are generated by two threads (numpy releases the GIL) while this one writes files;
    # each chunk has its own seed, so the output does not depend on the scheduling.
    per_chunk = max(1, _CHUNK_ELEMENTS // max(1, 2 * mean_t * d))
    bounds = [(lo, min(n, lo + per_chunk)) for lo in range(0, n, per_chunk)]
    chunk_seeds = np.random.SeedSequence(int(rng.integers(2**63))).spawn(len(bounds))
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        for c, (lo, hi) in enumerate(bounds):
            if c == 0:
                pending.extend(pool.submit(frames, *bounds[b], chunk_seeds[b])
                               for b in range(min(2, len(bounds))))
            block = pending.popleft().result()
            if c + 2 < len(bounds):
                pending.append(pool.submit(frames, *bounds[c + 2], chunk_seeds[c + 2]))
            starts = np.concatenate([[0], np.cumsum(counts[lo:hi])])
            for j, i in enumerate(range(lo, hi)):
                _write_array(sink, _rel_path(modality, table, i),
                             block[starts[j]:starts[j + 1]], planted.get(i))
            del block


def _write_array(sink: _Sink, rel: str, arr: np.ndarray, problem: str | None) -> None:
    """Write one (T, d) array as .npy, damaged as `problem` says (None: intact)."""
    if problem == "missing_file":
        sink.remove(rel)
        return
    if problem == "empty_array":
        arr = np.zeros((0, arr.shape[1]), dtype=np.float32)
    elif problem == "nan_values":
        arr = arr.copy()
        arr[len(arr) // 2] = np.nan
    elif problem == "wrong_width":
        d = arr.shape[1]
        arr = arr[:, : d - 1] if d > 1 else np.concatenate([arr, arr], axis=1)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    data = arr.reshape(-1).view(np.uint8)  # (nbytes,) raw float32 bytes, no copy
    if problem == "corrupt_file":
        data = data[: arr.nbytes // 2]  # the header survives, half of the data is cut off
    sink.write(rel, _npy_header(arr.shape), data)


@lru_cache(maxsize=1024)
def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The .npy header `np.save` writes for a float32 C-order array of this shape."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
              "fortran_order": False, "shape": shape})
    return buf.getvalue()


class _Sink:
    """Writes files under `out_dir`, or as members of `out_dir`/features.zip."""

    def __init__(self, out_dir: Path, zip_features: bool):
        self.out_dir = out_dir
        self.zip: zipfile.ZipFile | None = None
        self._made: set[Path] = set()
        if zip_features:
            self.zip = zipfile.ZipFile(out_dir / "features.zip", "w", zipfile.ZIP_STORED)

    def write(self, rel: str, header: bytes, data: np.ndarray) -> None:
        """Write `header` then the bytes of the contiguous uint8 array `data` to `rel`."""
        if self.zip is not None:
            info = zipfile.ZipInfo(rel, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            self.zip.writestr(info, header + data.tobytes())
            return
        path = self.out_dir / rel
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        with open(path, "wb") as fh:
            fh.write(header)
            fh.write(data)

    def remove(self, rel: str) -> None:
        if self.zip is None:
            (self.out_dir / rel).unlink(missing_ok=True)  # stale file from an earlier run

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _readme(n: int, seed: int, problems: list[dict[str, str]], width: dict[str, int],
            zip_features: bool) -> str:
    where = "features.zip" if zip_features else "features/"
    lines = [
        "# Generated demo data (not IEMOCAP)",
        "",
        f"This folder was generated by `emofusion.data.demo.write_demo_dataset` "
        f"(n_utterances={n}, seed={seed}). It imitates the layout of the IEMOCAP course release "
        f"(`dataset.csv` plus `.npy` feature files in {where}) but every number is synthetic: "
        "10 speakers (F01..M05), 4 classes (0 anger, 1 sadness, 2 happiness, 3 neutral) in "
        "IEMOCAP's class balance, visual (T x {v}), acoustic (T x {a}) and lexical (1 x {lx}) "
        "float32 features with speaker effects, emotion visible in only part of the frames, and "
        "modalities that separate different classes.".format(
            v=width["visual"], a=width["acoustic"], lx=width["lexical"]),
        "",
        "**Scores obtained on this data say nothing about IEMOCAP or about any real corpus.** "
        "Use it to try the pipeline and to compare methods on a known, controlled problem.",
        "",
    ]
    if problems:
        lines += ["## Planted bad files", "",
                  "These are wrong on purpose (also listed in `PLANTED_PROBLEMS.json`); their rows "
                  "stay in `dataset.csv` so that input validation can be checked:", ""]
        lines += [f"- `{p['utterance_id']}` {p['modality']}: {p['problem']} (`{p['path']}`)"
                  for p in problems]
        lines += [""]
    else:
        lines += ["No bad files were planted (`PLANTED_PROBLEMS.json` is an empty list).", ""]
    return "\n".join(lines)
