"""The run folder while a run is in progress: each finished outer fold is saved as it completes,
so a killed run continues where it stopped (``emofusion run --resume``) and a second run does
not silently replace a first.

Layout of ``<run folder>/folds/``:

* ``run.json``: what the fold results depend on (the configuration without its operational
  fields, the data's content hash) and the provenance recorded when the run started;
* ``fold_NN.npz``: one finished fold: ``proba_<k>`` (n_test, n_classes) float64 probabilities
  of the k-th system and ``meta``, a JSON string with the fold index, held-out groups, system
  names, searches (chosen parameters, inner scores and speakers) and seconds (the fold's task
  times summed: its base systems' fits and the fusion step).

Every file is written atomically (a temporary file in the same folder, then `os.replace`).
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from emofusion.atomic import TEMPORARY_SUFFIX, atomic_open, atomic_write_text
from emofusion.config import RunConfig
from emofusion.errors import ConfigError
from emofusion.evaluation.experiment import FoldOutput
from emofusion.evaluation.splits import OuterFold

CHECKPOINT_DIR = "folds"
RECORD_NAME = "run.json"
FOLD_FILE = re.compile(r"fold_(\d+)\.npz")
OPERATIONAL_FIELDS = ("out", "jobs", "backend", "dask_scheduler", "cache_dir", "use_cache",
                      "mlflow", "jobqueue")
"""Config fields that do not change a run's numbers; a resumed run may change them."""
RUN_ARTEFACTS = ("config.yaml", "predictions.csv", "metrics.json", "folds.json", "report.md",
                 "report.html", "plots", CHECKPOINT_DIR)
"""What a run writes into its folder; ``--overwrite`` removes exactly these."""


class RunFolderError(ConfigError):
    """The run folder cannot be used as asked (it holds another run, or cannot be resumed)."""


def _jsonable(value: Any) -> Any:
    from emofusion.report.writer import to_jsonable  # the report stack is heavy to import

    return json.loads(json.dumps(to_jsonable(value)))


def _run_identity(config: RunConfig, data_hash: str) -> dict[str, Any]:
    """What the fold results depend on: the config without `OPERATIONAL_FIELDS`, and the data."""
    settings = {k: v for k, v in config.model_dump(mode="json").items()
                if k not in OPERATIONAL_FIELDS}
    return _jsonable({"config": settings, "data_sha256": data_hash})


