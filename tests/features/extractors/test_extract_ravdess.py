"""Real speech: four RAVDESS clips from the shared data folder (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("opensmile")

from emofusion.features.extract import extract_corpus  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[3]
ACTOR = REPO_ROOT.parent / "shared" / "data" / "ravdess_speech_16k" / "Actor_01"
EMOTIONS = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}


@pytest.fixture(scope="module")
def ravdess_table():
    files = sorted(ACTOR.glob("*.wav")) if ACTOR.is_dir() else []
    files = [f for f in files if f.stem.split("-")[2] in EMOTIONS][:4]
    if len(files) < 4:
        pytest.skip(f"RAVDESS shared data not found under {ACTOR}")
    return pd.DataFrame({
        "utterance_id": [f.stem for f in files], "speaker": "Actor_01", "session": "1",
        "label": [EMOTIONS[f.stem.split("-")[2]] for f in files],
        "audio_path": [str(f) for f in files], "transcript": "", "video_path": "",
        "start": np.nan, "end": np.nan})


def test_ravdess_egemaps_and_logmel(ravdess_table, tmp_path):
    import soundfile as sf

    dataset = extract_corpus(ravdess_table, list(EMOTIONS.values()), tmp_path, ["audio"],
                             jobs=1, corpus="ravdess", progress=False)
    frame = pd.read_csv(dataset)
    assert len(frame) == 4
    meta = json.loads((tmp_path / "features.json").read_text())
    assert meta["modalities"]["egemaps"]["width"] == 88
    for row, path in zip(frame.itertuples(), ravdess_table["audio_path"], strict=True):
        egemaps = np.load(tmp_path / row.egemaps_features)
        logmel = np.load(tmp_path / row.logmel_features)
        assert egemaps.shape == (88,) and np.isfinite(egemaps).all()
        expected = sf.info(path).duration / 0.010
        assert logmel.shape[1] == 64 and abs(logmel.shape[0] - expected) <= 2
        assert logmel.std() > 1.0  # real speech, not silence


def test_ravdess_compare_is_cached_and_resumed(ravdess_table, tmp_path, monkeypatch):
    from emofusion.features.extractors.audio import Compare

    first = ravdess_table.head(2)
    extract_corpus(first, list(EMOTIONS.values()), tmp_path, ["compare", "compare_lld"], jobs=1,
                   progress=False)
    calls = []
    original = Compare.from_signal
    monkeypatch.setattr(Compare, "from_signal",
                        lambda self, signal: calls.append(1) or original(self, signal))
    dataset = extract_corpus(ravdess_table, list(EMOTIONS.values()), tmp_path,
                             ["compare", "compare_lld"], jobs=1, progress=False)
    assert len(calls) == 2  # only the two clips not extracted before
    meta = json.loads((tmp_path / "features.json").read_text())["modalities"]
    assert (meta["compare"]["width"], meta["compare_lld"]["width"]) == (6373, 65)
    vectors = np.stack([np.load(tmp_path / p) for p in pd.read_csv(dataset)["compare_features"]])
    assert vectors.shape == (4, 6373) and np.isfinite(vectors).all()
    assert (vectors.std(axis=0) > 0).sum() > 6000  # the clips differ in almost every feature
