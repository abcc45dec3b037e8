"""Bad input: one clear message listing every problem (file, reason, fix), no traceback, exit 2;
with ``on_bad_file: skip`` the run completes and lists every dropped utterance."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import emofusion
from emofusion.cli import main
from emofusion.config import build_config
from emofusion.data.manifest import IEMOCAP_LABELS
from emofusion.runner import SKIP_HINT

WIDTHS = {"audio": 4, "text": 3}


def make_dataset(root: Path, speakers=("s1", "s2", "s3", "s4"), per_speaker: int = 8) -> Path:
    """Generic-layout data: every speaker has every IEMOCAP class twice; (5, d) float32 files."""
    rng = np.random.default_rng(0)
    rows = []
    for speaker in speakers:
        for k in range(per_speaker):
            uid = f"{speaker}_u{k:02d}"
            row = {"utterance_id": uid, "speaker": speaker,
                   "label": IEMOCAP_LABELS[k % len(IEMOCAP_LABELS)]}
            for modality, width in WIDTHS.items():
                (root / modality).mkdir(parents=True, exist_ok=True)
                np.save(root / modality / f"{uid}.npy",
                        rng.standard_normal((5, width)).astype(np.float32))
                row[f"{modality}_features"] = f"{modality}/{uid}.npy"
            rows.append(row)
    pd.DataFrame(rows).to_csv(root / "data.csv", index=False)
    return root / "data.csv"


def run_cli(capsys, csv: Path, out: Path, *options: str) -> tuple[int, str]:
    """`emofusion run` on csv; returns (exit code, stderr)."""
    capsys.readouterr()
    code = main(["run", str(csv), "--out", str(out), "--jobs", "1", *options])
    return code, capsys.readouterr().err


def assert_clean_failure(code: int, err: str, n_problems: int | None = None) -> None:
    assert code == 2
    assert err.startswith("error:")
    assert "Traceback" not in err and "File \"" not in err
    if n_problems is not None:
        assert f"Found {n_problems} problem(s) in the input data:" in err


def _save(path: Path, array) -> None:
    np.save(path, array, allow_pickle=False)


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 12])


def _with_nan(path: Path) -> None:
    frames = np.load(path)
    frames[2, 1] = np.nan
    _save(path, frames)


def _with_inf(path: Path) -> None:
    frames = np.load(path)
    frames[0, 0] = -np.inf
    _save(path, frames)


FILE_CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (damage the file, expected reason, expected part of the fix)
    "missing file": (lambda p: p.unlink(), "file not found under", "check the path in the CSV"),
    "non-npy bytes": (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt "),
                      "not a .npy file (no .npy header", "re-export it with numpy.save"),
    "npz saved as npy": (lambda p: p.write_bytes(_npz_bytes()), "not a .npy file",
                         "re-export it with numpy.save"),
    "zero-byte file": (lambda p: p.write_bytes(b""), "not a .npy file (the file is empty)",
                       "re-export"),
    "truncated npy": (_truncate, "not a readable .npy file", "re-export it with numpy.save"),
    "empty T=0": (lambda p: _save(p, np.zeros((0, 4), np.float32)), "empty array of shape (0, 4)",
                  "re-export"),
    "NaN": (_with_nan, "contains NaN/inf (1 of 20 values)", "re-export"),
    "inf": (_with_inf, "contains NaN/inf (1 of 20 values)", "re-export"),
    "wrong width": (lambda p: _save(p, np.ones((5, 2), np.float32)),
                    "width 2, expected 4 for 'audio'", "re-export"),
    "strings": (lambda p: _save(p, np.array(["a", "b"])), "not a real numeric array", "re-export"),
    "3-D array": (lambda p: _save(p, np.ones((2, 3, 4), np.float32)),
                  "expected shape (T, d) or (d,), got (2, 3, 4)", "re-export"),
}


def _npz_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, frames=np.ones((5, 4)))
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_each_bad_file_gives_one_clear_message(case, tmp_path, capsys):
    damage, reason, fix = FILE_CASES[case]
    csv = make_dataset(tmp_path / "data")
    damage(tmp_path / "data" / "audio" / "s2_u03.npy")
    code, err = run_cli(capsys, csv, tmp_path / "out")
    assert_clean_failure(code, err, n_problems=1)
    line = next(li for li in err.splitlines() if li.strip().startswith("- "))
    assert line.strip().startswith("- s2_u03 (audio/s2_u03.npy): ")  # utterance and file
    assert reason in line
    assert fix in line.split(" -> ", 1)[1]
    assert "--on-bad-file skip" in err  # how to go on without the file
    assert SKIP_HINT in err
    assert not (tmp_path / "out").exists()  # nothing was trained or written


def test_empty_path_cell_is_reported(tmp_path, capsys):
    csv = make_dataset(tmp_path / "data")
    table = pd.read_csv(csv)
    table["text_features"] = table["text_features"].astype(object)
    table.loc[0, "text_features"] = ""
    table.to_csv(csv, index=False)
    code, err = run_cli(capsys, csv, tmp_path / "out")
    assert_clean_failure(code, err, n_problems=1)
    assert "s1_u00: no file given for this modality -> fill in the path in the CSV" in err


def test_all_problems_are_listed_at_once(tmp_path, capsys):
    csv = make_dataset(tmp_path / "data")
    (tmp_path / "data" / "audio" / "s1_u01.npy").unlink()
    _with_nan(tmp_path / "data" / "audio" / "s3_u05.npy")
    _save(tmp_path / "data" / "text" / "s4_u07.npy", np.ones((5, 7), np.float32))
    code, err = run_cli(capsys, csv, tmp_path / "out")
    assert_clean_failure(code, err, n_problems=3)
    assert "s1_u01 (audio/s1_u01.npy): file not found" in err
    assert "s3_u05 (audio/s3_u05.npy): contains NaN/inf" in err
    assert "s4_u07 (text/s4_u07.npy): width 7, expected 3 for 'text'" in err


def test_course_label_outside_the_label_set(small_demo_writer, tmp_path, capsys):
    csv = small_demo_writer(tmp_path / "demo", n_utterances=30, bad_files=False)
    table = pd.read_csv(csv)
    table.loc[4, "emotion_labels"] = 7
    table.to_csv(csv, index=False)
    code, err = run_cli(capsys, csv, tmp_path / "out")
    assert_clean_failure(code, err, n_problems=1)
    uid = table.loc[4, "file_name_list"]
    assert (f"{uid}: label '7' is outside the label set "
            "['anger', 'sadness', 'happiness', 'neutral'] -> correct the label or remove the row"
            ) in err


def test_generic_label_name_outside_the_declared_label_set(tmp_path, capsys):
    csv = make_dataset(tmp_path / "data")
    (csv.parent / "features.json").write_text(json.dumps({"label_names": list(IEMOCAP_LABELS)}))
    table = pd.read_csv(csv)
    table.loc[9, "label"] = "angry"
    table.to_csv(csv, index=False)
    code, err = run_cli(capsys, csv, tmp_path / "out")
    assert_clean_failure(code, err, n_problems=1)
    assert "s2_u01: label 'angry' is outside the label set ['anger', 'sadness', 'happiness', " \
           "'neutral'] -> correct the label or remove the row" in err


def test_missing_column(tmp_path, capsys):
    csv = make_dataset(tmp_path / "data")
    pd.read_csv(csv).drop(columns=["speaker"]).to_csv(csv, index=False)
    code, err = run_cli(capsys, csv, tmp_path / "out")
    assert_clean_failure(code, err, n_problems=1)
    assert f"({csv}): missing column 'speaker' -> add the column 'speaker'" in err


def test_duplicate_id(tmp_path, capsys):
    csv = make_dataset(tmp_path / "data")
    table = pd.read_csv(csv)
    table.loc[3, "utterance_id"] = table.loc[2, "utterance_id"]
    table.to_csv(csv, index=False)
    code, err = run_cli(capsys, csv, tmp_path / "out")
    assert_clean_failure(code, err, n_problems=1)
    assert "s1_u02: duplicate utterance id -> give every row a unique id" in err


def test_fewer_speakers_than_folds(tmp_path, capsys):
    csv = make_dataset(tmp_path / "data", speakers=("a", "b", "c"))
    code, err = run_cli(capsys, csv, tmp_path / "out", "--split", "k5")
    assert_clean_failure(code, err, n_problems=1)
    assert "only 3 speaker(s) for 5 folds -> use fewer folds or add speakers" in err


def test_session_split_with_one_session(tmp_path, capsys):
    csv = make_dataset(tmp_path / "data")
    table = pd.read_csv(csv)
    table["session"] = "S1"
    table.to_csv(csv, index=False)
    code, err = run_cli(capsys, csv, tmp_path / "out", "--split", "session")
    assert_clean_failure(code, err, n_problems=1)
    assert "only 1 session(s)" in err


@pytest.mark.parametrize("split", ["official", "transcript"])
def test_split_needing_a_missing_column(tmp_path, capsys, split):
    csv = make_dataset(tmp_path / "data")
    code, err = run_cli(capsys, csv, tmp_path / "out", "--split", split)
    assert_clean_failure(code, err, n_problems=1)
    needed = {"official": "split", "transcript": "transcript"}[split]
    assert f"--split {split} needs a '{needed}' column" in err


def test_class_absent_from_a_training_fold(tmp_path, capsys):
    csv = make_dataset(tmp_path / "data")
    table = pd.read_csv(csv)
    only_s3 = (table["label"] == "neutral") & (table["speaker"] != "s3")
    table.loc[only_s3, "label"] = "anger"
    table.to_csv(csv, index=False)
    code, err = run_cli(capsys, csv, tmp_path / "out")
    assert_clean_failure(code, err, n_problems=1)
    assert "class 'neutral' is absent from the training data of fold 2 (test: s3)" in err
    assert "-> use --split session or kN" in err


# ----------------------------------------------------------------------------- skip


KIND_REASONS = {
    "missing_file": "file not found",
    "empty_array": "empty array of shape (0, 32)",
    "nan_values": "contains NaN/inf",
    "wrong_width": "width 31, expected 32 for 'visual'",
    "corrupt_file": "not a readable .npy file",
}


@pytest.fixture(scope="module")
def skip_run(demo_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("skip") / "run"
    config = build_config({"dataset": demo_csv, "out": out, "on_bad_file": "skip",
                           "systems": ["early"], "jobs": 1, "n_bootstrap": 100})
    return emofusion.run(config, progress=False)


def test_fail_is_the_default_for_the_demo_problems(demo_csv, tmp_path, capsys):
    code, err = run_cli(capsys, demo_csv, tmp_path / "out")
    assert_clean_failure(code, err, n_problems=5)
    for problem in json.loads((demo_csv.parent / "PLANTED_PROBLEMS.json").read_text()):
        assert f"{problem['utterance_id']} ({problem['path']}): " \
               f"{KIND_REASONS[problem['problem']]}" in err


def test_skip_completes_and_lists_every_dropped_utterance(skip_run, demo_csv):
    planted = json.loads((demo_csv.parent / "PLANTED_PROBLEMS.json").read_text())
    assert len(planted) == 5
    metrics = json.loads((skip_run.run_dir / "metrics.json").read_text())
    dropped = {d["utterance_id"]: d for d in metrics["dropped"]}
    assert len(metrics["dropped"]) == len(planted)
    report = (skip_run.run_dir / "report.md").read_text()
    assert "5 utterance(s) were left out" in report
    report_rows = [line for line in report.splitlines() if line.startswith("| Ses")]
    for problem in planted:
        entry = dropped[problem["utterance_id"]]
        assert entry["path"] == problem["path"]
        assert KIND_REASONS[problem["problem"]] in entry["reason"]
        assert entry["fix"]
        row = next(r for r in report_rows if r.startswith(f"| {problem['utterance_id']} |"))
        assert KIND_REASONS[problem["problem"]] in row
    assert [p.utterance_id for p in skip_run.dropped] == [d["utterance_id"]
                                                          for d in metrics["dropped"]]

    predictions = pd.read_csv(skip_run.run_dir / "predictions.csv")
    assert set(predictions["system"]) == {"early"}
    assert len(predictions) == 360 - 5
    assert not set(predictions["utterance_id"]) & set(dropped)
    assert metrics["systems"]["early"]["n"] == 355


def test_skip_does_not_hide_dataset_level_problems(tmp_path, capsys):
    csv = make_dataset(tmp_path / "data", speakers=("a", "b", "c"))
    (tmp_path / "data" / "audio" / "a_u00.npy").unlink()
    code, err = run_cli(capsys, csv, tmp_path / "out", "--split", "k5", "--on-bad-file", "skip")
    assert_clean_failure(code, err, n_problems=1)
    assert "only 3 speaker(s) for 5 folds" in err


def test_demo_planted_problems_file_matches_the_data(demo_csv):
    planted = json.loads((demo_csv.parent / "PLANTED_PROBLEMS.json").read_text())
    assert sorted(p["problem"] for p in planted) == sorted(KIND_REASONS)
    missing = next(p for p in planted if p["problem"] == "missing_file")
    assert not (demo_csv.parent / missing["path"].lstrip("/")).exists()
