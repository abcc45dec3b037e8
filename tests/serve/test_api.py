"""The REST service answering real requests (FastAPI's TestClient, no network): what each
endpoint returns, that raw media are extracted exactly as `emofusion predict` extracts them,
each modality's opinion for late fusion and stacking, batches, scripts, the API key, and that
predictions run off the event loop."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LABELS, WORDS, voiced, wav_bytes

from emofusion.features.extract import extract_single
from emofusion.inference import predict_arrays
from emofusion.serve.server import API_KEY_VARIABLE, ServeOptions, build_app
from emofusion.serve.service import PredictionService


def _audio(samples: np.ndarray, rate: int = 22050, fmt: str = "WAV") -> dict:
    suffix = {"WAV": "wav", "FLAC": "flac", "OGG": "ogg"}[fmt]
    return {"audio": (f"clip.{suffix}", wav_bytes(samples, rate, fmt), f"audio/{suffix}")}


def _probabilities(answer: dict) -> np.ndarray:
    return np.array([answer["probabilities"][label] for label in LABELS])


def test_health_and_model_description(fusion_service, client_for) -> None:
    client = client_for(fusion_service)
    assert client.get("/health").json() == {"status": "ok", "api_key_required": False}
    model = client.get("/model").json()
    assert model["labels"] == LABELS
    assert model["accepts"] == ["audio", "text"]
    assert [(m["name"], m["from"], m["width"]) for m in model["modalities"]] == [
        ("logmel", "audio", 64), ("minilm", "text", 384)]
    assert model["extractors"]["logmel"]["params"]["sample_rate"] == 16000
    assert model["protocol"]["system"] == "late_mean" and model["modality_opinions"] is True
    assert model["training"]["n_utterances"] == 32
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_wav_and_text_match_emofusion_predict(fusion_service, client_for, tmp_path: Path) -> None:
    """The answer equals `predict_arrays` on `extract_single` of the same file (the path of
    `emofusion predict --wav --text`), and late_mean is the mean of the modality opinions."""
    client = client_for(fusion_service)
    samples = voiced("anger", seconds=1.2, rate=44100, seed=7)
    answer = client.post("/predict", files=_audio(samples, 44100),
                         data={"text": WORDS["anger"]}).json()
    path = tmp_path / "clip.wav"
    path.write_bytes(wav_bytes(samples, 44100))
    model = fusion_service.model
    expected = predict_arrays(model, extract_single(model.card.extractors, wav=path,
                                                    text=WORDS["anger"]))
    assert answer["label"] == expected["predicted"][0] == "anger"
    assert np.allclose(_probabilities(answer), [expected[f"proba_{k}"][0] for k in LABELS], atol=1e-6)
    assert answer["input"]["audio_sample_rate"] == 44100
    opinions = answer["modalities"]
    assert set(opinions) == {"logmel", "minilm"}
    mean = np.mean([[o["probabilities"][k] for k in LABELS] for o in opinions.values()], axis=0)
    assert np.allclose(mean, _probabilities(answer), atol=1e-5)


@pytest.mark.parametrize("fmt,rate", [("FLAC", 16000), ("OGG", 48000), ("WAV", 8000)])
def test_audio_formats_and_rates(fusion_service, client_for, fmt: str, rate: int) -> None:
    response = client_for(fusion_service).post(
        "/predict", files=_audio(voiced("happiness", 1.0, rate), rate, fmt),
        data={"text": WORDS["happiness"]})
    assert response.status_code == 200, response.text
    assert response.json()["label"] == "happiness"
    assert abs(sum(response.json()["probabilities"].values()) - 1) < 1e-4


def test_feature_arrays_give_the_same_answer_as_raw_media(fusion_service, client_for,
                                                          tmp_path: Path) -> None:
    client = client_for(fusion_service)
    path = tmp_path / "sad.wav"
    path.write_bytes(wav_bytes(voiced("sadness", 1.0)))
    arrays = extract_single(fusion_service.model.card.extractors, wav=path, text=WORDS["sadness"])
    raw = client.post("/predict", files={"audio": ("sad.wav", path.read_bytes())},
                      data={"text": WORDS["sadness"]}).json()
    features = {name: array.tolist() for name, array in arrays.items()}
    from_features = client.post("/predict", data={"features": json.dumps(features)}).json()
    assert from_features["label"] == raw["label"] == "sadness"
    assert np.allclose(_probabilities(from_features), _probabilities(raw), atol=1e-5)
    assert from_features["input"]["features.logmel"][1] == 64
    mixed = client.post("/predict", files={"audio": ("sad.wav", path.read_bytes())},
                        data={"features": json.dumps({"minilm": features["minilm"]})}).json()
    assert np.allclose(_probabilities(mixed), _probabilities(raw), atol=1e-5)


def test_batch_answers_in_order(fusion_service, client_for) -> None:
    import base64

    client = client_for(fusion_service)
    items = [{"audio_base64": base64.b64encode(wav_bytes(voiced(label, 0.8))).decode(),
              "text": WORDS[label]} for label in ("neutral", "anger", "happiness")]
    answers = client.post("/predict/batch", json={"items": items}).json()["predictions"]
    assert [a["label"] for a in answers] == ["neutral", "anger", "happiness"]
    single = client.post("/predict", files=_audio(voiced("anger", 0.8)),
                         data={"text": WORDS["anger"]}).json()
    assert np.allclose(_probabilities(answers[1]), _probabilities(single), atol=1e-6)


def test_stacking_reports_each_modality_in_label_order(stacking_model: Path, fusion_service,
                                                       client_for) -> None:
    """Stacking's modality models are fitted on class positions: mapped back to labels they
    agree with the late-fusion model's identical modality models."""
    stacking = client_for(PredictionService.from_file(stacking_model))
    late = client_for(fusion_service)
    request = {"files": _audio(voiced("neutral", 0.8)), "data": {"text": WORDS["neutral"]}}
    opinions = stacking.post("/predict", **request).json()["modalities"]
    expected = late.post("/predict", **request).json()["modalities"]
    for modality in ("logmel", "minilm"):
        assert opinions[modality]["label"] == "neutral"
        assert opinions[modality]["probabilities"] == pytest.approx(
            expected[modality]["probabilities"], abs=1e-6)


