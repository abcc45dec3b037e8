"""Train one system on all speakers of a dataset, save it, and predict new utterances.

`train_model` runs the same nested, speaker-grouped search as an experiment, on every speaker.
`predict_dataset` reads a course-layout or generic CSV (labels optional) and `predict_arrays`
takes one utterance's arrays per modality; both reject wrong widths with a clear message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emofusion.config import FUSION_SYSTEMS, RunConfig
from emofusion.data.manifest import load_manifest
from emofusion.errors import ConfigError, DataProblemError, Problem
from emofusion.evaluation.nested import fit_with_search
from emofusion.features.loading import check_frames, load_modality
from emofusion.features.normalization import (
    average_statistics,
    speaker_normalise,
    speaker_statistics,
)
from emofusion.features.pooling import pool
from emofusion.features.sequences import as_object_array, frame_level_concatenation
from emofusion.fusion.late import LateFusionClassifier
from emofusion.fusion.stacking import StackingFusionClassifier
from emofusion.models.pipeline import build_pipeline
from emofusion.models.registry import ModelSpec, get_model
from emofusion.models.saved import ModelCard, SavedModel
from emofusion.runner import TRANSCRIPT, PreparedData, _system_inputs, prepare_data, transcript_texts


def _modality_columns(modalities: list[str], inputs: dict) -> list[tuple[int, int]]:
    """(start, stop) columns of each modality in the fused input."""
    if inputs[modalities[0]].dtype == object:
        return [(j, j + 1) for j in range(len(modalities))]
    stops = np.cumsum([inputs[m].shape[1] for m in modalities])
    return [(int(b - a.shape[1]), int(b)) for a, b in
            zip([inputs[m] for m in modalities], stops, strict=True)]


def _fusion_input(inputs: dict, modalities: list[str]):
    if inputs[modalities[0]].dtype == object:
        return np.hstack([inputs[m] for m in modalities])
    return inputs["early"]


def _fit_system(config: RunConfig, spec: ModelSpec, system: str, inputs: dict, y, speakers):
    modalities = [m for m in inputs if m not in ("early", "model_fusion")]
    grid = config.param_grid if config.param_grid is not None else spec.grid

    def tuned(name: str):
        pipeline = build_pipeline(spec, imbalance=config.imbalance, seed=config.seed)
        return fit_with_search(pipeline, grid, inputs[name], y, speakers,
                               inner_folds=config.inner_folds, scoring=config.scoring).estimator

    if system in modalities or system in ("early", "model_fusion"):
        return tuned(system)
    bases = [(m, tuned(m)) for m in modalities]
    columns = _modality_columns(modalities, inputs)
    fused = _fusion_input(inputs, modalities)
    if system == "stacking":
        model = StackingFusionClassifier(bases, columns, config.inner_folds, config.seed)
        return model.fit(fused, y, groups=speakers)
    return LateFusionClassifier(bases, columns, rule=system.split("_")[1]).fit(fused, y)


def _speaker_fallback(data: PreparedData) -> dict[str, list[list[float]]]:
    """Per pooled modality, the speakers' average [mean, std] for speakers without statistics."""
    return {modality: [v.tolist() for v in average_statistics(
                speaker_statistics(features, data.manifest.speakers))]
            for modality, features in data.features.items() if isinstance(features, np.ndarray)}


def _kind(data: PreparedData, modality: str) -> str | None:
    return data.manifest.modality_info.get(modality, {}).get("kind")


def train_model(config: RunConfig, system: str) -> SavedModel:
    """Fit `system` (a modality, ``early``, ``late_vote``, ``late_mean`` or ``stacking``) on every
    utterance of the config's dataset."""
    spec = get_model(config.model)
    data = prepare_data(config)
    modalities = list(data.manifest.modalities)
    if system not in (*modalities, *FUSION_SYSTEMS):
        raise ConfigError(f"unknown system '{system}'; choose one of {modalities + list(FUSION_SYSTEMS)}")
    if spec.multimodal and system == "early":
        system = "model_fusion"
    inputs = _system_inputs(data, config, spec)
    estimator = _fit_system(config, spec, system, inputs, data.manifest.y, data.manifest.speakers)
    card = ModelCard(
        label_names=list(data.manifest.label_names), modalities=modalities,
        widths=data.widths, pooling={m: config.pooling_for(m, _kind(data, m)) for m in modalities},
        system=system, model=config.model, input=spec.input, scaling=config.scaling,
        speaker_fallback=_speaker_fallback(data) if config.scaling.startswith("speaker") else {},
        extractors={m: data.manifest.modality_info[m] for m in modalities
                    if m in data.manifest.modality_info},
        training={"dataset": str(config.dataset), "n_utterances": len(data.manifest),
                  "speakers": sorted(set(data.manifest.speakers)),
                  "dropped": [p.to_dict() for p in data.dropped]})
    return SavedModel(card, estimator)


