"""`emofusion sweep` (a grid of runs, resumable) and `emofusion compare` (one table with
speaker-bootstrap intervals, paired tests between runs on the same utterances)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import balanced_accuracy_score, f1_score

from emofusion.cli import main
from emofusion.report.compare import compare_runs
from emofusion.sweep import load_sweep, sweep_runs

LABELS = ["ang", "hap", "neu", "sad"]


def _write_sweep(path: Path, data: Path, **changes) -> Path:
    spec = {"out": str(path.parent / "sweep"),
            "base": {"dataset": str(data), "split": "k3", "systems": ["unimodal", "early"],
                     "modalities": ["acoustic", "lexical"], "inner_folds": 2, "jobs": 1,
                     "n_bootstrap": 100, "use_cache": False},
            "grid": {"scaling": ["standard", "none"]}, "seeds": [0], **changes}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def data(small_demo_writer, tmp_path_factory) -> Path:
    return small_demo_writer(tmp_path_factory.mktemp("sweep-data"), n_utterances=40,
                             bad_files=False)


def test_sweep_names_every_grid_point_and_seed(data, tmp_path):
    spec = load_sweep(_write_sweep(tmp_path / "s.yaml", data, seeds=[0, 3],
                                   grid={"scaling": ["standard", "none"],
                                         "modalities": [["acoustic"], ["acoustic", "lexical"]]}))
    runs = sweep_runs(spec)
    assert [name for name, _ in runs][:3] == [
        "scaling=standard__modalities=acoustic__seed=0",
        "scaling=standard__modalities=acoustic__seed=3",
        "scaling=standard__modalities=acoustic+lexical__seed=0"]
    assert len(runs) == 8
    name, config = runs[-1]
    assert (config.scaling, config.modalities, config.seed) == ("none", ["acoustic", "lexical"], 3)
    assert config.out == tmp_path / "sweep" / name


@pytest.mark.parametrize("changes, message", [
    ({"grid": {"seed": [1, 2]}}, "['seed'] are set by the sweep"),
    ({"grid": {"scaling": []}}, "grid fields ['scaling'] have no values"),
    ({"grid": {"scaling": ["sideways"]}}, "sweep run scaling=sideways__seed=0: invalid"),
    ({"runs": 3}, "runs: Extra inputs are not permitted"),
])
def test_sweep_mistakes_are_one_message(changes, message, data, tmp_path, capsys):
    spec = _write_sweep(tmp_path / "s.yaml", data, **changes)
    assert main(["sweep", str(spec)]) == 2
    err = capsys.readouterr().err
    assert message in err.replace("\n", "") and "Traceback" not in err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_sweep_runs_every_point_then_skips_finished_and_resumes_interrupted(data, tmp_path,
                                                                            capsys):
    spec = _write_sweep(tmp_path / "s.yaml", data)
    assert main(["sweep", str(spec)]) == 0
    runs = [tmp_path / "sweep" / f"scaling={s}__seed=0" for s in ("standard", "none")]
    first = [pd.read_csv(run / "predictions.csv") for run in runs]
    assert all((run / "report.html").is_file() for run in runs)
    capsys.readouterr()
    (runs[1] / "metrics.json").unlink()  # as if killed after two folds
    (runs[1] / "folds" / "fold_02.npz").unlink()
    written = (runs[0] / "metrics.json").stat().st_mtime_ns
    assert main(["sweep", str(spec)]) == 0
    err = capsys.readouterr().err
    assert "scaling=standard__seed=0: finished, skipped" in err
    assert "scaling=none__seed=0: resuming" in err and "2 of 3 folds already finished" in err
    assert (runs[0] / "metrics.json").stat().st_mtime_ns == written
    pd.testing.assert_frame_equal(pd.read_csv(runs[1] / "predictions.csv"), first[1])

    out = tmp_path / "compared"
    assert main(["compare", *map(str, runs), "--n-boot", "100", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "compare.csv")
    assert len(table) == 2 * 3 and (out / "compare.png").stat().st_size > 0
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        for system, values in metrics["systems"].items():
            row = table[(table["run"] == run.name) & (table["system"] == system)].iloc[0]
            for name in ("ua", "f1_micro", "f1_macro"):
                assert row[name] == pytest.approx(values["pooled"][name])
            interval = values["speaker_bootstrap"]["ua"]  # the report's draws (100, seed 0)
            assert [row["ua_low"], row["ua_high"]] == pytest.approx(interval)
    assert "scaling=standard__seed=0:early vs scaling=none__seed=0:early: UA difference" in printed


def _fake_run(folder: Path, utterances: list[str], predicted: np.ndarray,
              true: np.ndarray, speakers: np.ndarray) -> Path:
    folder.mkdir()
    pd.DataFrame({"utterance_id": utterances, "speaker": speakers, "fold": 0, "system": "early",
                  "true": true, "predicted": predicted}).to_csv(folder / "predictions.csv",
                                                                index=False)
    (folder / "metrics.json").write_text(json.dumps({"label_names": LABELS}))
    return folder


def test_compare_table_metrics_and_pairing(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    ids = [f"u{i:03d}" for i in range(n)]
    true = rng.choice(LABELS, n)
    speakers = rng.choice([f"s{k}" for k in range(8)], n)
    good = np.where(rng.random(n) < 0.7, true, rng.choice(LABELS, n))
    poor = np.where(rng.random(n) < 0.4, true, rng.choice(LABELS, n))
    runs = [_fake_run(tmp_path / "good", ids, good, true, speakers),
            _fake_run(tmp_path / "poor", ids, poor, true, speakers),
            _fake_run(tmp_path / "fewer", ids[:150], good[:150], true[:150], speakers[:150])]
    table, paired = compare_runs(runs, n_boot=200)
    good_row = table.iloc[0]
    assert good_row["ua"] == pytest.approx(balanced_accuracy_score(true, good))
    assert good_row["f1_macro"] == pytest.approx(f1_score(true, good, average="macro"))
    assert good_row["f1_micro"] == pytest.approx(np.mean(true == good))
    for name in ("ua", "f1_micro", "f1_macro"):
        assert good_row[f"{name}_low"] < good_row[name] < good_row[f"{name}_high"]
    assert [(p["system_a"], p["system_b"]) for p in paired] == [
        ("good:early", "poor:early"), ("good:early", "fewer:early"), ("poor:early", "fewer:early")]
    assert paired[0]["ua_diff"] > 0 and paired[0]["mcnemar"]["p_holm"] < 0.01
    assert "same utterances: 50 only in A" in paired[1]["error"]


def test_compare_refuses_a_folder_that_is_not_a_finished_run(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "is not a finished run folder" in capsys.readouterr().err
