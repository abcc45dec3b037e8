"""MELD text, 4 classes (anger, sadness, happiness = joy, neutral), official split: train+dev
(9,142 utterances) train, test (2,211) tests, with the default commands.

Features: the default `emofusion extract --modalities text` (all-MiniLM-L6-v2 sentence
embeddings, 384, and VADER affect-lexicon features, 11), extracted once into
``~/.cache/emofusion/bench/meld_text`` and reused; `emofusion run` adds the TF-IDF transcript
system (the transcripts vary) and fuses all three. Models: the default (shrinkage LDA, class
weights) and `auto`. Reports, per system, UA, weighted F1 (the metric usually quoted for MELD),
macro-F1 and F1-micro on the test split; all systems are reported (choosing the best one by its
test score would be selection on the test split).

Prints one JSON line. Usage: python bench/bench_meld.py [--models lda,auto]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MELD = REPO_ROOT.parent / "shared" / "data" / "meld"
CACHE = Path.home() / ".cache" / "emofusion" / "bench"
FEATURES = CACHE / "meld_text"


def ensure_features() -> tuple[Path, float]:
    """dataset.csv of the embeddings (embedding, or resuming, only what is missing)."""
    from emofusion.data.corpora import read_corpus
    from emofusion.features.extract import extract_corpus

    start = time.perf_counter()
    corpus = read_corpus("meld", MELD)
    csv = extract_corpus(corpus.table, list(corpus.label_names), FEATURES, ["text"],
                         corpus=corpus.description, progress=False)
    return csv, time.perf_counter() - start


def run_model(csv: Path, work: Path, model: str) -> dict:
    from emofusion import build_config, run

    config = build_config({"dataset": csv, "out": work / model, "split": "official",
                           "model": model, "cache_dir": CACHE / "meld_pooled", "n_bootstrap": 200})
    start = time.perf_counter()
    systems = run(config, progress=False).metrics["systems"]
    return {"seconds": round(time.perf_counter() - start, 1),
            "n_test": systems["minilm"]["pooled"]["n"],
            "systems": {name: {k: round(m["pooled"][k], 4)
                               for k in ("ua", "f1_weighted", "f1_macro", "f1_micro")}
                        for name, m in systems.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="lda,auto")
    args = parser.parse_args()
    if not MELD.is_dir():
        print(json.dumps({"benchmark": "meld_text_4class_official", "skipped": f"{MELD} not found"}))
        return
    load_before = os.getloadavg()[0]
    csv, extract_seconds = ensure_features()
    work = Path(tempfile.mkdtemp(prefix="emofusion-meld-"))
    result = {"benchmark": "meld_text_4class_official",
              "features": "minilm, vader (+ tfidf transcript system)", "cores": os.cpu_count(),
              "load_avg_1min_start": round(load_before, 1),
              "extract_or_check_seconds": round(extract_seconds, 1),
              "models": {model: run_model(csv, work, model) for model in args.models.split(",")},
              "load_avg_1min_end": round(os.getloadavg()[0], 1),
              "peak_mib_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