def model_inputs(model: SavedModel, frames: dict[str, list[np.ndarray]],
                 speakers: np.ndarray | None = None):
    """The estimator input for per-modality frame lists (n utterances each)."""
    card = model.card
    if card.input == "text":
        return np.array(frames[TRANSCRIPT], dtype=object)[:, None]
    if card.input == "sequence":
        cells = as_object_array([frames[m] for m in card.modalities])
        if card.system in card.modalities:
            return cells[:, [card.modalities.index(card.system)]]
        return cells if card.system != "early" else frame_level_concatenation(cells)
    pooled = {m: np.vstack([pool(f, card.pooling[m]) for f in frames[m]]) for m in card.modalities}
    if card.scaling.startswith("speaker"):
        pooled = {m: _normalise_new(x, card, m, speakers) for m, x in pooled.items()}
    if card.system in card.modalities:
        return pooled[card.system]
    return np.hstack([pooled[m] for m in card.modalities])


def _normalise_new(X: np.ndarray, card: ModelCard, modality: str, speakers) -> np.ndarray:
    if card.scaling == "speaker" and speakers is not None and (speakers != "").all():
        return speaker_normalise(X, speakers)
    mean, std = (np.asarray(v) for v in card.speaker_fallback[modality])
    return (X - mean) / std


def _probability_table(model: SavedModel, ids, X) -> pd.DataFrame:
    probabilities = model.predict_proba(X)
    labels = np.array(model.card.label_names)
    table = pd.DataFrame({"utterance_id": ids, "predicted": labels[probabilities.argmax(1)]})
    for k, name in enumerate(labels):
        table[f"proba_{name}"] = probabilities[:, k]
    return table


def predict_dataset(model: SavedModel, csv_path: Path, features_root: Path | None = None,
                    on_bad_file: str = "fail") -> tuple[pd.DataFrame, list[Problem]]:
    """Predict every utterance of a dataset CSV.

    Returns:
        (table with ``utterance_id, predicted, proba_<label>...``, skipped problems).
    """
    manifest = load_manifest(csv_path, features_root, tuple(model.card.label_names),
                             require_labels=False)
    missing = [m for m in model.card.modalities if m not in manifest.modalities and m != TRANSCRIPT]
    if missing:
        raise ConfigError(f"{csv_path} has no column for modalities {missing} that the model needs "
                          f"(columns '<modality>_features'; model expects {model.card.modalities})")
    frames, problems = {}, []
    for modality in model.card.modalities:
        if modality == TRANSCRIPT:
            frames[modality] = transcript_texts(manifest.table, str(csv_path)).tolist()
            continue
        data = load_modality(manifest, modality, [], keep_sequences=True,
                             expected_width=model.card.widths[modality])
        frames[modality], problems = data.sequences, problems + data.problems
    if problems and on_bad_file == "fail":
        raise DataProblemError(problems, hint="Fix these files or pass --on-bad-file skip.")
    bad = {p.utterance_id for p in problems}
    keep = [i for i, uid in enumerate(manifest.ids) if uid not in bad]
    frames = {m: [f[i] for i in keep] for m, f in frames.items()}
    X = model_inputs(model, frames, manifest.speakers[keep])
    return _probability_table(model, manifest.ids[keep], X), problems


def predict_arrays(model: SavedModel, arrays: dict[str, np.ndarray],
                   utterance_id: str = "input") -> pd.DataFrame:
    """Predict one utterance from one (T, d) or (d,) array per modality."""
    missing = [m for m in model.card.modalities if m not in arrays]
    if missing:
        raise ConfigError(f"the model needs modalities {model.card.modalities}; missing {missing}")
    frames = {}
    for modality in model.card.modalities:
        if modality == TRANSCRIPT:
            frames[modality] = [str(arrays[modality])]
            continue
        check = check_frames(np.asarray(arrays[modality]))
        width = model.card.widths[modality]
        if check.frames is None:
            raise ConfigError(f"{modality}: {check.reason}")
        if check.frames.shape[1] != width:
            raise ConfigError(f"{modality}: width {check.frames.shape[1]}, but the model expects "
                              f"{width} (features must come from the same extractor as in training)")
        frames[modality] = [check.frames]
    return _probability_table(model, [utterance_id], model_inputs(model, frames))

