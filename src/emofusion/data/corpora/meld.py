"""MELD reader: `train_sent_emo.csv`, `dev_sent_emo.csv`, `test_sent_emo.csv` in one folder.

Columns used: ``Utterance, Speaker, Emotion, Dialogue_ID, Utterance_ID, StartTime, EndTime``.
Emotions neutral, joy (-> happiness), anger, sadness, surprise, fear, disgust. The utterance id
is ``<split>_dia<D>_utt<U>``, the speaker the character's name, the session the split.

MELD is evaluated on its official split, kept in the ``split`` column: the same characters
recur in train, dev and test, so a speaker-independent split is not meaningful here. Extra
columns: ``split``, ``dialogue`` (``<split>_dia<D>``: dialogue ids restart in every split) and
``episode_start`` / ``episode_end`` (seconds into the Friends episode, NaN if unreadable).

Media are optional: when a clip folder of the official release exists (``train_splits``,
``dev_splits_complete``, ``output_repeated_splits_test``, ``<split>_splits``, or any of them
inside a ``<split>/`` folder), ``dia<D>_utt<U>.mp4`` becomes ``video_path`` and a same-named
``.wav``/``.flac`` ``audio_path``; a clip missing from such a folder is a problem. Clips are
per utterance, so ``start``/``end`` stay NaN.
"""

from __future__ import annotations

import math
from pathlib import Path

from emofusion.data.corpora.base import RawCorpus, make_row, no_utterances, require_dir
from emofusion.data.corpora.labels import ordered
from emofusion.data.corpora.naming import decode, index_by_stem
from emofusion.data.corpora.textio import read_csv_records
from emofusion.errors import DataProblemError, Problem

NAME = "MELD"
SPLITS = ("train", "dev", "test")
EMOTIONS = {"neutral": "neutral", "joy": "happiness", "anger": "anger", "sadness": "sadness",
            "surprise": "surprise", "fear": "fear", "disgust": "disgust"}
REQUIRED = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
MEDIA_DIRS = {"train": ("train_splits",), "dev": ("dev_splits_complete", "dev_splits"),
              "test": ("output_repeated_splits_test", "test_splits")}
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv")
AUDIO_SUFFIXES = (".wav", ".flac")


def read(root: Path) -> RawCorpus:
    """Parse the split CSVs in `root`; a missing split file is a problem."""
    root = require_dir(root, NAME, "train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv")
    csvs = {split: root / f"{split}_sent_emo.csv" for split in SPLITS}
    if not any(path.is_file() for path in csvs.values()):
        raise no_utterances(root, NAME, "train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv")
    problems: list[Problem] = []
    rows = []
    for split, path in csvs.items():
        if path.is_file():
            rows += _read_split(split, path, _Media(root, split), problems)
        else:
            problems.append(Problem(reason=f"MELD {split} split file not found",
                                    fix="restore it from the MELD release", path=str(path)))
    return RawCorpus(name=NAME, rows=rows, problems=problems,
                     vocabulary=ordered(EMOTIONS.values()),
                     extra_columns=("split", "dialogue", "episode_start", "episode_end"))


class _Media:
    """The clips of one split, found in the first conventional folder that exists."""

    def __init__(self, root: Path, split: str):
        names = MEDIA_DIRS[split] + (f"{split}_splits",)
        candidates = [base / name for base in (root, root / split) for name in names]
        self.folder = next((folder for folder in candidates if folder.is_dir()), None)
        found = self.folder is not None
        self.videos = index_by_stem(self.folder, VIDEO_SUFFIXES) if found else {}
        self.audio = index_by_stem(self.folder, AUDIO_SUFFIXES) if found else {}

    def paths(self, stem: str) -> tuple[Path | str, Path | str]:
        """(audio, video) for a clip stem; a kind the folder has but this clip lacks is
        returned as the expected path, so the finaliser reports it missing."""
        return (self._find(self.audio, stem, ".wav"), self._find(self.videos, stem, ".mp4"))

    def _find(self, index: dict[str, Path], stem: str, suffix: str) -> Path | str:
        if not index or self.folder is None:
            return ""
        return index.get(stem, self.folder / f"{stem}{suffix}")


def _read_split(split: str, path: Path, media: _Media, problems: list[Problem]) -> list[dict]:
    """Rows of one split CSV."""
    columns, records = read_csv_records(path, problems)
    missing = [column for column in REQUIRED if column not in columns]
    if missing:
        raise DataProblemError([Problem(
            reason=f"columns missing: {', '.join(missing)}",
            fix=f"use the MELD release file with columns {', '.join(REQUIRED)}", path=str(path),
        )])
    rows = (_row(split, record, f"{path}:{number}", media, problems)
            for number, record in records)
    return [row for row in rows if row is not None]


def _row(split: str, record: dict, where: str, media: _Media,
         problems: list[Problem]) -> dict | None:
    """The row for one CSV record, or None after recording why it cannot be read."""
    dialogue, utterance = record["Dialogue_ID"].strip(), record["Utterance_ID"].strip()
    speaker = record["Speaker"].strip()
    if not (dialogue.isdigit() and utterance.isdigit() and speaker):
        problems.append(Problem(
            reason="Dialogue_ID and Utterance_ID must be whole numbers and Speaker non-empty",
            fix="correct the line", path=where))
        return None
    uid = f"{split}_dia{dialogue}_utt{utterance}"
    label = decode(record["Emotion"].strip().lower(), EMOTIONS, "emotion", where, problems,
                   utterance_id=uid, fix="correct the line")
    if label is None:
        return None
    audio, video = media.paths(f"dia{dialogue}_utt{utterance}")
    return make_row(uid, speaker, label, session=split, audio_path=audio, video_path=video,
                    transcript=record["Utterance"].strip(), split=split,
                    dialogue=f"{split}_dia{dialogue}",
                    episode_start=srt_seconds(record.get("StartTime", "")),
                    episode_end=srt_seconds(record.get("EndTime", "")))


def srt_seconds(text: str) -> float:
    """Seconds from an SRT-style time "0:16:16,059"; NaN when it cannot be read."""
    try:
        hours, minutes, seconds = text.strip().replace(",", ".").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return math.nan

