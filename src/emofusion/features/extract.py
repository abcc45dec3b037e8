"""Extraction driver: an utterance table in, emofusion's generic feature layout out.

`extract_corpus` runs the chosen extractors (`emofusion.features.extractors`) over every
utterance and writes::

    OUT/dataset.csv              utterance_id, speaker, session, label, transcript,
                                 [split, script,] <modality>_features ...
    OUT/features.json            corpus, label_names, modalities {name: width, kind, extractor,
                                 params, stats[, layers]}, failed [{utterance_id, path, reason, fix, ...}]
    OUT/features/<modality>/<utterance_id>.npy   float32 (T, d), (d,) or (L, d) (kind layers)
    OUT/features/<modality>/_params.json         extractor + parameters the files were made with
    OUT/features/<modality>/_index.jsonl         one line per finished utterance (input + stats)

``<modality>_features`` cells are paths relative to OUT, so ``emofusion run OUT/dataset.csv``
reads the features directly and OUT can be moved as a whole.

The cache is per file and resumable: each ``.npy`` is written atomically (temporary file +
``os.replace``) and indexed with the input it came from (path, size, mtime, start/end, or the
transcript's hash). A rerun reuses an utterance's file when its index line matches; a changed
parameter set empties the modality's folder; an interrupted run continues with the utterances
not yet indexed. Utterances are processed in chunks by joblib/loky worker processes, each limited
to one BLAS/torch thread; text extractors embed a whole chunk in one batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofusion.errors import ConfigError, DataProblemError, EmofusionError, Problem
from emofusion.features.extractors import EXTRACTORS, build_extractor
from emofusion.features.extractors.base import Extracted, ExtractionFailed, Extractor

MODALITY_GROUPS: dict[str, list[str]] = {
    "audio": ["egemaps", "compare", "logmel", "ge2e"],
    "text": ["minilm", "vader"],
    "visual": ["face_hog"],
}
"""Default extractors of ``--modalities audio,text,visual``."""

ON_BAD = ("fail", "skip")
TABLE_COLUMNS = ("utterance_id", "speaker", "session", "label")
COPIED_COLUMNS = ("split", "script")
SOURCE_COLUMNS = {"audio": "audio_path", "text": "transcript", "visual": "video_path"}
_MODALITY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ModalitySpec:
    """One output modality: its name, the extractor that makes it and the extractor's params."""

    modality: str
    extractor: str
    params: dict[str, Any]


# ----------------------------------------------------------------------------- specifications


def _spec_from_entry(modality: str, entry: Mapping[str, Any] | None) -> ModalitySpec:
    """Spec from ``{param: value}``, ``{"extractor": name, **params}`` or a features.json entry."""
    entry = dict(entry or {})
    if "params" in entry and "extractor" in entry:  # features.json "modalities" entry
        return ModalitySpec(modality, str(entry["extractor"]), dict(entry["params"] or {}))
    return ModalitySpec(modality, str(entry.pop("extractor", modality)), entry)


def resolve_extractors(
    extractors: str | Iterable[str] | Mapping[str, Mapping[str, Any] | None],
) -> list[ModalitySpec]:
    """Modality specs from names, groups or a ``{modality: params}`` mapping.

    Accepted forms:
      * ``"audio,text"`` or ``["audio", "minilm"]``: group names (`MODALITY_GROUPS`) expand to
        their extractors; each extractor becomes a modality of the same name, default params.
      * ``{"logmel": {"n_mels": 40}}``: extractor name -> params.
      * ``{"mel40": {"extractor": "logmel", "n_mels": 40}}``: a modality with its own name.
      * features.json's ``modalities`` dict (``{"extractor": ..., "params": {...}, ...}``).
    """
    if isinstance(extractors, str):
        extractors = [part.strip() for part in extractors.split(",") if part.strip()]
    if isinstance(extractors, Mapping):
        specs = [_spec_from_entry(str(name), entry) for name, entry in extractors.items()]
    else:
        names = [n for name in extractors for n in MODALITY_GROUPS.get(name, [name])]
        specs = [ModalitySpec(name, name, {}) for name in dict.fromkeys(names)]
    if not specs:
        raise ConfigError("No feature extractor chosen; give extractor names "
                          f"({', '.join(EXTRACTORS)}) or groups ({', '.join(MODALITY_GROUPS)})")
    for spec in specs:
        if not _MODALITY_NAME.fullmatch(spec.modality):
            raise ConfigError(f"Modality name {spec.modality!r} must start with a letter and "
                              "contain only letters, digits and underscores")
        if spec.extractor not in EXTRACTORS:
            raise ConfigError(f"Unknown feature extractor {spec.extractor!r}; choose from "
                              f"{', '.join(EXTRACTORS)} or the groups {', '.join(MODALITY_GROUPS)}")
    return specs


