"""Generic CSV reader: any corpus described by one utterance table.

Required columns: ``utterance_id, speaker, label``; optional: ``session`` (default: the
speaker), ``audio_path``, ``video_path`` (relative paths are resolved against the CSV's folder;
a named file that does not exist is a problem), ``transcript``, ``start``, ``end`` (seconds;
empty = whole file). Labels are read by name, with common spellings normalised ("angry",
"ang" -> "anger", "joy", "happy" -> "happiness"); names outside the usual set are kept
lower-cased. Other columns are passed through unchanged. `root` is the CSV file, or a folder
holding ``manifest.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path

from emofusion.data.corpora.base import COLUMNS, RawCorpus, make_row
from emofusion.data.corpora.labels import canonical, ordered
from emofusion.data.corpora.textio import read_csv_records
from emofusion.errors import DataProblemError, Problem

NAME = "manifest"
REQUIRED = ("utterance_id", "speaker", "label")
DEFAULT_FILE = "manifest.csv"


def read(root: Path) -> RawCorpus:
    """Parse the manifest CSV at `root` (a file, or a folder with manifest.csv)."""
    path = _csv_path(Path(root))
    problems: list[Problem] = []
    columns, records = read_csv_records(path, problems)
    missing = [column for column in REQUIRED if column not in columns]
    if missing:
        raise DataProblemError([Problem(
            reason=f"required columns missing: {', '.join(missing)}",
            fix=f"add columns {', '.join(REQUIRED)} (optional: {', '.join(COLUMNS[4:])})",
            path=str(path),
        )])
    extras = tuple(column for column in columns if column not in COLUMNS)
    rows = [row for number, record in records
            if (row := _row(record, f"{path}:{number}", path.parent, extras, problems))]
    timed = any(not math.isnan(row[edge]) for row in rows for edge in ("start", "end"))
    return RawCorpus(name=f"{NAME} {path.name}", rows=rows, problems=problems,
                     vocabulary=ordered(row["label"] for row in rows), extra_columns=extras,
                     span_media=("audio_path", "video_path") if timed else ())


def _csv_path(root: Path) -> Path:
    """The manifest file named by `root`, or raise when there is none."""
    path = root / DEFAULT_FILE if root.is_dir() else root
    if not path.is_file():
        raise DataProblemError([Problem(
            reason="manifest CSV not found",
            fix=f"pass the CSV file, or a folder holding {DEFAULT_FILE}", path=str(path),
        )])
    return path


def _row(record: dict[str, str], where: str, folder: Path, extras: tuple[str, ...],
         problems: list[Problem]) -> dict | None:
    """The row for one CSV record, or None after recording why it cannot be read."""
    uid, speaker, label = (record[column].strip() for column in REQUIRED)
    empty = [column for column in REQUIRED if not record[column].strip()]
    span = _seconds(record.get("start", "")), _seconds(record.get("end", ""))
    if empty or None in span:
        reason = (f"empty {', '.join(empty)}" if empty
                  else f"start/end must be seconds, got {record.get('start')!r}, "
                       f"{record.get('end')!r}")
        problems.append(Problem(reason=reason, fix="correct the line", utterance_id=uid,
                                path=where))
        return None
    return make_row(uid, speaker, canonical(label), session=record.get("session", "").strip(),
                    audio_path=_resolve(record.get("audio_path", ""), folder),
                    video_path=_resolve(record.get("video_path", ""), folder),
                    transcript=record.get("transcript", "").strip(),
                    start=span[0], end=span[1], **{column: record[column] for column in extras})


def _seconds(text: str) -> float | None:
    """A time in seconds; NaN for an empty cell, None when it is not a number."""
    if not text.strip():
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _resolve(text: str, folder: Path) -> Path | str:
    """A path cell resolved against the CSV's folder; "" stays "" (no file)."""
    text = text.strip()
    if not text:
        return ""
    path = Path(text).expanduser()
    return path if path.is_absolute() else folder / path
