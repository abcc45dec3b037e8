"""The utterance-table contract shared by every corpus reader.

A reader turns a corpus on disk into a `RawCorpus`: one row per utterance it could parse (built
with `make_row`), the problems it met on the way, and the corpus' label vocabulary. The shared
finaliser (`emofusion.data.corpora.finalise`) then selects the classes, checks the media files and
builds the `CorpusTable` the caller gets.

Columns of `CorpusTable.table` (`COLUMNS`, always present, in this order):

- ``utterance_id`` (str): unique within the table.
- ``speaker`` (str): the person speaking; the unit of speaker-independent splits.
- ``session`` (str): recording session (IEMOCAP "Ses01", MELD split name, else the speaker).
- ``label`` (str): a readable class *name* (``anger``, ``happiness``, ...).
- ``audio_path``, ``video_path`` (str): absolute paths, or "" when the corpus has none.
- ``transcript`` (str): what is said, or "" when unknown.
- ``start``, ``end`` (float): the utterance's span in seconds inside the media files named in
  `CorpusTable.span_media`; NaN when every media file is the utterance itself.

Readers may add corpus-specific columns after these (`RawCorpus.extra_columns`), e.g. ``split``
and ``dialogue`` for MELD, ``script`` for IEMOCAP.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from emofusion.errors import DataProblemError, Problem

COLUMNS: tuple[str, ...] = (
    "utterance_id", "speaker", "session", "label",
    "audio_path", "transcript", "video_path", "start", "end",
)
MEDIA_COLUMNS: tuple[str, ...] = ("audio_path", "video_path")


@dataclass
class CorpusTable:
    """One corpus as an utterance table, with what was left out and why.

    Attributes:
        table: one row per kept utterance; columns `COLUMNS` then corpus-specific extras.
        label_names: the selected classes, in order (integer codes index into it).
        problems: items dropped because of a problem (only with ``on_bad="skip"``).
        counts: utterances per label, in `label_names` order (zeros included).
        description: one line, e.g. "IEMOCAP 4-class, exc merged into hap: 5531 utterances ...".
        excluded: utterances left out by design (label outside the selection), per label.
        span_media: media columns whose files hold more than the utterance and must be cut
            at ``[start, end]`` (IEMOCAP: the dialog video); empty when every file is one
            utterance.
    """

    table: pd.DataFrame
    label_names: tuple[str, ...]
    problems: list[Problem]
    counts: dict[str, int]
    description: str
    excluded: dict[str, int] = field(default_factory=dict)
    span_media: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.table)


@dataclass
class RawCorpus:
    """What a reader found, before class selection and media checks.

    Attributes:
        name: display name, e.g. "IEMOCAP".
        rows: one dict per parsed utterance (see `make_row`).
        problems: items the reader could not turn into a row (malformed lines, unknown codes).
        vocabulary: the readable class names the corpus can have, in display order; labels of
            rows outside it (e.g. IEMOCAP "no agreement") are always excluded.
        extra_columns: corpus-specific columns appended after `COLUMNS`.
        span_media: see `CorpusTable.span_media`.
    """

    name: str
    rows: list[dict[str, Any]]
    problems: list[Problem]
    vocabulary: tuple[str, ...]
    extra_columns: tuple[str, ...] = ()
    span_media: tuple[str, ...] = ()


def make_row(
    utterance_id: str,
    speaker: str,
    label: str,
    *,
    session: str = "",
    audio_path: Path | str = "",
    transcript: str = "",
    video_path: Path | str = "",
    start: float = math.nan,
    end: float = math.nan,
    **extra: Any,
) -> dict[str, Any]:
    """One utterance row; `session` defaults to the speaker, paths become absolute strings."""
    row = {
        "utterance_id": utterance_id,
        "speaker": speaker,
        "session": session or speaker,
        "label": label,
        "audio_path": path_str(audio_path),
        "transcript": transcript,
        "video_path": path_str(video_path),
        "start": float(start),
        "end": float(end),
    }
    row.update(extra)
    return row


def path_str(path: Path | str) -> str:
    """An absolute, normalised path as str (symlinks kept), or "" for "no file"."""
    return os.path.abspath(path) if str(path) else ""


def require_dir(root: Path, corpus: str, expected: str) -> Path:
    """`root` as a Path, or raise `DataProblemError` when it is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataProblemError([Problem(
            reason=f"{corpus} folder not found",
            fix=f"pass the folder that holds {expected}",
            path=str(root),
        )])
    return root


def no_utterances(root: Path, corpus: str, expected: str) -> DataProblemError:
    """The error for a folder in which a reader found nothing it recognises."""
    return DataProblemError([Problem(
        reason=f"no {corpus} utterances found",
        fix=f"pass the folder that holds {expected}",
        path=str(root),
    )])