def read_extractor_specs(features_json: str | Path) -> dict[str, dict[str, Any]]:
    """The ``modalities`` entry of a features.json, for `extract_single`."""
    try:
        meta = json.loads(Path(features_json).read_text(encoding="utf-8"))
        return dict(meta["modalities"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"Cannot read the extractor settings from {features_json}: {exc}. "
                          "Give the features.json written by `extract_corpus`.") from exc


# ----------------------------------------------------------------------------- worker side

_EXTRACTOR_CACHE: dict[str, Extractor] = {}


def cached_extractor(name: str, params: Mapping[str, Any]) -> Extractor:
    """A prepared extractor, built once per process (models stay loaded between chunks)."""
    key = json.dumps([name, params], sort_keys=True, default=str)
    if key not in _EXTRACTOR_CACHE:
        extractor = build_extractor(name, dict(params))
        extractor.prepare()
        _EXTRACTOR_CACHE[key] = extractor
    return _EXTRACTOR_CACHE[key]


def clear_extractor_cache() -> None:
    """Forget the extractors (and their loaded models) kept by this process."""
    _EXTRACTOR_CACHE.clear()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Limit BLAS/OpenMP, torch and OpenCV to one thread; restore the settings afterwards."""
    from threadpoolctl import threadpool_limits

    torch, cv2 = sys.modules.get("torch"), sys.modules.get("cv2")
    saved_torch = torch.get_num_threads() if torch else None
    saved_cv2 = cv2.getNumThreads() if cv2 else None
    with threadpool_limits(limits=1):
        try:
            if torch:
                torch.set_num_threads(1)
            if cv2:
                cv2.setNumThreads(1)
            yield
        finally:
            if torch:
                torch.set_num_threads(saved_torch)
            if cv2:
                cv2.setNumThreads(saved_cv2)


def _crash(extractor: Extractor, error: Exception) -> ExtractionFailed:
    return ExtractionFailed(f"{extractor.name} failed: {type(error).__name__}: {error}",
                            "check the input file; if it is valid, please report this as a bug",
                            retry=True)  # maybe not the data's fault: try again next run


def _run_items(extractor: Extractor, items: list[dict]) -> list[Extracted | ExtractionFailed]:
    """`extract_batch`, isolating an unexpected error to the utterance that caused it."""
    try:
        return extractor.extract_batch(items)
    except EmofusionError:
        raise  # configuration or missing extra: stop the whole run
    except Exception as error:
        if len(items) == 1:
            return [_crash(extractor, error)]
        return [result for item in items for result in _run_items(extractor, [item])]


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (.npy) atomically: a reader never sees a partial file."""
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        np.save(handle, array)
    os.replace(temporary, path)


def _input_path(extractor: Extractor, item: Mapping[str, Any]) -> str:
    """The file an utterance's failure concerns ("" for text)."""
    return "" if extractor.source == "text" else str(item.get(SOURCE_COLUMNS[extractor.source]))


def _extract_chunk(name: str, params: dict[str, Any],
                   jobs: list[tuple[str, dict]]) -> list[dict[str, Any]]:
    """Worker task: extract ``(target .npy path, item)`` pairs and save the arrays.

    Returns per item ``{"stats": {...}}`` or ``{"failed": Problem dict, "retry": bool}``.
    """
    extractor = cached_extractor(name, params)
    with one_thread():
        results = _run_items(extractor, [item for _, item in jobs])
    outcome: list[dict[str, Any]] = []
    for (target, item), result in zip(jobs, results, strict=True):
        if isinstance(result, ExtractionFailed):
            problem = Problem(result.reason, result.fix, str(item["utterance_id"]),
                              result.path or _input_path(extractor, item))
            outcome.append({"failed": problem.to_dict(), "retry": result.retry})
        else:
            save_array(Path(target), result.array)
            outcome.append({"stats": result.stats})
    return outcome


# ----------------------------------------------------------------------------- cache folder


def file_stem(utterance_id: str) -> str:
    """File name stem of an utterance: the id itself when it is a safe name, else a sanitised
    version plus a short hash (ids with ``/``, spaces, ... stay unique)."""
    if _SAFE_STEM.fullmatch(utterance_id) and len(utterance_id) <= 150:
        return utterance_id
    digest = hashlib.sha1(utterance_id.encode("utf-8")).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', utterance_id)[:100].strip('._')}-{digest}"


def source_key(source: str, item: Mapping[str, Any]) -> str:
    """Identity of an utterance's input: transcript hash, or file path/size/mtime + segment."""
    if source == "text":
        text = str(item.get("transcript") or "")
        return "text:" + hashlib.sha1(text.encode("utf-8")).hexdigest()
    path = str(item.get(SOURCE_COLUMNS[source]) or "")
    try:
        status = os.stat(path)
        stamp = f"{status.st_size}:{status.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    return f"{path}|{stamp}|{item.get('start')}|{item.get('end')}"


class FeatureFolder:
    """``OUT/features/<modality>/``: the .npy files, ``_params.json`` and ``_index.jsonl``."""

    def __init__(self, out_dir: Path, modality: str, signature: dict[str, Any]):
        self.out_dir, self.modality, self.signature = out_dir, modality, signature
        self.folder = out_dir / "features" / modality
        self.index: dict[str, dict[str, Any]] = {}

    def open(self) -> FeatureFolder:
        """Create the folder; empty it when its parameters differ; read the index."""
        self.folder.mkdir(parents=True, exist_ok=True)
        params_file = self.folder / "_params.json"
        if self._stored_signature(params_file) != _canonical(self.signature):
            for stale in [*self.folder.glob("*.npy"), self.folder / "_index.jsonl"]:
                stale.unlink(missing_ok=True)
            _write_text(params_file, json.dumps(self.signature, indent=2, sort_keys=True))
        for leftover in self.folder.glob("*.tmp-*"):
            leftover.unlink(missing_ok=True)
        self.index = self._read_index()
        return self

    @staticmethod
    def _stored_signature(params_file: Path) -> str | None:
        try:
            return _canonical(json.loads(params_file.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    def _read_index(self) -> dict[str, dict[str, Any]]:
        index: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError), open(self.folder / "_index.jsonl",
                                                encoding="utf-8") as lines:
            for line in lines:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    record = json.loads(line)
                    index[record["utterance_id"]] = record
        return index

    def relative(self, utterance_id: str) -> str:
        """``features/<modality>/<stem>.npy`` (POSIX separators, relative to OUT)."""
        return f"features/{self.modality}/{file_stem(utterance_id)}.npy"

    def cached(self, utterance_id: str, key: str) -> dict[str, Any] | None:
        """The index record of an utterance done from the same input: ``{"stats": ...}`` when
        its file exists, ``{"failed": ...}`` when its input failed; None when to (re)extract."""
        record = self.index.get(utterance_id)
        if record is None or record.get("source") != key:
            return None
        if "failed" in record or (self.out_dir / self.relative(utterance_id)).is_file():
            return record
        return None

    def record(self, utterance_id: str, key: str, outcome: dict[str, Any]) -> None:
        """Append an utterance's outcome (``stats`` or ``failed``) to the index; each line is
        flushed at once, so finished work survives an interruption."""
        record = {"utterance_id": utterance_id, "source": key, **outcome}
        with open(self.folder / "_index.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self.index[utterance_id] = record


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


# ----------------------------------------------------------------------------- running


class _Progress:
    """A rich progress bar per modality, or nothing when ``enabled`` is False."""

    def __init__(self, enabled: bool):
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description:<14}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True))

    def __enter__(self) -> _Progress:
        if self._bar:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar:
            self._bar.__exit__(*exc)

    def task(self, name: str, total: int, done: int) -> Any:
        if not self._bar:
            return None
        task = self._bar.add_task(name, total=total)
        self._bar.update(task, completed=done)  # marks an all-cached modality as finished
        return task

    def advance(self, task: Any, steps: int) -> None:
        if self._bar:
            self._bar.advance(task, steps)