@pytest.mark.parametrize("text", [
    "我今天非常生气", "أنا سعيد جدا اليوم", "मैं बहुत दुखी हूँ", "Я очень рад тебя видеть",
    "今日はとても悲しい", "שלום\u200f עולם", "😡😡 why?!", "Ça va très bien, merci",
    "ok\x00\x07 control", "a" * 4999])
def test_text_in_any_script(text_service, client_for, text: str) -> None:
    response = client_for(text_service).post("/predict", data={"text": text})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["label"] in LABELS and answer["modalities"] == {}
    assert abs(sum(answer["probabilities"].values()) - 1) < 1e-4


def test_api_key(text_service, client_for, fusion_model: Path, monkeypatch) -> None:
    client = client_for(text_service, api_key="s3cret")
    assert client.get("/health").json()["api_key_required"] is True
    for headers in ({}, {"X-API-Key": "wrong"}):
        refused = client.post("/predict", data={"text": "hi"}, headers=headers)
        assert refused.status_code == 401 and "X-API-Key" in refused.json()["detail"]
        assert client.get("/model", headers=headers).status_code == 401
        assert client.get("/speakers", headers=headers).status_code == 401
        assert client.post("/enrol", data={"text": "hi", "speaker": "a"},
                           headers=headers).status_code == 401
        assert client.delete("/speakers/a", headers=headers).status_code == 401
    accepted = client.post("/predict", data={"text": "hi"}, headers={"X-API-Key": "s3cret"})
    assert accepted.status_code == 200
    assert client.get("/").status_code == 200  # the page itself asks for the key

    from fastapi.testclient import TestClient

    monkeypatch.setenv(API_KEY_VARIABLE, "from-env")
    from_env = TestClient(build_app(fusion_model, ServeOptions()))
    assert from_env.get("/model").status_code == 401
    assert from_env.get("/model", headers={"X-API-Key": "from-env"}).status_code == 200


def test_predictions_run_off_the_event_loop(text_service, client_for, monkeypatch) -> None:
    """While a prediction is stuck in its worker thread, /health still answers; a prediction
    over the timeout is answered with 503 instead of hanging."""
    release = threading.Event()
    original = text_service.predict
    monkeypatch.setattr(text_service, "predict",
                        lambda utterance: release.wait(5) and original(utterance))
    client = client_for(text_service, timeout=3.0)
    answers = []
    worker = threading.Thread(target=lambda: answers.append(
        client.post("/predict", data={"text": "slow"})))
    worker.start()
    time.sleep(0.3)
    started = time.perf_counter()
    assert client.get("/health").status_code == 200
    assert time.perf_counter() - started < 1.0
    release.set()
    worker.join(10)
    assert answers[0].status_code == 200

    release.clear()
    stuck = client_for(text_service, timeout=0.2).post("/predict", data={"text": "stuck"})
    release.set()
    assert stuck.status_code == 503 and "longer than 0.2 s" in stuck.json()["detail"]


def test_serve_command_refuses_a_file_that_is_not_a_model(tmp_path: Path, capsys) -> None:
    from emofusion.cli import main

    fake = tmp_path / "model.zip"
    fake.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["serve", str(fake), "--port", "1"]) == 2
    assert "not an emofusion model file" in capsys.readouterr().err
