"""Atomic file writes: a reader, or a run resumed after a kill, never sees a partial file.

Each write goes to a temporary file in the target's folder (same file system), is flushed to
disk, and then renamed over the target with `os.replace`, which is atomic.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMPORARY_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """The hidden temporary file `path` is written to before the rename (one per process)."""
    return path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces `path` when the block ends without an error.

    On an error the temporary file is removed and `path` is left as it was.
    """
    temporary = temporary_name(Path(path))
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically."""
    with atomic_open(path) as handle:
        handle.write(text.encode("utf-8"))
