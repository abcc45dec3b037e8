"""Encoder layers (``hf_audio``-style ``(L, d)`` arrays, kind ``layers``) are pooled ``select`` by
default: every layer is kept and a `LayerSelector` in front of each model chooses the layer on
the training speakers' inner folds, in the run, in early fusion, in `train` and in the saved
model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofusion.config import build_config
from emofusion.errors import ConfigError
from emofusion.evaluation.experiment import make_plan
from emofusion.evaluation.nested import _model_width
from emofusion.inference import predict_dataset, train_model
from emofusion.models.layer_selector import LayerSelector
from emofusion.models.saved import load_model, save_model
from emofusion.runner import run

N_LAYERS, WIDTH, EMOTIONAL_LAYER = 4, 6, 2
SPEAKERS = [f"s{k}" for k in range(6)]


def _write_corpus(folder: Path) -> Path:
    """6 speakers x 16 utterances, 2 classes; only layer EMOTIONAL_LAYER of 'ssl' carries the
    class, 'prosody' (a vector) is noise."""
    rng = np.random.default_rng(0)
    rows = []
    for modality in ("ssl", "prosody"):
        (folder / "features" / modality).mkdir(parents=True)
    for speaker in SPEAKERS:
        for i in range(16):
            label = i % 2
            layers = rng.normal(size=(N_LAYERS, WIDTH))
            layers[EMOTIONAL_LAYER] += 2.0 * label
            uid = f"{speaker}_{i:02d}"
            np.save(folder / "features" / "ssl" / f"{uid}.npy", layers.astype(np.float32))
            np.save(folder / "features" / "prosody" / f"{uid}.npy",
                    rng.normal(size=5).astype(np.float32))
            rows.append({"utterance_id": uid, "speaker": speaker, "session": speaker,
                         "label": ["anger", "sadness"][label],
                         "ssl_features": f"features/ssl/{uid}.npy",
                         "prosody_features": f"features/prosody/{uid}.npy"})
    pd.DataFrame(rows).to_csv(folder / "dataset.csv", index=False)
    modalities = {"ssl": {"width": WIDTH, "kind": "layers", "layers": N_LAYERS},
                  "prosody": {"width": 5, "kind": "vector"}}
    (folder / "features.json").write_text(json.dumps(
        {"label_names": ["anger", "sadness"], "modalities": modalities}))
    return folder / "dataset.csv"


@pytest.fixture(scope="module")
def layered_csv(tmp_path_factory) -> Path:
    return _write_corpus(tmp_path_factory.mktemp("layers"))


def test_the_layer_is_chosen_on_training_speakers_only(layered_csv, tmp_path, fast_report,
                                                       monkeypatch):
    seen = []
    original = LayerSelector.fit

    def spy(self, X, y=None, groups=None):
        seen.append(set(groups))
        return original(self, X, y, groups)

    monkeypatch.setattr(LayerSelector, "fit", spy)
    config = build_config({"dataset": layered_csv, "out": tmp_path / "run", "split": "k3",
                           "jobs": 1, "systems": ["unimodal", "early"],
                           "cache_dir": tmp_path / "cache"})
    assert config.pooling_for("ssl", "layers") == "select"
    result = run(config, progress=False)
    folds = json.loads((tmp_path / "run" / "folds.json").read_text())
    for fold in folds:
        for system in ("ssl", "early"):
            assert fold["systems"][system]["selected_layers"] == {"ssl": EMOTIONAL_LAYER}, system
        assert "selected_layers" not in fold["systems"]["prosody"]
    ssl = result.predictions[result.predictions["system"] == "ssl"]
    assert (ssl["predicted"] == ssl["true"]).mean() > 0.9
    # every selector was fitted inside one outer fold's training speakers (4 of the 6)
    assert seen and all(groups and len(groups) <= 4 for groups in seen)


def test_a_saved_model_keeps_the_chosen_layer_and_predicts_as_the_run(layered_csv, tmp_path,
                                                                      fast_report):
    options = {"out": tmp_path / "run", "split": "k3", "jobs": 1,
               "systems": ["unimodal", "early"], "cache_dir": tmp_path / "cache"}
    result = run(build_config({"dataset": layered_csv, **options}), progress=False)
    fold = result.folds[0]
    table = pd.read_csv(layered_csv)
    test_speakers = set(table["speaker"].to_numpy()[fold.fold.test])
    train_csv = layered_csv.with_name("train.csv")
    test_csv = layered_csv.with_name("test.csv")
    table[~table["speaker"].isin(test_speakers)].to_csv(train_csv, index=False)
    table[table["speaker"].isin(test_speakers)].to_csv(test_csv, index=False)
    predictions = result.predictions[result.predictions["fold"] == fold.fold.index]
    for system in ("ssl", "early"):
        trained = train_model(build_config({"dataset": train_csv, **options}), system)
        assert trained.card.pooling["ssl"] == "select"
        model = load_model(save_model(trained, tmp_path / f"{system}.zip"))
        predicted, _ = predict_dataset(model, test_csv)
        expected = predictions[predictions["system"] == system].set_index("utterance_id")
        predicted = predicted.set_index("utterance_id").loc[expected.index]
        columns = [c for c in expected.columns if c.startswith("proba_")]
        np.testing.assert_allclose(predicted[columns].to_numpy(), expected[columns].to_numpy(),
                                   atol=1e-6, err_msg=system)


def test_auto_sizes_its_candidates_by_the_width_the_model_sees():
    """`auto` leaves out a candidate by the width after layer selection, not the flat width."""
    plan = make_plan(build_config({"dataset": "d.csv", "model": "auto"}),
                     {"ssl": np.zeros((4, 26 * 1024)), "prosody": np.zeros((4, 5)),
                      "early": np.zeros((4, 26 * 1024 + 5))}, ["ssl", "prosody"], {"ssl": 26})
    assert [name for name, _ in plan.base_estimator("early").candidates[0][1].steps][0] == \
        "layers_ssl"
    for name in ("ssl", "early"):
        [(_, pipeline, _)] = [c for c in plan.base_estimator(name).candidates if c[0] == "logreg"]
        assert _model_width(pipeline, 26 * 1024 + (5 if name == "early" else 0)) == \
            1024 + (5 if name == "early" else 0)
    searched = plan.base_estimator("ssl")
    assert searched._affordable("logreg", (1000, 1024))
    assert not searched._affordable("logreg", (1000, 26 * 1024))


def test_a_plan_without_any_system_is_refused():
    """Early fusion alone over one pooled modality and the transcripts has nothing to fit."""
    config = build_config({"dataset": "d.csv", "systems": ["early"]})
    transcripts = np.array([["a"], ["b"], ["c"], ["d"]], dtype=object)
    with pytest.raises(ConfigError, match="none of the systems"):
        make_plan(config, {"prosody": np.zeros((4, 5)), "transcript": transcripts},
                  ["prosody", "transcript"])
