"""Every system of a run, fitted by one implementation for `emofusion run` (on each outer fold's
training speakers) and `emofusion train` (on all speakers), always with the speaker groups.

Systems: one per base modality (a pooled feature set, frame sequences, or the transcripts),
``early`` (the model on the concatenated pooled modalities; ``model_fusion`` for a multimodal
model), ``late_vote`` / ``late_mean`` (the unimodal models fused, `fusion.late`) and ``stacking``
(a meta-learner on their out-of-fold probabilities, `fusion.stacking`). Each base system is
fitted once (`fit_base_system`, with its stacking out-of-fold probabilities when stacking needs
them); late fusion and stacking reuse the fitted bases (`fit_systems`, for `train`) or their
probabilities (`fused_probabilities`, for a run's folds, where each base is its own task).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emofusion.evaluation.nested import SearchedClassifier
from emofusion.features.sequences import is_pooled
from emofusion.fusion.late import LateFusionClassifier, fit_base
from emofusion.fusion.stacking import StackingFusionClassifier, modality_out_of_fold
from emofusion.models.layer_selector import LAYER_STEP_PREFIX, LayerSelector
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
        layer_blocks: per base input, the (modality, start, stop, n_layers) column blocks of
            encoder layers pooled ``select``: a `LayerSelector` in front of every candidate model chooses the
            layer (or a layer weighting) on the training speakers' inner folds.
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
    layer_blocks: dict[str, tuple[tuple[str, int, int, int], ...]] = field(default_factory=dict)

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
            pipeline.steps[:0] = self._layer_selectors(name)
            candidates.append((member, pipeline, grid))
        return SearchedClassifier(candidates, self.inner_folds, self.scoring,
                                  spec.size_limits or None)

    def _layer_selectors(self, name: str) -> list[tuple[str, LayerSelector]]:
        """Pipeline steps choosing the layers of each ``select`` block of input `name`, the last
        block first (so the earlier blocks keep their columns)."""
        blocks = sorted(self.layer_blocks.get(name, ()), key=lambda block: -block[1])
        return [(f"{LAYER_STEP_PREFIX}{modality}",
                 LayerSelector(n_layers=n_layers, columns=(start, stop), cv=self.inner_folds,
                               scoring=self.scoring))
                for modality, start, stop, n_layers in blocks]

    def stacks(self, name: str) -> bool:
        """Whether base system `name` feeds the stacking meta-learner (its out-of-fold
        probabilities on the training speakers are then needed)."""
        return "stacking" in self.fusions and name in self.modalities

    def fusion_estimator(self, system: str, columns: list[tuple[int, int]] | None = None):
        """The unfitted late-fusion or stacking estimator over the base modalities, whose
        blocks in `fusion_input` are `columns` (`fusion_columns`). Without `columns`, one
        whose modality models are None (only their names): it only fuses given probabilities
        (`fuse`; stacking after `fit_meta`)."""
        bases = [(m, None if columns is None else self.base_estimator(m)) for m in self.modalities]
        columns = columns or []
        if system == "stacking":
            balanced = "balanced" if self.imbalance != "none" else None
            return StackingFusionClassifier(bases, columns, self.inner_folds, self.seed, balanced,
                                            self.scoring)
        return LateFusionClassifier(bases, columns, rule=LATE_RULES[system])


@dataclass
class FittedBase:
    """One base system fitted on some rows.

    Attributes:
        estimator: the fitted search (`SearchedClassifier`).
        out_of_fold: (n, n_classes) probabilities of those rows from the stacking inner folds
            (`fusion.stacking.modality_out_of_fold`), or None when no stacking needs them.
    """

    estimator: SearchedClassifier
    out_of_fold: np.ndarray | None


def fit_base_system(plan: SystemPlan, name: str, X, y: np.ndarray, groups: np.ndarray,
                    out_of_fold: bool,
                    inner_scores: dict[tuple[str, int], float | None] | None = None) -> FittedBase:
    """Fit base system `name` (a modality, ``early`` or ``model_fusion``) on X (n, ...), y (n,)
    with speaker `groups` (n,); with `out_of_fold`, also its stacking out-of-fold probabilities.
    `inner_scores`: its grid points' scores on these rows, when separate tasks computed them
    (`SearchedClassifier.inner_scores`)."""
    search = plan.base_estimator(name).set_params(inner_scores=inner_scores)
    estimator = fit_base(search, X, y, groups)
    held_out = modality_out_of_fold(estimator, X, y, groups, plan.inner_folds,
                                    plan.seed) if out_of_fold else None
    return FittedBase(estimator, held_out)


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


def fit_systems(plan: SystemPlan, inputs: dict[str, Any], y: np.ndarray, groups: np.ndarray,
                wanted: list[str]) -> dict[str, Any]:
    """Fit the `wanted` systems on these rows (`emofusion train`; a run fits the same pieces as
    separate tasks: `fit_base_system` per base, `fused_probabilities` per fusion).

    Args:
        plan: the systems and their searches.
        inputs: per base input, the training rows (n, ...).
        y: (n,) class codes.
        groups: (n,) speakers; every search, early stopping and stacking fold is grouped by them.
        wanted: system names (see `SystemPlan.systems`).

    Returns:
        system name -> fitted estimator; a base system takes its input's rows, late fusion and
        stacking take `fusion_input`.
    """
    stacking = "stacking" in wanted
    fitted = {name: fit_base_system(plan, name, inputs[name], y, groups,
                                    stacking and plan.stacks(name))
              for name in plan.base_names(wanted)}
    systems = {name: fitted[name].estimator for name in wanted if name in fitted}
    for name in wanted:
        if name in plan.fusions:
            estimator = plan.fusion_estimator(name, fusion_columns(inputs, plan.modalities))
            bases = [fitted[m].estimator for m in plan.modalities]
            if name == "stacking":
                out_of_fold = [fitted[m].out_of_fold for m in plan.modalities]
                systems[name] = estimator.use_fitted(bases, y, groups, out_of_fold)
            else:
                systems[name] = estimator.use_fitted(bases, y)
    return systems


def fused_probabilities(plan: SystemPlan, system: str, probabilities: list[np.ndarray],
                        out_of_fold: list[np.ndarray | None], y: np.ndarray,
                        groups: np.ndarray) -> tuple[np.ndarray, dict[str, Any] | None]:
    """A late or stacking system's test probabilities from its base modalities' results, with
    the fusion code `fit_systems` gives `emofusion train`.

    Args:
        plan: the systems.
        system: ``late_vote``, ``late_mean`` or ``stacking``.
        probabilities: per modality (`plan.modalities` order), (n_test, n_classes) test
            probabilities of its model fitted on the training rows.
        out_of_fold: per modality, (n_train, n_classes) out-of-fold probabilities of the
            training rows (`FittedBase.out_of_fold`; stacking only).
        y: (n_train,) class codes of the training rows.
        groups: (n_train,) their speakers.

    Returns:
        (n_test, n_classes) fused probabilities, and the system's search record (or None).
    """
    estimator = plan.fusion_estimator(system)
    if system == "stacking":
        estimator.fit_meta(out_of_fold, y, groups)
    return estimator.fuse(probabilities), search_record(estimator)


def search_record(estimator) -> dict[str, Any] | None:
    """What a system's search chose (folds.json): model, parameters, inner score and inner
    speakers; stacking records the meta-learner it chose (``model``: ``logreg``, ``mean`` or a
    modality), every candidate's inner score and the speakers of its out-of-fold splits; None
    for late fusion."""
    if isinstance(estimator, SearchedClassifier):
        return estimator.search_record()
    if isinstance(estimator, StackingFusionClassifier):
        choice = estimator.meta_choice_
        return {"model": choice, "inner_score": estimator.meta_scores_[choice],
                "meta_scores": estimator.meta_scores_, "inner_speakers": estimator.inner_speakers_}
    return None
