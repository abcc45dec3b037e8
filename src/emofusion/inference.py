"""Train one system on all speakers of a dataset, save it, and predict new utterances.

`train_model` runs the same nested, speaker-grouped search as an experiment, on every speaker.
`predict_dataset` reads a course-layout or generic CSV (labels optional) and `predict_arrays`
takes one utterance's arrays per modality; both reject wrong widths with a clear message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofusion.config import FUSION_SYSTEMS, TRANSCRIPT, RunConfig
from emofusion.data.manifest import load_manifest
from emofusion.errors import ConfigError, DataProblemError, Problem
from emofusion.evaluation.experiment import make_plan
from emofusion.features.loading import check_frames, load_modality
from emofusion.features.normalization import (
    average_statistics,
    input_statistics,
    normalise_inputs,
    normalise_per_speaker,
    speaker_statistics,
)
from emofusion.features.pooling import pool
from emofusion.features.sequences import as_object_array, frame_level_concatenation
from emofusion.fusion.systems import fit_systems, fusion_input
from emofusion.models.registry import get_model
from emofusion.models.saved import ModelCard, SavedModel
from emofusion.runner import (
    PreparedData,
    _system_inputs,
    layer_counts,
    prepare_data,
    transcript_texts,
)


def _speaker_fallback(inputs: dict[str, Any], speakers: np.ndarray,
                      units: list[str]) -> dict[str, list[list[float]]]:
    """Per normalised input (`_normalised_units`), the speakers' average [mean, std] for
    speakers without statistics of their own."""
    return {unit: [v.tolist() for v in average_statistics(speaker_statistics(inputs[unit],
                                                                             speakers))]
            for unit in units}


def _normalised_units(card_input: str, modalities: list[str], system: str) -> list[str]:
    """The inputs a speaker-normalising model normalises, each with its own statistics: every
    feature modality (transcripts are text), or ``early`` for frame-level early fusion."""
    if card_input == "sequence" and system == "early":
        return ["early"]
    return [m for m in modalities if m != TRANSCRIPT]


def _kind(data: PreparedData, modality: str) -> str | None:
    return data.manifest.modality_info.get(modality, {}).get("kind")


def train_model(config: RunConfig, system: str) -> SavedModel:
    """Fit `system` (a modality, ``early``, ``late_vote``, ``late_mean`` or ``stacking``) on every
    utterance of the config's dataset, with the code a run fits it with on each outer fold
    (`fusion.systems.fit_systems`, speaker groups included)."""
    spec = get_model(config.model)
    data = prepare_data(config)
    modalities = list(data.manifest.modalities)
    all_systems = config.model_copy(update={"systems": ["unimodal", *FUSION_SYSTEMS]})
    inputs = _system_inputs(data, config, spec)
    plan = make_plan(all_systems, inputs, modalities, layer_counts(data, config, spec))
    if spec.multimodal and system == "early":
        system = "model_fusion"
    choices = [*modalities, *filter(None, [plan.early_name]), *plan.fusions]
    if system not in choices:
        raise ConfigError(f"unknown system '{system}' for this dataset and model; choose one of "
                          f"{choices}")
    speakers = data.manifest.speakers
    units = _normalised_units(spec.input, modalities, system)
    fallback = _speaker_fallback(inputs, speakers, units) if config.scaling.startswith(
        "speaker") else {}
    inputs = normalise_inputs(inputs, speakers, config.scaling)
    estimator = fit_systems(plan, inputs, data.manifest.y, speakers, [system])[system]
    card = ModelCard(
        label_names=list(data.manifest.label_names), modalities=modalities,
        widths=data.widths, pooling={m: config.pooling_for(m, _kind(data, m)) for m in modalities},
        system=system, model=config.model, input=spec.input, scaling=config.scaling,
        protocol=config.protocol,
        speaker_fallback=fallback,
        extractors={m: data.manifest.modality_info[m] for m in modalities
                    if m in data.manifest.modality_info},
        training={"dataset": str(config.dataset), "n_utterances": len(data.manifest),
                  "speakers": sorted(set(data.manifest.speakers)),
                  "dropped": [p.to_dict() for p in data.dropped]})
    return SavedModel(card, estimator)


def model_inputs(model: SavedModel, frames: dict[str, list], speakers: np.ndarray | None = None,
                 enrolment: dict[str, dict[str, list[np.ndarray]]] | None = None):
    """The estimator input for per-modality frame lists (n utterances each).

    Args:
        model: the saved model.
        frames: modality -> one (T, d) array (or transcript str) per utterance.
        speakers: (n,) speaker of each utterance, for the speaker-adaptive protocol.
        enrolment: speaker -> modality -> that speaker's unlabelled (T, d) arrays, used instead
            of the utterances themselves to adapt to that speaker.
    """
    card = model.card
    if card.input == "text":
        return np.array(frames[TRANSCRIPT], dtype=object)[:, None]

    def adapted(unit: str, X: np.ndarray) -> np.ndarray:
        if not card.scaling.startswith("speaker") or unit == TRANSCRIPT:
            return X
        return adapt_to_speakers(X, card, unit, speakers, enrolment)

    if card.input == "sequence":
        if card.system == "early":
            return adapted("early", _unit_rows(card, "early", frames))
        columns = {m: adapted(m, _unit_rows(card, m, frames)) for m in card.modalities}
        if card.system in card.modalities:
            return columns[card.system]
        return np.hstack(list(columns.values()))
    inputs = {m: adapted(m, _unit_rows(card, m, frames)) for m in card.modalities
              if m != TRANSCRIPT}
    if TRANSCRIPT in card.modalities:
        inputs[TRANSCRIPT] = np.array(frames[TRANSCRIPT], dtype=object)[:, None]
    if card.system in card.modalities:
        return inputs[card.system]
    if card.system == "early":
        return np.hstack([inputs[m] for m in card.modalities if m != TRANSCRIPT])
    return fusion_input(inputs, tuple(card.modalities))


MIN_ADAPTATION_UTTERANCES = 5
"""Fewer unlabelled utterances of a speaker than this give unreliable statistics: that speaker
is normalised with the training speakers' average instead, and the prediction says so."""


