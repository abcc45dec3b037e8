"""What all readers share: options, class selection, media checks, summary, text decoding."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from emofusion.data.corpora import FOUR_CLASS, READERS, corpus_summary, read_corpus
from emofusion.data.corpora.labels import canonical, ordered
from emofusion.data.corpora.textio import fix_mojibake
from emofusion.errors import ConfigError, DataProblemError


@pytest.fixture
def small(tmp_path: Path) -> Path:
    rows = ["utterance_id,speaker,label,split", "a,s1,angry,train", "b,s1,joy,train",
            "c,s2,sad,test", "d,s2,neutral,test", "e,s2,fearful,test"]
    path = tmp_path / "m.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_reader_names() -> None:
    assert set(READERS) == {"iemocap", "ravdess", "cremad", "emodb", "meld", "manifest"}
    assert FOUR_CLASS == ("anger", "sadness", "happiness", "neutral")


def test_bad_options_are_config_errors(small: Path) -> None:
    with pytest.raises(ConfigError, match="unknown corpus"):
        read_corpus("timit", small)
    with pytest.raises(ConfigError, match="on_bad"):
        read_corpus("manifest", small, on_bad="ignore")
    with pytest.raises(ConfigError, match="bogus"):
        read_corpus("manifest", small, classes="anger,bogus")


def test_custom_class_list_uses_any_spelling(small: Path) -> None:
    corpus = read_corpus("manifest", small, classes="angry, joy")
    assert corpus.label_names == ("anger", "happiness")
    assert corpus.excluded == {"fear": 1, "neutral": 1, "sadness": 1}
    assert "2-class (anger, happiness)" in corpus.description


def test_four_class_keeps_empty_classes_visible(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("utterance_id,speaker,label\na,s,anger\n")
    corpus = read_corpus("manifest", tmp_path / "m.csv")
    assert corpus.counts == {"anger": 1, "sadness": 0, "happiness": 0, "neutral": 0}
    assert "no utterances for sadness, happiness, neutral" in corpus.description


def test_empty_media_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "v.mp4").write_bytes(b"")
    (tmp_path / "m.csv").write_text("utterance_id,speaker,label,video_path\na,s,anger,v.mp4\n")
    with pytest.raises(DataProblemError, match="video file is empty"):
        read_corpus("manifest", tmp_path / "m.csv")


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    for name in ("iemocap", "ravdess", "cremad", "emodb", "meld"):
        with pytest.raises(DataProblemError, match="folder not found"):
            read_corpus(name, tmp_path / "absent")


def test_summary_counts_labels_speakers_and_splits(small: Path) -> None:
    corpus = read_corpus("manifest", small)
    text = corpus_summary(corpus)
    assert text.splitlines()[0] == corpus.description
    assert "Utterances per speaker and label:" in text and "s2" in text
    assert "Utterances per split and label:" in text
    plain = corpus_summary(pd.DataFrame({"speaker": ["x", "y"], "label": ["neutral", "anger"]}))
    assert plain.startswith("2 utterances")
    assert plain.index("anger") < plain.index("neutral")


def test_label_helpers() -> None:
    assert canonical(" Happy ") == "happiness" and canonical("Weird") == "weird"
    assert ordered(["zeal", "neutral", "anger", "calm"]) == ("anger", "neutral", "calm", "zeal")


@pytest.mark.parametrize(("text", "expected"), [
    ("I\u00e2\u20ac\u2122m", "I\u2019m"),
    ("Caf\u00c3\u00a9", "Caf\u00e9"),
    ("I\u2019m", "I\u2019m"),
    ("Caf\u00e9\u2026", "Caf\u00e9\u2026"),
    ("\u00c3 la carte", "\u00c3 la carte"),
])
def test_fix_mojibake(text: str, expected: str) -> None:
    assert fix_mojibake(text) == expected
