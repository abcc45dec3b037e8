"""EmoDB reader on a tiny `wav/` corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from emofusion.data.corpora import read_corpus
from emofusion.errors import DataProblemError


@pytest.fixture
def emodb(tmp_path: Path, write_wav) -> Path:
    for stem in ("03a01Fa", "03a02Wb", "08b10Tc", "09a05Nd", "10b03La", "11a01Xa", "12z99Na"):
        write_wav(tmp_path / "wav" / f"{stem}.wav")
    (tmp_path / "lablaut").mkdir()
    (tmp_path / "lablaut" / "03a01Fa.lab").write_text("ignored\n")
    return tmp_path


def test_rows_speakers_and_sentences(emodb: Path) -> None:
    corpus = read_corpus("emodb", emodb, on_bad="skip")
    table = corpus.table.set_index("utterance_id")
    assert corpus.counts == {"anger": 1, "sadness": 1, "happiness": 1, "neutral": 2}
    assert corpus.excluded == {"boredom": 1}
    assert set(table["speaker"]) == {"03", "08", "09", "12"}
    assert table.loc["03a01Fa", "transcript"] == "Der Lappen liegt auf dem Eisschrank."
    assert table.loc["08b10Tc", "label"] == "sadness"
    assert table.loc["12z99Na", "transcript"] == ""  # text code not in the published list
    assert table.loc["12z99Na", "text_id"] == "z99"


def test_unknown_emotion_letter(emodb: Path) -> None:
    corpus = read_corpus("emodb", emodb, classes="all", on_bad="skip")
    assert [p.utterance_id for p in corpus.problems] == ["11a01Xa"]
    assert corpus.counts["boredom"] == 1
    with pytest.raises(DataProblemError, match="unknown emotion code 'X'"):
        read_corpus("emodb", emodb)