def adapts_to_speakers(card: ModelCard) -> bool:
    """Whether the model normalises each speaker with that speaker's own statistics (scaling
    ``speaker``: the ``speaker_adaptive`` protocol), so that enrolling a speaker changes its
    answers."""
    return card.scaling == "speaker"


def require_speaker_adaptive(card: ModelCard, what: str) -> None:
    """Raise `ConfigError` naming `what` (e.g. "an enrolment file") unless the model adapts to
    speakers."""
    if not adapts_to_speakers(card):
        raise ConfigError(f"{what} adapts speaker-adaptive models only; this model was trained "
                          f"with scaling '{card.scaling}' (protocol {card.protocol}): train with "
                          "--protocol speaker_adaptive")


def adaptation_sources(card: ModelCard, speakers: np.ndarray | None,
                       enrolled: set[str]) -> dict[str, str]:
    """Per speaker of the input, where its normalisation statistics come from: ``enrolment``,
    ``own utterances`` or ``training average`` (too few utterances, or no speaker given)."""
    if not adapts_to_speakers(card) or speakers is None:
        return {}
    names, counts = np.unique(speakers, return_counts=True)
    return {str(s): "enrolment" if s in enrolled else
            "own utterances" if s != "" and n >= MIN_ADAPTATION_UTTERANCES else "training average"
            for s, n in zip(names, counts, strict=True)}


def _unit_rows(card: ModelCard, unit: str, frames: dict[str, list]) -> np.ndarray:
    """One normalised input's rows from per-modality frame lists: pooled (n, d) rows, an (n, 1)
    column of frames, or (``early`` of a sequence model) their frame-level concatenation."""
    if unit == "early":
        return frame_level_concatenation(as_object_array([frames[m] for m in card.modalities]))
    if card.input == "sequence":
        return as_object_array([frames[unit]])
    return np.vstack([pool(f, card.pooling[unit]) for f in frames[unit]])