def _chunks(items: list, size: int) -> list[list]:
    return [items[first:first + size] for first in range(0, len(items), size)]


MIN_PARALLEL_ITEMS = 48
"""Fewer pending utterances than this run in this process: starting worker processes (importing
librosa, openSMILE, ... in each) costs more than it saves on small jobs."""


def _run_chunks(name: str, params: dict[str, Any], chunks: list[list[tuple[str, dict]]],
                jobs: int) -> Iterator[tuple[list[tuple[str, dict]], list]]:
    """Yield ``(chunk, outcome)`` as chunks finish: in this process or in loky workers."""
    if jobs <= 1 or len(chunks) <= 1 or sum(map(len, chunks)) < MIN_PARALLEL_ITEMS:
        for chunk in chunks:
            yield chunk, _extract_chunk(name, params, chunk)
        return
    from joblib import Parallel, delayed

    tasks = (delayed(_chunk_task)(name, params, chunk) for chunk in chunks)
    try:
        runner = Parallel(n_jobs=min(jobs, len(chunks)), backend="loky",
                          return_as="generator_unordered")
    except ValueError:  # joblib < 1.4
        runner = Parallel(n_jobs=min(jobs, len(chunks)), backend="loky", return_as="generator")
    yield from runner(tasks)


def _chunk_task(name: str, params: dict[str, Any],
                chunk: list[tuple[str, dict]]) -> tuple[list[tuple[str, dict]], list]:
    return chunk, _extract_chunk(name, params, chunk)


