"""Every system of a run, fitted by one implementation for `emofusion run` (on each outer fold's
training speakers) and `emofusion train` (on all speakers), always with the speaker groups.

Systems: one per base modality (a pooled feature set, frame sequences, or the transcripts),
``early`` (the model on the concatenated pooled modalities; ``model_fusion`` for a multimodal
model), ``late_vote`` / ``late_mean`` (the unimodal models fused, `fusion.late`) and ``stacking``
(a meta-learner on their out-of-fold probabilities, `fusion.stacking`). The unimodal models are
fitted once and shared by the late and stacking systems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from emofusion.evaluation.nested import SearchedClassifier
from emofusion.features.sequences import is_pooled
from emofusion.fusion.late import LateFusionClassifier, fit_base
from emofusion.fusion.stacking import StackingFusionClassifier
from emofusion.models.pipeline import build_pipeline, classifier_prefix, core_classifier
from emofusion.models.registry import get_model

LATE_RULES = {"late_vote": "vote", "late_mean": "mean"}
FUSED_INPUTS = ("early", "model_fusion")


@dataclass(frozen=True)
class SystemPlan:
    """Which systems are fitted and how each base model is searched.

    Attributes:
        modalities: the base modalities (each is a unimodal system and a late/stacking input).
        early_name: ``early``, ``model_fusion`` or None.
        fusions: requested late/stacking systems.
        report_unimodal: whether the unimodal systems are reported (they are always fitted
            when a late or stacking system needs them).
        models: per base input (a modality or the early input), the registry model name.
        grid: a grid that replaces the default grid of `grid_model` (the run's model; not the
            transcript model's), or None.
        grid_model: the model `grid` is for.
        imbalance, scaling, inner_folds, scoring, seed, device: the run's options (`device`:
            where PyTorch models train).
    """

    modalities: tuple[str, ...]
    early_name: str | None
    fusions: tuple[str, ...]
    report_unimodal: bool
    models: dict[str, str]
    grid: dict[str, list[Any]] | None
    grid_model: str
    imbalance: str
    scaling: str
    inner_folds: int
    scoring: str
    seed: int
    device: str = "cpu"

    def systems(self) -> list[str]:
        """The reported systems, in report order."""
        unimodal = list(self.modalities) if self.report_unimodal else []
        return [*unimodal, *filter(None, [self.early_name]), *self.fusions]

    def base_names(self, wanted: list[str]) -> list[str]:
        """The base systems (fitted by a search) that `wanted` systems need."""
        needs_unimodal = any(s in self.modalities or s in self.fusions for s in wanted)
        names = list(self.modalities) if needs_unimodal else []
        return names + [s for s in wanted if s in FUSED_INPUTS]

    def base_estimator(self, name: str) -> SearchedClassifier:
        """The unfitted search of one base system: its model, or each member of a portfolio."""
        spec = get_model(self.models[name])
        members = spec.portfolio or (spec.name,)
        candidates = []
        for member in members:
            member_spec = get_model(member)
            overridden = self.grid is not None and member == self.grid_model
            grid = self.grid if overridden else member_spec.grid
            pipeline = build_pipeline(member_spec, imbalance=self.imbalance, scaling=self.scaling,
                                      seed=self.seed)
            if "device" in core_classifier(pipeline).get_params():  # PyTorch models
                pipeline.set_params(**{f"{classifier_prefix(pipeline)}device": self.device})
            candidates.append((member, pipeline, grid))
        return SearchedClassifier(candidates, self.inner_folds, self.scoring,
                                  spec.size_limits or None)

    def fusion_estimator(self, system: str, inputs: dict[str, Any]):
        """The unfitted late-fusion or stacking estimator over the base modalities."""
        bases = [(m, self.base_estimator(m)) for m in self.modalities]
        columns = fusion_columns(inputs, self.modalities)
        if system == "stacking":
            balanced = "balanced" if self.imbalance != "none" else None
            return StackingFusionClassifier(bases, columns, self.inner_folds, self.seed, balanced)
        return LateFusionClassifier(bases, columns, rule=LATE_RULES[system])


def fusion_columns(inputs: dict[str, Any], modalities: tuple[str, ...]) -> list[tuple[int, int]]:
    """(start, stop) columns of each modality in `fusion_input`."""
    if all(is_pooled(inputs[m]) for m in modalities):
        stops = np.cumsum([inputs[m].shape[1] for m in modalities])
        return [(int(stop - inputs[m].shape[1]), int(stop)) for m, stop in zip(modalities, stops,
                                                                                strict=True)]
    return [(j, j + 1) for j in range(len(modalities))]


def fusion_input(inputs: dict[str, Any], modalities: tuple[str, ...]):
    """The input of late fusion and stacking: the pooled modalities side by side, (n, d_total);
    or, when a modality is not a pooled matrix (frames, transcripts), an (n, n_modalities)
    object array with one cell per row and modality (pooled rows become (d,) vectors)."""
    blocks = [inputs[m] for m in modalities]
    if all(is_pooled(X) for X in blocks):
        return np.hstack(blocks)
    cells = np.empty((len(blocks[0]), len(blocks)), dtype=object)
    for j, X in enumerate(blocks):
        if is_pooled(X):
            for i, row in enumerate(X):
                cells[i, j] = row
        else:
            cells[:, j] = np.asarray(X, dtype=object).reshape(len(X), -1)[:, 0]
    return cells


def system_inputs(plan: SystemPlan, inputs: dict[str, Any], systems: list[str]) -> dict[str, Any]:
    """What each system's estimator consumes, from the per-input matrices (the fusion input is
    built once and shared by late fusion and stacking)."""
    fusions = [s for s in systems if s in plan.fusions]
    fused = fusion_input(inputs, plan.modalities) if fusions else None
    return {s: fused if s in fusions else inputs[s] for s in systems}


def take_rows(inputs: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """Every input restricted to `rows`."""
    return {name: X[rows] for name, X in inputs.items()}


def fit_systems(plan: SystemPlan, inputs: dict[str, Any], y: np.ndarray, groups: np.ndarray,
                wanted: list[str]) -> dict[str, Any]:
    """Fit the `wanted` systems on these rows.

    Args:
        plan: the systems and their searches.
        inputs: per base input, the training rows (n, ...).
        y: (n,) class codes.
        groups: (n,) speakers; every search, early stopping and stacking fold is grouped by them.
        wanted: system names (see `SystemPlan.systems`).

    Returns:
        system name -> fitted estimator taking that system's entry of `system_inputs`.
    """
    fitted = {name: fit_base(plan.base_estimator(name), inputs[name], y, groups)
              for name in plan.base_names(wanted)}
    systems = {name: fitted[name] for name in wanted if name in fitted}
    for name in wanted:
        if name in plan.fusions:
            estimator = plan.fusion_estimator(name, inputs)
            bases = [fitted[m] for m in plan.modalities]
            if name == "stacking":
                systems[name] = estimator.use_fitted(bases, fusion_input(inputs, plan.modalities),
                                                     y, groups)
            else:
                systems[name] = estimator.use_fitted(bases, y)
    return systems


def search_records(systems: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per system, what its search chose (folds.json): model, parameters, inner score and
    inner speakers; stacking records the speakers of its out-of-fold splits."""
    records = {}
    for name, estimator in systems.items():
        if isinstance(estimator, SearchedClassifier):
            records[name] = estimator.search_record()
        elif isinstance(estimator, StackingFusionClassifier):
            records[name] = {"inner_speakers": estimator.inner_speakers_}
    return records
