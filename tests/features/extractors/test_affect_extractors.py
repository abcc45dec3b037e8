"""vader: VADER sentiment and lexical affect counts of transcripts; on the real MELD CSVs through
`emofusion extract` (a truncated copy in tmp; skipped when the shared data are absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("vaderSentiment")

from emofusion.cli import main  # noqa: E402
from emofusion.features.extractors import ExtractionFailed, build_extractor  # noqa: E402
from emofusion.features.extractors.affect import VADER_FEATURES  # noqa: E402


@pytest.fixture(scope="module")
def vader():
    return build_extractor("vader")


def _named(vector: np.ndarray) -> dict[str, float]:
    return dict(zip(VADER_FEATURES, vector.tolist(), strict=True))


def test_sentiment_scores_order_positive_and_negative_sentences(vader):
    happy = _named(vader({"transcript": "What a wonderful day, I love it!"}))
    sad = _named(vader({"transcript": "This is awful and I hate everything."}))
    flat = _named(vader({"transcript": "The meeting is at three."}))
    assert happy["compound"] > 0.5 > flat["compound"] > -0.5 > sad["compound"]
    assert happy["pos"] > happy["neg"] and sad["neg"] > sad["pos"]
    assert flat["neu"] == pytest.approx(1.0)
    for scores in (happy, sad, flat):
        assert scores["neg"] + scores["neu"] + scores["pos"] == pytest.approx(1.0, abs=0.01)
    assert happy["positive_share"] > 0 == happy["negative_share"]
    assert sad["negative_share"] > 0 == sad["positive_share"]


def test_counts_of_punctuation_capitals_negations_and_tokens(vader):
    scores = _named(vader({"transcript": "I am NOT going... WHY would I?! Don't ask, never!!"}))
    assert scores["exclamations"] == 3 and scores["questions"] == 1
    assert scores["all_caps"] == 2  # NOT, WHY ("I" is one letter)
    assert scores["negations"] == 3  # NOT, Don't, never
    assert scores["tokens"] == 10


def test_negation_lowers_the_compound_score(vader):
    good = _named(vader({"transcript": "The food is good."}))["compound"]
    not_good = _named(vader({"transcript": "The food is not good."}))["compound"]
    assert good > 0 > not_good


def test_batch_matches_single_items_and_empty_transcripts_fail(vader):
    texts = ["Great!", "", "so sad :(", "okay then"]
    results = vader.extract_batch([{"transcript": text} for text in texts])
    assert isinstance(results[1], ExtractionFailed) and "empty" in results[1].reason
    for text, result in zip(texts, results, strict=True):
        if text:
            assert result.array.shape == (len(VADER_FEATURES),) and result.array.dtype == np.float32
            assert np.array_equal(result.array, vader({"transcript": text}))
    assert vader.params() == {} and vader.width == len(VADER_FEATURES)


MELD_ROWS = {"train": 200, "dev": 20, "test": 60}


def test_vader_on_the_real_meld_csvs(shared_data: Path, tmp_path: Path, meld_subset_writer) -> None:
    corpus = meld_subset_writer(shared_data, tmp_path, MELD_ROWS)
    out = tmp_path / "features"
    assert main(["extract", str(corpus), "--corpus", "meld", "--modalities", "vader",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "features.json").read_text())
    assert meta["modalities"]["vader"]["width"] == len(VADER_FEATURES)
    assert meta["modalities"]["vader"]["kind"] == "vector"
    dataset = pd.read_csv(out / "dataset.csv")
    assert len(dataset) > 100 and set(dataset["split"]) == {"train", "dev", "test"}
    vectors = np.stack([np.load(out / path) for path in dataset["vader_features"]])
    scores = pd.DataFrame(vectors, columns=list(VADER_FEATURES)).assign(label=dataset["label"])
    assert scores["compound"].between(-1, 1).all() and (scores["tokens"] >= 1).all()
    by_label = scores.groupby("label")["compound"].mean()
    assert by_label["happiness"] > by_label["neutral"] > by_label["anger"]  # the lexicon works
