"""No input gives a traceback: user mistakes on the command line, in a config file or in the data
end with exit status 2 and one `error:` message naming the mistake.

The property test (Hypothesis) draws random combinations of mistakes and valid options for
`emofusion run`, `train` and `predict` on a small generated dataset; the tests before it pin each
mistake that used to end in a traceback (or was silently ignored) to its message.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emofusion import runner
from emofusion.cli import main
from emofusion.config import MULTICLASS_SCORERS, RunConfig, build_config
from emofusion.errors import ConfigError
from emofusion.models.registry import get_model

MODALITIES = ("visual", "acoustic", "lexical")
WIDTHS = {"visual": 32, "acoustic": 16, "lexical": 24}
UNREACHABLE_SCHEDULER = "tcp://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture(scope="module")
def clean_data(small_demo_writer, tmp_path_factory) -> Path:
    """A 40-utterance course-layout dataset (10 speakers) without problems; returns its CSV."""
    return small_demo_writer(tmp_path_factory.mktemp("property-data"), n_utterances=40,
                             bad_files=False)


@pytest.fixture(scope="module")
def model_file(clean_data, tmp_path_factory) -> Path:
    """An `early` LDA model trained on `clean_data`."""
    out = tmp_path_factory.mktemp("property-model") / "model.zip"
    assert main(["train", str(clean_data), "--out", str(out), "--jobs", "1"]) == 0
    return out


@pytest.fixture(scope="module", autouse=True)
def _short_dask_timeout():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "DASK_CONNECT_SECONDS", 1)
        yield


def call_cli(capsys, argv: list[str]) -> tuple[int, str]:
    """`emofusion ARGV` in this process; returns (exit status, stderr). Argument errors exit
    through argparse's SystemExit, as they do for the installed command."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def assert_clean_failure(code: int, err: str, *expected: str) -> None:
    """Exit status 2, an `error:` line, no traceback, and at least one expected text."""
    assert code == 2, err
    assert "error:" in err
    assert "Traceback" not in err and 'File "' not in err, err
    assert any(text in err for text in expected), (expected, err)


def copy_dataset(csv: Path, into: Path) -> Path:
    """A private copy of the dataset folder of `csv` (to damage); returns the copied CSV."""
    shutil.copytree(csv.parent, into)
    return into / csv.name


def feature_file(csv: Path, modality: str, row: int) -> Path:
    """The `.npy` file of one utterance (course layout: paths relative to the CSV's folder)."""
    return csv.parent / pd.read_csv(csv)[f"{modality}_features"].iloc[row].lstrip("/")


def edit_table(csv: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    change(pd.read_csv(csv)).to_csv(csv, index=False)


def _npz_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, frames=np.ones((5, 4)))
    return buffer.getvalue()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-12])


def _with_nan(path: Path) -> None:
    frames = np.load(path)
    frames.flat[0] = np.nan
    np.save(path, frames)


FILE_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    # name: (damage one .npy file, text of the message)
    "empty file": (lambda p: p.write_bytes(b""), "the file is empty"),
    "truncated": (_truncate, "not a readable .npy file"),
    "text file": (lambda p: p.write_text("0.1, 0.2, 0.3\n"), "not a .npy file"),
    "npz file": (lambda p: p.write_bytes(_npz_bytes()), "not a .npy file"),
    "NaN": (_with_nan, "contains NaN/inf"),
    "3-D array": (lambda p: np.save(p, np.ones((2, 3, 4), np.float32)), "expected shape (T, d)"),
    "strings": (lambda p: np.save(p, np.array(["a", "b"])), "not a real numeric array"),
    "T=0": (lambda p: np.save(p, np.zeros((0, 4), np.float32)), "empty array"),
}


# ----------------------------------------------------------------------------- each mistake


