"""The end-to-end audio + text system (`--model e2e`) and the text model (`--model
text_finetune`) through the `emofusion` command: extract 3-channel log-spectrograms from a
generated raw corpus (wav files + transcripts, generic manifest), run the speaker-independent
protocol, train, and predict from the dataset CSV and from one raw wav + transcript.

The corpus: 4 speakers x 4 classes x 3 clips; each class has its own tone and its own words, so
both branches can learn; a tiny randomly initialised BERT stands in for the text encoder.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from emofusion.cli import main

pytest.importorskip("torch")
soundfile = pytest.importorskip("soundfile")
transformers = pytest.importorskip("transformers")

LABELS = ["anger", "sadness", "happiness", "neutral"]
TONES = {"anger": 300.0, "sadness": 500.0, "happiness": 800.0, "neutral": 1200.0}
WORDS = {"anger": "furious rage", "sadness": "gloomy tears", "happiness": "joyful smile",
         "neutral": "plain table"}
SAMPLE_RATE = 16000


def _clip(label: str, rng: np.random.Generator) -> np.ndarray:
    """0.4 s whose spectrogram texture depends on the class: a steady tone, a tone switched on
    and off every 40 ms, broadband noise, or a stack of harmonics."""
    t = np.arange(int(0.4 * SAMPLE_RATE)) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * TONES[label] * t)
    signal = {"neutral": tone,
              "sadness": tone * (np.floor(t / 0.04) % 2),
              "anger": rng.normal(size=t.size),
              "happiness": sum(np.sin(2 * np.pi * k * TONES[label] * t) for k in range(1, 5)) / 2}[label]
    return (0.3 * signal + 0.01 * rng.normal(size=t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def raw_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e_corpus")
    rng = np.random.default_rng(0)
    rows = []
    for speaker in ("s1", "s2", "s3", "s4"):
        for label in LABELS:
            for k in range(3):
                uid = f"{speaker}_{label}_{k}"
                soundfile.write(root / f"{uid}.wav", _clip(label, rng), SAMPLE_RATE)
                rows.append({"utterance_id": uid, "speaker": speaker, "label": label,
                             "audio_path": f"{uid}.wav", "transcript": f"i feel {WORDS[label]}"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory, tiny_bert_writer) -> str:
    words = ["i", "feel", *" ".join(WORDS.values()).split()]
    return tiny_bert_writer(tmp_path_factory.mktemp("tiny_text_model"), words)


@pytest.fixture(scope="module")
def spectrogram_features(raw_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("e2e_features")
    assert main(["extract", str(raw_corpus / "manifest.csv"), "--corpus", "manifest",
                 "--modalities", "spectrogram3", "--out", str(out)]) == 0
    table = pd.read_csv(out / "dataset.csv")
    assert {"spectrogram3_features", "transcript"} <= set(table.columns)
    return out / "dataset.csv"


def _config(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _e2e_grid(text_model: str) -> dict:
    return {"cnn__max_epochs": [3], "cnn__channels": [[4, 8]], "cnn__batch_size": [8],
            "text__model_path": [text_model], "text__max_epochs": [3], "text__lr": [3e-3],
            "text__head_lr": [3e-3], "head__max_epochs": [150], "head__lr": [1e-2],
            "head__patience": [30], "head__dropout": [0.0]}


def test_e2e_runs_trains_and_predicts_from_the_command_line(
        spectrogram_features: Path, tiny_text_model: str, raw_corpus: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]):
    config = _config(tmp_path, {"model": "e2e", "split": "k2", "systems": ["unimodal", "early"],
                                "param_grid": _e2e_grid(tiny_text_model)})
    run_dir = tmp_path / "run"
    assert main(["run", str(spectrogram_features), "--out", str(run_dir), "--config", str(config)]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["systems"]) == {"spectrogram3", "transcript", "model_fusion"}
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert len(predictions) == 3 * 48
    for audit_fold in metrics["audit"]["folds"]:  # held-out speakers never trained on
        assert not set(audit_fold["test_speakers"]) & set(audit_fold["train_speakers"])
    for system in ("transcript", "model_fusion"):  # the words give the class away
        assert metrics["systems"][system]["pooled"]["ua"] > 0.5, system

    model = tmp_path / "e2e.zip"
    assert main(["train", str(spectrogram_features), "--system", "early", "--out", str(model),
                 "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["predict", str(model), str(spectrogram_features)]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(table) == 48 and set(table["predicted"]) <= set(LABELS)
    assert main(["predict", str(model), "--wav", str(raw_corpus / "s1_anger_0.wav"),
                 "--text", "i feel furious rage"]) == 0
    row = pd.read_csv(io.StringIO(capsys.readouterr().out)).iloc[0]
    assert abs(sum(row[f"proba_{label}"] for label in LABELS) - 1) < 1e-4


def test_text_finetune_runs_and_predicts_raw_text(spectrogram_features: Path, tiny_text_model: str,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    grid = {"model_path": [tiny_text_model], "max_epochs": [6], "lr": [3e-3], "head_lr": [3e-3],
            "dropout": [0.0]}
    config = _config(tmp_path, {"model": "text_finetune", "split": "k2", "param_grid": grid})
    assert main(["run", str(spectrogram_features), "--out", str(tmp_path / "run"),
                 "--config", str(config)]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["systems"]["transcript"]["pooled"]["ua"] > 0.5
    model = tmp_path / "text.zip"
    assert main(["train", str(spectrogram_features), "--system", "transcript", "--out", str(model),
                 "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["predict", str(model), "--text", "i feel gloomy tears"]) == 0
    assert pd.read_csv(io.StringIO(capsys.readouterr().out)).iloc[0]["predicted"] in LABELS
    assert main(["predict", str(model), str(spectrogram_features)]) == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 48


def test_spectrogram_cnn_runs_and_predicts_a_raw_wav(spectrogram_features: Path, raw_corpus: Path,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    grid = {"max_epochs": [15], "channels": [[4, 8]], "batch_size": [8], "lr": [3e-3]}
    config = _config(tmp_path, {"model": "spectrogram_cnn", "split": "k2", "param_grid": grid,
                                "modalities": ["spectrogram3"]})
    assert main(["run", str(spectrogram_features), "--out", str(tmp_path / "run"),
                 "--config", str(config)]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["systems"]["spectrogram3"]["pooled"]["ua"] > 0.4  # four tones; chance is 0.25
    model = tmp_path / "cnn.zip"
    assert main(["train", str(spectrogram_features), "--system", "spectrogram3", "--out", str(model),
                 "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["predict", str(model), "--wav", str(raw_corpus / "s2_sadness_1.wav")]) == 0
    assert pd.read_csv(io.StringIO(capsys.readouterr().out)).iloc[0]["predicted"] in LABELS
