"""The `emofusion` command. It only turns arguments into a `RunConfig` (or a call) and prints;
all work happens in the library. User errors print one message and exit with status 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from emofusion.config import SYSTEM_CHOICES, RunConfig, build_config
from emofusion.errors import ConfigError, EmofusionError

console = Console(stderr=True)
DEMO_UTTERANCES = 1200


def _key_values(items: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"{what} expects NAME=VALUE, got '{item}'")
        pairs[key] = value
    return pairs


def _extractor_params(names: list[str], settings: list[str] | None) -> dict[str, dict[str, Any]]:
    """``{extractor: params}`` for `names` from ``--param EXTRACTOR.PARAMETER=VALUE`` settings;
    values are read as YAML scalars (``10`` is a number, a path stays a string)."""
    import yaml

    params: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in _key_values(settings, "--param").items():
        extractor, _, parameter = key.partition(".")
        if extractor not in params or not parameter:
            raise ConfigError(f"--param {key}={value}: expected EXTRACTOR.PARAMETER=VALUE for an "
                              f"extractor of --modalities ({', '.join(params)}), e.g. "
                              "hf_audio.model=/models/wav2vec2-base")
        params[extractor][parameter] = yaml.safe_load(value)
    return params


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, help="dataset.csv (course layout or generic manifest)")
    parser.add_argument("--config", type=Path, help="YAML run config; options given here win")
    parser.add_argument("--features-root", type=Path, help="folder or .zip the CSV paths are relative to")
    parser.add_argument("--split", help="speaker | session | kN | random | official | transcript")
    parser.add_argument("--model", help="model for unimodal/early systems (see `emofusion models`)")
    parser.add_argument("--modalities", nargs="+", help="modalities to use (default: all)")
    parser.add_argument("--pooling", nargs="+", metavar="MODALITY=METHOD",
                        help="pooling per modality: mean | max | std | stats")
    parser.add_argument("--scaling", choices=["standard", "speaker", "speaker_strict", "none"])
    parser.add_argument("--protocol", choices=["speaker_independent", "speaker_adaptive"],
                        help="speaker_adaptive: each speaker normalised with its own unlabelled "
                             "utterances, test speakers included (default speaker_independent)")
    parser.add_argument("--text-model", help="model of the transcript system (default tfidf)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"],
                        help="where PyTorch models train and predict (default cpu)")
    parser.add_argument("--transcripts", choices=["auto", "on", "off"],
                        help="transcript system beside the features (auto: when transcripts vary)")
    parser.add_argument("--imbalance", choices=["none", "class_weight", "oversample", "smote"])
    parser.add_argument("--on-bad-file", choices=["fail", "skip"])
    parser.add_argument("--jobs", type=int, help="parallel outer folds (default 2)")
    parser.add_argument("--backend", choices=["loky", "dask"], help="joblib backend for folds")
    parser.add_argument("--scheduler", dest="dask_scheduler", help="dask scheduler address")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--cache-dir", type=Path, help="pooled-feature cache folder")
    parser.add_argument("--no-cache", dest="use_cache", action="store_const", const=False)


def _config_from_args(args: argparse.Namespace, **extra: Any) -> RunConfig:
    names = ("dataset", "features_root", "split", "model", "modalities", "scaling", "protocol",
             "text_model", "transcripts", "device", "imbalance",
             "on_bad_file", "jobs", "backend", "dask_scheduler", "seed", "cache_dir", "use_cache",
             "systems", "mlflow")
    values = {n: getattr(args, n, None) for n in names}
    values.update(extra)
    if args.pooling:
        values["pooling"] = _key_values(args.pooling, "--pooling")
    values = {k: v for k, v in values.items() if v is not None}
    if args.config:
        return RunConfig.from_yaml(args.config, **values)
    return build_config(values)


def cmd_run(args: argparse.Namespace) -> int:
    from emofusion.runner import print_summary, run
    from emofusion.tracking import check_tracking, track

    config = _config_from_args(args, out=args.out)
    check_tracking(config)
    result = run(config, console=console, resume=args.resume, overwrite=args.overwrite)
    print_summary(result, Console(width=160))
    track(result, console.print)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from emofusion.data.demo import write_demo_dataset
    from emofusion.runner import print_summary, run

    out = Path(args.out)
    csv = write_demo_dataset(out / "data", n_utterances=args.utterances, seed=args.seed)
    console.print(f"generated demo data (course layout, a few planted bad files): {csv}")
    config = build_config({"dataset": csv, "out": out / "run", "on_bad_file": "skip",
                           "jobs": args.jobs, "seed": args.seed, "cache_dir": out / "cache"})
    (out / "run.yaml").write_text(config.to_yaml())
    print_summary(run(config, console=console, overwrite=True), Console(width=160))
    return 0


RUN_ONLY_OPTIONS = {"split": "--split", "backend": "--backend", "dask_scheduler": "--scheduler"}


def cmd_train(args: argparse.Namespace) -> int:
    from emofusion.inference import train_model
    from emofusion.models.saved import save_model

    given = [flag for name, flag in RUN_ONLY_OPTIONS.items() if getattr(args, name) is not None]
    if given:
        raise ConfigError(f"{' and '.join(given)}: only for `emofusion run` (outer folds); train "
                          "fits one model on every utterance. Drop the option.")
    config = _config_from_args(args, out=Path(args.out).with_suffix(".run"))
    path = save_model(train_model(config, args.system), Path(args.out))
    console.print(f"saved {args.system} model ({config.model}) to {path}")
    return 0


def _single_inputs(args: argparse.Namespace, model) -> dict[str, np.ndarray]:
    from emofusion.data.sources import FeatureFileError, FeatureSource
    from emofusion.features.extract import extract_single

    arrays = {}
    for modality, path in _key_values(args.npy, "--npy").items():
        if modality not in model.card.modalities:
            raise ConfigError(f"--npy {modality}={path}: the model has no modality '{modality}'; "
                              f"it uses {model.card.modalities}")
        try:
            arrays[modality] = FeatureSource(Path(path).parent).read(path)
        except FeatureFileError as exc:
            raise ConfigError(f"--npy {modality}={path}: {exc}; give a .npy file written by "
                              "numpy.save") from exc
    if args.text and "transcript" in model.card.modalities:
        arrays["transcript"] = args.text  # the model reads the words themselves
    still_needed = [m for m in model.card.modalities if m not in arrays]
    if (args.wav or args.video or args.text) and still_needed:
        if not model.card.extractors:
            raise ConfigError("this model was trained on pre-extracted features; give --npy "
                              "MODALITY=FILE.npy instead of raw media")
        arrays.update(extract_single(model.card.extractors, wav=args.wav, text=args.text,
                                     video=args.video))
    return arrays


def _print_adaptation(table) -> None:
    """Say how a speaker-adaptive model adapted to each utterance's speaker."""
    from emofusion.inference import MIN_ADAPTATION_UTTERANCES

    if "adaptation" not in table.columns:
        return
    counts = table["adaptation"].value_counts()
    console.print("speaker-adaptive model, statistics per utterance: " + ", ".join(
        f"{source} {n}" for source, n in counts.items()))
    if "training average" in counts:
        console.print(f"{counts['training average']} utterance(s) had no enrolment and fewer "
                      f"than {MIN_ADAPTATION_UTTERANCES} utterances of their speaker: normalised "
                      "with the training speakers' average (give more utterances per speaker or "
                      "--enrol CSV)", style="yellow")