def test_unknown_pooling_method_is_refused(clean_data, tmp_path, capsys):
    code, err = call_cli(capsys, ["run", str(clean_data), "--out", str(tmp_path / "o"),
                                  "--pooling", "visual=median"])
    assert_clean_failure(code, err, "pooling visual=median: unknown pooling method; choose from "
                                    "mean, max, std, stats, flat, select, layer<K>, auto")
    with pytest.raises(ConfigError, match="default_pooling 'avg': unknown pooling method"):
        build_config({"dataset": "d.csv", "default_pooling": "avg"})
    layers = build_config({"dataset": "d.csv", "pooling": {"ssl": "layer-1", "w2v": "flat"}})
    assert layers.pooling_for("ssl", "layers") == "layer-1"
    assert build_config({"dataset": "d.csv"}).pooling_for("ssl", "layers") == "select"


@pytest.mark.parametrize("split", ["k0", "k1"])
def test_fewer_than_two_folds_is_refused(split, clean_data, tmp_path, capsys):
    code, err = call_cli(capsys, ["run", str(clean_data), "--out", str(tmp_path / "o"),
                                  "--split", split])
    assert_clean_failure(code, err, f"k<N> with N >= 2 folds (e.g. k5), random, official or "
                                    f"transcript; got '{split}'")
    assert build_config({"dataset": "d.csv", "split": "k2"}).split == "k2"


@pytest.mark.parametrize("scoring", ["f1", "r2", "balanced_acuracy"])
def test_scoring_must_be_a_multiclass_sklearn_scorer(scoring, clean_data, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"scoring: {scoring}\n")
    code, err = call_cli(capsys, ["run", str(clean_data), "--out", str(tmp_path / "o"),
                                  "--config", str(config)])
    assert_clean_failure(code, err, f"scoring: Value error, '{scoring}' is not a scikit-learn "
                                    "scorer for several classes; choose from balanced_accuracy")


def test_every_accepted_scorer_is_a_sklearn_scorer():
    from sklearn.metrics import get_scorer_names

    assert set(MULTICLASS_SCORERS) <= set(get_scorer_names())


@pytest.mark.parametrize(("model", "grid", "message"), [
    ("lda", {"C": [1.0]}, "param_grid keys ['C'] are not parameters of model 'lda'"),
    ("svm", {"gamma_": [1.0], "C": [1.0]}, "param_grid keys ['gamma_'] are not parameters of "
                                           "model 'svm'"),
    ("lda", {"shrinkage": []}, "param_grid ['shrinkage']: give at least one value"),
])
def test_param_grid_keys_must_be_parameters_of_the_model(model, grid, message, clean_data,
                                                         tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": model, "param_grid": grid}))
    code, err = call_cli(capsys, ["train", str(clean_data), "--out", str(tmp_path / "m.zip"),
                                  "--config", str(config)])
    assert_clean_failure(code, err, message)
    parameters = get_model(model).build(0, None).get_params()
    valid = {key: [parameters[key]] for key in list(grid)[-1:] if key in parameters}
    assert build_config({"dataset": "d.csv", "model": model, "param_grid": valid}).param_grid == valid


@pytest.mark.parametrize(("jobs", "workers"), [(-1, 7), (-2, 6), (-7, 1), (-20, 1), (3, 3)])
def test_negative_jobs_count_cores_as_joblib_does(jobs, workers, monkeypatch):
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 7)
    assert runner.local_jobs(build_config({"dataset": "d.csv", "jobs": jobs})) == workers


def test_zero_jobs_is_refused(clean_data, tmp_path, capsys):
    code, err = call_cli(capsys, ["run", str(clean_data), "--out", str(tmp_path / "o"),
                                  "--jobs", "0"])
    assert_clean_failure(code, err, "jobs: Value error, 0 workers cannot run anything")


@pytest.mark.parametrize(("values", "message"), [
    (["train", "dev", "train"], "--split official: no row has split 'test' (values: ['dev', "
                                "'train'])"),
    (["test"], "--split official: every row has split 'test', none is left to train on"),
])
def test_official_split_needs_test_and_training_rows(values, message, clean_data, tmp_path,
                                                     capsys):
    csv = copy_dataset(clean_data, tmp_path / "data")
    edit_table(csv, lambda t: t.assign(split=[values[i % len(values)] for i in range(len(t))]))
    code, err = call_cli(capsys, ["run", str(csv), "--out", str(tmp_path / "o"),
                                  "--split", "official"])
    assert_clean_failure(code, err, f"{message} -> mark the test utterances with 'test'")


