"""The typed description of one run. The CLI only builds a `RunConfig`; YAML files load into it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from emofusion.errors import ConfigError

UNIMODAL = "unimodal"
FUSION_SYSTEMS = ("early", "late_vote", "late_mean", "stacking")
SYSTEM_CHOICES = (UNIMODAL, *FUSION_SYSTEMS)
DEFAULT_POOLING = {"visual": "mean", "acoustic": "stats", "lexical": "mean"}


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
                                    description="pooling per modality: mean | max | std | stats")
    default_pooling: str = Field(
        "auto", description="pooling for modalities not in `pooling`; auto = stats for frame "
        "sequences, mean for utterance vectors (from features.json)")
    model: str = Field("lda", description="model for unimodal and early-fusion systems")
    param_grid: dict[str, list[Any]] | None = Field(None, description="override the model's grid")
    scaling: Literal["standard", "speaker", "speaker_strict", "none"] = "standard"
    imbalance: Literal["none", "class_weight", "oversample", "smote"] = "none"
    inner_folds: int = Field(3, ge=2, description="speaker-grouped folds of the nested search")
    scoring: str = Field("balanced_accuracy", description="inner-search criterion (sklearn scorer)")
    stacking_meta: Literal["logreg"] = "logreg"
    on_bad_file: Literal["fail", "skip"] = "fail"
    jobs: int = Field(2, description="parallel outer folds (-1 = all cores)")
    backend: Literal["loky", "dask"] = "loky"
    dask_scheduler: str | None = Field(None, description="dask scheduler address, e.g. tcp://host:8786")
    cache_dir: Path | None = Field(None, description="pooled-feature cache; default ~/.cache/emofusion")
    use_cache: bool = True
    seed: int = 0
    n_bootstrap: int = Field(1000, ge=100)

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
        if split in ("speaker", "session", "random", "official", "transcript") or re.fullmatch(
            r"k\d+", split
        ):
            return split
        raise ValueError("split must be speaker, session, k<N> (e.g. k5), random, official "
                         "or transcript")

    def pooling_for(self, modality: str, kind: str | None = None) -> str:
        """The pooling method of one modality; `kind` ("sequence" / "vector") resolves auto."""
        method = self.pooling.get(modality, self.default_pooling)
        if method == "auto":
            return "mean" if kind == "vector" else "stats"
        return method

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(cls, path: Path, **overrides: Any) -> RunConfig:
        """Load a YAML config; keyword overrides (e.g. from the command line) win."""
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        return build_config({**data, **{k: v for k, v in overrides.items() if v is not None}})


def build_config(values: dict[str, Any]) -> RunConfig:
    """Validate values into a `RunConfig`, turning pydantic's errors into one clear message."""
    try:
        return RunConfig(**values)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {details}") from exc