def cmd_predict(args: argparse.Namespace) -> int:
    from emofusion.inference import predict_arrays, predict_dataset, read_enrolment
    from emofusion.models.saved import load_model

    single = [flag for flag in ("npy", "wav", "text", "video") if getattr(args, flag)]
    if args.data and single:
        raise ConfigError(f"give a dataset CSV ({args.data}) or one utterance's "
                          f"{'/'.join('--' + flag for flag in single)}, not both")
    model = load_model(args.model, trust=args.trust)
    enrolment = read_enrolment(model, args.enrol, args.features_root) if args.enrol else None
    if args.data:
        table, skipped = predict_dataset(model, args.data, args.features_root, args.on_bad_file,
                                         enrolment)
        for problem in skipped:
            console.print(f"skipped {problem.describe()}", style="yellow", markup=False)
    elif single:
        table = predict_arrays(model, _single_inputs(args, model), speaker=args.speaker or "",
                               enrolment=enrolment)
    else:
        raise ConfigError("give a dataset CSV, or --npy MODALITY=FILE, or --wav/--text/--video")
    _print_adaptation(table)
    if args.out:
        try:
            table.to_csv(args.out, index=False)
        except OSError as exc:  # a missing folder, no permission
            raise ConfigError(f"cannot write the predictions to {args.out} ({exc.strerror or exc}); "
                              "choose another --out") from exc
        console.print(f"wrote {len(table)} predictions to {args.out}")
    else:
        table.to_csv(sys.stdout, index=False, float_format="%.4f")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from emofusion.serve.server import ServeOptions, run_server

    run_server(args.model, ServeOptions(
        host=args.host, port=args.port, api_key=args.api_key, trust=args.trust,
        max_upload_mb=args.max_upload_mb, max_audio_seconds=args.max_audio_seconds,
        workers=args.workers, timeout=args.timeout), announce=console.print)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from emofusion.sweep import load_sweep, run_sweep

    folders = run_sweep(load_sweep(args.spec), console)
    console.print(f"{len(folders)} runs in {folders[0].parent}; compare them with: emofusion "
                  f"compare {folders[0].parent}/*")
    return 0


