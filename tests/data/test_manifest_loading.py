"""Manifest loading: both CSV layouts, path resolution, --features-root, features.zip, sidecar."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofusion.cli import _config_from_args, _parser
from emofusion.config import build_config
from emofusion.data.demo import LABEL_NAMES, MODALITIES
from emofusion.data.manifest import IEMOCAP_LABELS, load_manifest
from emofusion.data.sources import FeatureSource
from emofusion.errors import DataProblemError
from emofusion.features.loading import load_modality
from emofusion.runner import prepare_data


def _generic_from_course(course_csv: Path, out_csv: Path, relative: bool = False) -> Path:
    """The generic-layout twin of a course CSV: same utterances, label names, explicit session."""
    course = pd.read_csv(course_csv, dtype=str)
    generic = pd.DataFrame({
        "utterance_id": course["file_name_list"],
        "speaker": course["speakers"],
        "session": "Session" + course["speakers"].str[1:].astype(int).astype(str),
        "label": [LABEL_NAMES[int(code)] for code in course["emotion_labels"]],
    })
    for modality in MODALITIES:
        paths = course[f"{modality}_features"]
        generic[f"{modality}_features"] = paths.str.lstrip("/") if relative else paths
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    generic.to_csv(out_csv, index=False)
    return out_csv


def _write_generic(root: Path, labels: list[str], widths: dict[str, int],
                   sidecar: dict | None = None) -> Path:
    """A generic-layout dataset with one (3, d) file per utterance and modality."""
    rng = np.random.default_rng(0)
    rows = []
    for i, label in enumerate(labels):
        row = {"utterance_id": f"utt{i:03d}", "speaker": f"spk{i % 4}", "label": label}
        for modality, width in widths.items():
            rel = f"{modality}/utt{i:03d}.npy"
            (root / modality).mkdir(parents=True, exist_ok=True)
            np.save(root / rel, rng.standard_normal((3, width)).astype(np.float32))
            row[f"{modality}_features"] = rel
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "data.csv", index=False)
    if sidecar is not None:
        (root / "features.json").write_text(json.dumps(sidecar))
    return root / "data.csv"


def test_course_and_generic_layouts_load_into_the_same_table(clean_demo_csv, tmp_path):
    course = load_manifest(clean_demo_csv)
    generic_csv = _generic_from_course(clean_demo_csv, tmp_path / "generic" / "manifest.csv")
    generic = load_manifest(generic_csv, features_root=clean_demo_csv.parent)

    pd.testing.assert_frame_equal(course.table, generic.table)
    assert list(course.table.columns) == ["utterance_id", "speaker", "session", "label",
                                          "visual_features", "acoustic_features",
                                          "lexical_features"]
    assert course.modalities == generic.modalities == MODALITIES
    assert course.label_names == generic.label_names == IEMOCAP_LABELS
    np.testing.assert_array_equal(course.y, generic.y)
    assert set(course.sessions) == {f"Session{s}" for s in range(1, 6)}
    assert course.problems == generic.problems == ()
    # the course integer codes became names: code k is label_names[k]
    codes = pd.read_csv(clean_demo_csv)["emotion_labels"].to_numpy()
    np.testing.assert_array_equal(course.y, codes)
    assert (course.table["label"].to_numpy() == np.array(LABEL_NAMES)[codes]).all()

    # both read the very same files
    for modality in ("acoustic", "lexical"):
        a = load_modality(course, modality, ["mean"], jobs=2).pooled["mean"]
        b = load_modality(generic, modality, ["mean"], jobs=2).pooled["mean"]
        np.testing.assert_array_equal(a, b)


def test_generic_relative_paths_resolve_against_the_csv_folder(clean_demo_csv, tmp_path,
                                                               monkeypatch):
    generic_csv = _generic_from_course(clean_demo_csv, tmp_path / "m.csv", relative=True)
    (tmp_path / "features").symlink_to(clean_demo_csv.parent / "features")
    monkeypatch.chdir(clean_demo_csv.parent.parent)
    manifest = load_manifest(generic_csv)
    assert manifest.paths("lexical")[0].startswith("features/lexical_features/")
    data = load_modality(manifest, "lexical", ["mean"], jobs=2)
    assert data.problems == []
    assert data.width == 24
    assert data.pooled["mean"].shape == (len(manifest), 24)


def test_absolute_looking_paths_resolve_against_the_csv_folder(clean_demo_csv, tmp_path,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)  # resolution must not depend on the working directory
    manifest = load_manifest(clean_demo_csv)
    path = manifest.paths("visual")[0]
    assert path.startswith("/features/visual_features/Session")
    assert not Path(path).exists()  # really not an absolute path on this machine
    expected = clean_demo_csv.parent / path.lstrip("/")
    assert Path(manifest.source.locate(path)) == expected.resolve()

    # a root that already is the features folder finds the shorter tail of the same path
    inner = FeatureSource(clean_demo_csv.parent / "features")
    assert Path(inner.locate(path)) == expected
    assert inner.locate("/features/visual_features/Session1/no_such_file.npy") is None

    data = load_modality(manifest, "visual", ["mean", "stats"], jobs=2)
    assert data.problems == []
    assert data.width == 32
    assert data.pooled["stats"].shape == (len(manifest), 96)
    frames = np.load(expected)
    np.testing.assert_allclose(data.pooled["mean"][0], frames.mean(axis=0), rtol=1e-6)


def test_features_root_override(clean_demo_csv, tmp_path):
    moved = tmp_path / "elsewhere" / "dataset.csv"
    moved.parent.mkdir()
    shutil.copy(clean_demo_csv, moved)

    # without the override the files are not beside the moved CSV: every row is reported
    alone = load_manifest(moved)
    problems = load_modality(alone, "lexical", ["mean"], jobs=2).problems
    assert len(problems) == len(alone)
    assert "file not found" in problems[0].reason and str(moved.parent) in problems[0].reason
    assert "--features-root" in problems[0].fix

    overridden = load_manifest(moved, features_root=clean_demo_csv.parent)
    original = load_manifest(clean_demo_csv)
    a = load_modality(overridden, "lexical", ["mean"], jobs=2)
    assert a.problems == []
    np.testing.assert_array_equal(a.pooled["mean"],
                                  load_modality(original, "lexical", ["mean"], jobs=2).pooled["mean"])

    # the option travels from the command line through the config to the data
    args = _parser().parse_args(["run", str(moved), "--out", str(tmp_path / "run"),
                                 "--features-root", str(clean_demo_csv.parent)])
    config = _config_from_args(args, out=args.out)
    assert config.features_root == clean_demo_csv.parent
    prepared = prepare_data(config.model_copy(update={"cache_dir": tmp_path / "cache"}))
    assert prepared.dropped == [] and len(prepared.manifest) == len(original)


def test_features_zip_beside_the_csv_is_read_without_unpacking(small_demo_writer, tmp_path):
    zipped = small_demo_writer(tmp_path / "zip", n_utterances=40, zip_features=True)
    folder = small_demo_writer(tmp_path / "folder", n_utterances=40)
    assert sorted(p.name for p in zipped.parent.iterdir()) == [
        "PLANTED_PROBLEMS.json", "README.md", "dataset.csv", "features.zip"]

    from_zip = load_manifest(zipped)
    from_folder = load_manifest(folder)
    assert from_zip.source.archive == zipped.parent / "features.zip"
    assert from_folder.source.archive is None
    planted = {p["utterance_id"] for p in json.loads((zipped.parent / "PLANTED_PROBLEMS.json")
                                                     .read_text())}
    found = set()
    for modality in MODALITIES:
        z = load_modality(from_zip, modality, ["stats"], jobs=2)
        f = load_modality(from_folder, modality, ["stats"], jobs=2)
        # the same seed wrote the same arrays: identical pooled values, NaN rows for bad files
        np.testing.assert_array_equal(z.pooled["stats"], f.pooled["stats"])
        assert [(p.utterance_id, p.path) for p in z.problems] == \
               [(p.utterance_id, p.path) for p in f.problems]
        found |= {p.utterance_id for p in z.problems}
    assert found == planted
    # nothing was extracted next to the zip
    assert not (zipped.parent / "features").exists()

    # the zip can also be named explicitly as the features root of a CSV elsewhere
    moved = tmp_path / "other" / "dataset.csv"
    moved.parent.mkdir()
    shutil.copy(zipped, moved)
    explicit = load_manifest(moved, features_root=zipped.parent / "features.zip")
    assert explicit.source.archive == zipped.parent / "features.zip"
    lexical = load_modality(explicit, "lexical", ["mean"], jobs=2)
    assert [p.reason.split(" under ")[0] for p in lexical.problems] == ["file not found"]
    assert np.isfinite(lexical.pooled["mean"]).all(axis=1).sum() == 39


def test_label_names_and_widths_from_features_json(tmp_path):
    labels = ["calm", "angry", "sad", "calm", "sad", "angry", "calm", "sad"]
    sidecar = {"label_names": ["sad", "calm", "angry"],
               "modalities": {"audio": {"width": 5, "kind": "sequence", "extractor": "test"}}}
    csv = _write_generic(tmp_path / "with", labels, {"audio": 5, "text": 3}, sidecar)
    manifest = load_manifest(csv)
    assert manifest.label_names == ("sad", "calm", "angry")
    np.testing.assert_array_equal(manifest.y, [1, 2, 0, 1, 0, 2, 1, 0])
    assert manifest.modality_info["audio"]["extractor"] == "test"
    assert manifest.problems == ()

    # the declared width wins over the files' majority
    for i in range(5):
        np.save(tmp_path / "with" / "audio" / f"utt{i:03d}.npy", np.ones((3, 4), np.float32))
    data = load_modality(load_manifest(csv), "audio", ["mean"], jobs=1)
    assert data.width == 5
    assert [p.utterance_id for p in data.problems] == [f"utt{i:03d}" for i in range(5)]
    assert "width 4, expected 5" in data.problems[0].reason

    # without a sidecar: sorted names, or the IEMOCAP order when the labels fit it
    plain = _write_generic(tmp_path / "without", labels, {"audio": 2})
    assert load_manifest(plain).label_names == ("angry", "calm", "sad")
    iemocap = _write_generic(tmp_path / "iemocap", ["neutral", "anger", "sadness"], {"audio": 2})
    assert load_manifest(iemocap).label_names == IEMOCAP_LABELS
    np.testing.assert_array_equal(load_manifest(iemocap).y, [3, 0, 1])

    # an explicit label order (e.g. a saved model's) beats the sidecar
    assert load_manifest(csv, label_names=("angry", "calm", "sad")).label_names == (
        "angry", "calm", "sad")


@pytest.mark.parametrize("dropped", ["speaker", "label", "utterance_id"])
def test_missing_generic_column_is_named(tmp_path, dropped):
    csv = _write_generic(tmp_path, ["a", "b", "a", "b"], {"audio": 2})
    pd.read_csv(csv).drop(columns=[dropped]).to_csv(csv, index=False)
    with pytest.raises(DataProblemError) as info:
        load_manifest(csv)
    message = str(info.value)
    assert f"missing column '{dropped}'" in message
    assert str(csv) in message
    assert f"add the column '{dropped}'" in message


@pytest.mark.parametrize("dropped", ["speakers", "emotion_labels"])
def test_missing_course_column_is_named_in_course_terms(clean_demo_csv, tmp_path, dropped):
    csv = tmp_path / "dataset.csv"
    pd.read_csv(clean_demo_csv).drop(columns=[dropped]).to_csv(csv, index=False)
    with pytest.raises(DataProblemError) as info:
        load_manifest(csv)
    assert f"missing column '{dropped}'" in str(info.value)
    assert "file_name_list" in str(info.value)  # the columns found, in the CSV's own names


def test_no_feature_column_and_unreadable_sidecar_are_explained(tmp_path):
    csv = _write_generic(tmp_path, ["a", "b"], {"audio": 2})
    pd.read_csv(csv).drop(columns=["audio_features"]).to_csv(csv, index=False)
    with pytest.raises(DataProblemError, match="no feature column") as info:
        load_manifest(csv)
    assert "'<modality>_features'" in str(info.value)

    csv = _write_generic(tmp_path / "sidecar", ["a", "b"], {"audio": 2})
    (csv.parent / "features.json").write_text("{not json")
    with pytest.raises(DataProblemError, match="features.json is not valid JSON"):
        load_manifest(csv)
    with pytest.raises(DataProblemError, match="dataset CSV not found"):
        load_manifest(tmp_path / "nope.csv")


def test_config_reads_the_dataset_with_prepare_data(clean_demo_csv, tmp_path):
    config = build_config({"dataset": clean_demo_csv, "cache_dir": tmp_path / "cache",
                           "modalities": ["lexical", "acoustic"]})
    prepared = prepare_data(config)
    assert prepared.manifest.modalities == ("lexical", "acoustic")
    assert prepared.widths == {"lexical": 24, "acoustic": 16}
    # default pooling: acoustic statistics (mean | std | max), lexical mean
    assert prepared.features["acoustic"].shape == (360, 48)
    assert prepared.features["lexical"].shape == (360, 24)


def test_npy_headers_are_parsed_one_thread_at_a_time(clean_demo_csv, monkeypatch):
    """np.load's header parser (ast.literal_eval) is not thread-safe in CPython 3.11.7; files
    are read on threads, so at most one thread may be inside np.load at any moment."""
    import threading
    import time

    real_load = np.load
    inside, most = [0], [0]
    guard = threading.Lock()

    def counting_load(*args, **kwargs):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.002)
        try:
            return real_load(*args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(np, "load", counting_load)
    manifest = load_manifest(clean_demo_csv)
    data = load_modality(manifest, "acoustic", ["mean"], jobs=4)
    assert not data.problems and data.pooled["mean"].shape[0] == len(manifest.ids)
    assert most[0] == 1
