"""`emofusion.run(config)`: the whole experiment from a `RunConfig` to a run folder."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from emofusion.config import TRANSCRIPT, RunConfig
from emofusion.data.manifest import Manifest, load_manifest
from emofusion.errors import ConfigError, DataProblemError, Problem
from emofusion.evaluation.audit import build_audit
from emofusion.evaluation.checkpoints import RunFolder
from emofusion.evaluation.experiment import (
    FoldOutput,
    combined_folds,
    fold_tasks,
    make_setup,
    predictions_table,
    run_base,
    system_kinds,
)
from emofusion.evaluation.splits import (
    RANDOM_SPLIT_WARNING,
    fold_problems,
    make_outer_folds,
    split_problems,
)
from emofusion.features.cache import PooledCache, default_cache_dir
from emofusion.features.loading import load_modality
from emofusion.features.sequences import (
    as_object_array,
    frame_level_concatenation,
    pack_frames,
    packed,
)
from emofusion.models.registry import ModelSpec, get_model
from emofusion.provenance import data_sha256, provenance

SKIP_HINT = ("Fix these files, or rerun with --on-bad-file skip to leave these utterances out "
             "(each is then listed with its reason in the report and metrics.json).")


@dataclass
class PreparedData:
    """Checked inputs of a run.

    Attributes:
        manifest: the utterance table without dropped utterances.
        features: per modality, a float (n, d) pooled matrix or a list of (T, d) frames.
        dropped: one `Problem` per dropped utterance (``--on-bad-file skip``).
        widths: frame width d per modality.
    """

    manifest: Manifest
    features: dict[str, Any]
    dropped: list[Problem]
    widths: dict[str, int]


@dataclass
class RunResult:
    """What `run` returns; everything is also written to `run_dir`."""

    config: RunConfig
    run_dir: Path
    predictions: pd.DataFrame
    metrics: dict[str, Any]
    audit: dict[str, Any]
    dropped: list[Problem]
    folds: list[FoldOutput]

    def summary(self) -> pd.DataFrame:
        """One row per system: mean ± std over folds and pooled headline metrics."""
        from emofusion.evaluation.metrics import summary_table

        return summary_table(self.metrics)


def transcript_texts(table: pd.DataFrame, source: str = "the dataset") -> pd.Series:
    """The utterances' ``transcript`` column as str; a ConfigError when `source` lacks it."""
    if TRANSCRIPT not in table.columns:
        raise ConfigError(f"this model reads transcripts: {source} needs a 'transcript' column "
                          "(emofusion extract writes one for corpora with text)")
    return table[TRANSCRIPT].fillna("").astype(str)


def _transcripts(manifest: Manifest, required: bool = True
                 ) -> tuple[dict[str, Any], list[Problem], dict[str, int]]:
    """The transcripts as a modality; empty ones are problems when the model reads nothing else
    (`required`), and simply carry no evidence for the transcript system otherwise."""
    texts = transcript_texts(manifest.table)
    empty = manifest.table.loc[texts.str.strip() == "", "utterance_id"] if required else []
    problems = [Problem("empty transcript", "fill it in or use --on-bad-file skip", utterance_id=uid)
                for uid in empty]
    return {TRANSCRIPT: texts.to_numpy(dtype=object)}, problems, {TRANSCRIPT: 0}


MIN_DISTINCT_TRANSCRIPTS = 10


def adds_transcript_system(manifest: Manifest, config: RunConfig, spec: ModelSpec) -> bool:
    """Whether a pooled run adds the transcript system: `transcripts: on`, or `auto` when the
    dataset has a transcript column whose lines vary (at least 10 distinct and 10 % of the
    utterances; RAVDESS's two fixed sentences carry nothing about emotion)."""
    if spec.input != "pooled" or config.transcripts == "off" or TRANSCRIPT in manifest.modalities:
        return False
    if config.transcripts == "on":
        return True
    if TRANSCRIPT not in manifest.table.columns:
        return False
    distinct = manifest.table[TRANSCRIPT].dropna().astype(str).str.strip().replace("", np.nan).nunique()
    return distinct >= max(MIN_DISTINCT_TRANSCRIPTS, 0.1 * len(manifest.table))


