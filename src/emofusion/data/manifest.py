"""The utterance table every part of emofusion works on.

Two CSV layouts load into the same `Manifest`:

* the IEMOCAP course layout: ``file_name_list, speakers, <modality>_features..., emotion_labels``
  with integer labels (0 anger, 1 sadness, 2 happiness, 3 neutral) and speakers like ``F01``
  whose digit is the session;
* the generic layout: ``utterance_id, speaker, label`` (label names), optional ``session``,
  ``transcript``, ``split``, ``script`` and any number of ``<modality>_features`` columns.

An optional ``features.json`` beside the CSV gives ``label_names`` and per-modality
``width``/``kind`` (written by `emofusion extract`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from emofusion.data.sources import FeatureSource
from emofusion.errors import DataProblemError, Problem

IEMOCAP_LABELS: tuple[str, ...] = ("anger", "sadness", "happiness", "neutral")
FEATURE_SUFFIX = "_features"
COURSE_RENAMES = {"file_name_list": "utterance_id", "speakers": "speaker", "emotion_labels": "label"}
OPTIONAL_COLUMNS = ("transcript", "split", "script")


@dataclass(frozen=True)
class Manifest:
    """One row per utterance.

    Attributes:
        table: columns ``utterance_id, speaker, session, label`` (label names), optional
            ``transcript``/``split``/``script``, and ``<modality>_features`` path columns.
        modalities: modality names in column order.
        label_names: ordered class names; class code ``k`` means ``label_names[k]``.
        source: where the feature files are read from.
        csv_path: the CSV the table came from, if any.
        modality_info: per modality, what ``features.json`` says (width, kind, extractor).
        problems: problems found while reading the table (before any file is opened).
    """

    table: pd.DataFrame
    modalities: tuple[str, ...]
    label_names: tuple[str, ...]
    source: FeatureSource
    csv_path: Path | None = None
    modality_info: dict[str, dict] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> np.ndarray:
        """Utterance ids, shape (n,)."""
        return self.table["utterance_id"].to_numpy(dtype=str)

    @property
    def speakers(self) -> np.ndarray:
        """Speaker of each utterance, shape (n,)."""
        return self.table["speaker"].to_numpy(dtype=str)

    @property
    def sessions(self) -> np.ndarray:
        """Session (or recording group) of each utterance, shape (n,)."""
        return self.table["session"].to_numpy(dtype=str)

    @property
    def y(self) -> np.ndarray:
        """Integer class codes, shape (n,); -1 for a label outside `label_names`."""
        lookup = {name: code for code, name in enumerate(self.label_names)}
        return np.array([lookup.get(label, -1) for label in self.table["label"]], dtype=int)

    def paths(self, modality: str) -> list[str]:
        """The manifest path text of each utterance's file for one modality."""
        return self.table[modality + FEATURE_SUFFIX].fillna("").astype(str).tolist()

    def without(self, utterance_ids: set[str]) -> Manifest:
        """A copy without the given utterances."""
        keep = ~self.table["utterance_id"].isin(utterance_ids)
        return replace(self, table=self.table[keep].reset_index(drop=True))

    def with_modalities(self, modalities: list[str]) -> Manifest:
        """A copy restricted to some modalities (in the given order)."""
        unknown = [m for m in modalities if m not in self.modalities]
        if unknown:
            from emofusion.errors import ConfigError

            raise ConfigError(
                f"unknown modalities {unknown}; this dataset has {list(self.modalities)}"
            )
        return replace(self, modalities=tuple(modalities))


def _read_sidecar(csv_path: Path) -> dict:
    sidecar = csv_path.parent / "features.json"
    if not sidecar.is_file():
        return {}
    try:
        return json.loads(sidecar.read_text())
    except json.JSONDecodeError as exc:
        raise DataProblemError(
            [Problem(f"features.json is not valid JSON ({exc})", "fix or delete it", path=str(sidecar))]
        ) from exc


def _read_csv(csv_path: Path) -> pd.DataFrame:
    if not csv_path.is_file():
        raise DataProblemError(
            [Problem("dataset CSV not found", "check the path", path=str(csv_path))]
        )
    try:
        return pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataProblemError(
            [Problem(f"cannot parse the CSV ({exc})", "save it as UTF-8 CSV", path=str(csv_path))]
        ) from exc


def _is_course_layout(frame: pd.DataFrame) -> bool:
    return "file_name_list" in frame.columns or "emotion_labels" in frame.columns


