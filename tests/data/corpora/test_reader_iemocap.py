"""IEMOCAP reader on a tiny corpus with the release's exact folder layout and line formats."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from emofusion.data.corpora import COLUMNS, read_corpus
from emofusion.errors import DataProblemError

VAD = "[2.5000, 2.5000, 2.5000]"
HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
EVALUATOR_LINES = "C-E2:\tNeutral;\t()\nC-E3:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"

# dialog -> [(start, end, utterance id, code, transcript or None, write wav?)]
DIALOGS = {
    ("Session1", "Ses01F_impro01"): [
        ("6.2901", "8.2357", "Ses01F_impro01_F000", "neu", "Excuse me.", True),
        ("10.0100", "11.3925", "Ses01F_impro01_M000", "exc", "Do you have your forms?", True),
        ("14.8872", "18.0175", "Ses01F_impro01_F001", "fru", "Yeah.", False),  # excluded in 4
        ("19.2900", "20.7875", "Ses01F_impro01_M001", "xxx", "Let me see them.", True),
        ("21.0000", "23.5000", "Ses01F_impro01_F002", "hap", None, True),
    ],
    ("Session1", "Ses01F_script01_2"): [
        ("1.0000", "2.5000", "Ses01F_script01_2_F000", "sad", "I'm sorry.", True),
        ("3.0000", "4.0000", "Ses01F_script01_2_M000", "ang", "Go away.", False),  # missing
        ("4.5000", "6.0000", "Ses01F_script01_2_F001", "neu", "Fine.", True),
        ("6.5000", "9.0000", "Ses01F_script01_2_M001", "exc", "Great!", True),
    ],
    ("Session2", "Ses02M_impro03"): [
        ("0.5000", "1.7500", "Ses02M_impro03_F000", "ang", "No!", True),
        ("2.0000", "3.2500", "Ses02M_impro03_M000", "sad", "Oh.", True),
    ],
}
MALFORMED = "[27.0000 - ]\tSes01F_impro01_F003\tsad\t" + VAD
UNKNOWN_CODE = "[28.0000 - 30.0000]\tSes01F_impro01_M003\thpy\t" + VAD


@pytest.fixture
def iemocap(tmp_path: Path, write_wav, write_file) -> Path:
    """IEMOCAP_full_release with 3 dialogs, one malformed line, one unknown code, two missing
    wavs (one of an utterance outside the 4 classes) and the video of one dialog."""
    root = tmp_path / "IEMOCAP_full_release"
    for (session, dialog), utterances in DIALOGS.items():
        dialog_dir = root / session / "dialog"
        lines = [f"[{s} - {e}]\t{uid}\t{code}\t{VAD}\n" + EVALUATOR_LINES
                 for s, e, uid, code, _, _ in utterances]
        if dialog == "Ses01F_impro01":
            lines += [MALFORMED + "\n", UNKNOWN_CODE + "\n"]
        (dialog_dir / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
        (dialog_dir / "EmoEvaluation" / f"{dialog}.txt").write_text(HEADER + "".join(lines))
        transcript = [f"{uid} [{float(s):07.4f}-{float(e):07.4f}]: {text}\n"
                      for s, e, uid, _, text, _ in utterances if text is not None]
        transcript.insert(1, "M: [BREATHING]\n")
        (dialog_dir / "transcriptions").mkdir(exist_ok=True)
        (dialog_dir / "transcriptions" / f"{dialog}.txt").write_text("".join(transcript))
        for _, _, uid, _, _, has_wav in utterances:
            if has_wav:
                write_wav(root / session / "sentences" / "wav" / dialog / f"{uid}.wav")
    write_file(root / "Session1" / "dialog" / "avi" / "DivX" / "Ses01F_impro01.avi")
    evaluation = root / "Session1" / "dialog" / "EmoEvaluation"
    (evaluation / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07 junk")
    (evaluation / "Categorical").mkdir()
    (evaluation / "Categorical" / "Ses01F_impro01_e1_cat.txt").write_text("Ses01F ...\n")
    return root


def test_four_class_merges_excited_and_lists_problems(iemocap: Path) -> None:
    corpus = read_corpus("iemocap", iemocap, on_bad="skip")
    table = corpus.table
    assert list(table.columns) == [*COLUMNS, "script"]
    assert corpus.label_names == ("anger", "sadness", "happiness", "neutral")
    assert corpus.counts == {"anger": 1, "sadness": 2, "happiness": 3, "neutral": 2}
    assert len(table) == 8
    assert corpus.excluded == {"frustration": 1, "no agreement (xxx)": 1}
    assert "IEMOCAP 4-class, exc merged into hap: 8 utterances" in corpus.description
    assert "1 frustration" in corpus.description
    reasons = sorted(p.reason for p in corpus.problems)
    assert len(reasons) == 3
    assert "audio file not found" in reasons
    assert any("unknown emotion code 'hpy'" in r for r in reasons)
    assert any("cannot read annotation line" in r for r in reasons)
    missing = next(p for p in corpus.problems if p.reason == "audio file not found")
    assert missing.utterance_id == "Ses01F_script01_2_M000"
    assert "Ses01F_script01_2_M000" not in set(table["utterance_id"])


def test_rows_carry_speaker_session_transcript_span_and_media(iemocap: Path) -> None:
    table = read_corpus("iemocap", iemocap, on_bad="skip").table.set_index("utterance_id")
    row = table.loc["Ses01F_impro01_F000"]
    assert (row.speaker, row.session, row.label) == ("Ses01F", "Ses01", "neutral")
    assert row.transcript == "Excuse me."
    assert (row.start, row.end) == (6.2901, 8.2357)
    assert row.audio_path == str(
        iemocap / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
    assert row.video_path == str(iemocap / "Session1/dialog/avi/DivX/Ses01F_impro01.avi")
    assert row.script == "Ses01F_impro01"
    assert table.loc["Ses01F_impro01_M000", "speaker"] == "Ses01M"
    assert table.loc["Ses01F_impro01_M000", "label"] == "happiness"
    assert table.loc["Ses01F_impro01_F002", "transcript"] == ""
    scripted = table.loc["Ses01F_script01_2_F000"]
    assert (scripted.script, scripted.video_path) == ("script01_2", "")
    assert table.loc["Ses02M_impro03_F000", "speaker"] == "Ses02F"
    assert set(table["speaker"]) == {"Ses01F", "Ses01M", "Ses02F", "Ses02M"}
    assert not any(math.isnan(v) for v in table["start"])


def test_span_media_is_the_dialog_video(iemocap: Path) -> None:
    assert read_corpus("iemocap", iemocap, on_bad="skip").span_media == ("video_path",)


def test_without_merging_excitement_is_left_out_of_four_classes(iemocap: Path) -> None:
    corpus = read_corpus("iemocap", iemocap, merge_excited=False, on_bad="skip")
    assert corpus.counts == {"anger": 1, "sadness": 2, "happiness": 1, "neutral": 2}
    assert corpus.excluded["excitement"] == 2
    assert "merged" not in corpus.description


def test_all_classes_keeps_readable_names_and_checks_their_media(iemocap: Path) -> None:
    corpus = read_corpus("iemocap", iemocap, classes="all", merge_excited=False, on_bad="skip")
    assert corpus.label_names[:4] == ("anger", "sadness", "happiness", "neutral")
    assert {"frustration", "excitement", "surprise", "other"} <= set(corpus.label_names)
    assert corpus.counts["excitement"] == 2
    assert corpus.counts["frustration"] == 0  # its wav is missing: now a problem
    assert len(corpus.problems) == 4
    assert corpus.excluded == {"no agreement (xxx)": 1}


def test_fail_lists_every_problem_with_file_and_fix(iemocap: Path) -> None:
    with pytest.raises(DataProblemError) as caught:
        read_corpus("iemocap", iemocap)
    message = str(caught.value)
    assert "Found 3 problem(s)" in message
    assert "hpy" in message and "cannot read annotation line" in message
    assert "Ses01F_script01_2_M000.wav" in message
    assert "Ses01F_impro01.txt:" in message  # file:line of the bad lines
    assert "on_bad='skip'" in message
    assert len(caught.value.problems) == 3


def test_folder_without_sessions_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataProblemError, match="no IEMOCAP utterances found"):
        read_corpus("iemocap", tmp_path)