def _load_features(manifest: Manifest, config: RunConfig, spec: ModelSpec,
                   jobs: int) -> tuple[dict[str, Any], list[Problem], dict[str, int]]:
    if spec.input == "text":
        return _transcripts(manifest)
    features: dict[str, Any] = {}
    problems: list[Problem] = []
    widths: dict[str, int] = {}
    cache = PooledCache((config.cache_dir or default_cache_dir()) if config.use_cache else None)
    for modality in manifest.modalities:
        if spec.input == "sequence":
            data = load_modality(manifest, modality, [], jobs=jobs, keep_sequences=True)
            features[modality] = pack_frames(data.sequences)
        else:
            pooling = config.pooling_for(modality, manifest.modality_info.get(modality, {}).get("kind"))
            data = cache.load(manifest, modality, [pooling], jobs=jobs)
            features[modality] = data.pooled[pooling]
        problems += data.problems
        widths[modality] = data.width
    if spec.reads_transcripts or adds_transcript_system(manifest, config, spec):
        texts, text_problems, text_widths = _transcripts(manifest, required=spec.reads_transcripts)
        features.update(texts)
        problems += text_problems
        widths.update(text_widths)
    return features, problems, widths


def _drop(features: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    rows = np.flatnonzero(keep)
    return {m: (f[keep] if isinstance(f, np.ndarray) else [f[i] for i in rows])
            for m, f in features.items()}


def prepare_data(config: RunConfig) -> PreparedData:
    """Load the manifest and every feature file, and apply the bad-input policy.

    Raises:
        DataProblemError: listing every problem, when ``on_bad_file`` is ``fail``.
    """
    manifest = load_manifest(config.dataset, config.features_root)
    if config.modalities:
        manifest = manifest.with_modalities(config.modalities)
    spec = get_model(config.model)
    features, file_problems, widths = _load_features(manifest, config, spec, jobs=4)
    problems = list(manifest.problems) + file_problems
    if problems and config.on_bad_file == "fail":
        raise DataProblemError(problems, hint=SKIP_HINT)
    bad_ids = {p.utterance_id for p in problems if p.utterance_id}
    dataset_level = [p for p in problems if not p.utterance_id]
    if dataset_level:
        raise DataProblemError(dataset_level)
    keep = ~manifest.table["utterance_id"].isin(bad_ids).to_numpy()
    if spec.input == "text":
        manifest = replace(manifest, modalities=(TRANSCRIPT,))
    elif TRANSCRIPT in features:
        manifest = replace(manifest, modalities=(*manifest.modalities, TRANSCRIPT))
    return PreparedData(manifest.without(bad_ids), _drop(features, keep), problems, widths)


def _system_inputs(data: PreparedData, config: RunConfig, spec: ModelSpec) -> dict[str, Any]:
    modalities = list(data.manifest.modalities)
    if spec.input == "text":
        return {TRANSCRIPT: data.features[TRANSCRIPT][:, None]}
    if spec.input == "sequence":
        inputs = {m: as_object_array([data.features[m]]) for m in modalities}
        all_modalities = as_object_array([data.features[m] for m in modalities])
        early = all_modalities if spec.multimodal else frame_level_concatenation(all_modalities)
        inputs["model_fusion" if spec.multimodal else "early"] = early
        return {name: packed(cells) for name, cells in inputs.items()}  # shared by fold workers
    inputs = {m: data.features[m] for m in modalities if m != TRANSCRIPT}
    if len(inputs) >= 2:
        inputs["early"] = np.hstack(list(inputs.values()))
    if TRANSCRIPT in modalities:
        inputs[TRANSCRIPT] = data.features[TRANSCRIPT][:, None]
    return inputs


def layer_counts(data: PreparedData, config: RunConfig, spec: ModelSpec) -> dict[str, int]:
    """Per modality pooled ``select`` (every encoder layer kept, `models.layer_selector`), its
    number of layers: pooled width / frame width."""
    if spec.input != "pooled":
        return {}
    info = data.manifest.modality_info
    return {m: data.features[m].shape[1] // data.widths[m] for m in data.manifest.modalities
            if m != TRANSCRIPT and config.pooling_for(m, info.get(m, {}).get("kind")) == "select"}


def _checked_folds(data: PreparedData, config: RunConfig):
    """The outer folds, after checking the split is possible (before the splitter can fail on
    it, e.g. k5 with 3 speakers) and that every training fold has every class."""
    table, y = data.manifest.table, data.manifest.y
    problems = split_problems(config.split, table)
    if problems:
        raise DataProblemError(problems)
    folds = make_outer_folds(config.split, table, y, config.seed)
    problems = fold_problems(folds, table, y, data.manifest.label_names)
    if problems:
        raise DataProblemError(problems)
    return folds


DASK_CONNECT_SECONDS = 10
LOCAL_SCHEDULER = "local"
"""``--scheduler local``: a Dask cluster of `local_jobs` worker processes on this machine."""
JOBQUEUE_SCHEDULER = "jobqueue"
"""``dask_scheduler: jobqueue``: batch jobs described by the config's ``jobqueue`` section."""


def _dask_client(config: RunConfig):
    """A Dask client for the scheduler at ``config.dask_scheduler``, for a new local cluster of
    `local_jobs` single-threaded worker processes when it is ``local``, or for batch jobs
    (``config.jobqueue``) when it is ``jobqueue``; a ConfigError naming the address when it is
    malformed or nothing answers within DASK_CONNECT_SECONDS."""
    from emofusion.errors import require

    distributed = require("dask.distributed", "cluster", "The dask backend")
    address = config.dask_scheduler
    if address == LOCAL_SCHEDULER:
        return distributed.Client(n_workers=local_jobs(config), threads_per_worker=1,
                                  processes=True, dashboard_address=None, set_as_default=False)
    if address == JOBQUEUE_SCHEDULER:
        from emofusion.cluster import jobqueue_cluster

        batch = jobqueue_cluster(config.jobqueue)
        batch.scale(jobs=config.jobqueue.jobs)
        return distributed.Client(batch, set_as_default=False)
    try:
        return distributed.Client(address, timeout=DASK_CONNECT_SECONDS, set_as_default=False)
    except (OSError, ValueError) as exc:  # timeout / refused, or a malformed address
        raise ConfigError(
            f"cannot reach the Dask scheduler at {address} ({exc}). Start one on the cluster "
            f"with `dask scheduler` and its workers with `dask worker {address} --nthreads 1`, "
            "check the address (--scheduler tcp://HOST:8786), or run locally with --backend "
            "loky") from exc


def _fold_outputs(todo: list, setup, config: RunConfig, console: Console):
    """Each fold's output as it finishes. A fold is one task per base system (`fold_tasks`),
    combined when all its tasks are done: on the Dask cluster (the setup scattered once; its
    workers' threads set the parallelism) or in `local_jobs` loky processes (each task receives
    only its base's input)."""
    tasks = fold_tasks(todo, setup)
    if config.backend == "dask":
        from emofusion import cluster

        with _dask_client(config) as client:
            workers = cluster.worker_summary(client)
            console.print(f"{len(todo)} folds ({len(tasks)} tasks) on {workers['workers']} Dask "
                          f"workers ({workers['threads']} threads)")
            if workers["multi_threaded"]:
                console.print(f"[yellow]workers {', '.join(workers['multi_threaded'])} have "
                              "several threads, but run one task at a time: start them with "
                              "--nthreads 1")
            try:
                yield from cluster.run_folds(client, todo, setup)
            finally:
                if config.dask_scheduler == JOBQUEUE_SCHEDULER:
                    client.cluster.close()  # cancels the batch jobs
        return
    with parallel_config(backend="loky"):
        parallel = Parallel(n_jobs=min(local_jobs(config), len(tasks)),
                            return_as="generator_unordered")
        outputs = parallel(delayed(run_base)(fold, name, setup.for_base(name))
                           for fold, name in tasks)
        yield from combined_folds(todo, setup, outputs)


def local_jobs(config: RunConfig) -> int:
    """Worker processes on this machine: `config.jobs`; as in joblib, -1 means all cores, -2 all
    but one, and so on (at least one)."""
    if config.jobs > 0:
        return config.jobs
    return max(1, (os.cpu_count() or 1) + 1 + config.jobs)


def _run_folds(folds, setup, config: RunConfig, console: Console, progress: bool,
               folder: RunFolder) -> list[FoldOutput]:
    """Run the folds without a checkpoint in `folder`, saving each as it completes; returns
    every fold's output read back from its checkpoint, in fold order (so a resumed run and an
    uninterrupted one report the same values)."""
    finished = folder.finished()
    todo = [fold for fold in folds if fold.index not in finished]
    if len(todo) < len(folds):
        console.print(f"resuming {folder.path}: {len(folds) - len(todo)} of {len(folds)} folds "
                      "already finished")
    columns = (TextColumn("[bold]folds"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task("folds", total=len(folds), completed=len(folds) - len(todo))
        if todo:
            for output in _fold_outputs(todo, setup, config, console):
                folder.save(output)
                bar.advance(task)
    return [folder.load(fold) for fold in folds]


def _write_run_folder(run_dir: Path, config: RunConfig, predictions: pd.DataFrame,
                      outputs: list[FoldOutput]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config.to_yaml())
    predictions.to_csv(run_dir / "predictions.csv", index=False)
    details = [{"fold": o.fold.index, "held_out": list(o.fold.held_out), "seconds": o.seconds,
                "systems": o.searches} for o in outputs]
    (run_dir / "folds.json").write_text(json.dumps(details, indent=1, default=str))


PROTOCOL_TITLES = {
    "speaker_independent": "speaker-independent (test speakers unseen, nothing fitted on them)",
    "speaker_adaptive": "speaker-adaptive (each speaker normalised with its own unlabelled "
                        "utterances, test speakers included)",
}


def report_title(config: RunConfig) -> str:
    """The report's title: the run and its declared evaluation protocol."""
    return f"emofusion run, {PROTOCOL_TITLES[config.protocol]}"


def print_summary(result: RunResult, console: Console) -> None:
    """The summary table printed at the end of a run."""
    table = Table(title=f"emofusion: {result.run_dir}")
    summary = result.summary().reset_index()
    for column in summary.columns:
        table.add_column(str(column))
    for _, row in summary.iterrows():
        table.add_row(*[str(v) for v in row])
    console.print(table)
    if result.dropped:
        console.print(f"[yellow]{len(result.dropped)} utterance problem(s) skipped; see report.")
    console.print(f"report: {result.run_dir / 'report.html'}")


def run(config: RunConfig, *, progress: bool = True, console: Console | None = None,
        resume: bool = False, overwrite: bool = False) -> RunResult:
    """Run the experiment a config describes and write its run folder.

    Each finished fold is saved in ``<out>/folds/`` as it completes (`RunFolder`).

    Args:
        resume: continue the interrupted run in ``config.out``: only folds without a checkpoint
            are computed; refused when the configuration or data changed.
        overwrite: replace the run in ``config.out``. Without either flag, a non-empty
            ``config.out`` is refused.

    Returns:
        The `RunResult` (predictions, metrics, audit, dropped utterances, per-fold details).
    """
    from emofusion.report.writer import write_report

    console = console or Console(stderr=True)
    folder = RunFolder(config.out, resume=resume, overwrite=overwrite)
    spec = get_model(config.model)
    data = prepare_data(config)
    manifest, y = data.manifest, data.manifest.y
    folds = _checked_folds(data, config)
    run_warnings = []
    if config.split == "random":
        warnings.warn(RANDOM_SPLIT_WARNING, stacklevel=2)
        console.print(f"[bold red]WARNING: {RANDOM_SPLIT_WARNING}")
        run_warnings.append(RANDOM_SPLIT_WARNING)
    setup = make_setup(config, _system_inputs(data, config, spec), y, manifest.speakers,
                       list(manifest.modalities), len(manifest.label_names),
                       layer_counts(data, config, spec))
    data_hash = data_sha256(manifest.table, data.features)
    run_provenance = folder.begin(config, data_hash, provenance(data_hash))
    outputs = _run_folds(folds, setup, config, console, progress, folder)
    predictions = predictions_table(outputs, manifest.table, y, manifest.label_names)
    audit = build_audit(folds, [o.inner_speakers() for o in outputs], manifest.speakers,
                        manifest.table, config, spec.input, [o.searches for o in outputs])
    _write_run_folder(config.out, config, predictions, outputs)
    metrics = write_report(
        config.out, predictions, manifest.label_names, system_kinds(setup),
        config=config.model_dump(mode="json"), audit=audit,
        dropped=[p.to_dict() for p in data.dropped], warnings=run_warnings,
        n_boot=config.n_bootstrap, seed=config.seed, jobs=local_jobs(config),
        provenance=run_provenance, title=report_title(config))
    return RunResult(config, config.out, predictions, metrics, audit, data.dropped, outputs)
