"""Run a whole experiment: load and check the data, split by speaker, train every system on
every outer fold (folds in parallel), and write the run folder.

Systems computed per outer fold:

* one per modality (the model on that modality's pooled features or frame sequences);
* ``early``: the model on the concatenated modalities (``model_fusion`` for a multimodal model);
* ``late_vote`` / ``late_mean``: the unimodal models' probabilities fused (`fusion.late`);
* ``stacking``: a meta-learner on the unimodal models' out-of-fold probabilities of the training
  speakers (`fusion.stacking`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from emofusion.config import TRANSCRIPT, RunConfig
from emofusion.evaluation.splits import OuterFold
from emofusion.features.normalization import normalise_inputs
from emofusion.features.sequences import is_pooled
from emofusion.fusion.systems import (
    SystemPlan,
    fit_systems,
    search_records,
    system_inputs,
    take_rows,
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
    """

    inputs: dict[str, Any]
    y: np.ndarray
    speakers: np.ndarray
    plan: SystemPlan
    n_classes: int
    blas_threads: int = 1  # more BLAS threads per worker made folds several times slower here

    @property
    def modalities(self) -> list[str]:
        return list(self.plan.modalities)


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


def run_fold(fold: OuterFold, setup: FoldSetup) -> FoldOutput:
    """Fit every system on the fold's training speakers (`fusion.systems.fit_systems`, the same
    code `emofusion train` runs) and predict its test speakers."""
    start = time.perf_counter()
    plan = setup.plan
    with threadpool_limits(limits=setup.blas_threads):
        inputs = normalise_inputs(setup.inputs, setup.speakers, plan.scaling, fold.train)
        train, test = take_rows(inputs, fold.train), take_rows(inputs, fold.test)
        systems = fit_systems(plan, train, setup.y[fold.train], setup.speakers[fold.train],
                              plan.systems())
        test_inputs = system_inputs(plan, test, list(systems))
        probabilities = {name: full_probabilities(model, test_inputs[name], setup.n_classes)
                         for name, model in systems.items()}
    return FoldOutput(fold, probabilities, search_records(systems), time.perf_counter() - start)


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


def make_plan(config: RunConfig, inputs: dict[str, Any], modalities: list[str]) -> SystemPlan:
    """The systems a config asks for, over these base modalities (`inputs`: their matrices; early
    fusion concatenates the pooled ones)."""
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
    return SystemPlan(
        modalities=tuple(modalities), early_name=early, fusions=fusions,
        report_unimodal="unimodal" in config.systems or len(modalities) < 2, models=models,
        grid=config.param_grid, grid_model=config.model, imbalance=config.imbalance,
        scaling=config.scaling, inner_folds=config.inner_folds, scoring=config.scoring, seed=config.seed,
        device=config.device)


def make_setup(config: RunConfig, inputs: dict[str, Any], y: np.ndarray, speakers: np.ndarray,
               modalities: list[str], n_classes: int) -> FoldSetup:
    """The fold workers' shared setup from a config and prepared inputs."""
    return FoldSetup(inputs=inputs, y=y, speakers=speakers,
                     plan=make_plan(config, inputs, modalities), n_classes=n_classes)