@pytest.mark.parametrize("damage", ["empty file", "truncated", "text file", "npz file"])
def test_predict_npy_refuses_unreadable_files(damage, model_file, clean_data, tmp_path, capsys):
    files = {m: feature_file(clean_data, m, 0) for m in MODALITIES}
    files["visual"] = Path(shutil.copy(files["visual"], tmp_path / "visual.npy"))
    FILE_DAMAGE[damage][0](files["visual"])
    code, err = call_cli(capsys, ["predict", str(model_file), "--npy",
                                  *[f"{m}={p}" for m, p in files.items()]])
    assert_clean_failure(code, err, f"--npy visual={files['visual']}: not a")
    assert FILE_DAMAGE[damage][1] in err and "give a .npy file written by numpy.save" in err


def test_predict_npy_refuses_a_modality_the_model_does_not_use(model_file, clean_data, tmp_path,
                                                               capsys):
    given_ = [f"{m}={feature_file(clean_data, m, 0)}" for m in MODALITIES]
    code, err = call_cli(capsys, ["predict", str(model_file), "--npy", *given_,
                                  f"smell={feature_file(clean_data, 'visual', 0)}"])
    assert_clean_failure(code, err, "the model has no modality 'smell'; it uses ['visual', "
                                    "'acoustic', 'lexical']")


def test_predict_refuses_a_dataset_and_one_utterance_together(model_file, clean_data, capsys):
    npy = f"visual={feature_file(clean_data, 'visual', 0)}"
    code, err = call_cli(capsys, ["predict", str(model_file), str(clean_data), "--npy", npy,
                                  "--text", "so happy"])
    assert_clean_failure(code, err, f"give a dataset CSV ({clean_data}) or one utterance's "
                                    "--npy/--text, not both")


def test_a_scheduler_without_the_dask_backend_is_refused(clean_data, tmp_path, capsys):
    code, err = call_cli(capsys, ["run", str(clean_data), "--out", str(tmp_path / "o"),
                                  "--scheduler", UNREACHABLE_SCHEDULER])
    assert_clean_failure(code, err, f"dask_scheduler: Value error, a scheduler "
                                    f"({UNREACHABLE_SCHEDULER}) is used only with backend dask")
    assert not (tmp_path / "o").exists()  # nothing ran locally instead


def test_unreachable_dask_scheduler_names_the_address(clean_data, tmp_path, capsys):
    code, err = call_cli(capsys, ["run", str(clean_data), "--out", str(tmp_path / "o"),
                                  "--backend", "dask", "--scheduler", UNREACHABLE_SCHEDULER])
    assert_clean_failure(code, err, f"cannot reach the Dask scheduler at {UNREACHABLE_SCHEDULER}")
    assert f"dask worker {UNREACHABLE_SCHEDULER}" in err and "--backend loky" in err


@pytest.mark.parametrize("options", [["--split", "official"], ["--backend", "loky"],
                                     ["--split", "k2", "--scheduler", UNREACHABLE_SCHEDULER]])
def test_train_refuses_options_that_only_run_uses(options, clean_data, tmp_path, capsys):
    code, err = call_cli(capsys, ["train", str(clean_data), "--out", str(tmp_path / "m.zip"),
                                  *options])
    assert_clean_failure(code, err, f": {TRAIN_REFUSES_RUN_OPTIONS} (outer folds); train fits "
                                    "one model on every utterance")
    assert " and ".join(o for o in options if o.startswith("--")) + ": only" in err
    assert not (tmp_path / "m.zip").exists()


@pytest.mark.parametrize(("command", "out"), [("run", "run"), ("train", "m.zip"),
                                              ("predict", "p.csv")])
