"""On-disk cache of pooled matrices, so a second run does not re-read the `.npy` files.

The key hashes the modality, the pooling code's version (`pooling.POOLING_VERSION`), the
ordered utterance ids, the file list with each file's size and modification time (or the zip's),
and the declared width; each pooling method is stored as its own `.npy`, next to a JSON
file with the modality's width and problems.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from emofusion.atomic import atomic_open, atomic_write_text
from emofusion.data.manifest import Manifest
from emofusion.errors import Problem
from emofusion.features import pooling
from emofusion.features.loading import ModalityData, load_modality


def default_cache_dir() -> Path:
    """`$EMOFUSION_CACHE_DIR`, else `~/.cache/emofusion`."""
    env = os.environ.get("EMOFUSION_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "emofusion"


class PooledCache:
    """Pooled features keyed by data and pooling.

    Args:
        directory: cache folder, or None to disable caching.
    """

    def __init__(self, directory: Path | None):
        self.directory = Path(directory) if directory else None
        self.hits = 0
        self.misses = 0

    def key(self, manifest: Manifest, modality: str) -> str:
        """Hash of everything the pooled features of `modality` depend on."""
        paths = manifest.paths(modality)
        locations = Parallel(n_jobs=4, prefer="threads", batch_size=256)(
            delayed(manifest.source.locate)(p) for p in paths)
        digest = hashlib.sha256()
        digest.update(modality.encode())
        digest.update(json.dumps({"pooling_version": pooling.POOLING_VERSION,
                                  "utterance_ids": manifest.ids.tolist()}).encode())
        digest.update(json.dumps(manifest.modality_info.get(modality, {}), sort_keys=True).encode())
        digest.update("\n".join(paths).encode())
        digest.update(manifest.source.fingerprint(locations).encode())
        return digest.hexdigest()[:32]

    def _paths(self, key: str, poolings: list[str]) -> tuple[Path, dict[str, Path]]:
        assert self.directory is not None
        return (self.directory / f"{key}.json",
                {p: self.directory / f"{key}-{p}.npy" for p in poolings})

    def load(self, manifest: Manifest, modality: str, poolings: list[str], *,
             jobs: int = 4) -> ModalityData:
        """Pooled data for `modality`, from the cache when present, else read and stored."""
        if self.directory is None:
            return load_modality(manifest, modality, poolings, jobs=jobs)
        key = self.key(manifest, modality)
        meta_path, arrays = self._paths(key, poolings)
        if meta_path.is_file() and all(p.is_file() for p in arrays.values()):
            self.hits += 1
            meta = json.loads(meta_path.read_text())
            return ModalityData(
                pooled={p: np.load(path) for p, path in arrays.items()}, width=meta["width"],
                problems=[Problem(**item) for item in meta["problems"]])
        self.misses += 1
        data = load_modality(manifest, modality, poolings, jobs=jobs)
        self._store(meta_path, arrays, data)
        return data

    def _store(self, meta_path: Path, arrays: dict[str, Path], data: ModalityData) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for method, path in arrays.items():
            with atomic_open(path) as handle:
                np.save(handle, data.pooled[method])
        meta = {"width": data.width, "problems": [p.to_dict() for p in data.problems]}
        atomic_write_text(meta_path, json.dumps(meta))