def _check_columns(frame: pd.DataFrame, csv_path: Path, require_labels: bool,
                   course: bool = False) -> None:
    required = ["utterance_id", "speaker", "label"] if require_labels else ["utterance_id"]
    missing = [c for c in required if c not in frame.columns]
    has_features = any(c.endswith(FEATURE_SUFFIX) for c in frame.columns)
    # a course-layout CSV is told its own column names (emotion_labels, not label)
    shown = {new: old for old, new in COURSE_RENAMES.items()} if course else {}
    found = [shown.get(c, c) for c in frame.columns]
    problems = [
        Problem(f"missing column '{shown.get(c, c)}'",
                f"add the column '{shown.get(c, c)}' (found: {found})", path=str(csv_path))
        for c in missing
    ]
    if not has_features:
        problems.append(Problem(
            "no feature column", "add at least one '<modality>_features' column of .npy paths",
            path=str(csv_path)))
    if problems:
        raise DataProblemError(problems)


def _course_session(speaker: str) -> str:
    digits = re.search(r"\d+", speaker)
    return f"Session{int(digits.group())}" if digits else speaker


def _labels_from_codes(codes: pd.Series, names: tuple[str, ...]) -> tuple[pd.Series, list[int]]:
    """Map integer label codes to names; returns the names and the row positions that failed."""
    numeric = pd.to_numeric(codes, errors="coerce")
    valid = numeric.notna() & (numeric == numeric.round()) & numeric.between(0, len(names) - 1)
    labels = pd.Series([names[int(v)] if ok else str(raw) for v, ok, raw in
                        zip(numeric, valid, codes, strict=True)], index=codes.index)
    return labels, list(np.flatnonzero(~valid.to_numpy()))


def _infer_label_names(labels: pd.Series) -> tuple[str, ...]:
    present = sorted(set(labels) - {""})
    if set(present) <= set(IEMOCAP_LABELS):
        return IEMOCAP_LABELS
    return tuple(present)


def _table_problems(table: pd.DataFrame, label_names: tuple[str, ...],
                    bad_label_rows: list[int], require_speakers: bool) -> list[Problem]:
    problems = []
    for pos in bad_label_rows:
        row = table.iloc[pos]
        problems.append(Problem(
            f"label '{row['label']}' is outside the label set {list(label_names)}",
            "correct the label or remove the row", utterance_id=row["utterance_id"]))
    duplicated = table["utterance_id"][table["utterance_id"].duplicated()]
    problems += [Problem("duplicate utterance id", "give every row a unique id", utterance_id=uid)
                 for uid in sorted(set(duplicated))]
    if require_speakers:
        problems += [Problem("empty speaker", "fill in the speaker column", utterance_id=uid)
                     for uid in table.loc[table["speaker"].str.strip() == "", "utterance_id"]]
    return problems


def load_manifest(csv_path: Path | str, features_root: Path | str | None = None,
                  label_names: tuple[str, ...] | None = None, *,
                  require_labels: bool = True) -> Manifest:
    """Read a course-layout or generic dataset CSV.

    Args:
        csv_path: the dataset CSV.
        features_root: folder (or .zip) the feature paths are relative to; default: the CSV's
            folder, or a ``features.zip`` beside it.
        label_names: class names in code order; default from ``features.json``, else the
            IEMOCAP 4-class names when the labels fit them, else the sorted label names.
        require_labels: False for data to predict: ``label`` and ``speaker`` may be absent.

    Raises:
        DataProblemError: the CSV is missing, unparsable or lacks required columns.
    """
    csv_path = Path(csv_path)
    frame = _read_csv(csv_path)
    sidecar = _read_sidecar(csv_path)
    course = _is_course_layout(frame)
    frame = frame.rename(columns=COURSE_RENAMES) if course else frame
    _check_columns(frame, csv_path, require_labels, course)
    for column in ("label", "speaker"):
        if column not in frame.columns:
            frame[column] = ""
    names = tuple(label_names or sidecar.get("label_names") or ())
    bad_rows: list[int] = []
    if course:
        names = names or IEMOCAP_LABELS
        frame["label"], bad_rows = _labels_from_codes(frame["label"], names)
    else:
        names = names or _infer_label_names(frame["label"])
        bad_rows = list(np.flatnonzero(~frame["label"].isin(names).to_numpy()))
    if not require_labels:
        bad_rows = []
    if "session" not in frame.columns:
        frame["session"] = frame["speaker"].map(_course_session) if course else frame["speaker"]
    modalities = tuple(c[: -len(FEATURE_SUFFIX)] for c in frame.columns if c.endswith(FEATURE_SUFFIX))
    keep = ["utterance_id", "speaker", "session", "label"]
    keep += [c for c in OPTIONAL_COLUMNS if c in frame.columns]
    keep += [m + FEATURE_SUFFIX for m in modalities]
    table = frame[keep].reset_index(drop=True)
    return Manifest(
        table=table, modalities=modalities, label_names=names,
        source=FeatureSource.for_csv(csv_path, Path(features_root) if features_root else None),
        csv_path=csv_path, modality_info=sidecar.get("modalities", {}),
        problems=tuple(_table_problems(table, names, bad_rows, require_labels)),
    )