def _extract_modality(spec: ModalitySpec, extractor: Extractor, folder: FeatureFolder,
                      items: list[dict], jobs: int, progress: _Progress) -> list[dict]:
    """Fill ``folder`` for all ``items``; return the failures (Problem dicts + modality)."""
    keys = {item["utterance_id"]: source_key(extractor.source, item) for item in items}
    done = {uid: folder.cached(uid, key) for uid, key in keys.items()}
    pending = [item for item in items if done[item["utterance_id"]] is None]
    if extractor.source == "text":  # similar lengths per batch: less padding
        pending.sort(key=lambda item: len(item["transcript"]))
    task = progress.task(spec.modality, len(items), len(items) - len(pending))
    jobs = 1 if extractor.in_process else max(jobs, 1)
    size = max(1, min(extractor.chunk_size, math.ceil(len(pending) / (jobs * 4))))
    targets = [(str(folder.out_dir / folder.relative(item["utterance_id"])), item)
               for item in pending]
    for chunk, outcome in _run_chunks(spec.extractor, extractor.settings(),
                                      _chunks(targets, size), jobs):
        for (_, item), result in zip(chunk, outcome, strict=True):
            done[item["utterance_id"]] = result
            if not result.get("retry"):
                folder.record(item["utterance_id"], keys[item["utterance_id"]],
                              {k: v for k, v in result.items() if k != "retry"})
        progress.advance(task, len(chunk))
    return [{**record["failed"], "modality": spec.modality}
            for record in done.values() if record and "failed" in record]


