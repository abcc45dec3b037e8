"""Helpers for corpora whose annotations live in file names (RAVDESS, CREMA-D, EmoDB, MELD media).

Each helper reports what it cannot understand as a `Problem` appended to the caller's list, so a
reader collects every problem of a corpus before the finaliser decides whether to fail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from emofusion.errors import Problem


def list_files(folder: Path, suffixes: Iterable[str], *, recursive: bool = False) -> list[Path]:
    """Files in `folder` whose suffix is one of `suffixes` (any case), sorted; hidden ones skipped.

    macOS copies of corpora often carry "._name.wav" resource files: they are not utterances.
    """
    wanted = {suffix.lower() for suffix in suffixes}
    candidates = _walk(folder) if recursive else folder.glob("*")
    return sorted(p for p in candidates
                  if p.suffix.lower() in wanted and not p.name.startswith(".") and p.is_file())


def _walk(folder: Path) -> Iterable[Path]:
    """Every entry below `folder`, following symlinked folders (a corpus assembled from links,
    e.g. a subset of RAVDESS actors, is read like a copy); each real folder is visited once,
    so a link loop ends."""
    seen: set[str] = set()
    for parent, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(parent)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        folders.sort()  # deterministic: of two links to one folder, the first name is kept
        yield from (Path(parent, name) for name in files)


def match_names(
    files: Iterable[Path], pattern: re.Pattern[str], layout: str, problems: list[Problem]
) -> list[tuple[Path, re.Match[str]]]:
    """`(file, match)` for each file whose stem matches `pattern`; the others become problems."""
    matched = []
    for path in files:
        found = pattern.fullmatch(path.stem)
        if found:
            matched.append((path, found))
        else:
            problems.append(Problem(
                reason=f"file name does not follow the corpus naming {layout}",
                fix="rename the file to the corpus naming, or move it out of the corpus folder",
                utterance_id=path.stem, path=str(path),
            ))
    return matched


def decode(
    code: str, codes: Mapping[str, str], what: str, path: Path | str, problems: list[Problem],
    *, utterance_id: str = "", fix: str = "rename or remove the file",
) -> str | None:
    """The meaning of `code`, or None after appending an "unknown code" problem.

    `path` locates the code (a file, or "file:line"); `utterance_id` defaults to the file stem.
    """
    if code in codes:
        return codes[code]
    problems.append(Problem(
        reason=f"unknown {what} code {code!r}",
        fix=f"expected one of {', '.join(codes)}; {fix}",
        utterance_id=utterance_id or Path(path).stem, path=str(path),
    ))
    return None


def decode_all(
    fields: Mapping[str, tuple[str, Mapping[str, str]]], path: Path, problems: list[Problem]
) -> dict[str, str] | None:
    """Decode several named codes of one file name; None when any of them is unknown.

    `fields` maps an output key to `(code, codebook)`; every unknown code is reported.
    """
    decoded = {key: decode(code, codes, key, path, problems)
               for key, (code, codes) in fields.items()}
    if any(value is None for value in decoded.values()):
        return None
    return {key: str(value) for key, value in decoded.items()}


def index_by_stem(folder: Path, suffixes: Iterable[str]) -> dict[str, Path]:
    """Files of `folder` and below keyed by stem (first in sorted order wins); {} if no folder."""
    if not folder.is_dir():
        return {}
    index: dict[str, Path] = {}
    for path in list_files(folder, suffixes, recursive=True):
        index.setdefault(path.stem, path)
    return index
