"""The service on models trained, as the README shows, on the shared real data (skipped when
absent): an eGeMAPS model on RAVDESS actors 01-02 answering wav uploads of another actor at two
sample rates, and a MiniLM model on the first MELD lines answering text; each refuses the
modality it does not use."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from conftest import LABELS

from emofusion.cli import main
from emofusion.features.extractors.audio import resample
from emofusion.serve.service import PredictionService

pytestmark = pytest.mark.slow


def _extract_and_train(corpus: Path, kind: str, modalities: str, system: str, out: Path) -> Path:
    features = out / "features"
    assert main(["extract", str(corpus), "--corpus", kind, "--modalities", modalities,
                 "--out", str(features), "--jobs", "1"]) == 0
    model = out / "model.zip"
    assert main(["train", str(features / "dataset.csv"), "--system", system, "--out", str(model),
                 "--jobs", "1"]) == 0
    return model


def _valid(answer) -> dict:
    assert answer.status_code == 200, answer.text
    return _valid_prediction(answer.json())


def _valid_prediction(body: dict) -> dict:
    assert body["label"] in LABELS
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
    return body


def test_ravdess_egemaps_model(shared_data: Path, tmp_path: Path, client_for) -> None:
    pytest.importorskip("opensmile")
    soundfile = pytest.importorskip("soundfile")
    source = shared_data / "ravdess_speech_16k"
    actors = ("Actor_01", "Actor_02")
    if not all((source / actor).is_dir() for actor in (*actors, "Actor_05")):
        pytest.skip(f"RAVDESS actors 01, 02 and 05 not found under {source}")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for actor in actors:
        (corpus / actor).symlink_to(source / actor, target_is_directory=True)
    model = _extract_and_train(corpus, "ravdess", "egemaps", "egemaps", tmp_path)
    client = client_for(PredictionService.from_file(model))
    assert client.get("/model").json()["accepts"] == ["audio"]

    clip = source / "Actor_05" / "03-01-05-02-01-01-05.wav"
    native = _valid(client.post("/predict", files={"audio": ("a.wav", clip.read_bytes())}))
    samples, rate = soundfile.read(clip, dtype="float32")
    buffer = io.BytesIO()
    soundfile.write(buffer, resample(samples, rate, 44100), 44100, format="FLAC")
    upsampled = _valid(client.post("/predict", files={"audio": ("a.flac", buffer.getvalue())}))
    assert upsampled["input"]["audio_sample_rate"] == 44100
    assert upsampled["probabilities"] == pytest.approx(native["probabilities"], abs=0.1)
    refused = client.post("/predict", data={"text": "Kids are talking by the door"})
    assert refused.status_code == 422 and "does not use text" in refused.json()["detail"]


def test_meld_text_model(shared_data: Path, tmp_path: Path, client_for) -> None:
    source = shared_data / "meld"
    rows = {"train": 200, "dev": 20, "test": 60}
    if not all((source / f"{split}_sent_emo.csv").is_file() for split in rows):
        pytest.skip(f"MELD CSVs not found under {source}")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, n in rows.items():
        pd.read_csv(source / f"{split}_sent_emo.csv", encoding="utf-8").head(n).to_csv(
            corpus / f"{split}_sent_emo.csv", index=False, encoding="utf-8")
    model = _extract_and_train(corpus, "meld", "text", "minilm", tmp_path)
    client = client_for(PredictionService.from_file(model))
    assert client.get("/model").json()["accepts"] == ["text"]
    _valid(client.post("/predict", data={"text": "Oh my God, I am so happy for you!"}))
    batch = client.post("/predict/batch", json={"items": [{"text": "Get out!"}, {"text": "Okay."}]})
    assert batch.status_code == 200 and len(batch.json()["predictions"]) == 2
    for prediction in batch.json()["predictions"]:
        _valid_prediction(prediction)
    refused = client.post("/predict", files={"audio": ("a.wav", b"RIFF")})
    assert refused.status_code == 422 and "does not use audio" in refused.json()["detail"]
