"""Speaker enrolment in the service: a speaker-adaptive model normalises a named speaker with
the utterances enrolled for that speaker, exactly as `emofusion predict --enrol` does, and says
in every answer whose statistics it used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import LABELS

from emofusion.inference import MIN_ADAPTATION_UTTERANCES, predict_arrays
from emofusion.serve.enrolment import Enrolment
from emofusion.serve.inputs import RequestProblem
from emofusion.serve.service import PredictionService

OFFSET = 4.0
"""Added to every log-mel value of the 'new' speaker: a louder microphone, in log energy."""


@pytest.fixture(scope="module")
def adaptive_service(adaptive_model: Path) -> PredictionService:
    return PredictionService.from_file(adaptive_model)


def _logmel(dataset: Path, speaker: str) -> list[np.ndarray]:
    """The (T, 64) log-mel arrays of one training speaker, in file order."""
    table = pd.read_csv(dataset)
    return [np.load(dataset.parent / path) for path in
            table.loc[table["speaker"] == speaker, "logmel_features"]]


def _features(array: np.ndarray) -> dict:
    return {"features": json.dumps({"logmel": array.tolist()})}


def _probabilities(answer: dict) -> np.ndarray:
    return np.array([answer["probabilities"][label] for label in LABELS])


def test_enrolled_speaker_is_normalised_with_its_enrolment(adaptive_service, client_for,
                                                           serve_features: Path) -> None:
    client = client_for(adaptive_service)
    model = adaptive_service.model
    assert client.get("/model").json()["enrolment"]["adapts_to_speakers"] is True
    own = _logmel(serve_features, "s1")
    shifted = [array + OFFSET for array in own]

    before = client.post("/predict", data={**_features(shifted[0]), "speaker": "new"}).json()
    assert before["adaptation"] == {"speaker": "new", "source": "training average",
                                    "enrolled_utterances": 0}
    for count, array in enumerate(shifted, start=1):
        enrolled = client.post("/enrol", data={**_features(array), "speaker": "new"}).json()
        assert enrolled["utterances"] == count
        assert enrolled["adapts"] is (count >= MIN_ADAPTATION_UTTERANCES)
    assert client.get("/speakers").json()["speakers"] == {"new": len(shifted)}

    after = client.post("/predict", data={**_features(shifted[0]), "speaker": "new"}).json()
    assert after["adaptation"]["source"] == "enrolment"
    # the louder speaker, enrolled, is answered as the same speaker normalised with its own
    # utterances (the path of `emofusion predict --enrol`); the training average cannot
    expected = predict_arrays(model, {"logmel": own[0]}, speaker="s1",
                              enrolment={"s1": {"logmel": own}})
    assert np.allclose(_probabilities(after), [expected[f"proba_{k}"][0] for k in LABELS],
                       atol=1e-5)
    assert not np.allclose(_probabilities(after), _probabilities(before), atol=1e-2)

    batch = client.post("/predict/batch", json={"items": [
        {"features": {"logmel": shifted[0].tolist()}, "speaker": "new"}]}).json()
    assert np.allclose(_probabilities(batch["predictions"][0]), _probabilities(after), atol=1e-6)

    assert client.delete("/speakers/new").json() == {"removed": "new"}
    forgotten = client.post("/predict", data={**_features(shifted[0]), "speaker": "new"}).json()
    assert forgotten["adaptation"]["source"] == "training average"
    assert client.delete("/speakers/new").status_code == 404


def test_enrolment_needs_a_speaker_and_a_speaker_adaptive_model(adaptive_service, fusion_service,
                                                                client_for,
                                                                serve_features: Path) -> None:
    array = _logmel(serve_features, "s2")[0]
    nameless = client_for(adaptive_service).post("/enrol", data=_features(array))
    assert nameless.status_code == 422 and nameless.json()["detail"].startswith("speaker:")

    client = client_for(fusion_service)
    refused = client.post("/enrol", data={"text": "hello", "speaker": "a"})
    assert refused.status_code == 422
    assert "--protocol speaker_adaptive" in refused.json()["detail"]
    answer = client.post("/predict", data={"text": "the table is in the room",
                                           "features": json.dumps({"logmel": array.tolist()}),
                                           "speaker": "a"}).json()
    assert "adaptation" not in answer and answer["label"] in LABELS


def test_enrolment_keeps_the_newest_utterances_and_bounds_the_speakers() -> None:
    enrolment = Enrolment(["logmel"], max_speakers=2, max_utterances=MIN_ADAPTATION_UTTERANCES)
    for k in range(MIN_ADAPTATION_UTTERANCES + 3):
        enrolment.add("a", {"logmel": np.full((2, 3), float(k))})
    kept = enrolment.usable("a")["a"]["logmel"]
    assert [float(a[0, 0]) for a in kept] == [3.0, 4.0, 5.0, 6.0, 7.0]
    enrolment.add("b", {"logmel": np.zeros(3)})
    assert enrolment.usable("b") == {}  # one utterance is too few to adapt to
    with pytest.raises(RequestProblem, match="DELETE /speakers"):
        enrolment.add("c", {"logmel": np.zeros(3)})
    assert enrolment.remove("b") and enrolment.add("c", {"logmel": np.zeros(3)}) == 1
