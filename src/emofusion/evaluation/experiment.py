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

from emofusion.config import RunConfig
from emofusion.evaluation.nested import fit_with_search
from emofusion.evaluation.splits import OuterFold, fold_speakers, inner_folds
from emofusion.features.normalization import speaker_normalise
from emofusion.fusion.late import combine_probabilities
from emofusion.fusion.stacking import make_meta_learner, out_of_fold_probabilities
from emofusion.models.pipeline import build_pipeline
from emofusion.models.registry import ModelSpec, get_model

LATE_RULES = {"late_vote": "vote", "late_mean": "mean"}


@dataclass
class FoldSetup:
    """Everything a fold worker needs; identical for all folds.

    Attributes:
        inputs: system input name (a modality or ``early``) -> X for all rows: a float
            (n, d) matrix for pooled models, an (n, m) object array of frames for sequence models.
        y: class codes (n,).
        speakers: (n,) speaker per row.
        modalities: modality names (the unimodal systems).
        unimodal: whether the unimodal systems are reported (they are always trained when a
            late or stacking system needs them).
        early_name: name of the early-fusion system, or None when not requested.
        fusions: requested late/stacking systems.
        n_classes: number of classes.
    """

    inputs: dict[str, Any]
    y: np.ndarray
    speakers: np.ndarray
    modalities: list[str]
    unimodal: bool
    early_name: str | None
    fusions: list[str]
    n_classes: int
    model: str
    grid: dict[str, list[Any]]
    imbalance: str
    scaling: str
    inner_folds: int
    scoring: str
    seed: int
    blas_threads: int = 1  # more BLAS threads per worker made folds several times slower here


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


def _full_probabilities(model, X, n_classes: int) -> np.ndarray:
    """(n, n_classes) probabilities, with zero columns for classes the model never saw."""
    out = np.zeros((len(X), n_classes))
    out[:, model.classes_] = model.predict_proba(X)
    return out


def _fold_inputs(setup: FoldSetup, name: str, fold: OuterFold):
    X = setup.inputs[name]
    if setup.scaling == "speaker_strict" and X.dtype != object:
        X = speaker_normalise(X, setup.speakers, fit_rows=fold.train)
    return X[fold.train], X[fold.test]


def _train_system(setup: FoldSetup, spec: ModelSpec, name: str, fold: OuterFold):
    X_train, X_test = _fold_inputs(setup, name, fold)
    pipeline = build_pipeline(spec, imbalance=setup.imbalance, seed=setup.seed)
    result = fit_with_search(pipeline, setup.grid, X_train, setup.y[fold.train],
                             setup.speakers[fold.train], inner_folds=setup.inner_folds,
                             scoring=setup.scoring)
    probabilities = _full_probabilities(result.estimator, X_test, setup.n_classes)
    info = {"best_params": result.best_params, "inner_score": result.inner_score,
            "inner_speakers": result.inner_speakers}
    return result.estimator, probabilities, info


def _stacking(setup: FoldSetup, fold: OuterFold, models: dict[str, Any],
              test_probabilities: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
    y_train, groups = setup.y[fold.train], setup.speakers[fold.train]
    folds = inner_folds(y_train, groups, setup.inner_folds, setup.seed)
    stacked = np.hstack([
        out_of_fold_probabilities(models[m], _fold_inputs(setup, m, fold)[0], y_train, folds,
                                  setup.n_classes)
        for m in setup.modalities])
    meta = make_meta_learner(setup.seed).fit(stacked, y_train)
    test = np.hstack([test_probabilities[m] for m in setup.modalities])
    return _full_probabilities(meta, test, setup.n_classes), {
        "inner_speakers": fold_speakers(folds, groups)}


def run_fold(fold: OuterFold, setup: FoldSetup) -> FoldOutput:
    """Train and test every system on one outer fold."""
    start = time.perf_counter()
    spec = get_model(setup.model)
    output = FoldOutput(fold, {})
    with threadpool_limits(limits=setup.blas_threads):
        models = {}
        needs_unimodal = setup.unimodal or bool(setup.fusions)
        names = (setup.modalities if needs_unimodal else []) + [setup.early_name]
        for name in filter(None, names):
            models[name], output.probabilities[name], output.searches[name] = \
                _train_system(setup, spec, name, fold)
        for name in setup.fusions:
            if name in LATE_RULES:
                output.probabilities[name] = combine_probabilities(
                    [output.probabilities[m] for m in setup.modalities], LATE_RULES[name])
            else:
                output.probabilities[name], output.searches[name] = _stacking(
                    setup, fold, models, output.probabilities)
    output.seconds = time.perf_counter() - start
    return output


def system_kinds(setup: FoldSetup) -> dict[str, str]:
    """system name -> "unimodal" | "fusion"."""
    kinds = {m: "unimodal" for m in setup.modalities}
    kinds.update({name: "fusion" for name in [setup.early_name, *setup.fusions] if name})
    return kinds


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


def make_setup(config: RunConfig, inputs: dict[str, Any], y: np.ndarray, speakers: np.ndarray,
               modalities: list[str], n_classes: int) -> FoldSetup:
    """The fold workers' shared setup from a config and prepared inputs."""
    spec = get_model(config.model)
    early = None
    if "early" in config.systems:
        early = "model_fusion" if spec.multimodal else "early"
    fusions = [s for s in config.systems if s in ("late_vote", "late_mean", "stacking")]
    if len(modalities) < 2:
        early, fusions = None, []
    return FoldSetup(
        inputs=inputs, y=y, speakers=speakers, modalities=modalities,
        unimodal="unimodal" in config.systems or len(modalities) < 2, early_name=early,
        fusions=fusions, n_classes=n_classes, model=config.model,
        grid=config.param_grid if config.param_grid is not None else spec.grid,
        imbalance=config.imbalance, scaling=config.scaling, inner_folds=config.inner_folds,
        scoring=config.scoring, seed=config.seed)