def test_an_output_path_that_cannot_be_written_is_refused(command, out, clean_data, model_file,
                                                          tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    blocked = tmp_path / "a-file" / out
    first = [str(model_file), str(clean_data)] if command == "predict" else [str(clean_data)]
    code, err = call_cli(capsys, [command, *first, "--out", str(blocked)])
    assert_clean_failure(code, err, f"{blocked} (")
    assert "choose another --out" in err


def test_a_config_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("- split: session\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping .* it holds a list"):
        RunConfig.from_yaml(path)


def test_the_command_in_its_own_process_exits_2_without_a_traceback(clean_data, tmp_path):
    done = subprocess.run([sys.executable, "-m", "emofusion.cli", "run", str(clean_data),
                           "--out", str(tmp_path / "o"), "--split", "k1"],
                          capture_output=True, text=True, timeout=120)
    assert_clean_failure(done.returncode, done.stderr, "N >= 2")


# ----------------------------------------------------------------------------- property


@dataclass(frozen=True)
class Mistake:
    """One user mistake, or (`valid`) one harmless option mixed in.

    Attributes:
        slot: the option, config key or file it uses; two drawn items never share a slot, so
            no item overrides another.
        says: a text the error message contains when this mistake is the one reported.
        argv: command-line arguments.
        yaml: entries of the --config file.
        damage: changes the copied dataset (its CSV path is passed).
    """

    slot: str
    says: str = ""
    argv: tuple[str, ...] = ()
    yaml: dict | None = None
    damage: Callable[[Path], None] | None = None


def _damage_file(name: str, modality: str, row: int) -> Mistake:
    damage, says = FILE_DAMAGE[name]
    return Mistake(f"file {modality} {row}", says,
                   damage=lambda csv: damage(feature_file(csv, modality, row)))


def _set_column(column: str, values: list) -> Callable[[Path], None]:
    return lambda csv: edit_table(csv, lambda t: t.assign(**{column: [
        values[i % len(values)] for i in range(len(t))]}))


DATA_MISTAKES = [
    *[_damage_file(name, modality, row) for row, (name, modality) in enumerate(
        zip(FILE_DAMAGE, MODALITIES * 3, strict=False))],
    Mistake("file visual 9", "file not found", damage=lambda csv: feature_file(
        csv, "visual", 9).unlink()),
    Mistake("csv", "missing column 'speakers'",
            damage=lambda csv: edit_table(csv, lambda t: t.drop(columns=["speakers"]))),
    Mistake("csv", "is outside the label set", damage=lambda csv: edit_table(
        csv, lambda t: t.assign(emotion_labels=t["emotion_labels"].where(t.index != 5, 7)))),
    Mistake("csv", "cannot parse the CSV", damage=lambda csv: csv.write_bytes(b"\xff\xfe\x00x")),
    Mistake("csv", "dataset CSV not found", damage=lambda csv: csv.unlink()),
]
OPTION_MISTAKES = [
    Mistake("split", "N >= 2", ("--split", "k1")),
    Mistake("split", "N >= 2", yaml={"split": "k0"}),
    Mistake("split", "split must be", ("--split", "loso")),
    Mistake("split", "--split official needs a 'split' column", ("--split", "official")),
    Mistake("split", "no row has split 'test'", ("--split", "official"),
            damage=_set_column("split", ["train", "dev"])),
    Mistake("split", "none is left to train on", ("--split", "official"),
            damage=_set_column("split", ["test"])),
    Mistake("pooling", "unknown pooling method", ("--pooling", "acoustic=median")),
    Mistake("pooling", "--pooling expects NAME=VALUE", ("--pooling", "acoustic")),
    Mistake("default_pooling", "unknown pooling method", yaml={"default_pooling": "avg"}),
    Mistake("scaling", "--scaling", ("--scaling", "minmax")),
    Mistake("jobs", "0 workers", ("--jobs", "0")),
    Mistake("jobs", "--jobs", ("--jobs", "two")),
    Mistake("model", "unknown model 'nope'", ("--model", "nope")),
    Mistake("modalities", "unknown modalities ['smell']", ("--modalities", "visual", "smell")),
    Mistake("features_root", "file not found", ("--features-root", "/nonexistent-emofusion")),
    Mistake("scoring", "not a scikit-learn scorer", yaml={"scoring": "f1"}),
    Mistake("scoring", "not a scikit-learn scorer", yaml={"scoring": "nope"}),
    Mistake("param_grid", "are not parameters of model", yaml={"param_grid": {"C": [1.0]}}),
    Mistake("param_grid", "give at least one value", yaml={"param_grid": {"shrinkage": []}}),
    Mistake("param_grid", "param_grid", yaml={"param_grid": {"shrinkage": 0.5}}),
    Mistake("inner_folds", "inner_folds", yaml={"inner_folds": 1}),
    Mistake("unknown key", "folds", yaml={"folds": 3}),
    Mistake("config", "cannot read config", ("--config", "/nonexistent-emofusion.yaml")),
    Mistake("out", "choose another --out", ("--out", "{work}/a-file/out")),
    Mistake("backend", f"cannot reach the Dask scheduler at {UNREACHABLE_SCHEDULER}",
            ("--backend", "dask", "--scheduler", UNREACHABLE_SCHEDULER)),
    Mistake("backend", "is used only with backend dask", ("--scheduler", UNREACHABLE_SCHEDULER)),
]
TRAIN_REFUSES_RUN_OPTIONS = "only for `emofusion run`"  # --split, --backend, --scheduler
VALID_RUN_OPTIONS = [
    Mistake("split", argv=("--split", "k2")),
    Mistake("split", argv=("--split", "session")),
]
VALID_OPTIONS = [
    Mistake("seed", argv=("--seed", "3")),
    Mistake("scaling", argv=("--scaling", "speaker")),
    Mistake("imbalance", argv=("--imbalance", "class_weight")),
    Mistake("use_cache", argv=("--no-cache",)),
    Mistake("jobs", argv=("--jobs", "-1")),
    Mistake("pooling", argv=("--pooling", "visual=stats")),
    Mistake("scoring", yaml={"scoring": "f1_macro"}),
    Mistake("inner_folds", yaml={"inner_folds": 2}),
]


def _applied(items: list[Mistake], csv: Path, work: Path) -> list[str]:
    """Damage the copied dataset of `csv` as the items say; returns their arguments, in which
    ``{work}`` is `work` (holding ``a-file``, a file where a folder would be needed)."""
    for item in sorted(items, key=lambda m: m.slot == "csv"):  # the CSV's own damage last
        if item.damage:
            item.damage(csv)
    (work / "a-file").write_text("not a folder")
    return [arg.format(work=work) for item in items for arg in item.argv]


def _command_line(command: str, csv: Path, work: Path, items: list[Mistake]) -> list[str]:
    """argv for `command` with every item applied (data damage done on the copied dataset)."""
    out = ["--out", str(work / "out")] if command == "run" else ["--out", str(work / "m.zip")]
    argv = [command, str(csv), *out, *_applied(items, csv, work)]
    entries = {k: v for item in items for k, v in (item.yaml or {}).items()}
    if entries and "--config" not in argv:
        (work / "run.yaml").write_text(yaml.safe_dump(entries))
        argv += ["--config", str(work / "run.yaml")]
    return argv


def _draw_items(data, mistakes: list[Mistake], valid_options: list[Mistake]) -> list[Mistake]:
    """1-3 mistakes and some valid options, no two sharing a slot."""
    drawn = data.draw(st.lists(st.sampled_from(mistakes), min_size=1, max_size=3,
                               unique_by=lambda m: m.slot), label="mistakes")
    used = {m.slot for m in drawn}
    valid = [v for v in valid_options if v.slot not in used]
    extra = data.draw(st.lists(st.sampled_from(valid), max_size=3, unique_by=lambda m: m.slot),
                      label="valid options") if valid else []
    return data.draw(st.permutations(drawn + extra), label="order")


PROPERTY = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(data=st.data(), command=st.sampled_from(["run", "train"]))
def test_run_and_train_mistakes_end_in_one_clear_message(data, command, clean_data,
                                                         tmp_path_factory, capsys):
    valid = VALID_OPTIONS + (VALID_RUN_OPTIONS if command == "run" else [])
    items = _draw_items(data, DATA_MISTAKES + OPTION_MISTAKES, valid)
    work = tmp_path_factory.mktemp("example")
    argv = _command_line(command, copy_dataset(clean_data, work / "data"), work, items)
    code, err = call_cli(capsys, argv)
    expected = [m.says for m in items if m.says]
    if command == "train" and {"--split", "--backend", "--scheduler"} & {a for m in items for a in m.argv}:
        expected.append(TRAIN_REFUSES_RUN_OPTIONS)
    assert_clean_failure(code, err, *expected)


# Predict mistakes damage files in the folder of the CSV path they are given, which also holds
# model.zip and, for single utterances, <modality>.npy.
PREDICT_MISTAKES = [
    Mistake("model", "not an emofusion model file",
            damage=lambda csv: (csv.parent / "model.zip").write_bytes(b"PK\x03\x04 broken")),
    Mistake("on_bad_file", "--on-bad-file", argv=("--on-bad-file", "ignore")),
    Mistake("out", "choose another --out", argv=("--out", "{work}/a-file/p.csv")),
]


def _npy_mistake(modality: str, damage: str) -> Mistake:
    return Mistake(f"npy {modality}", FILE_DAMAGE[damage][1],
                   damage=lambda csv: FILE_DAMAGE[damage][0](csv.parent / f"{modality}.npy"))


PREDICT_NPY_MISTAKES = [
    *PREDICT_MISTAKES,
    *[_npy_mistake(m, d) for m in MODALITIES for d in FILE_DAMAGE],
    Mistake("npy visual", "but the model expects 32",
            damage=lambda csv: np.save(csv.parent / "visual.npy", np.ones((4, 31), np.float32))),
    Mistake("npy lexical", "missing ['lexical']",
            damage=lambda csv: (csv.parent / "lexical.npy").unlink()),
    Mistake("npy acoustic", "cannot read file", argv=("--npy", "acoustic=/nonexistent.npy")),
    Mistake("npy smell", "the model has no modality 'smell'",
            argv=("--npy", "smell=/nonexistent.npy")),
    Mistake("npy visual", "--npy expects NAME=VALUE", argv=("--npy", "visual")),
]


@PROPERTY
@given(data=st.data())
def test_predict_mistakes_end_in_one_clear_message(data, clean_data, model_file,
                                                   tmp_path_factory, capsys):
    items = _draw_items(data, PREDICT_NPY_MISTAKES, [])
    folder = tmp_path_factory.mktemp("predict")
    shutil.copy(model_file, folder / "model.zip")
    for modality in MODALITIES:
        shutil.copy(feature_file(clean_data, modality, 0), folder / f"{modality}.npy")
    npy_items = [item for item in items if item.argv[:1] == ("--npy",)]
    others = _applied([item for item in items if item not in npy_items],
                      folder / "no-dataset.csv", folder)
    given_npy = {m: f"{m}={folder / f'{m}.npy'}" for m in MODALITIES
                 if (folder / f"{m}.npy").exists()}
    for item in npy_items:  # replaces the good file of its modality
        given_npy.update((arg.partition("=")[0], arg) for arg in item.argv[1:])
    argv = ["predict", str(folder / "model.zip"), *others]
    argv += ["--npy", *given_npy.values()] if given_npy else []
    code, err = call_cli(capsys, argv)
    assert_clean_failure(code, err, *[m.says for m in items],
                         "give a dataset CSV, or --npy MODALITY=FILE")


PREDICT_CSV_MISTAKES = [
    *PREDICT_MISTAKES,
    *[m for m in DATA_MISTAKES if m.slot != "csv"],
    *[m for m in DATA_MISTAKES if m.says in ("cannot parse the CSV", "dataset CSV not found")],
    Mistake("features_root", "file not found", ("--features-root", "/nonexistent-emofusion")),
    Mistake("single", "not both", ("--npy", "visual={work}/a-file")),
    Mistake("single", "not both", ("--text", "so happy today")),
]


@PROPERTY
@given(data=st.data())
def test_predicting_a_damaged_dataset_ends_in_one_clear_message(data, clean_data, model_file,
                                                                tmp_path_factory, capsys):
    items = _draw_items(data, PREDICT_CSV_MISTAKES, [])
    work = tmp_path_factory.mktemp("predict-csv")
    csv = copy_dataset(clean_data, work / "data")
    shutil.copy(model_file, csv.parent / "model.zip")
    argv = ["predict", str(csv.parent / "model.zip"), str(csv), *_applied(items, csv, work)]
    code, err = call_cli(capsys, argv)
    assert_clean_failure(code, err, *[m.says for m in items])
