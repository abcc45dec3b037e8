"""Raw corpora end to end through the `emofusion` command (`emofusion.cli.main`), on small real
subsets of ``../shared/data`` (skipped when absent):

* RAVDESS actors 01-04 (4 classes, 112 clips, audio): extract eGeMAPS + log-mel, leave one
  actor out, train the early-fusion model, predict one .wav;
* MELD, the first 300 train and 100 test lines (4 classes, text): extract MiniLM embeddings,
  official split, train, predict one sentence.

Nothing is copied into the repository: RAVDESS actor folders are symlinked into tmp, the MELD
CSV trio is a truncated copy in tmp.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from emofusion.cli import main

ACTORS = ("Actor_01", "Actor_02", "Actor_03", "Actor_04")
LABELS = ["anger", "sadness", "happiness", "neutral"]
MELD_ROWS = {"train": 300, "dev": 20, "test": 100}


def _prediction(capsys: pytest.CaptureFixture[str], argv: list[str]) -> pd.Series:
    capsys.readouterr()
    assert main(argv) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(table) == 1
    row = table.iloc[0]
    probabilities = [row[f"proba_{label}"] for label in LABELS]
    assert row["predicted"] in LABELS
    assert abs(sum(probabilities) - 1) < 1e-3
    assert row["predicted"] == LABELS[max(range(4), key=probabilities.__getitem__)]
    return row


@pytest.fixture(scope="module")
def ravdess_features(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("opensmile")
    pytest.importorskip("librosa")
    source = shared_data / "ravdess_speech_16k"
    if not all((source / actor).is_dir() for actor in ACTORS):
        pytest.skip(f"RAVDESS actors 01-04 not found under {source}")
    root = tmp_path_factory.mktemp("ravdess")
    corpus = root / "corpus"
    corpus.mkdir()
    for actor in ACTORS:
        (corpus / actor).symlink_to(source / actor, target_is_directory=True)
    out = root / "features"
    assert main(["extract", str(corpus), "--corpus", "ravdess", "--modalities", "audio",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def meld_features(shared_data: Path, tmp_path_factory: pytest.TempPathFactory,
                  meld_subset_writer) -> Path:
    pytest.importorskip("sentence_transformers")
    root = tmp_path_factory.mktemp("meld")
    corpus = meld_subset_writer(shared_data, root, MELD_ROWS)
    out = root / "features"
    assert main(["extract", str(corpus), "--corpus", "meld", "--modalities", "text",
                 "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_ravdess_extract_run_train_predict(ravdess_features: Path, tmp_path: Path, capsys,
                                           shared_data: Path) -> None:
    meta = json.loads((ravdess_features / "features.json").read_text())
    assert meta["label_names"] == LABELS and not meta["failed"]
    assert meta["modalities"]["egemaps"]["width"] == 88
    assert meta["modalities"]["logmel"]["kind"] == "sequence"
    dataset = pd.read_csv(ravdess_features / "dataset.csv")
    assert len(dataset) == 4 * 28 and dataset["speaker"].nunique() == 4

    run_dir = tmp_path / "run"
    assert main(["run", str(ravdess_features / "dataset.csv"), "--out", str(run_dir),
                 "--systems", "unimodal", "early", "late_mean"]) == 0
    config = (run_dir / "config.yaml").read_text()
    assert "default_pooling: auto" in config  # log-mel frames -> stats, eGeMAPS vector -> mean
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for system in ("egemaps", "logmel", "early", "late_mean"):
        assert metrics["systems"][system]["n_folds"] == 4
        assert metrics["systems"][system]["pooled"]["ua"] > 0.4  # chance is 0.25
    assert (run_dir / "report.html").is_file()

    model = tmp_path / "r.zip"
    assert main(["train", str(ravdess_features / "dataset.csv"), "--system", "early",
                 "--out", str(model), "--pooling", "logmel=stats"]) == 0
    wav = shared_data / "ravdess_speech_16k" / "Actor_05" / "03-01-05-02-01-01-05.wav"  # angry
    _prediction(capsys, ["predict", str(model), "--wav", str(wav)])
    # a text-only input cannot feed an audio model: one clear error, exit status 2
    assert main(["predict", str(model), "--text", "hello"]) == 2


@pytest.mark.slow
def test_meld_extract_run_train_predict(meld_features: Path, tmp_path: Path, capsys) -> None:
    dataset = pd.read_csv(meld_features / "dataset.csv")
    assert set(dataset["split"]) == {"train", "dev", "test"}
    assert list(dataset.columns[-2:]) == ["minilm_features", "vader_features"]

    run_dir = tmp_path / "run"
    assert main(["run", str(meld_features / "dataset.csv"), "--out", str(run_dir),
                 "--split", "official"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # the transcripts vary, so the TF-IDF transcript system runs beside the MiniLM and VADER
    # features; early fusion concatenates the two feature sets, late fusion and stacking all three
    assert list(metrics["systems"]) == ["minilm", "vader", "transcript", "early", "late_vote",
                                        "late_mean", "stacking"]
    assert metrics["systems"]["minilm"]["n"] == (dataset["split"] == "test").sum()
    assert metrics["audit"]["transcript_vectoriser"]["fitted_on_test_rows"] == 0

    model = tmp_path / "m.zip"
    assert main(["train", str(meld_features / "dataset.csv"), "--system", "stacking",
                 "--out", str(model)]) == 0
    _prediction(capsys, ["predict", str(model), "--text", "I am so happy for you"])


def test_meld_default_audio_modalities_are_refused_up_front(shared_data: Path, tmp_path: Path,
                                                           capsys) -> None:
    """MELD here has no clips: the default `audio,text` stops before extracting anything."""
    source = shared_data / "meld" / "test_sent_emo.csv"
    if not source.is_file():
        pytest.skip(f"{source} not found")
    corpus = tmp_path / "meld"
    corpus.mkdir()
    pd.read_csv(source, encoding="utf-8").head(20).to_csv(corpus / "test_sent_emo.csv",
                                                          index=False, encoding="utf-8")
    assert main(["extract", str(corpus), "--corpus", "meld", "--on-bad-file", "skip",
                 "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "--modalities text" in error
    assert not (tmp_path / "out" / "dataset.csv").exists()