# ----------------------------------------------------------------------------- table in / out


def _time(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(seconds) else seconds


def _items(table: pd.DataFrame) -> list[dict]:
    """Plain dicts with what extractors read (small to send to worker processes)."""
    def column(name: str) -> list:
        return table[name].tolist() if name in table else [None] * len(table)

    return [
        {"utterance_id": str(uid), "audio_path": "" if pd.isna(audio) else str(audio),
         "transcript": "" if pd.isna(text) else str(text),
         "video_path": "" if pd.isna(video) else str(video),
         "start": _time(start), "end": _time(end)}
        for uid, audio, text, video, start, end in zip(
            column("utterance_id"), column("audio_path"), column("transcript"),
            column("video_path"), column("start"), column("end"), strict=True)
    ]


def _check_table(table: pd.DataFrame) -> None:
    missing = [name for name in TABLE_COLUMNS if name not in table.columns]
    if missing:
        raise ConfigError(f"The utterance table lacks the column(s) {', '.join(missing)}; "
                          f"it needs {', '.join(TABLE_COLUMNS)} (see the corpus readers)")
    ids = table["utterance_id"].astype(str)
    problems = [Problem("utterance_id is empty", "give every utterance an id", str(uid))
                for uid in ids[ids.str.strip() == ""]]
    problems += [Problem("utterance_id is not unique", "make the ids unique", str(uid))
                 for uid in sorted(set(ids[ids.duplicated()]))]
    if problems:
        raise DataProblemError(problems)


def _output_table(table: pd.DataFrame, folders: dict[str, FeatureFolder],
                  failed_ids: set[str]) -> pd.DataFrame:
    """dataset.csv rows: the utterances every modality extracted, with relative paths."""
    kept = table[~table["utterance_id"].astype(str).isin(failed_ids)]
    columns = {name: kept[name] for name in TABLE_COLUMNS}
    columns["transcript"] = (kept["transcript"].fillna("") if "transcript" in kept
                             else pd.Series("", index=kept.index))
    columns.update({name: kept[name] for name in COPIED_COLUMNS if name in kept})
    ids = kept["utterance_id"].astype(str)
    for modality, folder in folders.items():
        columns[f"{modality}_features"] = ids.map(folder.relative)
    return pd.DataFrame(columns).reset_index(drop=True)


def _stats_summary(folder: FeatureFolder, ids: list[str]) -> dict[str, Any]:
    """Summed statistics and per-utterance counts (e.g. frames and faces), or {}."""
    per_utterance = {uid: folder.index[uid]["stats"] for uid in ids
                     if uid in folder.index and folder.index[uid].get("stats")}
    if not per_utterance:
        return {}
    totals: dict[str, Any] = {}
    for stats in per_utterance.values():
        for key, value in stats.items():
            totals[key] = totals.get(key, 0) + value
    if {"frames", "faces"} <= totals.keys():
        totals["frames_without_face"] = totals["frames"] - totals["faces"]
    return {**totals, "per_utterance": per_utterance}


def _stored_shape(folder: FeatureFolder, ids: list[str]) -> tuple[int, ...]:
    """Shape of the first stored array of ``ids``; ``()`` when there is none."""
    for uid in ids:
        if uid in folder.index:
            return np.load(folder.out_dir / folder.relative(uid), mmap_mode="r").shape
    return ()


def _modality_entry(spec: ModalitySpec, extractor: Extractor, folder: FeatureFolder,
                    ids: list[str]) -> dict[str, Any]:
    shape = _stored_shape(folder, ids)
    width = extractor.width if extractor.width is not None else (shape[-1] if shape else None)
    entry = {"width": None if width is None else int(width), "kind": extractor.kind,
             "extractor": spec.extractor, "params": extractor.params(),
             "source": extractor.source, "version": extractor.version}
    if extractor.kind == "layers" and shape:
        entry["layers"] = int(shape[0])  # L of the (L, d) arrays: rows a LayerSelector picks
    stats = _stats_summary(folder, ids)
    return {**entry, "stats": stats} if stats else entry


def _check_sources(specs: list[ModalitySpec], built: dict[str, Extractor],
                   items: list[dict]) -> None:
    """Refuse, before any work, modalities whose input is absent for every utterance (e.g. the
    default ``audio,text`` on MELD's text-only CSVs): otherwise every utterance would fail."""
    absent = [spec.modality for spec in specs
              if not any(item[SOURCE_COLUMNS[built[spec.modality].source]].strip()
                         for item in items)]
    if not absent or not items:
        return
    have = [group for group, column in SOURCE_COLUMNS.items()
            if any(item[column].strip() for item in items)]
    raise ConfigError(
        f"No utterance has the input of {', '.join(absent)} "
        f"({', '.join(sorted({built[m].source for m in absent}))}): the corpus has "
        f"{', '.join(have) if have else 'no media or transcripts'} only. Choose modalities it "
        f"has, e.g. --modalities {','.join(have) or 'text'}.")


def _report(failed: list[dict], n_utterances: int, n_kept: int, on_bad: str) -> None:
    if not failed:
        return
    problems = [Problem(f"[{f['modality']}] {f['reason']}", f["fix"], f["utterance_id"],
                        f["path"]) for f in failed]
    if on_bad == "fail":
        raise DataProblemError(problems, hint=(
            "Fix or remove these utterances, or rerun with on_bad='skip' (--on-bad-file skip) to leave "
            "them out. Features already extracted are cached and will be reused."))
    if n_kept == 0:
        raise DataProblemError(problems, hint="Extraction failed for every utterance.")
    print(f"emofusion: {n_utterances - n_kept} of {n_utterances} utterance(s) left out of "
          f"dataset.csv because extraction failed ({len(failed)} failure(s)); they are listed "
          "under 'failed' in features.json", file=sys.stderr)


def extract_corpus(
    table: pd.DataFrame,
    label_names: list[str],
    out_dir: str | Path,
    extractors: str | list[str] | Mapping[str, Mapping[str, Any] | None],
    *,
    jobs: int = 2,
    on_bad: str = "fail",
    corpus: str = "",
    progress: bool = True,
    device: str | None = None,
) -> Path:
    """Extract features for every utterance of ``table`` into ``out_dir``; return dataset.csv.

    Args:
        table: utterance table (``utterance_id, speaker, session, label, audio_path,
            transcript, video_path, start, end`` [+ ``split``, ``script``]); paths absolute or
            ``""``; ``start``/``end`` in seconds or NaN for the whole file.
        label_names: ordered class names, recorded in features.json.
        out_dir: output folder (created); rerunning on the same folder reuses cached files.
        extractors: extractor/group names or ``{modality: params}``, see `resolve_extractors`.
        jobs: worker processes (1 runs everything in this process).
        on_bad: ``"fail"`` raises `DataProblemError` listing every utterance that could not be
            extracted; ``"skip"`` leaves them out of dataset.csv and lists them in features.json.
        corpus: corpus name recorded in features.json.
        progress: show a progress bar per modality (on stderr).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` for every PyTorch extractor (those with a
            ``device`` parameter) whose params do not set one; None keeps their default (CPU).

    Returns:
        Path of ``OUT/dataset.csv``.
    """
    if on_bad not in ON_BAD:
        raise ConfigError(f"on_bad={on_bad!r} must be 'fail' or 'skip'")
    _check_table(table)
    out_dir = Path(out_dir)
    specs = resolve_extractors(extractors)
    built = {spec.modality: build_extractor(spec.extractor, _with_device(spec, device))
             for spec in specs}
    items, failed = _items(table), []
    _check_sources(specs, built, items)
    folders = {spec.modality: FeatureFolder(out_dir, spec.modality, {
        "extractor": spec.extractor, "version": built[spec.modality].version,
        "params": built[spec.modality].params()}).open() for spec in specs}
    with _Progress(progress) as bars:
        for spec in specs:
            failed += _extract_modality(spec, built[spec.modality], folders[spec.modality],
                                        items, jobs, bars)
    failed_ids = {f["utterance_id"] for f in failed}
    dataset = _output_table(table, folders, failed_ids)
    _report(failed, len(table), len(dataset), on_bad)
    ids = dataset["utterance_id"].astype(str).tolist()
    meta = {"corpus": corpus, "label_names": list(label_names),
            "modalities": {spec.modality: _modality_entry(spec, built[spec.modality],
                                                          folders[spec.modality], ids)
                           for spec in specs},
            "failed": failed}
    _write_text(out_dir / "features.json", json.dumps(meta, indent=2, default=str))
    _write_text(out_dir / "dataset.csv", dataset.to_csv(index=False))
    return out_dir / "dataset.csv"


def _with_device(spec: ModalitySpec, device: str | None) -> dict[str, Any]:
    """The spec's params, plus ``device`` when given and the extractor has that parameter."""
    if device is None or "device" not in EXTRACTORS[spec.extractor].speed_names:
        return spec.params
    return {"device": device, **spec.params}


def extract_single(extractor_specs: Mapping[str, Mapping[str, Any] | None],
                   wav: str | Path | None = None, text: str | None = None,
                   video: str | Path | None = None) -> dict[str, np.ndarray]:
    """Features of one new utterance with the extractors and params a corpus was extracted with.

    Args:
        extractor_specs: features.json's ``modalities`` (see `read_extractor_specs`) or any
            form `resolve_extractors` accepts.
        wav, text, video: the utterance's inputs; modalities whose input is None are left out
            of the result (the caller decides whether the model can do without them).

    Returns:
        ``{modality: float32 array}``, ``(T, d)`` or ``(d,)`` as recorded.

    Raises:
        DataProblemError: an input could not be extracted (unreadable file, no face, ...).
        ConfigError: the output width differs from the width recorded in ``extractor_specs``.
    """
    given = {"audio": wav, "text": text, "visual": video}
    item = {"utterance_id": "input", "audio_path": str(wav or ""), "transcript": text or "",
            "video_path": str(video or ""), "start": None, "end": None}
    features: dict[str, np.ndarray] = {}
    problems: list[Problem] = []
    for spec in resolve_extractors(extractor_specs):
        extractor = cached_extractor(spec.extractor, build_extractor(
            spec.extractor, spec.params).settings())
        if given[extractor.source] is None:
            continue
        with one_thread():  # as extract_corpus: multithreaded BLAS would change the last bits
            result = extractor.attempt(lambda e=extractor: e.extract(item))
        if isinstance(result, ExtractionFailed):
            path = result.path or _input_path(extractor, item)
            problems.append(Problem(f"[{spec.modality}] {result.reason}", result.fix, "input", path))
            continue
        _check_width(spec, extractor_specs, result.array)
        features[spec.modality] = result.array
    if problems:
        raise DataProblemError(problems)
    return features


def _check_width(spec: ModalitySpec, extractor_specs: Mapping[str, Any],
                 array: np.ndarray) -> None:
    recorded = (extractor_specs.get(spec.modality) or {}).get("width")
    if recorded is not None and int(recorded) != array.shape[-1]:
        raise ConfigError(
            f"Modality {spec.modality}: the {spec.extractor} extractor now gives {array.shape[-1]} "
            f"values per frame but the training features had {recorded}; the model or its "
            "files changed since extraction. Re-extract the corpus or restore the model files.")