def _changed_settings(then: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [f"{key} ({then.get(key)!r} then, {now.get(key)!r} now)"
            for key in sorted(set(then) | set(now)) if then.get(key) != now.get(key)]


class RunFolder:
    """A run's output folder and the fold checkpoints in it.

    Args:
        path: the run folder.
        resume: continue the run whose checkpoints are in `path`.
        overwrite: replace the run in `path`.

    Raises:
        RunFolderError: `path` is a file, or a non-empty folder and neither flag is given, or
            both flags are given.
    """

    def __init__(self, path: Path, *, resume: bool = False, overwrite: bool = False):
        self.path = Path(path)
        self.resume = resume
        self.overwrite = overwrite
        self.checkpoints = self.path / CHECKPOINT_DIR
        if resume and overwrite:
            raise RunFolderError("--resume and --overwrite exclude each other: --resume "
                                 f"continues the run in {self.path}, --overwrite replaces it")
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"run folder {self.path} is a file; choose another --out")
        if not (resume or overwrite) and self._has_entries():
            raise RunFolderError(
                f"run folder {self.path} already exists and is not empty; rerun with --resume "
                "to continue the run in it, with --overwrite to replace it, or choose another "
                "--out")

    def _has_entries(self) -> bool:
        return self.path.is_dir() and any(self.path.iterdir())

    def begin(self, config: RunConfig, data_hash: str,
              provenance: dict[str, Any]) -> dict[str, Any]:
        """Start the run (write ``config.yaml`` and the checkpoint record), or check that the run
        being resumed is this one.

        Args:
            config: this run's configuration.
            data_hash: `emofusion.provenance.data_sha256` of the data this run uses.
            provenance: this process's provenance (`emofusion.provenance.provenance`).

        Returns:
            the provenance to report: `provenance`, plus ``at_start`` (the provenance the run
            started with) when a resumed run's code or libraries differ from it.

        Raises:
            RunFolderError: resuming a folder with no checkpoints, or whose configuration or
                data differ from this run's.
        """
        identity = _run_identity(config, data_hash)
        record_path = self.checkpoints / RECORD_NAME
        if self.resume and record_path.is_file():
            recorded = json.loads(record_path.read_text(encoding="utf-8"))
            self._check_same_run(recorded, identity)
            for stray in self.checkpoints.glob(f".*{TEMPORARY_SUFFIX}"):  # killed mid-write
                stray.unlink()
            at_start = recorded["provenance"]
            return provenance if at_start == _jsonable(provenance) else {
                **provenance, "at_start": at_start}
        if self.resume and self._has_entries():
            raise RunFolderError(f"cannot resume {self.path}: it has no fold checkpoints "
                                 f"({CHECKPOINT_DIR}/{RECORD_NAME}); rerun with --overwrite to "
                                 "replace it, or choose another --out")
        if self.overwrite:
            self._remove_artefacts()
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # no permission, read-only or virtual file system
            raise RunFolderError(f"cannot create the run folder {self.path} ({exc.strerror}); "
                                 "choose another --out") from exc
        atomic_write_text(self.path / "config.yaml", config.to_yaml())
        atomic_write_text(record_path, json.dumps({**identity, "provenance": provenance},
                                                  indent=1))
        return provenance

    def _check_same_run(self, recorded: dict[str, Any], identity: dict[str, Any]) -> None:
        changed = _changed_settings(recorded["config"], identity["config"])
        if changed:
            raise RunFolderError(
                f"cannot resume {self.path}: the configuration changed since the run started: "
                f"{'; '.join(changed)}. Give the first run's options again (its configuration is "
                f"{self.path / 'config.yaml'}, usable with --config), or --overwrite to start "
                "again")
        if recorded["data_sha256"] != identity["data_sha256"]:
            raise RunFolderError(
                f"cannot resume {self.path}: the data changed since the run started (content "
                f"hash {recorded['data_sha256'][:12]}… then, {identity['data_sha256'][:12]}… "
                "now). Restore the data the run started with, or --overwrite to start again")

    def _remove_artefacts(self) -> None:
        for name in RUN_ARTEFACTS:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)

    def _fold_path(self, index: int) -> Path:
        return self.checkpoints / f"fold_{index:02d}.npz"

    def finished(self) -> set[int]:
        """Indices of the folds whose checkpoint is saved."""
        matches = (FOLD_FILE.fullmatch(p.name) for p in self.checkpoints.glob("fold_*.npz"))
        return {int(m[1]) for m in matches if m}

    def save(self, output: FoldOutput) -> None:
        """Write one finished fold's checkpoint atomically."""
        meta = {"fold": output.fold.index, "held_out": list(output.fold.held_out),
                "systems": list(output.probabilities), "searches": output.searches,
                "seconds": output.seconds}
        arrays = {f"proba_{k}": p for k, p in enumerate(output.probabilities.values())}
        with atomic_open(self._fold_path(output.fold.index)) as handle:
            np.savez(handle, meta=np.array(json.dumps(_jsonable(meta))), **arrays)

    def load(self, fold: OuterFold) -> FoldOutput:
        """The saved output of `fold`.

        Raises:
            RunFolderError: the checkpoint is unreadable or belongs to another fold.
        """
        path = self._fold_path(fold.index)
        try:
            with np.load(path, allow_pickle=False) as stored:
                meta = json.loads(str(stored["meta"]))
                probabilities = {system: stored[f"proba_{k}"]
                                 for k, system in enumerate(meta["systems"])}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise RunFolderError(f"fold checkpoint {path} is unreadable ({exc}); delete it to "
                                 "compute that fold again, or rerun with --overwrite") from exc
        if meta["held_out"] != _jsonable(list(fold.held_out)):
            raise RunFolderError(f"fold checkpoint {path} holds out {meta['held_out']}, but this "
                                 f"run's fold {fold.index} holds out {list(fold.held_out)}; "
                                 "rerun with --overwrite")
        return FoldOutput(fold, probabilities, meta["searches"], meta["seconds"])
