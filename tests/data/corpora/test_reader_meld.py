"""MELD reader on tiny split CSVs in the release's exact format (CRLF, quoted SRT times)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emofusion.data.corpora import read_corpus
from emofusion.data.corpora.meld import srt_seconds
from emofusion.errors import DataProblemError

HEADER = ("Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,"
          "StartTime,EndTime")
TRAIN = [
    '1,"also I was the point person on my company\u2019s transition.",Chandler,neutral,neutral,'
    '0,0,8,21,"00:16:16,059","00:16:21,731"',
    '2,You must\u2019ve had your hands full.,The Interviewer,neutral,neutral,0,1,8,21,'
    '"00:16:21,940","00:16:23,442"',
    '3,"Oh my God, it\u2019s great!",Monica,joy,positive,1,0,2,3,"00:01:00,000","00:01:02,500"',
    '4,What?!,Ross,surprise,positive,1,1,2,3,"00:01:03,000","00:01:04,000"',
    '5,Get out.,Rachel,anger,negative,x,2,2,3,"00:01:05,000","00:01:06,000"',  # bad dialogue id
]
DEV = [
    '1,"I\u00e2\u20ac\u2122m sorry.",Joey,sadness,negative,0,0,1,1,"00:02:00,000","00:02:01,000"',
    '2,No.,Phoebe,love,positive,0,1,1,1,"00:02:02,000","00:02:03,000"',  # unknown emotion
]
TEST = ['1,"That\u2019s it\u2026",Ross,anger,negative,0,0,3,4,"0:05:52,435","0:05:53,897"']


def _write(path: Path, lines: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes("\r\n".join([HEADER, *lines, ""]).encode(encoding))


@pytest.fixture
def meld(tmp_path: Path, write_file) -> Path:
    """Train (UTF-8, with clips but one missing), dev (with mojibake), test (Windows-1252)."""
    _write(tmp_path / "train_sent_emo.csv", TRAIN)
    _write(tmp_path / "dev_sent_emo.csv", DEV)
    _write(tmp_path / "test_sent_emo.csv", TEST, encoding="cp1252")
    for stem in ("dia0_utt0", "dia1_utt0", "dia1_utt1"):
        write_file(tmp_path / "train_splits" / f"{stem}.mp4")
    return tmp_path


def test_rows_ids_splits_and_speakers(meld: Path) -> None:
    corpus = read_corpus("meld", meld, on_bad="skip")
    table = corpus.table.set_index("utterance_id")
    assert list(table.index) == ["train_dia0_utt0", "train_dia1_utt0", "dev_dia0_utt0",
                                 "test_dia0_utt0"]
    assert corpus.counts == {"anger": 1, "sadness": 1, "happiness": 1, "neutral": 1}
    assert corpus.excluded == {"surprise": 1}
    assert list(table["split"]) == ["train", "train", "dev", "test"]
    assert (table["session"] == table["split"]).all()
    assert table.loc["train_dia1_utt0", "speaker"] == "Monica"
    assert table.loc["train_dia1_utt0", "label"] == "happiness"
    assert table.loc["train_dia1_utt0", "dialogue"] == "train_dia1"
    assert table.loc["test_dia0_utt0", "episode_start"] == pytest.approx(352.435)
    assert table["start"].isna().all()


def test_non_ascii_text_is_read_correctly(meld: Path) -> None:
    table = read_corpus("meld", meld, on_bad="skip").table.set_index("utterance_id")
    assert table.loc["train_dia0_utt0", "transcript"] == (
        "also I was the point person on my company\u2019s transition.")
    assert table.loc["dev_dia0_utt0", "transcript"] == "I\u2019m sorry."  # mojibake repaired
    assert table.loc["test_dia0_utt0", "transcript"] == "That\u2019s it\u2026"  # cp1252 file
    assert not table["transcript"].str.contains("\u00e2\u20ac").any()


def test_clips_and_problems(meld: Path) -> None:
    corpus = read_corpus("meld", meld, on_bad="skip")
    table = corpus.table.set_index("utterance_id")
    assert table.loc["train_dia0_utt0", "video_path"] == str(meld / "train_splits/dia0_utt0.mp4")
    assert table.loc["dev_dia0_utt0", "video_path"] == ""
    assert (table["audio_path"] == "").all()
    reasons = sorted(p.reason for p in corpus.problems)
    assert len(reasons) == 3
    assert "video file not found" in reasons
    assert any("unknown emotion code 'love'" in r for r in reasons)
    assert any("Dialogue_ID" in r for r in reasons)
    with pytest.raises(DataProblemError, match="Found 3 problem"):
        read_corpus("meld", meld)


def test_missing_split_file_is_a_problem(meld: Path) -> None:
    (meld / "dev_sent_emo.csv").unlink()
    corpus = read_corpus("meld", meld, on_bad="skip")
    assert any("dev split file not found" in p.reason for p in corpus.problems)
    assert set(corpus.table["split"]) == {"train", "test"}


def test_srt_seconds() -> None:
    assert srt_seconds("00:16:16,059") == pytest.approx(976.059)
    assert srt_seconds("garbage") != srt_seconds("garbage")  # NaN
