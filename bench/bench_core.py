"""Core-engine benchmark on a generated IEMOCAP-size corpus (5,531 utterances, visual T ~ 30).

Measures the default protocol (3 modalities + early + both late fusions + stacking, nested
search, leave-one-speaker-out) cold (no pooled cache) and warm (cache present), each in a fresh
process, with peak memory; then the published course pipeline (mean pool -> StandardScaler ->
RandomOverSampler -> GridSearchCV 5-fold over the SVC and RF grids, per modality and
concatenated, majority vote) on the same data. The course pipeline takes hours for all ten
folds on 2 cores, so it runs on the first `--baseline-folds` outer folds and its time is
extrapolated linearly to ten; F1-micro is compared on exactly those folds. Its SVC grid alone
takes hours per fold on the 2,048-d visual and 768-d lexical inputs (a linear SVC at C=1 needs
~40-150 CPU s per fit there), so `--baseline-inputs acoustic` runs only part of its work: that
time is a lower bound of the whole pipeline's, and the speed-up is reported as a lower bound.

Wall times depend on what else runs on the machine: the JSON line also gives CPU seconds
(process and worker children) and the load average at the start; on an otherwise idle 2-core
machine the wall time of the parallel part is about CPU seconds / 2.

Prints one JSON line. Usage: python bench/bench_core.py [--baseline-folds 1] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_UTTERANCES = 5531
LOAD_AT_START = round(os.getloadavg()[0], 2)


def _cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (worker processes)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def ensure_data(folder: Path) -> Path:
    """Generate the corpus once (kept between benchmark runs)."""
    from emofusion.data.demo import write_demo_dataset

    csv = folder / "dataset.csv"
    if not csv.is_file():
        write_demo_dataset(folder, n_utterances=N_UTTERANCES, seed=1, bad_files=False)
    return csv


def measure_run(csv: Path, out: Path, cache: Path) -> dict:
    """Run the default protocol in this process: wall and CPU seconds, peak RSS, scores."""
    from emofusion import build_config, run

    config = build_config({"dataset": csv, "out": out, "cache_dir": cache, "jobs": 2})
    start = time.perf_counter()
    result = run(config, progress=False)
    wall = time.perf_counter() - start
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # reap the workers so their CPU time is counted
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    systems = result.metrics["systems"]
    return {
        "seconds": wall,
        "cpu_seconds": _cpu_seconds(),
        "peak_mib": max(u.ru_maxrss for u in usage) / 1024,
        "f1_micro": {k: v["pooled"]["f1_micro"] for k, v in systems.items()},
        "ua": {k: v["pooled"]["ua"] for k, v in systems.items()},
        "fold_f1": {k: [f["f1_micro"] for f in v["per_fold"]] for k, v in systems.items()},
    }


def timed_run_in_subprocess(csv: Path, out: Path, cache: Path) -> dict:
    """`measure_run` in a fresh interpreter, so imports and memory are counted from zero."""
    done = subprocess.run([sys.executable, __file__, "--measure-run", str(csv), str(out), str(cache)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def course_pipeline_fold(X_by_modality: dict[str, np.ndarray], y: np.ndarray, train, test,
                         jobs: int, inputs: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    """The published solution on one outer fold: per modality and concatenated, the better of
    the SVC and RF grid searches (5-fold CV, not grouped), then a majority vote. Only `inputs`
    (modality names and/or "early") are run; the vote needs every modality."""
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.pipeline import Pipeline
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    grids = [(SVC(random_state=seed), {"clf__C": [0.1, 1, 10], "clf__kernel": ["linear", "rbf", "poly"]}),
             (RandomForestClassifier(random_state=seed),
              {"clf__n_estimators": [50, 100, 200], "clf__max_depth": [None, 10, 20]})]
    predictions = {}
    matrices = dict(X_by_modality)
    matrices["early"] = np.hstack(list(X_by_modality.values()))
    for name in inputs:
        X = matrices[name]
        started = time.perf_counter()
        searches = []
        for classifier, grid in grids:
            pipe = Pipeline([("scale", StandardScaler()), ("ros", RandomOverSampler(random_state=seed)),
                             ("clf", classifier)])
            searches.append(GridSearchCV(pipe, grid, cv=5, n_jobs=jobs).fit(X[train], y[train]))
        best = max(searches, key=lambda s: s.best_score_)
        predictions[name] = best.predict(X[test])
        print(f"course pipeline: {name} done in {time.perf_counter() - started:.0f} s",
              file=sys.stderr, flush=True)
    if set(X_by_modality) <= set(predictions):
        votes = np.stack([predictions[m] for m in X_by_modality])
        predictions["late_vote"] = np.array([np.bincount(col, minlength=4).argmax() for col in votes.T])
    return predictions


def run_course_baseline(csv: Path, cache: Path, n_folds: int, jobs: int, inputs: list[str]) -> dict:
    from emofusion import build_config
    from emofusion.evaluation.splits import make_outer_folds
    from emofusion.runner import prepare_data

    config = build_config({"dataset": csv, "cache_dir": cache,
                           "pooling": {"visual": "mean", "acoustic": "mean", "lexical": "mean"}})
    data = prepare_data(config)
    y = data.manifest.y
    folds = make_outer_folds("speaker", data.manifest.table, y)[:n_folds]
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    f1 = {}
    for fold in folds:
        predictions = course_pipeline_fold(data.features, y, fold.train, fold.test, jobs,
                                           inputs or [*data.features, "early"])
        for name, predicted in predictions.items():
            f1.setdefault(name, []).append(float(np.mean(predicted == y[fold.test])))
    seconds = time.perf_counter() - start
    if jobs > 1:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    cpu = _cpu_seconds() - cpu_start
    return {"folds_run": n_folds, "jobs": jobs, "inputs_run": inputs or "all",
            "seconds": seconds, "cpu_seconds": cpu,
            "seconds_extrapolated_10_folds": seconds * 10 / n_folds,
            "cpu_seconds_extrapolated_10_folds": cpu * 10 / n_folds,
            "fold_f1_micro": f1}


def baseline_summary(baseline: dict, warm: dict | None) -> dict:
    """The course pipeline's times and scores, beside ours on the same folds when measured."""
    n = baseline["folds_run"]
    summary = {key: round(value, 1) if isinstance(value, float) else value
               for key, value in baseline.items() if key != "fold_f1_micro"}
    summary["f1_micro_same_folds"] = {k: round(float(np.mean(v)), 4)
                                      for k, v in baseline["fold_f1_micro"].items()}
    if warm is not None:
        summary["emofusion_f1_micro_same_folds"] = {k: round(float(np.mean(v[:n])), 4)
                                                    for k, v in warm["fold_f1"].items()}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path.home() / ".cache/emofusion/bench/course5531")
    parser.add_argument("--baseline-folds", type=int, default=1, help="0 skips the course pipeline")
    parser.add_argument("--baseline-jobs", type=int, default=2, help="course pipeline n_jobs")
    parser.add_argument("--baseline-only", action="store_true", help="measure only the course pipeline")
    parser.add_argument("--baseline-inputs", default="",
                        help="comma-separated subset of the course pipeline's inputs (modalities, early): "
                             "its time is then a lower bound of the whole pipeline's")
    parser.add_argument("--measure-run", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_run:
        print(json.dumps(measure_run(*args.measure_run)))
        return
    start = time.perf_counter()
    csv = ensure_data(args.data)
    generate_seconds = time.perf_counter() - start
    work = Path(tempfile.mkdtemp(prefix="emofusion-bench-"))
    cache = work / "cache"
    result: dict = {"benchmark": "core_default_protocol", "n_utterances": N_UTTERANCES, "cores": 2,
                    "load_average_1min_at_start": LOAD_AT_START}
    warm = None
    if not args.baseline_only:
        cold = timed_run_in_subprocess(csv, work / "cold", cache)
        warm = timed_run_in_subprocess(csv, work / "warm", cache)
        result.update({
            "generate_seconds": round(generate_seconds, 1),
            "cold_seconds": round(cold["seconds"], 1), "warm_seconds": round(warm["seconds"], 1),
            "cold_cpu_seconds": round(cold["cpu_seconds"], 1),
            "warm_cpu_seconds": round(warm["cpu_seconds"], 1),
            "peak_mib": round(max(cold["peak_mib"], warm["peak_mib"])),
            "f1_micro": {k: round(v, 4) for k, v in warm["f1_micro"].items()},
            "ua": {k: round(v, 4) for k, v in warm["ua"].items()},
        })
    if args.baseline_folds:
        baseline = run_course_baseline(csv, cache, args.baseline_folds, args.baseline_jobs,
                                       [x for x in args.baseline_inputs.split(",") if x])
        result["course_pipeline"] = baseline_summary(baseline, warm)
        if warm is not None:
            bound = "_lower_bound" if args.baseline_inputs else ""  # part of its work only
            result[f"speedup_vs_course_pipeline_warm{bound}"] = round(
                baseline["seconds_extrapolated_10_folds"] / warm["seconds"], 1)
            result[f"cpu_speedup_vs_course_pipeline_warm{bound}"] = round(
                baseline["cpu_seconds_extrapolated_10_folds"] / warm["cpu_seconds"], 1)
    result["peak_mib_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
