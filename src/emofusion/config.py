"""The typed description of one run. The CLI only builds a `RunConfig`; YAML files load into it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from emofusion.errors import ConfigError
from emofusion.features.pooling import POOLING_NAMES, known_pooling

UNIMODAL = "unimodal"
FUSION_SYSTEMS = ("early", "late_vote", "late_mean", "stacking")
SYSTEM_CHOICES = (UNIMODAL, *FUSION_SYSTEMS)
DEFAULT_POOLING = {"visual": "mean", "acoustic": "stats", "lexical": "mean"}
TRANSCRIPT = "transcript"
PROTOCOLS = ("speaker_independent", "speaker_adaptive")
POOLING_CHOICES = (*POOLING_NAMES, "auto")
MULTICLASS_SCORERS = (
    "balanced_accuracy", "accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro",
    "precision_micro", "precision_weighted", "recall_macro", "recall_micro", "recall_weighted",
    "jaccard_macro", "jaccard_micro", "jaccard_weighted", "matthews_corrcoef",
)
"""scikit-learn scorer names for the inner search: scores of predicted classes that work for
several classes. Binary-only (`f1`, `roc_auc`), regression and clustering scorers fail or mean
nothing on emotion classes; probability scorers (`neg_log_loss`, `roc_auc_ovr`) are undefined on
an inner fold whose held-out speakers lack a class, which speaker-grouped folds often have."""


class JobQueueSettings(BaseModel):
    """An HPC batch system's Dask workers (``dask_scheduler: jobqueue``; dask-jobqueue).

    Each batch job runs `cores` single-threaded worker processes; `jobs` jobs are submitted.
    """

    model_config = ConfigDict(extra="forbid")

    system: Literal["slurm", "pbs", "sge", "lsf"] = Field(description="the batch system")
    cores: int = Field(1, ge=1, description="cores per job (one worker process each)")
    memory: str = Field("4GB", description="memory per job, e.g. 16GB")
    walltime: str = Field("01:00:00", description="time limit per job, HH:MM:SS (LSF: HH:MM)")
    queue: str | None = Field(None, description="queue or partition")
    account: str | None = Field(None, description="account or project charged")
    jobs: int = Field(1, ge=1, description="jobs to submit")
    interface: str | None = Field(None, description="network interface the workers reach the "
                                  "scheduler on, e.g. ib0")
    job_extra_directives: list[str] = Field(default_factory=list,
                                            description="more batch directives, e.g. --exclusive")
    job_script_prologue: list[str] = Field(
        default_factory=list, description="shell lines before the worker starts, e.g. "
        "'source ~/venv/bin/activate' (the workers need this environment)")


class RunConfig(BaseModel):
    """Everything that determines a run's results.

    Systems: ``unimodal`` (each modality alone), ``early`` (concatenation of pooled features),
    ``late_vote`` (majority vote of the unimodal models), ``late_mean`` (averaged probabilities),
    ``stacking`` (meta-learner on out-of-fold probabilities of the training speakers).
    """

    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(description="dataset CSV (course layout or generic manifest)")
    out: Path = Field(Path("runs/latest"), description="run folder to write")
    features_root: Path | None = Field(None, description="folder or .zip the CSV paths are relative to")
    modalities: list[str] | None = Field(None, description="modalities to use; default all")
    systems: list[str] = Field(list(SYSTEM_CHOICES), description="systems to evaluate")
    split: str = Field("speaker", description="speaker | session | k<N> | random | official | transcript")
    pooling: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_POOLING),
                                    description="pooling per modality: mean | max | std | stats | auto")
    default_pooling: str = Field(
        "auto", description="pooling for modalities not in `pooling`; auto = stats for frame "
        "sequences, mean for utterance vectors (from features.json)")
    model: str = Field("lda", description="model for unimodal and early-fusion systems")
    text_model: str = Field("tfidf", description="model of the transcript system")
    transcripts: Literal["auto", "on", "off"] = Field(
        "auto", description="add a transcript system (the dataset's `transcript` column) beside "
        "the feature modalities; auto = when the transcripts vary (not a few fixed sentences)")
    protocol: Literal["speaker_independent", "speaker_adaptive"] = Field(
        "speaker_independent", description="speaker_adaptive normalises each speaker with the "
        "statistics of its own unlabelled utterances, test speakers included (scaling: speaker)")
    param_grid: dict[str, list[Any]] | None = Field(None, description="override the model's grid")
    scaling: Literal["standard", "speaker", "speaker_strict", "none"] = "standard"
    imbalance: Literal["none", "class_weight", "oversample", "smote"] = Field(
        "class_weight", description="class_weight (default): classes weighted equally, the "
        "decision rule that maximises UA, the default scoring; none: class frequencies as priors")
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu", description="where PyTorch models train and predict (auto = cuda when available)")
    inner_folds: int = Field(3, ge=2, description="speaker-grouped folds of the nested search")
    scoring: str = Field("balanced_accuracy", description="inner-search criterion (sklearn scorer)")
    stacking_meta: Literal["logreg"] = "logreg"
    on_bad_file: Literal["fail", "skip"] = "fail"
    jobs: int = Field(2, description="parallel outer folds (-1 = all cores)")
    backend: Literal["loky", "dask"] = "loky"
    dask_scheduler: str | None = Field(
        None, description="dask scheduler address, e.g. tcp://host:8786, local, or "
        "jobqueue (batch jobs, see `jobqueue`)")
    cache_dir: Path | None = Field(None, description="pooled-feature cache; default ~/.cache/emofusion")
    use_cache: bool = True
    seed: int = 0
    n_bootstrap: int = Field(1000, ge=100)
    mlflow: str | None = Field(None, description="log the finished run to MLflow: a folder (an "
                               "SQLite store inside) or a tracking URI; needs emofusion[tracking]")
    jobqueue: JobQueueSettings | None = Field(
        None, description="HPC batch jobs as Dask workers (with dask_scheduler: jobqueue)")

    @field_validator("systems")
    @classmethod
    def _known_systems(cls, systems: list[str]) -> list[str]:
        unknown = [s for s in systems if s not in SYSTEM_CHOICES]
        if unknown:
            raise ValueError(f"unknown systems {unknown}; choose from {list(SYSTEM_CHOICES)}")
        return systems

    @field_validator("split")
    @classmethod
    def _known_split(cls, split: str) -> str:
        folds = re.fullmatch(r"k(\d+)", split)
        if split in ("speaker", "session", "random", "official", "transcript") or (
            folds and int(folds[1]) >= 2
        ):
            return split
        raise ValueError(f"split must be speaker, session, k<N> with N >= 2 folds (e.g. k5), "
                         f"random, official or transcript; got '{split}'")

    @field_validator("pooling")
    @classmethod
    def _known_poolings(cls, pooling: dict[str, str]) -> dict[str, str]:
        for modality, method in pooling.items():
            _check_pooling(method, f"pooling {modality}={method}")
        return pooling

    @field_validator("default_pooling")
    @classmethod
    def _known_default_pooling(cls, method: str) -> str:
        return _check_pooling(method, f"default_pooling '{method}'")

    @field_validator("scoring")
    @classmethod
    def _multiclass_scorer(cls, scoring: str) -> str:
        if scoring not in MULTICLASS_SCORERS:
            raise ValueError(f"'{scoring}' is not a scikit-learn scorer for several classes; "
                             f"choose from {', '.join(MULTICLASS_SCORERS)}")
        return scoring

    @field_validator("jobs")
    @classmethod
    def _some_workers(cls, jobs: int) -> int:
        if jobs == 0:
            raise ValueError("0 workers cannot run anything; give a number of workers, -1 for "
                             "all cores or -2 for all but one")
        return jobs

    @field_validator("dask_scheduler")
    @classmethod
    def _scheduler_needs_dask(cls, address: str | None, info: ValidationInfo) -> str | None:
        if address is not None and info.data.get("backend", "dask") != "dask":
            raise ValueError(f"a scheduler ({address}) is used only with backend dask; add "
                             "--backend dask, or drop --scheduler to run the folds locally")
        return address

    @model_validator(mode="after")
    def _dask_needs_a_scheduler(self) -> RunConfig:
        if self.backend == "dask" and self.dask_scheduler is None:
            raise ValueError("backend dask needs a scheduler: --scheduler tcp://HOST:8786 for a "
                             "running cluster, or --scheduler local for a Dask cluster of --jobs "
                             "worker processes on this machine")
        if (self.dask_scheduler == "jobqueue") != (self.jobqueue is not None):
            raise ValueError("dask_scheduler: jobqueue and a `jobqueue:` section (system, cores, "
                             "memory, walltime, queue, jobs) go together in the run config")
        return self

    @field_validator("param_grid")
    @classmethod
    def _grid_matches_model(cls, grid: dict[str, list[Any]] | None,
                            info: ValidationInfo) -> dict[str, list[Any]] | None:
        if grid is not None and "model" in info.data:  # fields validate in order: model first
            _check_param_grid(info.data["model"], grid)
        return grid

    @model_validator(mode="after")
    def _resampling_fits_the_model(self) -> RunConfig:
        from emofusion.models.pipeline import check_resampling
        from emofusion.models.registry import get_model

        try:
            check_resampling(get_model(self.model), self.imbalance)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return self

    @field_validator("device")
    @classmethod
    def _device_exists(cls, device: str) -> str:
        if device == "cuda":
            from emofusion.features.extractors.base import torch_device

            try:
                torch_device(device, "deep")
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        return device

    @model_validator(mode="after")
    def _declared_protocol(self) -> RunConfig:
        """`scaling: speaker` uses test speakers' unlabelled features: it is the speaker-adaptive
        protocol, and that protocol means per-speaker scaling."""
        if self.scaling == "speaker":
            object.__setattr__(self, "protocol", "speaker_adaptive")
        elif self.protocol == "speaker_adaptive":
            object.__setattr__(self, "scaling", "speaker")
        return self

    def pooling_for(self, modality: str, kind: str | None = None) -> str:
        """The pooling method of one modality; `kind` resolves auto: ``mean`` for ``vector``,
        ``select`` for ``layers`` (every layer kept; the run chooses the layer, or a layer
        weighting, on the training speakers' inner folds), ``stats`` for frame sequences."""
        method = self.pooling.get(modality, self.default_pooling)
        if method == "auto":
            return {"vector": "mean", "layers": "select"}.get(kind, "stats")
        return method

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, path: Path, **overrides: Any) -> RunConfig:
        """Load a YAML config; keyword overrides (e.g. from the command line) win."""
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} must be a YAML mapping of option: value lines "
                              f"(e.g. 'split: session'); it holds a {type(data).__name__}")
        return build_config({**data, **{k: v for k, v in overrides.items() if v is not None}})