def _interval_cell(row, metric: str) -> str:
    return (f"{100 * row[metric]:.1f} [{100 * row[metric + '_low']:.1f}, "
            f"{100 * row[metric + '_high']:.1f}]")


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.table import Table

    from emofusion.report.compare import METRICS, compare_runs, plot_comparison

    table, paired = compare_runs(args.runs, args.system, n_boot=args.n_boot, seed=args.seed)
    shown = Table(title="runs compared (95 % speaker-bootstrap intervals, %)")
    for column in ("run", "system", "n", *METRICS.values()):
        shown.add_column(column)
    for _, row in table.iterrows():
        shown.add_row(row["run"], row["system"], str(int(row["n"])),
                      *(_interval_cell(row, metric) for metric in METRICS))
    Console(width=200).print(shown)
    for test in paired:
        pair = f"{test['system_a']} vs {test['system_b']}"
        if "error" in test:
            print(f"{pair}: not paired ({test['error']})")
            continue
        boot = test["bootstrap"]
        print(f"{pair}: UA difference {100 * test['ua_diff']:+.1f} points [{100 * boot['ci_low']:+.1f}, "
              f"{100 * boot['ci_high']:+.1f}], McNemar p {test['mcnemar']['p_value']:.3g} "
              f"(Holm {test['mcnemar']['p_holm']:.3g}), {test['n_utterances']} utterances")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "compare.csv", index=False)
        (args.out / "paired.json").write_text(json.dumps(paired, indent=1))
        console.print(f"wrote {args.out / 'compare.csv'}, paired.json and "
                      f"{plot_comparison(table, args.out / 'compare.png').name}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from emofusion.models.registry import available_models

    for name, spec in sorted(available_models().items()):
        print(f"{name:18s} [{spec.input}{', multimodal' if spec.multimodal else ''}] {spec.description}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from emofusion.data.corpora import corpus_summary, read_corpus
    from emofusion.features.extract import MODALITY_GROUPS, extract_corpus

    corpus = read_corpus(args.corpus, args.corpus_dir, classes=args.classes,
                         merge_excited=args.merge_excited, on_bad=args.on_bad_file)
    console.print(corpus.description)
    console.print(corpus_summary(corpus.table))
    for problem in corpus.problems:
        console.print(f"skipped {problem.describe()}", style="yellow", markup=False)
    extractors: list[str] = []
    for item in args.modalities.split(","):
        extractors += MODALITY_GROUPS.get(item.strip(), [item.strip()])
    csv = extract_corpus(corpus.table, list(corpus.label_names), args.out,
                         _extractor_params(extractors, args.param), jobs=args.jobs,
                         on_bad=args.on_bad_file, corpus=corpus.description, device=args.device)
    split = " --split official" if "split" in corpus.table.columns else ""
    console.print(f"features written; next: emofusion run {csv} --out runs/{args.corpus}{split}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emofusion",
        description="Speaker-independent multimodal emotion recognition: experiments, reports, "
                    "saved models. Start with `emofusion demo`.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate course-layout demo data and run the protocol")
    demo.add_argument("--out", default="emofusion-demo", help="folder for data and run")
    demo.add_argument("--utterances", type=int, default=DEMO_UTTERANCES)
    demo.add_argument("--jobs", type=int, default=2)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="speaker-independent experiment and report")
    _add_run_options(run)
    run.add_argument("--out", type=Path, required=True, help="run folder")
    run.add_argument("--systems", nargs="+", choices=SYSTEM_CHOICES)
    run.add_argument("--resume", action="store_true",
                     help="continue the interrupted run in --out (same options and data): only "
                          "folds without a checkpoint in OUT/folds/ are computed")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run in --out (by default a non-empty --out is refused)")
    run.add_argument("--mlflow", metavar="URI",
                     help="log the run to MLflow: a folder (SQLite store inside) or a tracking "
                          "URI (pip install 'emofusion[tracking]')")
    run.set_defaults(func=cmd_run)

    train = sub.add_parser("train", help="fit one system on all speakers and save it")
    _add_run_options(train)
    train.add_argument("--system", default="early",
                       help="a modality name, early, late_vote, late_mean or stacking")
    train.add_argument("--out", required=True, help="model file to write")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="predict new utterances with a saved model")
    predict.add_argument("model", type=Path)
    predict.add_argument("data", nargs="?", type=Path, help="dataset CSV (labels optional)")
    predict.add_argument("--features-root", type=Path)
    predict.add_argument("--npy", nargs="+", metavar="MODALITY=FILE", help="one utterance's arrays")
    predict.add_argument("--wav", type=Path, help="raw audio (models trained on extracted features)")
    predict.add_argument("--text", help="transcript (models trained on extracted features)")
    predict.add_argument("--video", type=Path, help="raw video (models trained on extracted features)")
    predict.add_argument("--out", type=Path, help="CSV to write (default: stdout)")
    predict.add_argument("--on-bad-file", choices=["fail", "skip"], default="fail")
    predict.add_argument("--trust", action="store_true", help="load unknown types in the model file")
    predict.add_argument("--enrol", type=Path, metavar="CSV",
                         help="speaker-adaptive models: unlabelled utterances per speaker to adapt to")
    predict.add_argument("--speaker", help="speaker of a single --npy/--wav utterance (with --enrol)")
    predict.set_defaults(func=cmd_predict)

    serve = sub.add_parser("serve", help="REST service and web page for a saved model")
    serve.add_argument("model", type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", help="require this X-API-Key header (or set EMOFUSION_API_KEY)")
    serve.add_argument("--trust", action="store_true", help="load unknown types in the model file")
    serve.add_argument("--max-upload-mb", type=float, default=25.0, help="largest request body")
    serve.add_argument("--max-audio-seconds", type=float, default=60.0, help="longest recording")
    serve.add_argument("--workers", type=int, default=2, help="predictions computed at once")
    serve.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    serve.set_defaults(func=cmd_serve)

    sweep = sub.add_parser("sweep", help="a grid of runs over config fields and seeds")
    sweep.add_argument("spec", type=Path, help="sweep YAML (out, base, grid, seeds)")
    sweep.set_defaults(func=cmd_sweep)

    compare = sub.add_parser("compare", help="one table of several runs, with paired tests")
    compare.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    compare.add_argument("--system", nargs="+", help="systems to compare (default: all)")
    compare.add_argument("--out", type=Path, help="folder for compare.csv, paired.json, compare.png")
    compare.add_argument("--n-boot", type=int, default=1000, help="speaker-bootstrap resamples")
    compare.add_argument("--seed", type=int, default=0)
    compare.set_defaults(func=cmd_compare)

    models = sub.add_parser("models", help="list model names")
    models.set_defaults(func=cmd_models)

    extract = sub.add_parser("extract", help="raw corpus -> features in the generic layout")
    extract.add_argument("corpus_dir", type=Path)
    extract.add_argument("--corpus", required=True,
                         choices=["iemocap", "ravdess", "cremad", "emodb", "meld", "manifest"])
    extract.add_argument("--modalities", default="audio,text",
                         help="audio,text,visual or extractor names (see docs/extractors.md)")
    extract.add_argument("--out", type=Path, required=True)
    extract.add_argument("--classes", default="4", help="4 (anger, sadness, happiness, neutral) or all")
    extract.add_argument("--no-merge-excited", dest="merge_excited", action="store_false",
                         help="IEMOCAP: keep 'excited' out of happiness")
    extract.add_argument("--jobs", type=int, default=2)
    extract.add_argument("--on-bad-file", choices=["fail", "skip"], default="fail")
    extract.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                         help="where PyTorch extractors (hf_audio, hf_text, minilm) run; "
                              "auto = CUDA when available")
    extract.add_argument("--param", nargs="+", metavar="EXTRACTOR.PARAMETER=VALUE",
                         help="extractor parameters, e.g. hf_audio.model=/models/wav2vec2-base "
                              "hf_audio.chunk_seconds=10 (see docs/extractors.md)")
    extract.set_defaults(func=cmd_extract)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `emofusion` command."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except EmofusionError as exc:
        console.print("error:", style="bold red", end=" ")
        console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
