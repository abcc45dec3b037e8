"""The finaliser shared by all readers: class selection, row checks, `on_bad` handling.

Order of work: merge excitement into happiness (when asked), keep the rows whose label is in the
selected classes (the others are *excluded by design* and only counted), check the kept rows
(media files present and non-empty, a non-empty time span, unique ids), then either raise one
`DataProblemError` listing every problem (``on_bad="fail"``) or drop the items concerned and
return them in `CorpusTable.problems` (``on_bad="skip"``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pandas as pd

from emofusion.data.corpora.base import COLUMNS, MEDIA_COLUMNS, CorpusTable, RawCorpus
from emofusion.data.corpora.labels import FOUR_CLASS, ordered, resolve_classes
from emofusion.errors import ConfigError, DataProblemError, Problem

ON_BAD = ("fail", "skip")
_WAV_HEADER_BYTES = 44
_MEDIA_FIX = "restore the file or correct its path"


def finalise(
    raw: RawCorpus, *, classes: str = "4", merge_excited: bool = True, on_bad: str = "fail"
) -> CorpusTable:
    """Turn a reader's `RawCorpus` into the `CorpusTable` handed to the caller."""
    if on_bad not in ON_BAD:
        raise ConfigError(f"on_bad={on_bad!r} is not valid; use 'fail' or 'skip'")
    table = pd.DataFrame(raw.rows, columns=list(COLUMNS + raw.extra_columns))
    merged = merge_excited and "excitement" in raw.vocabulary
    vocabulary = raw.vocabulary
    if merged:
        table["label"] = table["label"].replace("excitement", "happiness")
        vocabulary = ordered([name for name in vocabulary if name != "excitement"] + ["happiness"])
    selected = resolve_classes(classes, vocabulary)
    keep = table["label"].isin(selected)
    excluded = _value_counts(table.loc[~keep, "label"])
    table = table.loc[keep]
    row_problems = check_rows(table)
    problems = list(raw.problems) + [p for found in row_problems.values() for p in found]
    if problems and on_bad == "fail":
        raise DataProblemError(problems, hint=(
            f"Fix these in the {raw.name} files, or read with on_bad='skip' to leave these "
            "items out (they are then listed in CorpusTable.problems)."
        ))
    table = table.drop(index=list(row_problems)).reset_index(drop=True)
    counts = {name: int((table["label"] == name).sum()) for name in selected}
    description = describe(raw.name, table, classes, selected, merged, counts, excluded,
                           len(problems))
    return CorpusTable(table=table, label_names=selected, problems=problems, counts=counts,
                       description=description, excluded=excluded, span_media=raw.span_media)


def check_rows(table: pd.DataFrame) -> dict[int, list[Problem]]:
    """Problems of the kept rows (media files, time spans, duplicate ids), by index label."""
    found: dict[int, list[Problem]] = defaultdict(list)
    for column in MEDIA_COLUMNS:
        for index, path in table.loc[table[column] != "", column].items():
            reason = media_problem(Path(path), column)
            if reason:
                found[index].append(Problem(reason=reason, fix=_MEDIA_FIX, path=path,
                                            utterance_id=table.at[index, "utterance_id"]))
    empty_span = table["start"].notna() & table["end"].notna() & (table["end"] <= table["start"])
    for index, row in table.loc[empty_span].iterrows():
        found[index].append(Problem(
            reason=f"time span [{row['start']}, {row['end']}] is empty (end must be after start)",
            fix="correct the start and end times", utterance_id=row["utterance_id"],
            path=row_path(row),
        ))
    duplicated = table["utterance_id"].duplicated(keep="first")
    for index, row in table.loc[duplicated].iterrows():
        found[index].append(Problem(
            reason="duplicate utterance id (the first occurrence is kept)",
            fix="give every utterance a unique id, or remove the duplicate file or line",
            utterance_id=row["utterance_id"], path=row_path(row),
        ))
    return dict(found)


def media_problem(path: Path, column: str) -> str:
    """Why the file named in media `column` cannot be used ("" when it can)."""
    kind = column.removesuffix("_path")
    if not path.is_file():
        return f"{kind} file not found"
    size = path.stat().st_size
    if size == 0:
        return f"{kind} file is empty"
    if path.suffix.lower() == ".wav" and size <= _WAV_HEADER_BYTES:
        return "WAV file holds no audio samples"
    return ""


def row_path(row: pd.Series) -> str:
    """The first media path of a row, for locating it in a problem report."""
    return next((row[column] for column in MEDIA_COLUMNS if row[column]), "")


def describe(
    name: str,
    table: pd.DataFrame,
    classes: str,
    selected: tuple[str, ...],
    merged: bool,
    counts: dict[str, int],
    excluded: dict[str, int],
    n_problems: int,
) -> str:
    """One line saying what was read, what was left out by design, and what was skipped."""
    if selected == FOUR_CLASS and str(classes).strip() == "4":
        kind = "4-class"
    elif str(classes).strip().lower() == "all":
        kind = f"all {len(selected)} classes"
    else:
        kind = f"{len(selected)}-class ({', '.join(selected)})"
    text = f"{name} {kind}{', exc merged into hap' if merged else ''}: {len(table)} utterances"
    text += f" from {table['speaker'].nunique()} speakers"
    if excluded:
        parts = ", ".join(f"{n} {label}" for label, n in excluded.items())
        text += f"; excluded by design {sum(excluded.values())} ({parts})"
    empty = [label for label, n in counts.items() if n == 0]
    if empty:
        text += f"; no utterances for {', '.join(empty)}"
    if n_problems:
        text += f"; {n_problems} problem(s), affected items skipped"
    return text


def _value_counts(labels: pd.Series) -> dict[str, int]:
    """Counts per label, largest first (ties by name)."""
    counts = labels.value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}
