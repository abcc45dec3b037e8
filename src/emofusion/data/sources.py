"""Where feature files live: a folder, or a `features.zip` read in place.

Course-layout CSVs store paths that look absolute (``/features/visual_features/Session1/x.npy``)
but are relative to the folder that holds the features. A `FeatureSource` resolves such a path
against its root by trying the path and then shorter and shorter tails of it, so both
``ROOT/features/visual_features/...`` and ``ROOT/visual_features/...`` are found.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np


class FeatureFileError(Exception):
    """A single feature file could not be read; the message says why."""


def _tails(path_text: str) -> list[str]:
    """All suffixes of a POSIX-style path, longest first (``a/b/c`` -> ``a/b/c``, ``b/c``, ``c``)."""
    parts = [p for p in PurePosixPath(path_text.replace("\\", "/")).parts if p not in ("/", "")]
    return ["/".join(parts[i:]) for i in range(len(parts))]


NPY_MAGIC = b"\x93NUMPY"
# np.load parses the .npy header with ast.literal_eval, which is not thread-safe in some CPython
# releases (3.11.7 raises "SystemError: AST constructor recursion depth mismatch" when threads
# parse at once); files are read on threads, so the parsing of the bytes is serialised.
_PARSE_LOCK = threading.Lock()


def _parse_npy(raw: bytes, where: str) -> np.ndarray:
    # np.load would open a zip as an NpzFile and report other bytes as "pickled data"
    if not raw.startswith(NPY_MAGIC):
        what = "the file is empty" if not raw else "no .npy header: a .npz, text or media file?"
        raise FeatureFileError(f"not a .npy file ({what})")
    try:
        with _PARSE_LOCK:
            return np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:  # numpy raises several types for bad bytes
        raise FeatureFileError(f"not a readable .npy file ({type(exc).__name__}: {exc})") from exc


class FeatureSource:
    """Resolves and reads the `.npy` files named in a manifest.

    Args:
        root: folder against which manifest paths are resolved.
        archive: optional zip file whose members hold the features (read without unpacking).
    """

    def __init__(self, root: Path, archive: Path | None = None):
        self.root = Path(root)
        self.archive = archive
        self._members: dict[str, str] | None = None
        self._local = threading.local()

    @classmethod
    def for_csv(cls, csv_path: Path, features_root: Path | None = None) -> FeatureSource:
        """The source for a CSV: `features_root` if given, else the CSV's folder, using a
        ``features.zip`` found there when the files are not unpacked."""
        root = Path(features_root) if features_root else Path(csv_path).resolve().parent
        if root.is_file() and root.suffix == ".zip":
            return cls(root.parent, archive=root)
        archive = root / "features.zip"
        return cls(root, archive=archive if archive.is_file() else None)

    def describe(self) -> str:
        return f"{self.archive} (zip)" if self.archive else str(self.root)

    def _zip(self) -> zipfile.ZipFile:
        handle = getattr(self._local, "zip", None)
        if handle is None:
            handle = zipfile.ZipFile(self.archive)
            self._local.zip = handle
        return handle

    def _member_index(self) -> dict[str, str]:
        if self._members is None:
            names = [n for n in zipfile.ZipFile(self.archive).namelist() if not n.endswith("/")]
            self._members = {n.strip("/"): n for n in names}
        return self._members

    def locate(self, path_text: str) -> str | None:
        """The resolved location of a manifest path (a file path or zip member), or None."""
        if not path_text:
            return None
        if self.archive is not None:
            members = self._member_index()
            return next((members[t] for t in _tails(path_text) if t in members), None)
        if os.path.isabs(path_text) and os.path.isfile(path_text):
            return path_text
        for tail in _tails(path_text):
            candidate = self.root / tail
            if candidate.is_file():
                return str(candidate)
        return None

    def read(self, location: str) -> np.ndarray:
        """Read one located `.npy` (from `locate`) without allowing pickled objects."""
        if self.archive is not None:
            try:
                raw = self._zip().read(location)
            except (zipfile.BadZipFile, KeyError, OSError) as exc:
                raise FeatureFileError(f"cannot read from {self.archive}: {exc}") from exc
            return _parse_npy(raw, location)
        try:
            raw = Path(location).read_bytes()
        except OSError as exc:
            raise FeatureFileError(f"cannot read file: {exc.strerror}") from exc
        return _parse_npy(raw, location)

    def fingerprint(self, locations: list[str | None]) -> str:
        """A hash that changes when any of the files (or the zip) changes: sizes and mtimes."""
        digest = hashlib.sha256()
        if self.archive is not None:
            stat = self.archive.stat()
            digest.update(f"{self.archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
            digest.update("\n".join(loc or "-" for loc in locations).encode())
            return digest.hexdigest()
        for loc in locations:
            if loc is None:
                digest.update(b"-\n")
                continue
            stat = os.stat(loc)
            digest.update(f"{loc}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()
