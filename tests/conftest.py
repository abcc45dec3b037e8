"""Shared fixtures: isolated cache and plotting backend, generated demo datasets, one real run.

Everything here is session-scoped so that the generated data (and the one full speaker-split run
several test files look at) is made once per test session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# before any test module can import matplotlib (the fixture below only starts with the tests)
os.environ.setdefault("MPLBACKEND", "Agg")

# Small widths and frame counts keep the generated data (and every run on it) fast.
DEMO_WIDTHS = {"visual": 32, "acoustic": 16, "lexical": 24}
DEMO_FRAMES = {"visual": 8, "acoustic": 6, "lexical": 1}
DEMO_UTTERANCES = 360


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Pooled-feature cache in a temporary folder (never ~/.cache) and a headless plot backend."""
    cache = tmp_path_factory.mktemp("emofusion-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMOFUSION_CACHE_DIR", str(cache))
        patch.setenv("MPLBACKEND", "Agg")
        yield cache


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder beside the repository (``../shared/data``); skips when absent."""
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is not available")
    return path


def write_small_demo(out_dir: Path, **kwargs) -> Path:
    """`write_demo_dataset` with the small test widths; returns dataset.csv."""
    from emofusion.data.demo import write_demo_dataset

    options = {"n_utterances": DEMO_UTTERANCES, "widths": DEMO_WIDTHS, "mean_frames": DEMO_FRAMES}
    return write_demo_dataset(out_dir, **{**options, **kwargs})


def write_tiny_bert(path: Path, words: list[str]) -> str:
    """A randomly initialised one-layer BERT (hidden size 16) with a word vocabulary, saved as a
    local Hugging Face checkpoint folder (stands in for bert-base-uncased offline)."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(path)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_bert_writer():
    """`write_tiny_bert`: (folder, words) -> checkpoint path."""
    return write_tiny_bert


@pytest.fixture(scope="session")
def small_demo_writer():
    """The function writing a small-width demo dataset (keyword arguments as write_demo_dataset)."""
    return write_small_demo


def make_fold_setup(dataset: Path, out: Path, **options):
    """A run's fold setup and outer folds for `dataset` (config keys as `build_config`), as
    `emofusion run` builds them before its tasks; returns (setup, folds)."""
    from emofusion.config import build_config
    from emofusion.evaluation.experiment import make_setup
    from emofusion.models.registry import get_model
    from emofusion.runner import _checked_folds, _system_inputs, prepare_data

    config = build_config({"dataset": dataset, "out": out, "use_cache": False, **options})
    data = prepare_data(config)
    manifest = data.manifest
    setup = make_setup(config, _system_inputs(data, config, get_model(config.model)), manifest.y,
                       manifest.speakers, list(manifest.modalities), len(manifest.label_names))
    return setup, _checked_folds(data, config)


@pytest.fixture(scope="session")
def fold_setup_maker():
    """`make_fold_setup`: (dataset, out, **config options) -> (setup, outer folds)."""
    return make_fold_setup


def write_meld_subset(shared_data: Path, folder: Path, rows: dict[str, int]) -> Path:
    """The first ``rows[split]`` lines of each shared MELD CSV, copied to ``folder/corpus``
    (never into the repository); skips the test when the CSVs are absent."""
    import pandas as pd

    source = shared_data / "meld"
    if not all((source / f"{split}_sent_emo.csv").is_file() for split in rows):
        pytest.skip(f"MELD CSVs not found under {source}")
    corpus = folder / "corpus"
    corpus.mkdir()
    for split, count in rows.items():
        frame = pd.read_csv(source / f"{split}_sent_emo.csv", encoding="utf-8").head(count)
        frame.to_csv(corpus / f"{split}_sent_emo.csv", index=False, encoding="utf-8")
    return corpus


@pytest.fixture(scope="session")
def meld_subset_writer():
    """`write_meld_subset`: (shared_data, folder, {split: rows}) -> corpus folder."""
    return write_meld_subset


@pytest.fixture(scope="session")
def demo_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Course-layout demo data (360 utterances, 10 speakers) with the five planted bad files."""
    return write_small_demo(tmp_path_factory.mktemp("demo-bad"), bad_files=True)


@pytest.fixture(scope="session")
def clean_demo_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same demo data without planted problems (identical table and good files)."""
    return write_small_demo(tmp_path_factory.mktemp("demo-clean"), bad_files=False)


@pytest.fixture(scope="session")
def speaker_run(clean_demo_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete `emofusion run` (leave one speaker out, every system) on the clean demo
    data, through the command line with a YAML config; returns the run folder."""
    from emofusion.cli import main

    base = tmp_path_factory.mktemp("speaker-run")
    config = base / "run.yaml"
    config.write_text("n_bootstrap: 100\ninner_folds: 3\nseed: 0\n")
    out = base / "run"
    code = main(["run", str(clean_demo_csv), "--config", str(config), "--out", str(out),
                 "--jobs", "1", "--cache-dir", str(base / "cache")])
    assert code == 0
    return out


@pytest.fixture
def fast_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip metrics/plots/report writing in `emofusion.run` (predictions.csv is still written);
    for tests that only look at predictions."""
    import emofusion.report.writer

    monkeypatch.setattr(emofusion.report.writer, "write_report", lambda *args, **kwargs: {})
