"""Deep-model benchmark: per-fold training time, peak memory, UA and F1-micro of every deep model.

Corpora:

* (a) ``iemocap_size``: the generated IEMOCAP-size corpus (5,531 utterances, visual 2048-d
  T ~ 30, acoustic 128-d T ~ 10, lexical 768-d; the folder bench_core.py uses), the first
  ``--iemocap-folds`` leave-one-speaker-out folds. System: ``early`` (frame-level concatenation
  of the three modalities for sequence models, pooled concatenation for ``mlp``) or
  ``model_fusion`` for the ``fusion_*`` models; the classical baseline ``lda`` on the pooled
  ``early`` input (default pooling) on the same fold(s).
* (b) ``ravdess``: RAVDESS speech (4 classes) from ``<repo>/../shared/data/ravdess_speech_16k``
  (skipped cleanly when absent). Features are extracted once with the project's extractor API
  (log-mel frames + eGeMAPS functionals) into ~/.cache/emofusion/bench/ravdess_features.
  Baseline ``lda`` on eGeMAPS + log-mel stats pooling (early system); sequence models on the
  log-mel frames; ``fusion_*`` on log-mel frames + eGeMAPS; ``mlp`` on the pooled early input.
  Split: ``--ravdess-split`` (``speaker`` = leave one actor out, or ``kN`` speaker-grouped
  folds), the first ``--ravdess-folds`` folds (0 = all).

Each (corpus, model) runs in a fresh interpreter (so its peak RSS is its own; torch import is
inside the measured process but outside the timed fold) through the engine's own
`run_fold` (same inputs, pipeline and nested search as ``emofusion run``). ``--grid first``
(default) fits the first candidate of each model's grid (one fit per fold: no inner search);
``--grid full`` runs the model's full nested grid search (about 7 fits per fold); ``--grid aids``
runs the nested search over the training aids instead (`AID_GRIDS`: masks, mixup, learning-rate
schedule; up to 16 candidates x inner folds, other parameters at their first candidate): each
outer fold chooses them on its own training speakers; ``best_params`` records the choice per
fold. ``--scaling speaker`` normalises every speaker's inputs with that speaker's own statistics
(the run's ``scaling: speaker``: pooled rows, and every frame of a speaker's frame sequences; no
labels are used), before the estimators' own standardisation.

Prints one JSON line. Usage:
    python bench/bench_deep.py [--iemocap-folds 1] [--ravdess-split k4] [--ravdess-folds 0]
                               [--grid first|full|aids] [--scaling standard|speaker] [--jobs 1]
                               [--models gru,lstm]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "emofusion" / "bench"
DEEP_MODELS = ["mlp", "attention", "gru", "lstm", "transformer", "fusion_concat",
               "fusion_gated", "fusion_attention"]
N_UTTERANCES = 5531
#: candidate values of the training aids, for the models that take them (``--grid aids``)
AID_GRIDS = {
    "time_masks": [0, 2], "freq_masks": [0, 2], "mixup_alpha": [0.0, 0.2],
    "lr_schedule": ["constant", "cosine"],
}


def ensure_iemocap_size(folder: Path) -> Path:
    from emofusion.data.demo import write_demo_dataset

    csv = folder / "dataset.csv"
    if not csv.is_file():
        write_demo_dataset(folder, n_utterances=N_UTTERANCES, seed=1, bad_files=False)
    return csv


def ensure_ravdess(root: Path, out: Path) -> Path | None:
    csv = out / "dataset.csv"
    if csv.is_file():
        return csv
    if not root.is_dir():
        return None
    from emofusion.data.corpora import read_corpus
    from emofusion.features.extract import extract_corpus

    corpus = read_corpus("ravdess", root)
    return extract_corpus(corpus.table, list(corpus.label_names), out, ["logmel", "egemaps"],
                          jobs=2, corpus="ravdess", progress=False)


def job_config(corpus: str, model: str, csv: Path, args) -> dict:
    """RunConfig values and the system to score for one (corpus, model)."""
    from emofusion.models.registry import get_model

    spec = get_model(model)
    values = {"dataset": str(csv), "out": "/tmp/emofusion-bench-deep-unused", "model": model,
              "use_cache": False, "scaling": args.scaling}
    if corpus == "iemocap_size":
        values.update(split="speaker", systems=["early"])
        system = "model_fusion" if spec.multimodal else "early"
    else:
        values.update(split=args.ravdess_split)
        if spec.input == "pooled":  # lda, mlp: eGeMAPS + log-mel stats pooling, concatenated
            values.update(systems=["early"], modalities=["egemaps", "logmel"],
                          pooling={"logmel": "stats", "egemaps": "mean"})
            system = "early"
        elif spec.multimodal:
            values.update(systems=["early"], modalities=["logmel", "egemaps"])
            system = "model_fusion"
        else:
            values.update(systems=["unimodal"], modalities=["logmel"])
            system = "logmel"
    if args.grid in ("first", "aids"):
        parameters = spec.build(0, None).get_params()
        aids = {k: v for k, v in AID_GRIDS.items() if k in parameters} if args.grid == "aids" else {}
        values["param_grid"] = {**{k: [v[0]] for k, v in spec.grid.items()}, **aids} or None
    n_folds = args.iemocap_folds if corpus == "iemocap_size" else args.ravdess_folds
    return {"config": values, "system": system, "n_folds": n_folds}


def worker(job: dict) -> dict:
    """One (corpus, model) in this process: load, run the first n folds, score."""
    import resource

    import numpy as np
    from sklearn.metrics import f1_score, recall_score

    import emofusion.models.deep  # noqa: F401  (registers the deep models; imports torch)
    from emofusion.config import build_config
    from emofusion.evaluation.experiment import make_setup, run_fold
    from emofusion.models.registry import get_model
    from emofusion.runner import _checked_folds, _system_inputs, prepare_data

    config = build_config(job["config"])
    spec = get_model(config.model)
    start = time.perf_counter()
    data = prepare_data(config)
    load_seconds = time.perf_counter() - start
    manifest = data.manifest
    folds = _checked_folds(data, config)
    if job["n_folds"]:
        folds = folds[: job["n_folds"]]
    inputs = _system_inputs(data, config, spec)
    setup = make_setup(config, inputs, manifest.y,
                       manifest.speakers, list(manifest.modalities), len(manifest.label_names))
    seconds, truth, predicted, held_out, chosen = [], [], [], [], []
    for fold in folds:
        output = run_fold(fold, setup)
        chosen.append(output.searches[job["system"]]["best_params"])
        seconds.append(round(output.seconds, 1))
        truth.append(manifest.y[fold.test])
        predicted.append(output.probabilities[job["system"]].argmax(axis=1))
        held_out.append(list(map(str, fold.held_out)))
    y, p = np.concatenate(truth), np.concatenate(predicted)
    return {
        "fold_seconds": seconds,
        "mean_fold_seconds": round(float(np.mean(seconds)), 1),
        "load_seconds": round(load_seconds, 1),
        "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "ua": round(float(recall_score(y, p, average="macro")), 4),
        "f1_micro": round(float(f1_score(y, p, average="micro")), 4),
        "n_test": int(len(y)),
        "held_out": held_out,
        "best_params": chosen,
        "system": job["system"],
    }


def run_job(job: dict) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--iemocap-folds", type=int, default=1)
    parser.add_argument("--ravdess-split", default="k4")
    parser.add_argument("--ravdess-folds", type=int, default=0)
    parser.add_argument("--grid", choices=["first", "full", "aids"], default="first")
    parser.add_argument("--scaling", choices=["standard", "speaker"], default="standard")
    parser.add_argument("--models", default=",".join(DEEP_MODELS),
                        help="deep models (lda, the baseline, always runs too)")
    parser.add_argument("--corpora", default="iemocap_size,ravdess")
    parser.add_argument("--jobs", type=int, default=1,
                        help="(corpus, model) subprocesses at once (1 = clean timings)")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    import emofusion.models.deep  # noqa: F401

    models = [m for m in args.models.split(",") if m]
    corpora = args.corpora.split(",")
    result: dict = {"load_average_start": list(os.getloadavg()), "cpu_count": os.cpu_count(),
                    "grid": args.grid, "scaling": args.scaling, "corpora": {}}
    jobs = []
    if "iemocap_size" in corpora:
        csv = ensure_iemocap_size(CACHE / "course5531")
        result["corpora"]["iemocap_size"] = {
            "data": str(csv), "split": f"leave one speaker out, first {args.iemocap_folds} fold(s)",
            "models": {}}
        jobs += [("iemocap_size", m, job_config("iemocap_size", m, csv, args))
                 for m in ["lda", *models]]
    if "ravdess" in corpora:
        root = REPO.parent / "shared" / "data" / "ravdess_speech_16k"
        csv = ensure_ravdess(root, CACHE / "ravdess_features")
        if csv is None:
            result["corpora"]["ravdess"] = {"skipped": f"{root} not found"}
        else:
            folds = "all folds" if not args.ravdess_folds else f"first {args.ravdess_folds} fold(s)"
            result["corpora"]["ravdess"] = {"data": str(csv), "split": f"{args.ravdess_split}, "
                                            f"{folds}", "models": {}}
            jobs += [("ravdess", m, job_config("ravdess", m, csv, args))
                     for m in ["lda", *models]]
    start = time.perf_counter()
    with ThreadPoolExecutor(max(args.jobs, 1)) as pool:
        outcomes = list(pool.map(lambda j: run_job(j[2]), jobs))
    for (corpus, model, _), outcome in zip(jobs, outcomes, strict=True):
        result["corpora"][corpus]["models"][model] = outcome
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    result["load_average_end"] = list(os.getloadavg())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
