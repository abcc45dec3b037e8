"""Run a whole experiment: load and check the data, split by speaker, train every system on
every outer fold, and write the run folder. The work of a fold is split into one task per base
system (`run_base`; tasks of all folds run in parallel), then combined (`combine_fold`).

Systems computed per outer fold:

* one per modality (the model on that modality's pooled features or frame sequences);
* ``early``: the model on the concatenated modalities (``model_fusion`` for a multimodal model);
* ``late_vote`` / ``late_mean``: the unimodal models' probabilities fused (`fusion.late`);
* ``stacking``: a meta-learner on the unimodal models' out-of-fold probabilities of the training
  speakers (`fusion.stacking`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from emofusion.config import TRANSCRIPT, RunConfig
from emofusion.errors import ConfigError
from emofusion.evaluation.nested import input_shape
from emofusion.evaluation.splits import OuterFold
from emofusion.features.normalization import normalise_inputs
from emofusion.features.sequences import is_pooled
from emofusion.fusion.systems import (
    SystemPlan,
    fit_base_system,
    fused_probabilities,
    search_record,
)


@dataclass
class FoldSetup:
    """Everything a fold worker needs; identical for all folds.

    Attributes:
        inputs: system input name (a modality or ``early``) -> X for all rows: a float
            (n, d) matrix for pooled models, an (n, 1) object array of frames (sequence models)
            or transcripts, an (n, m) object array of frames for ``model_fusion``.
        y: class codes (n,).
        speakers: (n,) speaker per row.
        plan: which systems are fitted, and how (`fusion.systems.SystemPlan`).
        n_classes: number of classes.
        normalised: the inputs are already normalised per speaker for every fold (scaling
            ``speaker``: each speaker with its own statistics, the same in every fold), so tasks
            use them as they are.
    """

    inputs: dict[str, Any]
    y: np.ndarray
    speakers: np.ndarray
    plan: SystemPlan
    n_classes: int
    normalised: bool = False
    blas_threads: int = 1  # more BLAS threads per worker made folds several times slower here

    def for_base(self, name: str) -> FoldSetup:
        """This setup with only base system `name`'s input: what its tasks need (a local worker
        then receives only that input)."""
        return replace(self, inputs={name: self.inputs[name]})


@dataclass
class FoldOutput:
    """What one outer fold produced."""

    fold: OuterFold
    probabilities: dict[str, np.ndarray]
    searches: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def inner_speakers(self) -> dict[str, list]:
        """Per system, the (training, validation) speakers of each inner split it used."""
        return {name: info["inner_speakers"] for name, info in self.searches.items()}


def full_probabilities(model, X, n_classes: int) -> np.ndarray:
    """(n, n_classes) probabilities, with zero columns for classes the model never saw."""
    out = np.zeros((len(X), n_classes))
    out[:, model.classes_] = model.predict_proba(X)
    return out


@dataclass
class BaseOutput:
    """What one base system (`SystemPlan.base_names`) produced on one outer fold: one task.

    Attributes:
        fold: the outer fold's index.
        name: the base system.
        probabilities: (n_test, n_classes) probabilities of the fold's test rows.
        search: what its search chose (`fusion.systems.search_record`).
        out_of_fold: (n_train, n_classes) stacking out-of-fold probabilities of the training
            rows, or None when the run has no stacking over this base.
        seconds: wall time of the task.
    """

    fold: int
    name: str
    probabilities: np.ndarray
    search: dict[str, Any]
    out_of_fold: np.ndarray | None
    seconds: float


def fold_bases(setup: FoldSetup) -> list[str]:
    """The base systems each outer fold fits, one task each."""
    return setup.plan.base_names(setup.plan.systems())


def _fold_input(fold: OuterFold, name: str, setup: FoldSetup):
    """Base system `name`'s input of all rows, normalised as the fold's scaling option says
    (per speaker, with the statistics of the fold's training speakers for ``speaker_strict``)."""
    if setup.normalised:
        return setup.inputs[name]
    return normalise_inputs({name: setup.inputs[name]}, setup.speakers, setup.plan.scaling,
                            fold.train)[name]


def run_base(fold: OuterFold, name: str, setup: FoldSetup,
             inner_scores: dict[tuple[str, int], float | None] | None = None) -> BaseOutput:
    """Fit base system `name` on the fold's training speakers (`fusion.systems.fit_base_system`,
    the code `emofusion train` runs) and predict its test speakers. `inner_scores`: the scores
    of its grid points, computed beforehand by `score_grid_point` tasks (None: it searches)."""
    start = time.perf_counter()
    plan = setup.plan
    with threadpool_limits(limits=setup.blas_threads):
        X = _fold_input(fold, name, setup)
        fitted = fit_base_system(plan, name, X[fold.train], setup.y[fold.train],
                                 setup.speakers[fold.train], plan.stacks(name), inner_scores)
        probabilities = full_probabilities(fitted.estimator, X[fold.test], setup.n_classes)
    return BaseOutput(fold.index, name, probabilities, search_record(fitted.estimator),
                      fitted.out_of_fold, time.perf_counter() - start)


def grid_point_tasks(fold: OuterFold, name: str, setup: FoldSetup) -> list[tuple[str, int]]:
    """(candidate model, grid index) of every grid point base system `name` searches on the
    fold's training rows: one `score_grid_point` task each."""
    columns = input_shape(setup.inputs[name])[1]
    return setup.plan.base_estimator(name).grid_points((len(fold.train), columns))


def score_grid_point(fold: OuterFold, name: str, point: tuple[str, int],
                     setup: FoldSetup) -> float | None:
    """The inner score of one grid point of base system `name` on the fold's training speakers
    (a grid-candidate task; `run_base` then refits the winner given all of them)."""
    with threadpool_limits(limits=setup.blas_threads):
        X = _fold_input(fold, name, setup)
        return setup.plan.base_estimator(name).score_grid_point(
            *point, X[fold.train], setup.y[fold.train], setup.speakers[fold.train])


def combine_fold(fold: OuterFold, setup: FoldSetup, bases: list[BaseOutput]) -> FoldOutput:
    """The fold's output from its base tasks' outputs: the reported base systems as they are,
    late fusion and stacking from the bases' probabilities (`fusion.systems.fused_probabilities`;
    cheap: no model is fitted but the stacking meta-learner)."""
    start = time.perf_counter()
    plan = setup.plan
    done = {base.name: base for base in bases}
    unimodal = [done[m] for m in plan.modalities] if plan.fusions else []
    probabilities, searches = {}, {}
    with threadpool_limits(limits=setup.blas_threads):
        for name in plan.systems():
            if name in done:
                probabilities[name], record = done[name].probabilities, done[name].search
            else:
                probabilities[name], record = fused_probabilities(
                    plan, name, [base.probabilities for base in unimodal],
                    [base.out_of_fold for base in unimodal], setup.y[fold.train],
                    setup.speakers[fold.train])
            if record is not None:
                searches[name] = record
    seconds = sum(base.seconds for base in bases) + time.perf_counter() - start
    return FoldOutput(fold, probabilities, searches, seconds)


def fold_tasks(folds: list[OuterFold], setup: FoldSetup) -> list[tuple[OuterFold, str]]:
    """(fold, base system) per task of a run, fold by fold."""
    return [(fold, name) for fold in folds for name in fold_bases(setup)]


def combined_folds(folds: list[OuterFold], setup: FoldSetup,
                   outputs: Iterable[BaseOutput]) -> Iterator[FoldOutput]:
    """Each fold's output (`combine_fold`) as soon as all its base tasks' `outputs` (in any
    order) have arrived."""
    by_index = {fold.index: fold for fold in folds}
    expected = len(fold_bases(setup))
    pending: dict[int, list[BaseOutput]] = defaultdict(list)
    for output in outputs:
        pending[output.fold].append(output)
        if len(pending[output.fold]) == expected:
            yield combine_fold(by_index[output.fold], setup, pending.pop(output.fold))


def run_fold(fold: OuterFold, setup: FoldSetup) -> FoldOutput:
    """Every system of one outer fold in this process: its base tasks one after the other, then
    their combination (a run spreads the base tasks over its workers instead)."""
    return combine_fold(fold, setup, [run_base(fold, name, setup) for name in fold_bases(setup)])


def system_kinds(setup: FoldSetup) -> dict[str, str]:
    """system name -> "unimodal" | "fusion"."""
    return {name: "unimodal" if name in setup.plan.modalities else "fusion"
            for name in setup.plan.systems()}


def predictions_table(outputs: list[FoldOutput], table: pd.DataFrame, y: np.ndarray,
                      label_names: tuple[str, ...]) -> pd.DataFrame:
    """The predictions.csv table: one row per (system, test utterance) of every fold."""
    frames = []
    labels = np.array(label_names)
    for output in sorted(outputs, key=lambda o: o.fold.index):
        test = output.fold.test
        for system, probabilities in output.probabilities.items():
            frame = pd.DataFrame({
                "utterance_id": table["utterance_id"].to_numpy()[test],
                "speaker": table["speaker"].to_numpy()[test],
                "session": table["session"].to_numpy()[test],
                "fold": output.fold.index,
                "system": system,
                "true": labels[y[test]],
                "predicted": labels[probabilities.argmax(axis=1)],
            })
            for k, name in enumerate(label_names):
                frame[f"proba_{name}"] = probabilities[:, k]
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def layer_blocks(inputs: dict[str, Any], modalities: list[str], layer_counts: dict[str, int],
                 ) -> dict[str, tuple[tuple[str, int, int, int], ...]]:
    """Per base input, the (modality, start, stop, n_layers) column blocks of the modalities
    pooled ``select`` (`layer_counts`: modality -> its encoder's layer count), in the modality's
    own input and in the early-fusion concatenation of the pooled modalities."""
    blocks: dict[str, tuple[tuple[str, int, int, int], ...]] = {}
    early, start = [], 0
    for modality in (m for m in modalities if is_pooled(inputs[m])):
        width = inputs[modality].shape[1]
        if modality in layer_counts:
            blocks[modality] = ((modality, 0, width, layer_counts[modality]),)
            early.append((modality, start, start + width, layer_counts[modality]))
        start += width
    if early and "early" in inputs:
        blocks["early"] = tuple(early)
    return blocks


def make_plan(config: RunConfig, inputs: dict[str, Any], modalities: list[str],
              layer_counts: dict[str, int] | None = None) -> SystemPlan:
    """The systems a config asks for, over these base modalities (`inputs`: their matrices; early
    fusion concatenates the pooled ones; `layer_counts`: the layer count of each modality pooled
    ``select``, whose layer is chosen in front of its models)."""
    from emofusion.models.registry import get_model

    spec = get_model(config.model)
    numeric = [m for m in modalities if is_pooled(inputs[m])]
    early = None
    concatenable = spec.multimodal or spec.input == "sequence" or len(numeric) >= 2
    if "early" in config.systems and concatenable:
        early = "model_fusion" if spec.multimodal else "early"
    fusions = tuple(s for s in config.systems if s in ("late_vote", "late_mean", "stacking"))
    if len(modalities) < 2:
        early, fusions = None, ()
    models = {m: config.text_model if m == TRANSCRIPT and spec.input == "pooled" else config.model
              for m in modalities}
    if early:
        models[early] = config.model
    plan = SystemPlan(
        modalities=tuple(modalities), early_name=early, fusions=fusions,
        report_unimodal="unimodal" in config.systems or len(modalities) < 2, models=models,
        grid=config.param_grid, grid_model=config.model, imbalance=config.imbalance,
        scaling=config.scaling, inner_folds=config.inner_folds, scoring=config.scoring, seed=config.seed,
        device=config.device, layer_blocks=layer_blocks(inputs, modalities, layer_counts or {}))
    if not plan.systems():
        raise ConfigError(f"none of the systems {config.systems} can be built from the modalities "
                          f"{modalities} (early fusion and late fusion need two or more); add "
                          "'unimodal' to --systems or give more modalities")
    return plan


def make_setup(config: RunConfig, inputs: dict[str, Any], y: np.ndarray, speakers: np.ndarray,
               modalities: list[str], n_classes: int,
               layer_counts: dict[str, int] | None = None) -> FoldSetup:
    """The fold workers' shared setup from a config and prepared inputs. Under scaling
    ``speaker`` the inputs are normalised per speaker here, once for all folds (every fold
    would compute the same)."""
    plan = make_plan(config, inputs, modalities, layer_counts)
    once = plan.scaling == "speaker"
    if once:
        inputs = normalise_inputs(inputs, speakers, plan.scaling)
    return FoldSetup(inputs=inputs, y=y, speakers=speakers, plan=plan, n_classes=n_classes,
                     normalised=once)
