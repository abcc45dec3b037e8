"""Generic manifest CSV reader: required columns, path resolution, label spellings, problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from emofusion.data.corpora import COLUMNS, read_corpus
from emofusion.errors import DataProblemError

HEADER = "utterance_id,speaker,label,session,audio_path,video_path,transcript,start,end,gender"


@pytest.fixture
def manifest(tmp_path: Path, write_wav, write_file) -> Path:
    folder = tmp_path / "corpus"
    for name in ("u1", "u2", "u4", "u5", "u6", "u7"):
        write_wav(folder / "audio" / f"{name}.wav")
    video = write_file(tmp_path / "elsewhere" / "u2.mp4")
    lines = [
        HEADER,
        'u1,s1,Angry,,audio/u1.wav,,"Hello, there",,,f',
        f"u2,s1,joy,sessA,audio/u2.wav,{video},Hi,0.5,1.5,f",
        "u3,s2,neu,,audio/missing.wav,,,,,m",  # missing audio
        "u4,s2,calm,,audio/u4.wav,,,,,m",  # outside the 4 classes
        "u5,,sad,,audio/u5.wav,,,,,m",  # empty speaker
        "u6,s3,sad,,audio/u6.wav,,,abc,,m",  # start not a number
        "u7,s3,sad,,audio/u7.wav,,,2.0,1.0,m",  # empty span
        "u1,s3,sadness,,audio/u4.wav,,,,,m",  # duplicate id
        "u8,s3,sad,,audio/u7.wav,,a,b,,,,,extra",  # too many cells
    ]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_rows_paths_and_label_spellings(manifest: Path, tmp_path: Path) -> None:
    corpus = read_corpus("manifest", manifest, on_bad="skip")
    table = corpus.table.set_index("utterance_id")
    assert list(corpus.table.columns) == [*COLUMNS, "gender"]
    assert list(table.index) == ["u1", "u2"]
    assert list(table["label"]) == ["anger", "happiness"]
    assert list(table["session"]) == ["s1", "sessA"]
    assert table.loc["u1", "audio_path"] == str(manifest / "audio" / "u1.wav")
    assert table.loc["u2", "video_path"] == str(tmp_path / "elsewhere" / "u2.mp4")
    assert table.loc["u1", "transcript"] == "Hello, there"
    assert (table.loc["u2", "start"], table.loc["u2", "end"]) == (0.5, 1.5)
    assert table.loc["u1", "gender"] == "f"
    assert corpus.span_media == ("audio_path", "video_path")
    assert corpus.excluded == {"calm": 1}


def test_every_problem_is_reported(manifest: Path) -> None:
    corpus = read_corpus("manifest", manifest / "manifest.csv", on_bad="skip")
    reasons = [p.reason for p in corpus.problems]
    assert len(reasons) == 6
    for expected in ("audio file not found", "empty speaker", "start/end must be seconds",
                     "is empty", "duplicate utterance id", "cells but the header has"):
        assert any(expected in reason for reason in reasons), expected
    with pytest.raises(DataProblemError, match="Found 6 problem"):
        read_corpus("manifest", manifest)


def test_missing_columns_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("utterance_id,label\nu1,anger\n")
    with pytest.raises(DataProblemError, match="required columns missing: speaker"):
        read_corpus("manifest", tmp_path)
    with pytest.raises(DataProblemError, match="manifest CSV not found"):
        read_corpus("manifest", tmp_path / "nope.csv")


def test_labels_outside_the_usual_names_are_kept_with_all(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("utterance_id,speaker,label\na,s,Anger\nb,s,Contemptuous\n")
    corpus = read_corpus("manifest", tmp_path / "m.csv", classes="all")
    assert corpus.label_names == ("anger", "contemptuous")
    assert corpus.table["audio_path"].tolist() == ["", ""]
    assert corpus.span_media == ()
