"""extract_corpus / extract_single: layout, caching, resuming, bad utterances, parallel run."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("librosa")

from extractor_test_media import chirp, noise, tone, write_video, write_wav  # noqa: E402

from emofusion.errors import ConfigError, DataProblemError  # noqa: E402
from emofusion.features.extract import (  # noqa: E402
    MODALITY_GROUPS,
    extract_corpus,
    extract_single,
    file_stem,
    read_extractor_specs,
    resolve_extractors,
)
from emofusion.features.extractors.audio import LogMel  # noqa: E402

LABELS = ["angry", "happy", "neutral"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    signals = [tone(1.0, 220), tone(0.8, 330), chirp(1.2), noise(0.6), tone(1.1, 500),
               chirp(0.9, 300, 3000)]
    wavs = [write_wav(folder / f"u{i}.wav", signal) for i, signal in enumerate(signals)]
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF garbage" * 20)
    return {"wavs": wavs, "corrupt": str(corrupt), "missing": str(folder / "missing.wav"),
            "face": write_video(folder / "face.avi", 6, 4),
            "blank": write_video(folder / "blank.avi", 0, 6)}


def make_table(wavs: list[str], **columns) -> pd.DataFrame:
    n = len(wavs)
    table = pd.DataFrame({
        "utterance_id": [f"utt{i}" for i in range(n)], "speaker": [f"s{i % 3}" for i in range(n)],
        "session": "1", "label": [LABELS[i % 3] for i in range(n)], "audio_path": wavs,
        "transcript": [f"sentence number {i}" for i in range(n)], "video_path": "",
        "start": np.nan, "end": np.nan, "split": ["train"] * (n - 1) + ["test"]})
    for name, values in columns.items():
        table[name] = values
    return table


@pytest.fixture
def count_logmel(monkeypatch):
    """Count LogMel extractions; ``calls["raise_at"]`` simulates an interruption."""
    calls = {"n": 0, "raise_at": None}
    original = LogMel.from_signal

    def counted(self, signal):
        calls["n"] += 1
        if calls["n"] == calls["raise_at"]:
            raise KeyboardInterrupt
        return original(self, signal)

    monkeypatch.setattr(LogMel, "from_signal", counted)
    return calls


def test_layout_is_readable_and_complete(media, tmp_path):
    table = make_table(media["wavs"])
    dataset = extract_corpus(table, LABELS, tmp_path, ["egemaps", "logmel"], jobs=1,
                             corpus="toy", progress=False)
    frame = pd.read_csv(dataset, keep_default_na=False)
    assert list(frame.columns) == ["utterance_id", "speaker", "session", "label", "transcript",
                                   "split", "egemaps_features", "logmel_features"]
    assert frame["utterance_id"].tolist() == table["utterance_id"].tolist()
    meta = json.loads((tmp_path / "features.json").read_text())
    assert meta["corpus"] == "toy" and meta["label_names"] == LABELS and meta["failed"] == []
    assert meta["modalities"]["egemaps"]["width"] == 88
    assert meta["modalities"]["egemaps"]["kind"] == "vector"
    assert meta["modalities"]["logmel"] | {"params": None} == {
        "width": 64, "kind": "sequence", "extractor": "logmel", "params": None,
        "source": "audio", "version": 1}
    for relative, seconds in zip(frame["logmel_features"], [1.0, 0.8, 1.2, 0.6, 1.1, 0.9],
                                 strict=True):
        assert relative.startswith("features/logmel/")
        array = np.load(tmp_path / relative)
        assert array.dtype == np.float32 and array.shape == (1 + int(seconds * 100), 64)
    assert np.load(tmp_path / frame["egemaps_features"][0]).shape == (88,)


def test_rerun_reuses_cached_files(media, tmp_path, count_logmel):
    table = make_table(media["wavs"])
    extract_corpus(table, LABELS, tmp_path, ["logmel"], jobs=1, progress=False)
    assert count_logmel["n"] == 6
    files = sorted((tmp_path / "features" / "logmel").glob("*.npy"))
    stamps = [f.stat().st_mtime_ns for f in files]
    extract_corpus(table, LABELS, tmp_path, {"logmel": {"n_mels": 64}}, jobs=1, progress=False)
    assert count_logmel["n"] == 6  # nothing recomputed: same (default) parameters
    assert [f.stat().st_mtime_ns for f in files] == stamps
    # a changed input file is re-extracted, the others are not
    write_wav(media["wavs"][3], noise(0.6, seed=1))
    extract_corpus(table, LABELS, tmp_path, ["logmel"], jobs=1, progress=False)
    assert count_logmel["n"] == 7


def test_changed_parameter_re_extracts(media, tmp_path, count_logmel):
    table = make_table(media["wavs"])
    extract_corpus(table, LABELS, tmp_path, ["logmel"], jobs=1, progress=False)
    dataset = extract_corpus(table, LABELS, tmp_path, {"logmel": {"n_mels": 32}}, jobs=1,
                             progress=False)
    assert count_logmel["n"] == 12
    relative = pd.read_csv(dataset)["logmel_features"][0]
    assert np.load(tmp_path / relative).shape[1] == 32
    meta = json.loads((tmp_path / "features.json").read_text())
    assert meta["modalities"]["logmel"]["width"] == 32
    assert meta["modalities"]["logmel"]["params"]["n_mels"] == 32


def test_interrupted_run_resumes(media, tmp_path, count_logmel):
    table = make_table(media["wavs"])
    count_logmel["raise_at"] = 4  # chunks of 2 utterances: the first 3 finish, #4 interrupts
    with pytest.raises(KeyboardInterrupt):
        extract_corpus(table, LABELS, tmp_path, ["logmel"], jobs=1, progress=False)
    assert not (tmp_path / "dataset.csv").exists()
    indexed = (tmp_path / "features" / "logmel" / "_index.jsonl").read_text().splitlines()
    assert len(indexed) == 2
    count_logmel.update(n=0, raise_at=None)
    dataset = extract_corpus(table, LABELS, tmp_path, ["logmel"], jobs=1, progress=False)
    assert count_logmel["n"] == 4
    assert len(pd.read_csv(dataset)) == 6
    assert not list((tmp_path / "features" / "logmel").glob("*.tmp-*"))


def test_bad_utterances_fail_or_are_skipped(media, tmp_path, capsys):
    wavs = [*media["wavs"][:3], media["corrupt"], media["missing"]]
    table = make_table(wavs)
    with pytest.raises(DataProblemError) as caught:
        extract_corpus(table, LABELS, tmp_path, ["logmel"], jobs=1, progress=False)
    assert {p.utterance_id for p in caught.value.problems} == {"utt3", "utt4"}
    assert "on_bad='skip'" in str(caught.value) and "cannot read" in str(caught.value)
    assert not (tmp_path / "dataset.csv").exists()

    dataset = extract_corpus(table, LABELS, tmp_path, ["logmel"], jobs=1, on_bad="skip",
                             progress=False)
    assert pd.read_csv(dataset)["utterance_id"].tolist() == ["utt0", "utt1", "utt2"]
    failed = json.loads((tmp_path / "features.json").read_text())["failed"]
    assert {(f["utterance_id"], f["modality"]) for f in failed} == {("utt3", "logmel"),
                                                                    ("utt4", "logmel")}
    assert all(f["path"] and f["reason"] and f["fix"] for f in failed)
    assert "2 of 5 utterance(s) left out" in capsys.readouterr().err


def test_visual_stats_and_no_face_failure(media, tmp_path):
    table = make_table(media["wavs"][:2], video_path=[media["face"], media["blank"]])
    dataset = extract_corpus(table, LABELS, tmp_path, {"face_lbp": {"fps": 10}}, jobs=1,
                             on_bad="skip", progress=False)
    frame = pd.read_csv(dataset)
    assert frame["utterance_id"].tolist() == ["utt0"]
    assert np.load(tmp_path / frame["face_lbp_features"][0]).shape == (6, 160)
    meta = json.loads((tmp_path / "features.json").read_text())
    stats = meta["modalities"]["face_lbp"]["stats"]
    assert stats["frames"] == 10 and stats["faces"] == 6 and stats["frames_without_face"] == 4
    assert stats["per_utterance"] == {"utt0": {"frames": 10, "faces": 6}}
    [failure] = meta["failed"]
    assert failure["utterance_id"] == "utt1" and "no face" in failure["reason"]


def test_parallel_run_matches_serial_run(media, tmp_path, monkeypatch):
    monkeypatch.setattr("emofusion.features.extract.MIN_PARALLEL_ITEMS", 0)
    table = make_table(media["wavs"])
    serial = extract_corpus(table, LABELS, tmp_path / "serial", ["mfcc", "spectrogram3"],
                            jobs=1, progress=False)
    parallel = extract_corpus(table, LABELS, tmp_path / "parallel", ["mfcc", "spectrogram3"],
                              jobs=2, progress=True)
    a, b = pd.read_csv(serial), pd.read_csv(parallel)
    assert a.equals(b)
    for relative in a["spectrogram3_features"].tolist() + a["mfcc_features"].tolist():
        assert np.allclose(np.load(serial.parent / relative), np.load(parallel.parent / relative))


def test_extract_single_reproduces_corpus_features(media, tmp_path):
    table = make_table(media["wavs"][:2])
    dataset = extract_corpus(table, LABELS, tmp_path, {"mel32": {"extractor": "logmel",
                                                                 "n_mels": 32}},
                             jobs=1, progress=False)
    specs = read_extractor_specs(tmp_path / "features.json")
    features = extract_single(specs, wav=media["wavs"][1], text=None, video=None)
    stored = np.load(tmp_path / pd.read_csv(dataset)["mel32_features"][1])
    assert list(features) == ["mel32"] and np.array_equal(features["mel32"], stored)
    assert extract_single(specs, wav=None, text="hello", video=None) == {}
    with pytest.raises(DataProblemError, match="not found"):
        extract_single(specs, wav=media["missing"])
    specs["mel32"]["width"] = 40
    with pytest.raises(ConfigError, match="40"):
        extract_single(specs, wav=media["wavs"][0])


def test_resolve_extractors_groups_aliases_and_errors():
    specs = resolve_extractors("audio,text")
    assert [s.modality for s in specs] == MODALITY_GROUPS["audio"] + MODALITY_GROUPS["text"]
    [alias] = resolve_extractors({"mel40": {"extractor": "logmel", "n_mels": 40}})
    assert (alias.modality, alias.extractor, alias.params) == ("mel40", "logmel", {"n_mels": 40})
    with pytest.raises(ConfigError, match="Unknown feature extractor"):
        resolve_extractors(["wav2vec"])
    with pytest.raises(ConfigError, match="Modality name"):
        resolve_extractors({"bad name": {"extractor": "logmel"}})


def test_table_problems_and_options(media, tmp_path):
    table = make_table(media["wavs"][:2])
    with pytest.raises(ConfigError, match="on_bad"):
        extract_corpus(table, LABELS, tmp_path, ["logmel"], on_bad="ignore")
    with pytest.raises(DataProblemError, match="not unique"):
        extract_corpus(table.assign(utterance_id="same"), LABELS, tmp_path, ["logmel"])
    with pytest.raises(ConfigError, match="speaker"):
        extract_corpus(table.drop(columns="speaker"), LABELS, tmp_path, ["logmel"])


def test_segments_and_unsafe_ids(media, tmp_path):
    table = make_table([media["wavs"][2]] * 2, utterance_id=["dlg/1 a", "dlg/1 b"],
                       start=[0.0, 0.5], end=[0.5, math.nan])
    dataset = extract_corpus(table, LABELS, tmp_path, ["logmel"], jobs=1, progress=False)
    frame = pd.read_csv(dataset)
    first, second = (np.load(tmp_path / p) for p in frame["logmel_features"])
    assert first.shape == (51, 64) and second.shape == (71, 64)
    assert file_stem("dlg/1 a") != file_stem("dlg/1 b") and "/" not in file_stem("dlg/1 a")
    assert file_stem("Ses01F_impro01_F000") == "Ses01F_impro01_F000"