def _check_pooling(method: str, what: str) -> str:
    if method != "auto" and not known_pooling(method):
        raise ValueError(f"{what}: unknown pooling method; choose from {', '.join(POOLING_CHOICES)}")
    return method


def _check_param_grid(model: str, grid: dict[str, list[Any]]) -> None:
    """Every key of `grid` must be a parameter of `model`'s estimator, with at least one value."""
    from emofusion.models.registry import get_model

    try:
        spec = get_model(model)
    except ConfigError as exc:  # unknown model name
        raise ValueError(str(exc)) from exc
    if spec.portfolio:
        raise ValueError(f"param_grid needs a single model; '{model}' searches the grids of its "
                         f"members {list(spec.portfolio)} (choose one of them with --model)")
    parameters = spec.build(0, None).get_params()
    unknown = sorted(set(grid) - set(parameters))
    if unknown:
        raise ValueError(f"param_grid keys {unknown} are not parameters of model '{model}'; "
                         f"its parameters: {', '.join(sorted(parameters))}")
    empty = sorted(key for key, values in grid.items() if not values)
    if empty:
        raise ValueError(f"param_grid {empty}: give at least one value to try")


def build_config(values: dict[str, Any]) -> RunConfig:
    """Validate values into a `RunConfig`, turning pydantic's errors into one clear message."""
    try:
        return RunConfig(**values)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {details}") from exc
