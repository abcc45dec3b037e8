"""A run survives a kill: fold checkpoints, --resume, --overwrite, the existing-folder refusal,
and the provenance recorded in metrics.json."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import emofusion
import emofusion.evaluation.experiment as experiment
import emofusion.runner as runner
from emofusion.atomic import atomic_open
from emofusion.cli import main
from emofusion.config import RunConfig, build_config
from emofusion.evaluation.checkpoints import RunFolderError
from emofusion.provenance import data_sha256

REPO_ROOT = Path(__file__).resolve().parents[2]


def _config(csv: Path, out: Path, **changes) -> RunConfig:
    return build_config({"dataset": csv, "out": out, "jobs": 1, "split": "k3",
                         "systems": ["unimodal", "early"], "n_bootstrap": 100, **changes})


@pytest.fixture
def fold_calls(monkeypatch) -> list[int]:
    """Index of every fold `emofusion.run` computes (combined in this process from its tasks)."""
    calls: list[int] = []
    real = experiment.combine_fold

    def counted(fold, setup, bases):
        calls.append(fold.index)
        return real(fold, setup, bases)

    monkeypatch.setattr(experiment, "combine_fold", counted)
    return calls


# ----------------------------------------------------------------------------- the run folder


def test_a_run_into_an_existing_folder_is_refused_unless_told(clean_demo_csv, tmp_path, capsys,
                                                              fast_report, monkeypatch):
    monkeypatch.setattr(runner, "print_summary", lambda result, console: None)  # no metrics
    out = tmp_path / "run"
    out.mkdir()  # an empty folder is fine
    command = ["run", str(clean_demo_csv), "--out", str(out), "--jobs", "1", "--split", "k3",
               "--systems", "early"]
    assert main(command) == 0
    first = (out / "predictions.csv").read_bytes()
    capsys.readouterr()

    assert main(command) == 2
    err = capsys.readouterr().err
    assert "already exists and is not empty" in err and "--resume" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert (out / "predictions.csv").read_bytes() == first  # untouched

    (out / "notes.txt").write_text("mine")
    (out / "plots").mkdir()
    (out / "plots" / "stale.png").write_bytes(b"from an older run")
    assert main([*command, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # only run artefacts are replaced
    assert not (out / "plots" / "stale.png").exists()
    assert (out / "predictions.csv").read_bytes() == first

    capsys.readouterr()
    assert main([*command, "--resume", "--overwrite"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_resume_computes_only_the_folds_without_a_checkpoint(clean_demo_csv, tmp_path, fold_calls,
                                                            fast_report):
    config = _config(clean_demo_csv, tmp_path / "run")
    first = emofusion.run(config, progress=False)
    assert fold_calls == [0, 1, 2]
    predictions = (config.out / "predictions.csv").read_bytes()
    assert sorted(p.name for p in (config.out / "folds").iterdir()) == [
        "fold_00.npz", "fold_01.npz", "fold_02.npz", "run.json"]

    (config.out / "folds" / "fold_01.npz").unlink()
    (config.out / "predictions.csv").unlink()
    fold_calls.clear()
    resumed = emofusion.run(config, progress=False, resume=True)
    assert fold_calls == [1]
    assert (config.out / "predictions.csv").read_bytes() == predictions
    assert resumed.folds[0].seconds == first.folds[0].seconds  # read back, not recomputed
    assert resumed.folds[0].searches == first.folds[0].searches

    fold_calls.clear()
    emofusion.run(config, progress=False, resume=True)  # nothing left to do
    assert fold_calls == []

    fresh = config.model_copy(update={"out": tmp_path / "new"})
    emofusion.run(fresh, progress=False, resume=True)  # nothing to resume: a normal run
    assert fold_calls == [0, 1, 2]
    assert (fresh.out / "predictions.csv").read_bytes() == predictions


def test_resume_refuses_a_changed_config_or_data(small_demo_writer, tmp_path, fast_report):
    csv = small_demo_writer(tmp_path / "data", bad_files=False, seed=0)
    config = _config(csv, tmp_path / "run", systems=["early"], use_cache=False)
    emofusion.run(config, progress=False)

    with pytest.raises(RunFolderError, match=r"configuration changed .*seed \(0 then, 1 now\)"):
        emofusion.run(config.model_copy(update={"seed": 1}), progress=False, resume=True)
    # operational settings are not part of the run's identity
    emofusion.run(config.model_copy(update={"use_cache": True, "cache_dir": tmp_path / "c"}),
                  progress=False, resume=True)

    shutil.rmtree(tmp_path / "data")
    small_demo_writer(tmp_path / "data", bad_files=False, seed=1)  # same paths, other values
    with pytest.raises(RunFolderError, match="the data changed since the run started"):
        emofusion.run(config, progress=False, resume=True)

    other = tmp_path / "other"
    other.mkdir()
    (other / "results.txt").write_text("not a run")
    with pytest.raises(RunFolderError, match="no fold checkpoints"):
        emofusion.run(config.model_copy(update={"out": other}), progress=False, resume=True)


def test_an_unreadable_checkpoint_is_one_clear_error(clean_demo_csv, tmp_path, fast_report):
    config = _config(clean_demo_csv, tmp_path / "run", systems=["early"])
    emofusion.run(config, progress=False)
    (config.out / "folds" / "fold_02.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RunFolderError, match=r"fold_02.npz is unreadable .*delete it"):
        emofusion.run(config, progress=False, resume=True)


def test_atomic_open_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "fold_00.npz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["fold_00.npz"]


# ----------------------------------------------------------------------------- a real kill


def _stat(path: Path) -> tuple[int, int, bytes]:
    return path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes()


def _without_commit(metrics: dict) -> dict:
    """metrics.json without the git commit, which moves when the tree is committed to while the
    tests run (and then, in a resumed run, adds ``at_start`` differing only in the commit)."""
    provenance = {k: v for k, v in metrics["provenance"].items()
                  if k not in ("git_commit", "at_start")}
    at_start = metrics["provenance"].get("at_start")
    if at_start is not None:
        assert {k: v for k, v in at_start.items() if k != "git_commit"} == provenance
    return {**metrics, "provenance": provenance}


def test_a_run_killed_after_its_first_fold_resumes_to_the_uninterrupted_results(
        speaker_run, clean_demo_csv, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "emofusion.cli", "run", str(clean_demo_csv),
               "--config", str(speaker_run / "config.yaml"), "--out", str(out)]
    env = {**os.environ, "COLUMNS": "500"}  # rich: no wrapped lines in the captured output
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    first = out / "folds" / "fold_00.npz"  # jobs: 1 in the config: folds finish in order
    deadline = time.monotonic() + 600
    while not first.exists():
        assert process.poll() is None, "the run ended before its first fold checkpoint"
        assert time.monotonic() < deadline, "no fold checkpoint after 10 minutes"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL

    finished = sorted(out.glob("folds/fold_*.npz"))
    assert 1 <= len(finished) < 10, "the kill came too late to interrupt the folds"
    assert not (out / "metrics.json").exists()
    saved = {p.name: _stat(p) for p in finished}

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished)} of 10 folds already finished" in resumed.stderr
    assert {p.name: _stat(p) for p in finished} == saved  # the finished folds were not redone
    assert sorted(p.name for p in (out / "folds").iterdir()) == [
        *(f"fold_{i:02d}.npz" for i in range(10)), "run.json"]  # no stray temporary file

    assert (out / "predictions.csv").read_bytes() == (speaker_run / "predictions.csv").read_bytes()
    metrics = json.loads((out / "metrics.json").read_text())
    reference = json.loads((speaker_run / "metrics.json").read_text())
    assert _without_commit(metrics) == _without_commit(reference)
    seconds = {f["fold"]: f["seconds"] for f in json.loads((out / "folds.json").read_text())}
    for path in finished:
        with np.load(path) as stored:
            meta = json.loads(str(stored["meta"]))
        assert seconds[meta["fold"]] == meta["seconds"]


# ----------------------------------------------------------------------------- provenance


def test_metrics_json_records_versions_commit_and_data_hash(speaker_run):
    provenance = json.loads((speaker_run / "metrics.json").read_text())["provenance"]
    assert provenance["emofusion"] == emofusion.__version__
    assert provenance["python"] == ".".join(map(str, sys.version_info[:3]))
    for name in ("numpy", "scipy", "scikit-learn", "imbalanced-learn", "joblib", "pandas"):
        assert provenance["libraries"][name] == metadata.version(name)
    if (REPO_ROOT / ".git").exists():
        commit = provenance["git_commit"]
        assert len(commit) == 40
        ancestor = subprocess.run(["git", "-C", str(REPO_ROOT), "merge-base", "--is-ancestor",
                                   commit, "HEAD"], check=False)
        assert ancestor.returncode == 0
    config = RunConfig.from_yaml(speaker_run / "config.yaml")
    data = runner.prepare_data(config)
    assert provenance["data_sha256"] == data_sha256(data.manifest.table, data.features)


def test_a_run_resumed_under_other_versions_reports_those_it_started_with(clean_demo_csv,
                                                                         tmp_path, monkeypatch):
    import emofusion.report.writer

    reported: list[dict] = []
    monkeypatch.setattr(emofusion.report.writer, "write_report",
                        lambda *args, **kwargs: reported.append(kwargs["provenance"]) or {})
    config = _config(clean_demo_csv, tmp_path / "run", systems=["early"])
    emofusion.run(config, progress=False)
    record_path = config.out / "folds" / "run.json"
    record = json.loads(record_path.read_text())
    record["provenance"]["libraries"]["numpy"] = "1.0.0"  # as if started before an upgrade
    record_path.write_text(json.dumps(record))
    emofusion.run(config, progress=False, resume=True)
    assert "at_start" not in reported[0]
    assert reported[1]["at_start"]["libraries"]["numpy"] == "1.0.0"
    assert reported[1]["libraries"]["numpy"] == metadata.version("numpy")


def test_the_data_hash_follows_values_not_files():
    table = pd.DataFrame({"utterance_id": ["a", "b"], "speaker": ["F01", "M01"],
                          "session": ["1", "1"], "label": ["anger", "sadness"]})
    features = {"acoustic": np.arange(6.0).reshape(2, 3),
                "visual": [np.ones((4, 2), np.float32), None],
                "transcript": np.array(["hello", ""], dtype=object)}
    reference = data_sha256(table, features)
    assert data_sha256(table.copy(), {k: features[k] for k in reversed(features)}) == reference
    relabelled = table.assign(label=["anger", "anger"])
    assert data_sha256(relabelled, features) != reference
    changed = features["acoustic"].copy()
    changed[1, 2] += 1e-9
    assert data_sha256(table, {**features, "acoustic": changed}) != reference
    assert data_sha256(table, {**features, "transcript": np.array(["hell", "o"], object)}) \
        != reference
    assert data_sha256(table, {**features, "visual": [np.ones((2, 4), np.float32), None]}) \
        != reference


def test_the_data_hash_does_not_change_when_the_data_folder_moves(clean_demo_csv, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(clean_demo_csv.parent, moved)
    hashes = []
    for csv in (clean_demo_csv, moved / clean_demo_csv.name):
        data = runner.prepare_data(build_config({"dataset": csv, "use_cache": False}))
        hashes.append(data_sha256(data.manifest.table, data.features))
    assert hashes[0] == hashes[1]
