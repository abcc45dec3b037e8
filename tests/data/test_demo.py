"""Tests for the generated demo dataset (emofusion.data.demo)."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from emofusion.data.demo import (
    CLASS_COUNTS,
    CSV_COLUMNS,
    PLANTED_PROBLEM_KINDS,
    SPEAKERS,
    write_demo_dataset,
)
from emofusion.errors import ConfigError

TINY = {
    "n_utterances": 60,
    "widths": {"visual": 12, "acoustic": 8, "lexical": 10},
    "mean_frames": {"visual": 6, "acoustic": 4},
}
ID_PATTERN = re.compile(r"^Ses0([1-5])([FM])_(impro\d\d|script\d\d_\d)_([FM])\d{3}$")


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _file(root: Path, csv_value: str) -> Path:
    assert csv_value.startswith("/features/")
    return root / csv_value.lstrip("/")


def _planted(root: Path) -> dict[str, dict[str, str]]:
    entries = json.loads((root / "PLANTED_PROBLEMS.json").read_text(encoding="utf-8"))
    return {e["problem"]: e for e in entries}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "out", seed=3, **TINY)


def test_csv_columns_labels_speakers_and_ids(tiny: Path) -> None:
    assert tiny.name == "dataset.csv"
    with tiny.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == CSV_COLUMNS
    rows = _rows(tiny)
    assert len(rows) == TINY["n_utterances"]
    assert {int(r["emotion_labels"]) for r in rows} <= {0, 1, 2, 3}
    assert set(Counter(r["speakers"] for r in rows).values()) == {6}  # 60 utterances / 10
    assert {r["speakers"] for r in rows} == set(SPEAKERS)
    ids = [r["file_name_list"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        uid, spk = r["file_name_list"], r["speakers"]
        match = ID_PATTERN.match(uid)
        assert match, uid
        assert match.group(1) == spk[2] and match.group(4) == spk[0]  # session digit, gender
        for m in ("visual", "acoustic", "lexical"):
            assert r[f"{m}_features"] == f"/features/{m}_features/Session{spk[2]}/{uid}.npy"


def test_files_have_the_documented_shapes(tiny: Path) -> None:
    root = tiny.parent
    planted_ids = {e["utterance_id"] for e in _planted(root).values()}
    widths, lengths = TINY["widths"], {"visual": set(), "acoustic": set()}
    for r in _rows(tiny):
        if r["file_name_list"] in planted_ids:
            continue
        for m in ("visual", "acoustic", "lexical"):
            arr = np.load(_file(root, r[f"{m}_features"]))
            assert arr.dtype == np.float32 and arr.ndim == 2
            assert arr.shape[1] == widths[m]
            assert np.isfinite(arr).all()
            if m == "lexical":
                assert arr.shape[0] == 1
            else:
                mean = TINY["mean_frames"][m]
                assert 1 <= arr.shape[0] <= 2 * mean
                lengths[m].add(arr.shape[0])
        assert (np.load(_file(root, r["visual_features"])) >= 0).all()  # ReLU-like
    assert len(lengths["visual"]) > 2 and len(lengths["acoustic"]) > 2  # variable length


def test_planted_problems_are_present(tiny: Path) -> None:
    root = tiny.parent
    planted = _planted(root)
    assert set(planted) == set(PLANTED_PROBLEM_KINDS)
    assert len({e["utterance_id"] for e in planted.values()}) == len(planted)
    ids = {r["file_name_list"] for r in _rows(tiny)}
    for kind, entry in planted.items():
        assert entry["utterance_id"] in ids  # rows stay in the CSV
        assert entry["modality"] == PLANTED_PROBLEM_KINDS[kind]
        assert entry["utterance_id"] in entry["path"]
    assert len({e["modality"] for e in planted.values()}) == 3

    assert not _file(root, planted["missing_file"]["path"]).exists()
    empty = np.load(_file(root, planted["empty_array"]["path"]))
    assert empty.shape == (0, TINY["widths"]["visual"])
    assert np.isnan(np.load(_file(root, planted["nan_values"]["path"]))).any()
    wrong = np.load(_file(root, planted["wrong_width"]["path"]))
    assert wrong.shape[0] > 0 and wrong.shape[1] == TINY["widths"]["visual"] - 1
    corrupt = _file(root, planted["corrupt_file"]["path"])
    assert corrupt.exists() and corrupt.stat().st_size > 0
    with pytest.raises(ValueError):
        np.load(corrupt)

    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "generated" in readme.lower() and "IEMOCAP" in readme
    assert all(e["utterance_id"] in readme for e in planted.values())


def test_same_seed_same_bytes_other_seed_differs(tiny: Path, tmp_path: Path) -> None:
    root = tiny.parent
    again = write_demo_dataset(tmp_path / "again", seed=3, **TINY)
    other = write_demo_dataset(tmp_path / "other", seed=4, **TINY)
    assert again.read_bytes() == tiny.read_bytes()
    assert (again.parent / "PLANTED_PROBLEMS.json").read_bytes() == (
        root / "PLANTED_PROBLEMS.json").read_bytes()
    rows = _rows(tiny)[:4]
    for r in rows:
        for m in ("visual", "acoustic", "lexical"):
            rel = r[f"{m}_features"].lstrip("/")
            if (root / rel).exists():
                assert (again.parent / rel).read_bytes() == (root / rel).read_bytes()
    assert other.read_bytes() != tiny.read_bytes()
    first = _rows(other)[0]["lexical_features"].lstrip("/")
    same_name = root / first
    if same_name.exists():  # same utterance id in both: the content must still differ
        assert (other.parent / first).read_bytes() != same_name.read_bytes()


def test_zip_variant_holds_the_members(tmp_path: Path) -> None:
    csv_path = write_demo_dataset(tmp_path / "z", seed=3, zip_features=True, **TINY)
    root = csv_path.parent
    assert not (root / "features").exists()
    planted = _planted(root)
    with zipfile.ZipFile(root / "features.zip") as zf:
        names = set(zf.namelist())
        expected = {r[f"{m}_features"].lstrip("/") for r in _rows(csv_path)
                    for m in ("visual", "acoustic", "lexical")}
        missing = planted["missing_file"]["path"].lstrip("/")
        assert names == expected - {missing}
        assert all(n.startswith("features/") for n in names)
        ok = next(n for n in sorted(names) if n.startswith("features/acoustic_features/")
                  and n != planted["corrupt_file"]["path"].lstrip("/")
                  and n != planted["nan_values"]["path"].lstrip("/"))
        arr = np.load(io.BytesIO(zf.read(ok)))
        assert arr.dtype == np.float32 and arr.shape[1] == TINY["widths"]["acoustic"]
        with pytest.raises(ValueError):
            np.load(io.BytesIO(zf.read(planted["corrupt_file"]["path"].lstrip("/"))))
    # same content as the folder layout
    folder = write_demo_dataset(tmp_path / "f", seed=3, **TINY).parent
    with zipfile.ZipFile(root / "features.zip") as zf:
        assert (folder / ok).read_bytes() == zf.read(ok)


def test_without_bad_files_everything_loads(tmp_path: Path) -> None:
    csv_path = write_demo_dataset(tmp_path / "clean", seed=1, bad_files=False, **TINY)
    root = csv_path.parent
    assert json.loads((root / "PLANTED_PROBLEMS.json").read_text(encoding="utf-8")) == []
    for r in _rows(csv_path):
        for m in ("visual", "acoustic", "lexical"):
            arr = np.load(_file(root, r[f"{m}_features"]))
            assert arr.shape[0] >= 1 and np.isfinite(arr).all()


def test_invalid_arguments_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        write_demo_dataset(tmp_path / "a", n_utterances=12)  # 10 speakers + 5 planted needed
    with pytest.raises(ConfigError):
        write_demo_dataset(tmp_path / "b", n_utterances=20, widths={"audio": 4})
    with pytest.raises(ConfigError):
        write_demo_dataset(tmp_path / "c", n_utterances=20, mean_frames={"visual": 0})


def test_signal_is_learnable_across_speakers_but_not_trivial(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    csv_path = write_demo_dataset(
        tmp_path / "medium", n_utterances=800, seed=0, bad_files=False,
        widths={"visual": 16, "acoustic": 24, "lexical": 16},
        mean_frames={"visual": 8, "acoustic": 6},
    )
    root, rows = csv_path.parent, _rows(csv_path)
    y = np.array([int(r["emotion_labels"]) for r in rows])
    share = np.bincount(y, minlength=4) / len(y)
    assert np.allclose(share, np.array(CLASS_COUNTS) / sum(CLASS_COUNTS), atol=0.06)

    x = np.array([np.load(_file(root, r["acoustic_features"])).mean(axis=0) for r in rows])
    test = np.array([r["speakers"] in ("F05", "M05") for r in rows])  # 8 speakers -> 2
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    clf.fit(x[~test], y[~test])
    accuracy = float((clf.predict(x[test]) == y[test]).mean())
    assert 0.4 < accuracy < 0.95, accuracy
