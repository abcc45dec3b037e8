"""The model `emofusion train` saves is the system `emofusion run` evaluated: trained on the
training speakers of one outer fold, it predicts that fold's test speakers exactly as the run
did, for every system and every scaling option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofusion.config import build_config
from emofusion.inference import predict_dataset, train_model
from emofusion.runner import run

SYSTEMS = ["acoustic", "early", "late_vote", "late_mean", "stacking"]


def _speaker_subset(csv: Path, speakers: set[str], name: str) -> Path:
    table = pd.read_csv(csv)
    subset = csv.with_name(name)
    table[table["speakers"].isin(speakers)].to_csv(subset, index=False)
    return subset


@pytest.mark.parametrize("scaling", ["standard", "speaker_strict", "speaker", "none"])
def test_model_trained_on_a_folds_training_speakers_predicts_as_the_run(
        clean_demo_csv, tmp_path, fast_report, scaling):
    options = {"out": tmp_path / "run", "split": "k3", "jobs": 1, "scaling": scaling,
               "cache_dir": tmp_path / "cache"}
    result = run(build_config({"dataset": clean_demo_csv, **options}), progress=False)
    fold = result.folds[0]
    table = pd.read_csv(clean_demo_csv)
    speakers = table["speakers"].to_numpy()
    train_csv = _speaker_subset(clean_demo_csv, set(speakers[fold.fold.train]), f"train-{scaling}.csv")
    test_csv = _speaker_subset(clean_demo_csv, set(speakers[fold.fold.test]), f"test-{scaling}.csv")
    predictions = result.predictions[result.predictions["fold"] == fold.fold.index]
    for system in SYSTEMS:
        model = train_model(build_config({"dataset": train_csv, **options}), system)
        predicted, skipped = predict_dataset(model, test_csv)
        assert not skipped
        expected = predictions[predictions["system"] == system].set_index("utterance_id")
        predicted = predicted.set_index("utterance_id").loc[expected.index]
        columns = [c for c in expected.columns if c.startswith("proba_")]
        np.testing.assert_allclose(predicted[columns].to_numpy(), expected[columns].to_numpy(),
                                   atol=1e-6, err_msg=f"{system} ({scaling})")
        assert (predicted["predicted"] == expected["predicted"]).all()


@pytest.mark.parametrize("scaling", ["speaker", "speaker_strict"])
def test_sequence_model_normalises_frames_per_speaker_in_train_as_in_the_run(
        clean_demo_csv, tmp_path, fast_report, scaling):
    """Frame sequences are normalised per speaker (every frame of a speaker's utterances) in the
    run, in `train` and at prediction, unimodal and frame-level early fusion alike."""
    options = {"out": tmp_path / "run", "split": "k3", "jobs": 1, "scaling": scaling,
               "model": "attention", "modalities": ["acoustic", "lexical"],
               "systems": ["unimodal", "early"],
               "param_grid": {"max_epochs": [2], "hidden_size": [8]},
               "cache_dir": tmp_path / "cache"}
    result = run(build_config({"dataset": clean_demo_csv, **options}), progress=False)
    fold = result.folds[0]
    speakers = pd.read_csv(clean_demo_csv)["speakers"].to_numpy()
    train_csv = _speaker_subset(clean_demo_csv, set(speakers[fold.fold.train]), "train-seq.csv")
    test_csv = _speaker_subset(clean_demo_csv, set(speakers[fold.fold.test]), "test-seq.csv")
    predictions = result.predictions[result.predictions["fold"] == fold.fold.index]
    for system in ["acoustic", "early"]:
        model = train_model(build_config({"dataset": train_csv, **options}), system)
        unit = "early" if system == "early" else "acoustic"
        assert set(model.card.speaker_fallback) >= {unit}
        predicted, _ = predict_dataset(model, test_csv)
        expected = predictions[predictions["system"] == system].set_index("utterance_id")
        predicted = predicted.set_index("utterance_id").loc[expected.index]
        columns = [c for c in expected.columns if c.startswith("proba_")]
        np.testing.assert_allclose(predicted[columns].to_numpy(), expected[columns].to_numpy(),
                                   atol=1e-5, err_msg=f"{system} ({scaling})")
