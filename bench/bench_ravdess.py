"""RAVDESS speech, actors 01-12, 4 classes (anger, sadness, happiness, neutral: 336 clips),
leave one actor out (12 folds), with the default commands.

Features: the default `emofusion extract --modalities audio` (eGeMAPS functionals (88), ComParE
2016 functionals (6,373), 64-band log-mel frames pooled with `stats`, and the GE2E speaker
encoder's three layers (3 x 512) with the layer chosen on inner folds), extracted once into
``~/.cache/emofusion/bench/ravdess_audio`` and reused.

Reported per configuration: UA and F1-micro pooled over the 12 test actors (every actor has
the same class counts, so these equal the means over folds; ``*_fold_std`` is the spread over
folds) of every system the default run reports. ``default`` is `emofusion run` as it comes
(speaker-independent protocol, shrinkage LDA, class weights); ``speaker_adaptive`` adds
`--protocol speaker_adaptive` (per-actor normalisation with the actor's own unlabelled
utterances, test actors included); ``auto`` / ``auto_speaker_adaptive`` use `--model auto`.
Each configuration's systems are all reported: picking the best of them by its
leave-one-actor-out score would be selection on the evaluation folds.

``course_pipeline``: the course solution on eGeMAPS and log-mel and the same folds: mean
pooling, StandardScaler -> RandomOverSampler -> GridSearchCV (5-fold, not speaker-grouped) over
SVC C {0.1, 1, 10} x kernel {linear, rbf, poly}, per modality and concatenated; and the same
pipeline on per-actor z-normalised features (``course_pipeline_speaker_scaled``).

Prints one JSON line. Usage: python bench/bench_ravdess.py [--configs default,auto,...] [--no-course]
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

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RAVDESS = REPO_ROOT.parent / "shared" / "data" / "ravdess_speech_16k"
CACHE = Path.home() / ".cache" / "emofusion" / "bench"
FEATURES = CACHE / "ravdess_audio"
REPORTED = ["egemaps", "compare", "logmel", "ge2e", "early", "late_vote", "late_mean", "stacking"]
CONFIGS = {
    "default": {},
    "speaker_adaptive": {"protocol": "speaker_adaptive"},
    "auto": {"model": "auto"},
    "auto_speaker_adaptive": {"model": "auto", "protocol": "speaker_adaptive"},
}


def ensure_features(jobs: int) -> tuple[Path, float]:
    """dataset.csv of the extracted features (extracting, or resuming, only what is missing)."""
    from emofusion.data.corpora import read_corpus
    from emofusion.features.extract import extract_corpus

    start = time.perf_counter()
    corpus = read_corpus("ravdess", RAVDESS)
    csv = extract_corpus(corpus.table, list(corpus.label_names), FEATURES, ["audio"],
                         jobs=jobs, corpus=corpus.description, progress=False)
    return csv, time.perf_counter() - start


def run_config(csv: Path, work: Path, name: str, options: dict) -> dict:
    from emofusion import build_config, run

    config = build_config({"dataset": csv, "out": work / name,
                           "cache_dir": CACHE / "ravdess_pooled", "jobs": 2, "n_bootstrap": 200,
                           **options})
    start = time.perf_counter()
    systems = run(config, progress=False).metrics["systems"]
    result = {"seconds": round(time.perf_counter() - start, 1)}
    for metric in ("ua", "f1_micro"):
        result[metric] = {s: round(systems[s]["pooled"][metric], 4) for s in REPORTED}
        result[f"{metric}_fold_std"] = {s: round(systems[s]["std"][metric], 4) for s in REPORTED}
    return result


def course_pipeline(csv: Path, seed: int = 0, speaker_scaled: bool = False) -> dict:
    """The course solution (SVC grid) on mean-pooled features, leave one actor out."""
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.pipeline import Pipeline
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GridSearchCV
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from emofusion import build_config
    from emofusion.evaluation.splits import make_outer_folds
    from emofusion.runner import prepare_data

    data = prepare_data(build_config({"dataset": csv, "cache_dir": CACHE / "ravdess_pooled",
                                      "modalities": ["egemaps", "logmel"],
                                      "pooling": {"egemaps": "mean", "logmel": "mean"}}))
    y = data.manifest.y
    inputs = dict(data.features)
    if speaker_scaled:
        from emofusion.features.normalization import speaker_normalise

        inputs = {m: speaker_normalise(x, data.manifest.speakers) for m, x in inputs.items()}
    inputs["early"] = np.hstack([inputs["egemaps"], inputs["logmel"]])
    folds = make_outer_folds("speaker", data.manifest.table, y)
    grid = {"clf__C": [0.1, 1, 10], "clf__kernel": ["linear", "rbf", "poly"]}
    start = time.perf_counter()
    predicted = {name: np.empty_like(y) for name in inputs}
    for fold in folds:
        for name, X in inputs.items():
            pipe = Pipeline([("scale", StandardScaler()),
                             ("ros", RandomOverSampler(random_state=seed)),
                             ("clf", SVC(random_state=seed))])
            search = GridSearchCV(pipe, grid, cv=5, n_jobs=2).fit(X[fold.train], y[fold.train])
            predicted[name][fold.test] = search.predict(X[fold.test])
    return {"seconds": round(time.perf_counter() - start, 1),
            "ua": {n: round(balanced_accuracy_score(y, p), 4) for n, p in predicted.items()},
            "f1_micro": {n: round(float(np.mean(p == y)), 4) for n, p in predicted.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument("--no-course", action="store_true", help="skip the course pipeline")
    parser.add_argument("--jobs", type=int, default=2, help="extraction workers (first run only)")
    args = parser.parse_args()
    if not RAVDESS.is_dir():
        print(json.dumps({"benchmark": "ravdess_4class_loao", "skipped": f"{RAVDESS} not found"}))
        return
    load_before = os.getloadavg()[0]
    csv, extract_seconds = ensure_features(args.jobs)
    work = Path(tempfile.mkdtemp(prefix="emofusion-ravdess-"))
    result: dict = {"benchmark": "ravdess_4class_loao", "n_utterances": 336, "folds": 12,
                    "cores": os.cpu_count(), "load_avg_1min_start": round(load_before, 1),
                    "extract_or_check_seconds": round(extract_seconds, 1), "configs": {}}
    for name in args.configs.split(","):
        result["configs"][name] = run_config(csv, work, name, CONFIGS[name])
    if not args.no_course:
        result["course_pipeline"] = course_pipeline(csv)
        result["course_pipeline_speaker_scaled"] = course_pipeline(csv, speaker_scaled=True)
    result["load_avg_1min_end"] = round(os.getloadavg()[0], 1)
    result["peak_mib_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
