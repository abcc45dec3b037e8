"""CREMA-D reader on a tiny `AudioWAV/` (and flat) corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from emofusion.data.corpora import read_corpus
from emofusion.errors import DataProblemError

GOOD = ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TIE_NEU_XX", "1002_MTI_SAD_LO",
        "1002_ITS_DIS_MD")
BAD = ("1003_XYZ_ANG_XX", "1003_DFA_BOR_XX")  # unknown sentence, unknown emotion


def _corpus(folder: Path, write_wav) -> None:
    for stem in GOOD + BAD:
        write_wav(folder / f"{stem}.wav")
    (folder / "1076_MTI_SAD_XX.wav").write_bytes(b"RIFF" + bytes(40))  # header only


@pytest.fixture
def cremad(tmp_path: Path, write_wav, write_file) -> Path:
    _corpus(tmp_path / "AudioWAV", write_wav)
    write_file(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    return tmp_path


def test_rows_speakers_sentences_and_video(cremad: Path) -> None:
    corpus = read_corpus("cremad", cremad, on_bad="skip")
    table = corpus.table.set_index("utterance_id")
    assert corpus.counts == {"anger": 1, "sadness": 1, "happiness": 1, "neutral": 1}
    assert corpus.excluded == {"disgust": 1}
    assert set(table["speaker"]) == {"1001", "1002"}
    row = table.loc["1001_DFA_ANG_XX"]
    assert row.transcript == "Don't forget a jacket"
    assert row.video_path == str(cremad / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    assert row.intensity == "unspecified"
    assert table.loc["1001_IEO_HAP_HI", "transcript"] == "It's eleven o'clock"
    assert table.loc["1002_MTI_SAD_LO", "video_path"] == ""


def test_problems_include_header_only_wav(cremad: Path) -> None:
    problems = read_corpus("cremad", cremad, on_bad="skip").problems
    reasons = {p.utterance_id: p.reason for p in problems}
    assert set(reasons) == {"1003_XYZ_ANG_XX", "1003_DFA_BOR_XX", "1076_MTI_SAD_XX"}
    assert "sentence" in reasons["1003_XYZ_ANG_XX"]
    assert "emotion" in reasons["1003_DFA_BOR_XX"]
    assert reasons["1076_MTI_SAD_XX"] == "WAV file holds no audio samples"
    with pytest.raises(DataProblemError, match="Found 3 problem"):
        read_corpus("crema-d", cremad)


def test_flat_folder(tmp_path: Path, write_wav) -> None:
    _corpus(tmp_path, write_wav)
    corpus = read_corpus("cremad", tmp_path, classes="all", on_bad="skip")
    assert len(corpus.table) == 5
    assert corpus.label_names == ("anger", "sadness", "happiness", "neutral", "fear", "disgust")
