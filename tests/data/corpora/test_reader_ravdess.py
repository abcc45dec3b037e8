"""RAVDESS reader on a tiny corpus of `Actor_NN/MM-VV-EE-II-SS-RR-AA` files."""

from __future__ import annotations

from pathlib import Path

import pytest

from emofusion.data.corpora import read_corpus
from emofusion.errors import DataProblemError


@pytest.fixture
def ravdess(tmp_path: Path, write_wav, write_file) -> Path:
    """Two actors: speech and song audio, audio-video and video-only clips, a calm clip,
    an unknown emotion code and a file name outside the naming scheme."""
    actor1, actor2 = tmp_path / "Actor_01", tmp_path / "Actor_02"
    for name in ("03-01-01-01-01-01-01", "03-01-05-02-01-01-01", "03-01-02-01-02-01-01",
                 "03-02-03-01-01-01-01"):
        write_wav(actor1 / f"{name}.wav")
    for name in ("01-01-05-02-01-01-01", "02-01-05-02-01-01-01", "02-01-04-01-01-01-01"):
        write_file(actor1 / f"{name}.mp4")
    write_wav(actor2 / "03-01-04-01-02-02-02.wav")
    write_wav(actor2 / "03-01-09-01-01-01-02.wav")  # unknown emotion 09
    write_wav(actor2 / "readme.wav")  # not a RAVDESS name
    write_file(actor2 / "._03-01-04-01-02-02-02.wav")  # macOS resource file: ignored
    return tmp_path


def test_four_class_rows_and_fields(ravdess: Path) -> None:
    corpus = read_corpus("ravdess", ravdess, on_bad="skip")
    table = corpus.table.set_index("utterance_id")
    assert corpus.counts == {"anger": 1, "sadness": 2, "happiness": 1, "neutral": 1}
    assert corpus.excluded == {"calm": 1}
    assert set(table["speaker"]) == {"Actor_01", "Actor_02"}
    assert (table["session"] == table["speaker"]).all()
    angry = table.loc["03-01-05-02-01-01-01"]
    assert angry.label == "anger"
    assert angry.video_path == str(ravdess / "Actor_01" / "01-01-05-02-01-01-01.mp4")
    assert angry.audio_path == str(ravdess / "Actor_01" / "03-01-05-02-01-01-01.wav")
    assert (angry.channel, angry.intensity) == ("speech", "strong")
    assert angry.transcript == "Kids are talking by the door"
    assert table.loc["03-01-04-01-02-02-02", "transcript"] == "Dogs are sitting by the door"
    assert table.loc["03-02-03-01-01-01-01", "channel"] == "song"
    video_only = table.loc["02-01-04-01-01-01-01"]
    assert (video_only.audio_path, video_only.label) == ("", "sadness")
    assert table["start"].isna().all() and table["end"].isna().all()
    assert corpus.span_media == ()


def test_problems_are_itemised_when_skipping(ravdess: Path) -> None:
    problems = read_corpus("ravdess", ravdess, on_bad="skip").problems
    assert sorted(p.utterance_id for p in problems) == ["03-01-09-01-01-01-02", "readme"]
    assert any("unknown emotion code '09'" in p.reason for p in problems)
    assert any("naming" in p.reason for p in problems)


def test_fail_lists_every_problem(ravdess: Path) -> None:
    with pytest.raises(DataProblemError) as caught:
        read_corpus("ravdess", ravdess)
    assert len(caught.value.problems) == 2
    assert "readme.wav" in str(caught.value) and "'09'" in str(caught.value)


def test_all_classes_include_calm(ravdess: Path) -> None:
    corpus = read_corpus("ravdess", ravdess, classes="all", on_bad="skip")
    assert "calm" in corpus.label_names and corpus.counts["calm"] == 1
    assert len(corpus.table) == 6
