"""Readers on the real corpora in `../shared/data` (skipped when that folder is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emofusion.data.corpora import read_corpus


def _corpus_dir(shared_data: Path, name: str) -> Path:
    folder = shared_data / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


def test_ravdess_four_class(shared_data: Path) -> None:
    corpus = read_corpus("ravdess", _corpus_dir(shared_data, "ravdess_speech_16k"))
    assert len(corpus.table) == 336
    assert corpus.counts == {"anger": 96, "sadness": 96, "happiness": 96, "neutral": 48}
    assert corpus.table["speaker"].nunique() == 12
    assert corpus.problems == []
    assert set(corpus.table["transcript"]) == {"Kids are talking by the door",
                                               "Dogs are sitting by the door"}
    assert all(Path(path).is_file() for path in corpus.table["audio_path"])


def test_ravdess_all_classes(shared_data: Path) -> None:
    corpus = read_corpus("ravdess", _corpus_dir(shared_data, "ravdess_speech_16k"), classes="all")
    assert len(corpus.table) == 720 and len(corpus.label_names) == 8


def test_meld_four_class_text(shared_data: Path) -> None:
    corpus = read_corpus("meld", _corpus_dir(shared_data, "meld"))
    table = corpus.table
    assert len(table) == 11353
    assert corpus.counts == {"anger": 1607, "sadness": 1002, "happiness": 2308, "neutral": 6436}
    assert table.groupby("split").size().to_dict() == {"train": 8245, "dev": 897, "test": 2211}
    assert corpus.problems == []
    assert not table["transcript"].str.contains("\u00e2\u20ac").any()
    assert table["transcript"].str.contains("\u2019").sum() > 1000
    assert table["utterance_id"].is_unique
    assert (table["transcript"] != "").all()
