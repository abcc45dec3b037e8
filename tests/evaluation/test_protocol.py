"""The evaluation protocol: speaker-independent folds, no test speaker in anything fitted,
the random-split warning, determinism across runs and workers, and the pooled-feature cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

import emofusion
import emofusion.evaluation.experiment as experiment
import emofusion.evaluation.nested as nested
import emofusion.fusion.stacking as stacking
from emofusion.config import SYSTEM_CHOICES, RunConfig, build_config
from emofusion.data.manifest import load_manifest
from emofusion.data.sources import FeatureSource
from emofusion.errors import DataProblemError
from emofusion.evaluation.audit import build_audit
from emofusion.evaluation.splits import RANDOM_SPLIT_WARNING, OuterFold, make_outer_folds
from emofusion.features.cache import PooledCache
from emofusion.fusion.stacking import StackingFusionClassifier
from emofusion.models.classical import ShrinkageLDA
from emofusion.models.registry import get_model
from emofusion.runner import _system_inputs, prepare_data

SPEAKERS = [f"{g}{s:02d}" for s in range(1, 6) for g in "FM"]


# ----------------------------------------------------------------------------- outer folds


def test_leave_one_speaker_out_and_leave_one_session_out(clean_demo_csv):
    manifest = load_manifest(clean_demo_csv)
    table, y, speakers = manifest.table, manifest.y, manifest.speakers
    n = len(manifest)

    loso = make_outer_folds("speaker", table, y)
    assert len(loso) == 10
    assert sorted(f.held_out[0] for f in loso) == sorted(SPEAKERS)
    for fold in loso:
        assert set(speakers[fold.test]) == set(fold.held_out)
        assert not set(speakers[fold.test]) & set(speakers[fold.train])
        assert len(fold.train) + len(fold.test) == n
    assert sorted(np.concatenate([f.test for f in loso]).tolist()) == list(range(n))

    session = make_outer_folds("session", table, y)
    assert len(session) == 5
    for fold in session:
        (held,) = fold.held_out
        assert set(manifest.sessions[fold.test]) == {held}
        assert set(speakers[fold.test]) == {f"F0{held[-1]}", f"M0{held[-1]}"}
        assert not set(speakers[fold.test]) & set(speakers[fold.train])

    k5 = make_outer_folds("k5", table, y, seed=3)
    assert len(k5) == 5
    assert all(not set(speakers[f.test]) & set(speakers[f.train]) for f in k5)

    random = make_outer_folds("random", table, y)
    assert len(random) == 5
    assert any(set(speakers[f.test]) & set(speakers[f.train]) for f in random)


def test_run_uses_ten_speaker_folds_and_the_audit_passes(speaker_run):
    metrics = json.loads((speaker_run / "metrics.json").read_text())
    assert {s["n_folds"] for s in metrics["systems"].values()} == {10}
    audit = metrics["audit"]
    assert audit["split"] == "speaker"
    assert audit["passed"] is True
    assert len(audit["folds"]) == 10
    for entry in audit["folds"]:
        assert entry["overlap"] == []
        assert not set(entry["test_speakers"]) & set(entry["train_speakers"])
        assert entry["test_speakers"] == entry["held_out"]
        assert len(entry["train_speakers"]) == 9
        assert entry["inner_groups_checked"] is True
    assert metrics["warnings"] == []
    assert "LEAKAGE" not in " ".join(audit["notes"])

    # the inner splits actually used (folds.json): grouped, and without the held-out speaker
    folds = json.loads((speaker_run / "folds.json").read_text())
    assert len(folds) == 10
    for fold in folds:
        (held,) = fold["held_out"]
        assert set(fold["systems"]) == {"visual", "acoustic", "lexical", "early", "stacking"}
        for system, info in fold["systems"].items():
            assert len(info["inner_speakers"]) == 3, system
            validation = set()
            for train, val in info["inner_speakers"]:
                assert not set(train) & set(val)
                assert held not in set(train) | set(val)
                validation |= set(val)
            assert validation == set(SPEAKERS) - {held}
    report = (speaker_run / "report.md").read_text()
    assert "## Leakage audit" in report
    assert "RANDOM SPLIT" not in report and "⚠" not in report


def test_audit_detects_a_leaking_fold():
    speakers = np.array(["a", "a", "b", "b", "c", "c"])
    table = pd.DataFrame({"speaker": speakers, "session": speakers})
    clean = OuterFold(0, np.array([2, 3, 4, 5]), np.array([0, 1]), ("a",))
    leaky = OuterFold(1, np.array([0, 2, 3, 4]), np.array([1, 5]), ("x",))
    inner_clean = {"m": [(["b"], ["c"]), (["c"], ["b"])]}
    inner_leaky = {"m": [(["a", "b"], ["c"]), (["c"], ["b"])]}  # test speaker c in the search
    config = build_config({"dataset": "d.csv"})
    audit = build_audit([clean, leaky], [inner_clean, inner_leaky], speakers, table, config,
                        "pooled")
    first, second = audit["folds"]
    assert first["overlap"] == [] and first["inner_groups_checked"] is True
    assert second["overlap"] == ["a", "c"] and second["inner_groups_checked"] is False
    assert audit["passed"] is False
    assert any("LEAKAGE" in note for note in audit["notes"])
    # a clean outer fold whose inner search saw its test speaker is caught as well
    audit = build_audit([clean], [{"m": [(["a", "b"], ["c"])]}], speakers, table, config, "pooled")
    assert audit["folds"][0]["inner_groups_checked"] is False and audit["passed"] is False


# ----------------------------------------------------------------------------- no leakage


def test_no_test_row_or_test_speaker_reaches_anything_fitted(clean_demo_csv, tmp_path,
                                                              monkeypatch):
    """Spies on every fit: each pipeline (inside the grid search, its refit and the stacking
    out-of-fold models; it receives the raw feature rows), the speaker groups handed to
    classifiers, the nested search and the meta-learner."""
    config = build_config({"dataset": clean_demo_csv, "out": tmp_path / "run",
                           "param_grid": {"shrinkage": ["auto", 0.5]}})  # forces GridSearchCV
    data = prepare_data(config)
    manifest = data.manifest
    inputs = _system_inputs(data, config, get_model("lda"))
    setup = experiment.make_setup(config, inputs, manifest.y, manifest.speakers,
                                  list(manifest.modalities), len(manifest.label_names))
    folds = make_outer_folds("speaker", manifest.table, manifest.y)
    speakers = manifest.speakers

    fitted: list[np.ndarray] = []
    fit_groups: list[set] = []
    searched: list[tuple[int, set]] = []
    stacking_groups: list[set] = []
    meta_rows: list[int] = []

    real_pipeline_fit = Pipeline.fit

    def pipeline_fit(self, X, y=None, **params):
        fitted.append(np.array(X, copy=True))
        fit_groups.extend(set(v) for k, v in params.items() if k.endswith("groups"))
        return real_pipeline_fit(self, X, y, **params)

    real_search = nested.fit_with_search

    def search(pipeline, grid, X, y, fold_speakers, **kwargs):
        searched.append((len(X), set(fold_speakers)))
        return real_search(pipeline, grid, X, y, fold_speakers, **kwargs)

    real_inner_folds = stacking.inner_folds

    def inner_folds(y, groups, n_folds, seed=0):
        stacking_groups.append(set(groups))
        return real_inner_folds(y, groups, n_folds, seed)

    class RecordingMeta(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            meta_rows.append(len(X))
            return super().fit(X, y, sample_weight)

    monkeypatch.setattr(Pipeline, "fit", pipeline_fit)
    monkeypatch.setattr(nested, "fit_with_search", search)
    monkeypatch.setattr(stacking, "inner_folds", inner_folds)
    monkeypatch.setattr(stacking, "make_meta_learner",
                        lambda seed=0, class_weight=None: RecordingMeta(max_iter=1000,
                                                                        random_state=seed))

    systems = ("visual", "acoustic", "lexical", "early")
    for fold in folds:
        for log in (fitted, fit_groups, searched, stacking_groups, meta_rows):
            log.clear()
        output = experiment.run_fold(fold, setup)
        test_speakers = set(speakers[fold.test])
        train_speakers = set(speakers[fold.train])
        test_rows = {row.tobytes() for s in systems for row in inputs[s][fold.test]}
        train_rows = {row.tobytes() for s in systems for row in inputs[s][fold.train]}

        # grid search (2 candidates x 3 inner folds) + refit per system, stacking's models
        assert len(fitted) >= 4 * 7 + 3
        for X in fitted:
            rows = {row.tobytes() for row in X}
            assert not rows & test_rows, f"fold {fold.index}: a test row was fitted"
            assert rows <= train_rows
        sizes = {len(X) for X in fitted}
        assert len(fold.train) in sizes and min(sizes) < len(fold.train)  # refits and inner fits
        assert all(groups <= train_speakers for groups in fit_groups)
        assert len(searched) == 4
        for n_rows, fold_speakers in searched:
            assert n_rows == len(fold.train)
            assert fold_speakers == train_speakers
        assert stacking_groups == [train_speakers] * 4  # each modality's folds, the record's
        # the meta-learner saw training speakers only: its choice on their inner folds (3 fits on
        # the other two thirds of the training rows), then its fit on all of them when chosen
        assert len(meta_rows) in (3, 4) and max(meta_rows[:3]) < len(fold.train)
        assert meta_rows[3:] in ([], [len(fold.train)])
        assert set(output.probabilities) == {*systems, "late_vote", "late_mean", "stacking"}
        for probabilities in output.probabilities.values():
            assert probabilities.shape == (len(fold.test), 4)
            np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
        # the inner splits reported for the audit exclude the test speaker as well
        for splits in output.inner_speakers().values():
            for train, val in splits:
                assert not (set(train) | set(val)) & test_speakers


def test_stacking_classifier_out_of_fold_models_are_speaker_grouped(monkeypatch):
    rng = np.random.default_rng(0)
    groups = np.repeat(np.array(["a", "b", "c", "d", "e", "f"]), 20)
    y = np.tile(np.arange(4), 30)
    X = rng.standard_normal((120, 6)) + y[:, None]
    seen = []
    real = stacking.out_of_fold_probabilities

    def spy(estimator, X_block, codes, folds, n_classes, fold_groups=None):
        seen.extend((set(groups[train]), set(groups[held])) for train, held in folds)
        return real(estimator, X_block, codes, folds, n_classes, fold_groups)

    monkeypatch.setattr(stacking, "out_of_fold_probabilities", spy)
    model = StackingFusionClassifier([("m1", ShrinkageLDA()), ("m2", ShrinkageLDA())],
                                     [(0, 3), (3, 6)], n_folds=3).fit(X, y, groups=groups)
    assert len(seen) == 6  # 2 modalities x 3 folds
    assert all(not train & held for train, held in seen)
    held_out = [held for _, held in seen[:3]]
    assert all(len(held) == 2 for held in held_out)  # whole speakers: 6 speakers / 3 folds
    assert set().union(*held_out) == set(groups)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # the meta-learner chosen on the same speaker-grouped folds: the best inner score
    assert set(model.meta_scores_) == {"logreg", "mean", "m1", "m2"}
    assert model.meta_scores_[model.meta_choice_] == max(model.meta_scores_.values())


# ----------------------------------------------------------------------------- random split


def test_random_split_is_loud_marked_and_inflated(clean_demo_csv, speaker_run, tmp_path):
    config = build_config({"dataset": clean_demo_csv, "out": tmp_path / "random",
                           "split": "random", "systems": ["unimodal", "early"], "jobs": 1,
                           "n_bootstrap": 100})
    with pytest.warns(UserWarning, match="RANDOM SPLIT"):
        result = emofusion.run(config, progress=False)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["warnings"] == [RANDOM_SPLIT_WARNING]
    assert metrics["audit"]["passed"] is False  # the audit sees the shared speakers
    assert all(entry["overlap"] for entry in metrics["audit"]["folds"])

    report = (result.run_dir / "report.md").read_text()
    assert report.count("RANDOM SPLIT") >= 1
    assert "WARNING: 1 problem(s) make the numbers below unreliable" in report
    summary = [line for line in report.splitlines() if line.startswith("| early |")][0]
    assert summary.count("⚠") >= 6  # every number is marked
    html = (result.run_dir / "report.html").read_text()
    assert 'class="warning"' in html and "RANDOM SPLIT" in html

    # speaker identity leaks into training: random folds score higher than speaker folds
    speaker = json.loads((speaker_run / "metrics.json").read_text())["systems"]
    random_ua = {s: m["pooled"]["ua"] for s, m in metrics["systems"].items()}
    speaker_ua = {s: speaker[s]["pooled"]["ua"] for s in random_ua}
    assert np.mean(list(random_ua.values())) > np.mean(list(speaker_ua.values()))
    assert all(random_ua[s] > speaker_ua[s] - 0.02 for s in random_ua), (random_ua, speaker_ua)


# ----------------------------------------------------------------------------- determinism


def test_same_config_twice_gives_identical_predictions(speaker_run, tmp_path, fast_report):
    config = RunConfig.from_yaml(speaker_run / "config.yaml", out=tmp_path / "again",
                                 use_cache=False)
    assert config.jobs == 1 and config.systems == list(SYSTEM_CHOICES)
    emofusion.run(config, progress=False)
    assert (tmp_path / "again" / "predictions.csv").read_bytes() == \
           (speaker_run / "predictions.csv").read_bytes()


def test_jobs_1_and_jobs_2_give_identical_predictions(speaker_run, tmp_path, fast_report):
    config = RunConfig.from_yaml(speaker_run / "config.yaml", out=tmp_path / "two", jobs=2)
    result = emofusion.run(config, progress=False)
    assert [o.fold.index for o in result.folds] == list(range(10))
    assert (tmp_path / "two" / "predictions.csv").read_bytes() == \
           (speaker_run / "predictions.csv").read_bytes()


# ----------------------------------------------------------------------------- cache


@pytest.fixture
def read_log(monkeypatch) -> list[str]:
    """Every feature file `FeatureSource.read` opens (in this process)."""
    log: list[str] = []
    real = FeatureSource.read

    def read(self, location):
        log.append(location)
        return real(self, location)

    monkeypatch.setattr(FeatureSource, "read", read)
    return log


@pytest.fixture
def cache_log(monkeypatch) -> list[tuple[int, int]]:
    """(hits, misses) of every `PooledCache.load` call."""
    log: list[tuple[int, int]] = []
    real = PooledCache.load

    def load(self, *args, **kwargs):
        before = (self.hits, self.misses)
        result = real(self, *args, **kwargs)
        log.append((self.hits - before[0], self.misses - before[1]))
        return result

    monkeypatch.setattr(PooledCache, "load", load)
    return log


def test_second_run_is_served_from_the_cache(clean_demo_csv, tmp_path, read_log, cache_log,
                                             fast_report):
    def config(out: str) -> RunConfig:
        return build_config({"dataset": clean_demo_csv, "out": tmp_path / out, "jobs": 1,
                             "systems": ["early"], "cache_dir": tmp_path / "cache"})

    emofusion.run(config("first"), progress=False)
    assert len(read_log) == 3 * 360
    assert cache_log == [(0, 1)] * 3
    read_log.clear()
    cache_log.clear()

    emofusion.run(config("second"), progress=False)
    assert read_log == []  # no .npy file was opened
    assert cache_log == [(1, 0)] * 3
    assert (tmp_path / "first" / "predictions.csv").read_bytes() == \
           (tmp_path / "second" / "predictions.csv").read_bytes()

    # a different pooling is a different cache entry: only that modality is read again
    read_log.clear()
    pooling = {**config("third").pooling, "visual": "max"}
    emofusion.run(config("third").model_copy(update={"pooling": pooling}), progress=False)
    assert len(read_log) == 360
    assert all("visual_features" in loc for loc in read_log)


def test_changing_a_file_invalidates_the_cache(small_demo_writer, tmp_path, read_log):
    csv = small_demo_writer(tmp_path / "data", n_utterances=30, bad_files=False)
    config = build_config({"dataset": csv, "cache_dir": tmp_path / "cache"})
    first = prepare_data(config)
    assert len(read_log) == 90
    read_log.clear()
    again = prepare_data(config)
    assert read_log == []
    for modality in first.features:
        np.testing.assert_array_equal(first.features[modality], again.features[modality])

    changed = Path(load_manifest(csv).source.locate(load_manifest(csv).paths("lexical")[7]))
    frames = np.load(changed)
    np.save(changed, frames + 1.0)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    updated = prepare_data(config)
    assert len(read_log) == 30 and all("lexical_features" in loc for loc in read_log)
    np.testing.assert_allclose(updated.features["lexical"][7], first.features["lexical"][7] + 1.0,
                               rtol=1e-6)
    np.testing.assert_array_equal(np.delete(updated.features["lexical"], 7, axis=0),
                                  np.delete(first.features["lexical"], 7, axis=0))
    np.testing.assert_array_equal(updated.features["visual"], first.features["visual"])

    # a new bad file is noticed through the cache too
    read_log.clear()
    changed.write_bytes(b"not numpy")
    with pytest.raises(DataProblemError, match="not a .npy file"):
        prepare_data(config)
    assert len(read_log) == 30


def test_cache_works_for_a_features_zip(small_demo_writer, tmp_path, read_log):
    csv = small_demo_writer(tmp_path / "zip", n_utterances=30, bad_files=False, zip_features=True)
    config = build_config({"dataset": csv, "cache_dir": tmp_path / "cache"})
    first = prepare_data(config)
    assert len(read_log) == 90
    read_log.clear()
    second = prepare_data(config)
    assert read_log == []
    np.testing.assert_array_equal(first.features["acoustic"], second.features["acoustic"])
