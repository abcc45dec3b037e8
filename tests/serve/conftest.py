"""Saved models for the service tests, trained through the `emofusion` command on a generated
raw corpus: 4 speakers x 4 classes x 2 clips of 0.5 s at 22.05 kHz (resampled to 16 kHz by the
extractor, as any upload is), each class with its own pitch and its own words.

* ``fusion_model``: late_mean over log-mel (audio) and MiniLM (text): each modality's opinion.
* ``stacking_model``: the same modalities, stacking.
* ``text_model``: MiniLM only (the MELD case: text in, audio refused).
* ``adaptive_model``: log-mel only, ``--protocol speaker_adaptive`` (speaker enrolment).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofusion.cli import main

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
soundfile = pytest.importorskip("soundfile")
pytest.importorskip("sentence_transformers")

LABELS = ["anger", "sadness", "happiness", "neutral"]
PITCH = {"anger": 330.0, "sadness": 150.0, "happiness": 520.0, "neutral": 220.0}
WORDS = {"anger": "i am furious and enraged", "sadness": "i feel gloomy and lost",
         "happiness": "what a joyful lovely day", "neutral": "the table is in the room"}
CORPUS_RATE = 22050


def voiced(label: str, seconds: float = 0.5, rate: int = CORPUS_RATE, seed: int = 0) -> np.ndarray:
    """A buzz at the class's pitch with five harmonics and a little noise: float32 (n,)."""
    t = np.arange(int(seconds * rate)) / rate
    buzz = sum(np.sin(2 * np.pi * k * PITCH[label] * t) / k for k in range(1, 6))
    noise = np.random.default_rng(seed).normal(scale=0.02, size=t.size)
    return (0.25 * buzz + noise).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int = CORPUS_RATE, fmt: str = "WAV") -> bytes:
    """``samples`` encoded as a wav (16-bit), flac or ogg file in memory."""
    buffer = io.BytesIO()
    subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def serve_features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dataset.csv of the generated corpus with log-mel and MiniLM features."""
    root = tmp_path_factory.mktemp("serve-corpus")
    rows = []
    for s, speaker in enumerate(("s1", "s2", "s3", "s4")):
        for label in LABELS:
            for k in range(2):
                uid = f"{speaker}_{label}_{k}"
                (root / f"{uid}.wav").write_bytes(wav_bytes(voiced(label, seed=10 * s + k)))
                rows.append({"utterance_id": uid, "speaker": speaker, "label": label,
                             "audio_path": f"{uid}.wav", "transcript": WORDS[label]})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    out = root / "features"
    assert main(["extract", str(root / "manifest.csv"), "--corpus", "manifest",
                 "--modalities", "logmel,minilm", "--out", str(out), "--jobs", "1"]) == 0
    return out / "dataset.csv"


def _train(dataset: Path, out: Path, *options: str) -> Path:
    assert main(["train", str(dataset), "--out", str(out), "--jobs", "1", "--model", "logreg",
                 *options]) == 0
    return out


@pytest.fixture(scope="session")
def fusion_model(serve_features: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(serve_features, tmp_path_factory.mktemp("models") / "late.zip",
                  "--system", "late_mean")


@pytest.fixture(scope="session")
def stacking_model(serve_features: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(serve_features, tmp_path_factory.mktemp("models") / "stacking.zip",
                  "--system", "stacking")


@pytest.fixture(scope="session")
def text_model(serve_features: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(serve_features, tmp_path_factory.mktemp("models") / "text.zip",
                  "--modalities", "minilm", "--system", "minilm")


@pytest.fixture(scope="session")
def adaptive_model(serve_features: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(serve_features, tmp_path_factory.mktemp("models") / "adaptive.zip",
                  "--modalities", "logmel", "--system", "logmel",
                  "--protocol", "speaker_adaptive")


@pytest.fixture(scope="session")
def fusion_service(fusion_model: Path):
    """The late-fusion model loaded once, extractors warmed up."""
    from emofusion.serve.service import PredictionService

    service = PredictionService.from_file(fusion_model)
    service.warm_up()
    return service


@pytest.fixture(scope="session")
def text_service(text_model: Path):
    from emofusion.serve.service import PredictionService

    return PredictionService.from_file(text_model)


@pytest.fixture(scope="session")
def client_for():
    """``client_for(service, **create_app options)`` -> a FastAPI TestClient."""
    from fastapi.testclient import TestClient

    from emofusion.serve.app import create_app

    return lambda service, **options: TestClient(create_app(service, **options))
