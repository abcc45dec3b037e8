"""Every kind of bad request gets a 4xx with a JSON ``detail`` that says what to fix; none gets
a 500, and the service still answers a good request afterwards."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from conftest import WORDS, voiced, wav_bytes

GOOD_WAV = wav_bytes(voiced("anger", 1.0))


def refused(response, status: int, *words: str) -> str:
    """Assert `response` is a refusal with `status` whose message contains every word."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word in detail, detail
    return detail


@pytest.fixture(scope="module")
def fusion(fusion_service, client_for):
    """Client of the audio + text late-fusion model, 1 MiB upload limit, 5 s of audio at most."""
    from emofusion.serve.service import Limits, PredictionService

    service = PredictionService(fusion_service.model, Limits(max_audio_seconds=5.0, max_text_chars=200))
    return client_for(service, max_upload_bytes=2**20)


@pytest.fixture(scope="module")
def text_only(text_service, client_for):
    return client_for(text_service)


def _post_audio(client, data: bytes, name: str = "clip.wav"):
    return client.post("/predict", files={"audio": (name, data, "audio/wav")},
                       data={"text": WORDS["anger"]})


def _silent_wav(seconds: float) -> bytes:
    return wav_bytes(np.zeros(int(22050 * seconds), dtype=np.float32))


