"""What produced a run, so that two runs can be told apart: the emofusion, Python and library
versions, the git commit of the emofusion source tree, and a content hash of the data used."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LIBRARIES = ("numpy", "scipy", "scikit-learn", "imbalanced-learn", "joblib", "pandas", "torch")
"""Distributions whose versions are recorded; an uninstalled one (torch) is left out."""
TABLE_COLUMNS = ("utterance_id", "speaker", "session", "label")
PACKAGE_DIR = Path(__file__).resolve().parent


def library_versions() -> dict[str, str]:
    """Installed version of each of `LIBRARIES` (read from package metadata, nothing imported)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(package_dir: Path = PACKAGE_DIR) -> str | None:
    """`git rev-parse HEAD` of the checkout emofusion runs from (``<checkout>/src/emofusion``),
    or None when emofusion is not run from a git checkout (e.g. installed from a wheel)."""
    try:
        answer = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    toplevel, commit = answer.stdout.splitlines()
    # an installed package inside some other repository (a virtualenv in a project) is not ours
    return commit if Path(toplevel).resolve() / "src" / "emofusion" == package_dir else None


def _hash_value(digest: Any, value: Any) -> None:
    """Feed a feature value into `digest`: numeric arrays as dtype, shape and bytes; strings with
    their length; None; lists and object arrays item by item."""
    if isinstance(value, np.ndarray) and value.dtype != object:
        digest.update(f"array {value.dtype.str} {value.shape};".encode())
        digest.update(np.ascontiguousarray(value).data)
    elif isinstance(value, str):
        encoded = value.encode()
        digest.update(f"str {len(encoded)};".encode() + encoded)
    elif value is None:
        digest.update(b"none;")
    else:
        digest.update(f"items {len(value)};".encode())
        for item in value:
            _hash_value(digest, item)


def data_sha256(table: pd.DataFrame, features: Mapping[str, Any]) -> str:
    """sha256 of the data a run used: the utterance table's ids, speakers, sessions and labels,
    and every modality's features after loading (pooled (n, d) matrices, (T, d) frame sequences
    or transcripts), in row order. Moving or touching files leaves it unchanged; changing a label
    or any feature value changes it."""
    digest = hashlib.sha256()
    for column in TABLE_COLUMNS:
        _hash_value(digest, [column, *table[column].astype(str)])
    for name in sorted(features):
        _hash_value(digest, name)
        _hash_value(digest, features[name])
    return digest.hexdigest()


def provenance(data_hash: str) -> dict[str, Any]:
    """The ``provenance`` entry of metrics.json."""
    from emofusion import __version__

    return {"emofusion": __version__, "python": platform.python_version(),
            "libraries": library_versions(), "git_commit": git_commit(),
            "data_sha256": data_hash}
