"""Outer and inner splits. Every split except `random` keeps each speaker on one side.

* ``speaker``: leave one speaker out (10 folds on IEMOCAP, the course's "subject-independent").
* ``session``: leave one session out (5 folds on IEMOCAP, the field's usual protocol).
* ``kN``: N folds grouped by speaker (stratified where possible).
* ``official``: the corpus's own train/dev/test split (column ``split``; train+dev train).
* ``transcript``: leave one session out, and training utterances whose transcript also occurs in
  the test session are removed, so no test line was seen in training.
* ``random``: stratified 5-fold ignoring speakers. It leaks speaker identity into training and
  exists only to show that inflation; every number from it is marked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GroupKFold,
    LeaveOneGroupOut,
    StratifiedGroupKFold,
    StratifiedKFold,
)

from emofusion.errors import Problem

RANDOM_SPLIT_WARNING = (
    "RANDOM SPLIT: utterances of the same speakers are in training and test folds. Speaker "
    "identity leaks into training and inflates every number below (typically by 6-8 points on "
    "IEMOCAP). Use --split speaker or --split session for results you can report."
)


@dataclass(frozen=True)
class OuterFold:
    """One outer fold.

    Attributes:
        index: fold number from 0.
        train: row indices (n_train,) of the training utterances.
        test: row indices (n_test,) of the test utterances.
        held_out: the groups (speakers, sessions or split names) that form the test set.
    """

    index: int
    train: np.ndarray
    test: np.ndarray
    held_out: tuple[str, ...]


def normalise_transcript(text: str) -> str:
    """Lower-case words only, so punctuation and spacing do not hide a repeated line."""
    return " ".join(re.findall(r"[a-z0-9']+", str(text).lower()))


def _group_folds(splitter, groups: np.ndarray, y: np.ndarray) -> list[OuterFold]:
    folds = []
    for index, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        folds.append(OuterFold(index, train, test, tuple(sorted(set(groups[test])))))
    return folds


def _official_folds(table: pd.DataFrame) -> list[OuterFold]:
    split = table["split"].astype(str).str.lower().to_numpy()
    test = np.flatnonzero(split == "test")
    train = np.flatnonzero(split != "test")
    return [OuterFold(0, train, test, ("test",))]


def _transcript_folds(table: pd.DataFrame, y: np.ndarray) -> list[OuterFold]:
    lines = table["transcript"].map(normalise_transcript).to_numpy()
    folds = []
    for fold in _group_folds(LeaveOneGroupOut(), table["session"].to_numpy(str), y):
        seen_in_test = set(lines[fold.test]) - {""}
        keep = np.array([lines[i] not in seen_in_test for i in fold.train], dtype=bool)
        folds.append(OuterFold(fold.index, fold.train[keep], fold.test, fold.held_out))
    return folds


def make_outer_folds(split: str, table: pd.DataFrame, y: np.ndarray, seed: int = 0) -> list[OuterFold]:
    """Outer folds for a split name (see module docstring).

    Args:
        split: split name.
        table: the manifest table (needs ``speaker``, ``session``; ``split`` / ``transcript`` for
            the splits that use them).
        y: class codes (n,).
        seed: shuffling seed for ``kN`` and ``random``.
    """
    speakers = table["speaker"].to_numpy(str)
    if split == "speaker":
        return _group_folds(LeaveOneGroupOut(), speakers, y)
    if split == "session":
        return _group_folds(LeaveOneGroupOut(), table["session"].to_numpy(str), y)
    if split == "official":
        return _official_folds(table)
    if split == "transcript":
        return _transcript_folds(table, y)
    if split == "random":
        splitter = StratifiedKFold(5, shuffle=True, random_state=seed)
        return [OuterFold(i, tr, te, ("random",))
                for i, (tr, te) in enumerate(splitter.split(np.zeros(len(y)), y))]
    n_folds = int(split[1:])
    splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
    return _group_folds(splitter, speakers, y)


def split_problems(split: str, table: pd.DataFrame) -> list[Problem]:
    """Problems that make a split impossible, found before anything is trained."""
    needed = {"official": "split", "transcript": "transcript"}.get(split)
    if needed and needed not in table.columns:
        return [Problem(f"--split {split} needs a '{needed}' column", "add it or choose another split")]
    if split == "official":
        return _official_split_problems(table)
    group_column = "session" if split in ("session", "transcript") else "speaker"
    n_groups = table[group_column].nunique()
    wanted = int(split[1:]) if re.fullmatch(r"k\d+", split) else 2
    if split != "random" and n_groups < max(wanted, 2):
        return [Problem(f"only {n_groups} {group_column}(s) for {wanted} folds",
                        f"use fewer folds or add {group_column}s")]
    return []


def _official_split_problems(table: pd.DataFrame) -> list[Problem]:
    """The official split needs test rows (split == test) and training rows (any other value)."""
    is_test = table["split"].astype(str).str.lower() == "test"
    values = sorted(table["split"].astype(str).unique())[:10]
    fix = "mark the test utterances with 'test' and the others with 'train' or 'dev' in the 'split' column"
    if not is_test.any():
        return [Problem(f"--split official: no row has split 'test' (values: {values})", fix)]
    if is_test.all():
        return [Problem("--split official: every row has split 'test', none is left to train on", fix)]
    return []


def fold_problems(folds: list[OuterFold], table: pd.DataFrame, y: np.ndarray,
                  label_names: tuple[str, ...]) -> list[Problem]:
    """Per fold: a class absent from training, or too few training speakers for the inner search."""
    problems = []
    speakers = table["speaker"].to_numpy(str)
    for fold in folds:
        present = set(y[fold.train])
        for code, name in enumerate(label_names):
            if code not in present and (y == code).any():
                problems.append(Problem(
                    f"class '{name}' is absent from the training data of fold {fold.index} "
                    f"(test: {', '.join(fold.held_out)})",
                    "use --split session or kN so every training fold has every class"))
        n_train_speakers = len(set(speakers[fold.train]))
        if n_train_speakers < 2:
            problems.append(Problem(
                f"fold {fold.index} has {n_train_speakers} training speaker(s); the nested search "
                "needs at least 2 to group its inner folds by speaker",
                "add speakers or use a split with more training speakers"))
    return problems


def inner_folds(y: np.ndarray, groups: np.ndarray | None, n_folds: int, seed: int = 0):
    """(train, held-out) index pairs: grouped by speaker when groups are given, else stratified."""
    if groups is not None and len(set(groups)) >= 2:
        return list(GroupKFold(n_splits=min(n_folds, len(set(groups)))).split(y, y, groups))
    return list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(y, y))


def fold_speakers(folds, speakers: np.ndarray) -> list[tuple[list[str], list[str]]]:
    """Per (train, held-out) index pair, the sorted speakers on each side (for the audit)."""
    return [(sorted(set(speakers[train])), sorted(set(speakers[held_out])))
            for train, held_out in folds]