@pytest.mark.parametrize("data,status,words", [
    (b"this is plain text, not a recording " * 20, 415, ("wav, flac or ogg",)),
    (b"%PDF-1.4\n" + bytes(range(256)) * 8, 415, ("cannot read",)),
    (b"", 422, ("empty",)),
    (_silent_wav(0.0), 422, ("no samples",)),
    (_silent_wav(1.0), 422, ("silent", "microphone")),
    (wav_bytes(voiced("anger", 0.05)), 422, ("too short",)),
    (GOOD_WAV[: len(GOOD_WAV) // 2], 422, ("truncated", "complete file")),
    (GOOD_WAV[:30], 415, ("cannot read",)),
    (wav_bytes(voiced("anger", 1.0), fmt="FLAC")[:2000], 415, ("cannot read",)),
    (wav_bytes(voiced("anger", 1.0), fmt="OGG")[:1500], 415, ("cannot read",)),
    (wav_bytes(voiced("anger", 6.0)), 413, ("longer than", "5 s")),
], ids=["text", "pdf", "empty", "no-samples", "silent", "too-short", "truncated-wav",
        "truncated-header", "truncated-flac", "truncated-ogg", "too-long"])
def test_bad_audio(fusion, data: bytes, status: int, words: tuple[str, ...]) -> None:
    refused(_post_audio(fusion, data), status, "audio", *words)


def test_upload_over_the_size_limit(fusion) -> None:
    big = wav_bytes(np.random.default_rng(0).normal(scale=0.1, size=2**20).astype(np.float32))
    refused(_post_audio(fusion, big), 413, "larger than", "1,048,576 bytes")

    def chunks():  # no Content-Length: counted while it streams in
        for _ in range(40):
            yield b"x" * 65536

    streamed = fusion.post("/predict", content=chunks(),
                           headers={"Content-Type": "multipart/form-data; boundary=b"})
    refused(streamed, 413, "larger than")


def test_modality_the_model_does_not_use(fusion, text_only) -> None:
    refused(text_only.post("/predict", files={"audio": ("a.wav", GOOD_WAV)}, data={"text": "hi"}),
            422, "does not use audio", "send text")
    refused(fusion.post("/predict", files={"audio": ("a.wav", GOOD_WAV),
                                           "video": ("v.mp4", b"\x00" * 100)},
                        data={"text": "hi"}), 422, "does not use video")
    refused(fusion.post("/predict", data={"text": "hi", "features": json.dumps({"egemaps": [1.0]})}),
            422, "no feature modality ['egemaps']")


def test_modality_the_model_lacks(fusion, text_only) -> None:
    refused(fusion.post("/predict", data={"text": WORDS["anger"]}), 422, "needs ['logmel']",
            "audio (for logmel)")
    refused(fusion.post("/predict", files={"audio": ("a.wav", GOOD_WAV)}), 422, "needs ['minilm']")
    refused(fusion.post("/predict"), 422, "needs ['logmel', 'minilm']")
    refused(text_only.post("/predict"), 422, "needs ['minilm']", "send text")
    both = {"features": json.dumps({"minilm": [0.0] * 384}), "text": "hello"}
    refused(fusion.post("/predict", files={"audio": ("a.wav", GOOD_WAV)}, data=both), 422,
            "send one or the other")


@pytest.mark.parametrize("text,status,words", [
    ("", 422, ("needs ['minilm']",)), ("   \n\t ", 422, ("empty",)),
    ("x" * 201, 413, ("201 characters",)),
])
def test_bad_text(fusion, text: str, status: int, words: tuple[str, ...]) -> None:
    refused(fusion.post("/predict", files={"audio": ("a.wav", GOOD_WAV)}, data={"text": text}),
            status, "text", *words)


def test_text_that_is_not_unicode(text_only) -> None:
    lone_surrogate = '{"items": [{"text": "bad \\ud800 half"}]}'
    refused(text_only.post("/predict/batch", content=lone_surrogate,
                           headers={"Content-Type": "application/json"}), 400, "not valid Unicode")


@pytest.mark.parametrize("features,status,words", [
    ('{"logmel": [[1, 2], ', 400, ("not valid JSON", "line 1")),
    ("[1, 2, 3]", 400, ("expected a JSON object",)),
    ('{"minilm": "0.1 0.2"}', 400, ("expected an array",)),
    ('{"minilm": [[1, 2, 3], [4, 5]]}', 400, ("rectangular", "same width")),
    ('{"minilm": [1, "two", 3]}', 400, ("rectangular",)),
    ('{"minilm": [1.0, 2.0, 3.0]}', 422, ("width 3", "expects 384")),
    ('{"minilm": [[[1.0]]]}', 422, ("expected shape",)),
    ('{"minilm": []}', 422, ("empty",)),
    ('{"minilm": [NaN, 1.0]}', 422, ("NaN",)),
])
def test_bad_feature_arrays(fusion, features: str, status: int, words: tuple[str, ...]) -> None:
    response = fusion.post("/predict", files={"audio": ("a.wav", GOOD_WAV)},
                           data={"features": features})
    refused(response, status, *words)


def test_wrong_width_audio_features(fusion) -> None:
    features = {"logmel": np.zeros((20, 40)).tolist(), "minilm": np.zeros(384).tolist()}
    refused(fusion.post("/predict", data={"features": json.dumps(features)}), 422,
            "width 40", "expects 64")


@pytest.mark.parametrize("body,status,words", [
    ('{"items": [', 400, ("not valid JSON",)),
    ("{}", 422, ("items",)),
    ('{"items": []}', 422, ("items",)),
    (json.dumps({"items": [{"text": "hi"}] * 65}), 422, ("items", "64")),
    ('{"items": [{"audio_base64": "***", "text": "hi"}]}', 400, ("items[0]", "base64")),
    ('{"items": [{"text": "hi", "features": {"logmel": [[1, 2], [3]]}}]}', 400,
     ("items[0]", "rectangular")),
    ('{"items": [{"text": 5}]}', 422, ("text",)),
])
def test_bad_batches(fusion, body: str, status: int, words: tuple[str, ...]) -> None:
    response = fusion.post("/predict/batch", content=body, headers={"Content-Type": "application/json"})
    refused(response, status, *words)


def test_batch_names_the_bad_item(fusion) -> None:
    good = {"audio_base64": base64.b64encode(GOOD_WAV).decode(), "text": WORDS["anger"]}
    silent = {**good, "audio_base64": base64.b64encode(_silent_wav(1.0)).decode()}
    refused(fusion.post("/predict/batch", json={"items": [good, silent]}), 422, "items[1]", "silent")


def test_malformed_headers_and_uploads(fusion, fusion_service, client_for) -> None:
    huge_field = json.dumps({"minilm": [0.123456789] * 100_000})  # over the 1 MiB form-field limit
    refused(client_for(fusion_service).post("/predict", data={"features": huge_field}), 400,
            "/predict/batch")
    broken = fusion.post("/predict", content=b"--b\r\nbroken",
                         headers={"Content-Type": "multipart/form-data; boundary=b"})
    refused(broken, 422, "needs ['logmel', 'minilm']")  # read as an empty form
    refused(fusion.post("/predict", files={"audio": ("a.wav", GOOD_WAV)},
                        headers={"Content-Length": "many"}), 400, "Content-Length")
    refused(fusion.post("/predict", data={"audio": "not a file"}), 422, "audio")


def test_still_answers_after_bad_requests(fusion) -> None:
    for _ in range(3):
        _post_audio(fusion, b"junk")
        fusion.post("/predict", data={"features": "{"})
    answer = _post_audio(fusion, GOOD_WAV)
    assert answer.status_code == 200 and answer.json()["label"] == "anger"