def adapt_to_speakers(X: np.ndarray, card: ModelCard, unit: str, speakers,
                      enrolment: dict | None = None) -> np.ndarray:
    """Per-speaker normalisation at prediction time, as in training, of one normalised input
    (`_unit_rows`: pooled (n, d) rows or an (n, 1) column of frames): ``speaker``
    (speaker-adaptive) uses each speaker's enrolment utterances or its own rows (at least
    MIN_ADAPTATION_UTTERANCES); every other speaker, and ``speaker_strict``, gets the training
    speakers' average statistics."""
    fallback = tuple(np.asarray(v) for v in card.speaker_fallback[unit])
    enrolment = enrolment or {}
    stats = {}
    for speaker, source in adaptation_sources(card, speakers, set(enrolment)).items():
        if source == "enrolment":
            stats[speaker] = input_statistics(_unit_rows(card, unit, enrolment[speaker]))
        elif source == "own utterances":
            stats[speaker] = input_statistics(X[speakers == speaker])
    groups = speakers if speakers is not None else np.full(len(X), "")
    return normalise_per_speaker(X, groups, stats, fallback)


def _prediction_table(model: SavedModel, ids, frames: dict[str, list], speakers: np.ndarray,
                      enrolment: dict | None) -> pd.DataFrame:
    """``utterance_id, predicted, proba_<label>...`` and, for a speaker-adaptive model,
    ``adaptation`` (where each utterance's speaker statistics came from)."""
    probabilities = model.predict_proba(model_inputs(model, frames, speakers, enrolment))
    labels = np.array(model.card.label_names)
    table = pd.DataFrame({"utterance_id": ids, "predicted": labels[probabilities.argmax(1)]})
    for k, name in enumerate(labels):
        table[f"proba_{name}"] = probabilities[:, k]
    sources = adaptation_sources(model.card, speakers, set(enrolment or {}))
    if sources:
        table["adaptation"] = [sources[str(s)] for s in speakers]
    return table


def _read_frames(model: SavedModel, csv_path: Path, features_root: Path | None,
                 on_bad_file: str, modalities: list[str]):
    """(ids, speakers, modality -> frames per kept utterance, problems) of a dataset CSV."""
    manifest = load_manifest(csv_path, features_root, tuple(model.card.label_names),
                             require_labels=False)
    missing = [m for m in modalities if m not in manifest.modalities and m != TRANSCRIPT]
    if missing:
        raise ConfigError(f"{csv_path} has no column for modalities {missing} that the model needs "
                          f"(columns '<modality>_features'; model expects {model.card.modalities})")
    frames, problems = {}, []
    for modality in modalities:
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
    return manifest.ids[keep], manifest.speakers[keep], frames, problems


def read_enrolment(model: SavedModel, csv_path: Path, features_root: Path | None = None,
                   ) -> dict[str, dict[str, list[np.ndarray]]]:
    """Unlabelled utterances per speaker (a dataset CSV, labels optional) to adapt a
    speaker-adaptive model to those speakers: speaker -> modality -> (T, d) arrays."""
    require_speaker_adaptive(model.card, "an enrolment file")
    pooled = [m for m in model.card.modalities if m != TRANSCRIPT]
    _, speakers, frames, _ = _read_frames(model, csv_path, features_root, "fail", pooled)
    return {str(s): {m: [f[i] for i in np.flatnonzero(speakers == s)] for m, f in frames.items()}
            for s in np.unique(speakers)}


def predict_dataset(model: SavedModel, csv_path: Path, features_root: Path | None = None,
                    on_bad_file: str = "fail", enrolment: dict | None = None,
                    ) -> tuple[pd.DataFrame, list[Problem]]:
    """Predict every utterance of a dataset CSV.

    A speaker-adaptive model normalises each speaker with `enrolment` utterances
    (`read_enrolment`), else with that speaker's own rows in the CSV when there are at least
    MIN_ADAPTATION_UTTERANCES, else with the training speakers' average; the column
    ``adaptation`` says which.

    Returns:
        (table with ``utterance_id, predicted, proba_<label>...[, adaptation]``, skipped problems).
    """
    ids, speakers, frames, problems = _read_frames(model, csv_path, features_root, on_bad_file,
                                                   list(model.card.modalities))
    return _prediction_table(model, ids, frames, speakers, enrolment), problems


def predict_arrays(model: SavedModel, arrays: dict[str, np.ndarray], utterance_id: str = "input",
                   speaker: str = "", enrolment: dict | None = None) -> pd.DataFrame:
    """Predict one utterance from one (T, d) or (d,) array per modality; a speaker-adaptive
    model adapts to `speaker` through its `enrolment` utterances (`read_enrolment`), else uses
    the training speakers' average (column ``adaptation``)."""
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
    return _prediction_table(model, [utterance_id], frames, np.array([speaker]), enrolment)

