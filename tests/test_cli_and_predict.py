"""The command line and the Python API: run folder contents, metrics recomputed from
predictions.csv, train/predict round trips, saved-model safety, config handling."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.pipeline import Pipeline

import emofusion
from emofusion.cli import main
from emofusion.config import SYSTEM_CHOICES, RunConfig, build_config
from emofusion.data.demo import LABEL_NAMES, MODALITIES
from emofusion.errors import ConfigError, EmofusionError
from emofusion.inference import predict_arrays, predict_dataset, train_model
from emofusion.models.classical import ShrinkageLDA
from emofusion.models.saved import ModelCard, SavedModel, load_model, save_model
from emofusion.runner import RunResult, prepare_data

PREDICTION_COLUMNS = ["utterance_id", "speaker", "session", "fold", "system", "true", "predicted",
                      *[f"proba_{label}" for label in LABEL_NAMES]]


class PassThrough(TransformerMixin, BaseEstimator):
    """A harmless custom type: a model file holding it must still be refused without --trust."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


def _pooled_inputs(csv: Path, model: SavedModel, tmp_path: Path) -> np.ndarray:
    """The model's input for every utterance of `csv`, computed by the training-side loader."""
    config = build_config({"dataset": csv, "cache_dir": tmp_path / "cache",
                           "pooling": model.card.pooling})
    data = prepare_data(config)
    return np.hstack([data.features[m] for m in model.card.modalities])


# ----------------------------------------------------------------------------- emofusion run


def test_run_writes_the_whole_run_folder(speaker_run):
    for name in ("config.yaml", "metrics.json", "predictions.csv", "report.md", "report.html",
                 "folds.json"):
        assert (speaker_run / name).is_file(), name
        assert (speaker_run / name).stat().st_size > 0, name
    plots = sorted((speaker_run / "plots").glob("*.png"))
    assert plots
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)

    config = RunConfig.from_yaml(speaker_run / "config.yaml")
    assert config.out == speaker_run and config.n_bootstrap == 100  # YAML file, then CLI
    assert config.jobs == 1 and config.split == "speaker"

    predictions = pd.read_csv(speaker_run / "predictions.csv")
    assert list(predictions.columns) == PREDICTION_COLUMNS
    assert list(pd.unique(predictions["system"])) == ["visual", "acoustic", "lexical", "early",
                                                      "late_vote", "late_mean", "stacking"]
    for _, part in predictions.groupby("system"):
        assert len(part) == 360 and part["utterance_id"].is_unique
    assert set(predictions["true"]) == set(LABEL_NAMES)
    assert set(predictions["predicted"]) <= set(LABEL_NAMES)
    probabilities = predictions[PREDICTION_COLUMNS[7:]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    argmax = np.array(LABEL_NAMES)[probabilities.argmax(axis=1)]
    assert (argmax == predictions["predicted"].to_numpy()).all()
    # each test utterance is predicted in the fold that holds its speaker out
    folds = json.loads((speaker_run / "folds.json").read_text())
    held = {f["fold"]: f["held_out"][0] for f in folds}
    assert (predictions["fold"].map(held) == predictions["speaker"]).all()

    html = (speaker_run / "report.html").read_text()
    assert "<html" in html.lower() and "data:image/png;base64," in html
    assert "](plots/" in (speaker_run / "report.md").read_text()


def test_metrics_are_reproducible_from_predictions(speaker_run):
    metrics = json.loads((speaker_run / "metrics.json").read_text())
    predictions = pd.read_csv(speaker_run / "predictions.csv")
    assert metrics["label_names"] == list(LABEL_NAMES)
    for system in ("early", "stacking", "lexical"):
        rows = predictions[predictions["system"] == system]
        reported = metrics["systems"][system]
        assert reported["n"] == len(rows) == 360
        assert reported["pooled"]["f1_micro"] == pytest.approx(
            f1_score(rows["true"], rows["predicted"], average="micro"), abs=1e-12)
        assert reported["pooled"]["ua"] == pytest.approx(
            balanced_accuracy_score(rows["true"], rows["predicted"]), abs=1e-12)
        per_fold = [balanced_accuracy_score(part["true"], part["predicted"])
                    for _, part in rows.groupby("fold")]
        assert reported["mean"]["ua"] == pytest.approx(np.mean(per_fold), abs=1e-12)
        assert reported["std"]["ua"] == pytest.approx(np.std(per_fold, ddof=1), abs=1e-12)
        assert [f["ua"] for f in reported["per_fold"]] == pytest.approx(per_fold, abs=1e-12)
    # better than chance on the demo data (4 classes)
    assert metrics["systems"]["early"]["pooled"]["ua"] > 0.3


def test_python_api_returns_a_run_result(clean_demo_csv, tmp_path, fast_report):
    config = build_config({"dataset": clean_demo_csv, "out": tmp_path / "api", "jobs": 1,
                           "systems": ["early"], "split": "session",
                           "modalities": ["acoustic", "lexical"]})
    result = emofusion.run(config, progress=False)
    assert isinstance(result, RunResult)
    assert result.config is config and result.run_dir == tmp_path / "api"
    assert len(result.folds) == 5
    assert list(pd.unique(result.predictions["system"])) == ["early"]
    assert len(result.predictions) == 360 and result.dropped == []
    assert result.audit["passed"] is True and len(result.audit["folds"]) == 5
    written = pd.read_csv(tmp_path / "api" / "predictions.csv")
    assert written["utterance_id"].tolist() == result.predictions["utterance_id"].tolist()


# ----------------------------------------------------------------------------- train / predict


@pytest.fixture(scope="module")
def early_model_file(clean_demo_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "m.zip"
    code = main(["train", str(clean_demo_csv), "--system", "early", "--out", str(out),
                 "--jobs", "1"])
    assert code == 0
    return out


def test_train_then_predict_round_trip(early_model_file, clean_demo_csv, tmp_path, capsys):
    model = load_model(early_model_file)
    card = model.card
    assert card.system == "early" and card.model == "lda"
    assert card.label_names == list(LABEL_NAMES)
    assert card.modalities == list(MODALITIES)
    assert card.widths == {"visual": 32, "acoustic": 16, "lexical": 24}
    assert card.training["n_utterances"] == 360 and len(card.training["speakers"]) == 10

    out = tmp_path / "p.csv"
    assert main(["predict", str(early_model_file), str(clean_demo_csv), "--out", str(out)]) == 0
    predicted = pd.read_csv(out)
    assert list(predicted.columns) == ["utterance_id", "predicted",
                                       *[f"proba_{label}" for label in LABEL_NAMES]]
    truth = pd.read_csv(clean_demo_csv)
    assert predicted["utterance_id"].tolist() == truth["file_name_list"].tolist()

    expected = model.predict_proba(_pooled_inputs(clean_demo_csv, model, tmp_path))
    np.testing.assert_allclose(predicted[[f"proba_{label}" for label in LABEL_NAMES]].to_numpy(),
                               expected, rtol=1e-6, atol=1e-9)
    assert (predicted["predicted"] == np.array(LABEL_NAMES)[expected.argmax(axis=1)]).all()
    # trained on these speakers: far better than chance
    codes = truth["emotion_labels"].to_numpy()
    assert balanced_accuracy_score(codes, expected.argmax(axis=1)) > 0.5

    # one utterance from its arrays, on the command line and through the API
    first = truth.iloc[0]
    arrays = {m: np.load(clean_demo_csv.parent / first[f"{m}_features"].lstrip("/"))
              for m in MODALITIES}
    single = predict_arrays(model, arrays, utterance_id=first["file_name_list"])
    np.testing.assert_allclose(single[[f"proba_{label}" for label in LABEL_NAMES]].to_numpy()[0],
                               expected[0], rtol=1e-6, atol=1e-9)
    capsys.readouterr()
    npy = [f"{m}={clean_demo_csv.parent / first[f'{m}_features'].lstrip('/')}" for m in MODALITIES]
    assert main(["predict", str(early_model_file), "--npy", *npy]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert printed["predicted"].iloc[0] == single["predicted"].iloc[0]


@pytest.mark.parametrize("system", ["late_vote", "late_mean", "stacking", "lexical"])
def test_fusion_systems_round_trip_through_a_model_file(system, clean_demo_csv, tmp_path):
    config = build_config({"dataset": clean_demo_csv, "out": tmp_path / "unused"})
    trained = train_model(config, system)
    assert trained.card.system == system
    path = save_model(trained, tmp_path / f"{system}.zip")
    loaded = load_model(path)
    assert loaded.card == trained.card

    table, skipped = predict_dataset(loaded, clean_demo_csv)
    assert skipped == []
    X = _pooled_inputs(clean_demo_csv, loaded, tmp_path)
    if system == "lexical":
        X = X[:, -24:]
    expected = loaded.predict_proba(X)
    np.testing.assert_allclose(expected, trained.predict_proba(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(table[[f"proba_{label}" for label in LABEL_NAMES]].to_numpy(),
                               expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0)
    codes = pd.read_csv(clean_demo_csv)["emotion_labels"].to_numpy()
    assert balanced_accuracy_score(codes, expected.argmax(axis=1)) > 0.4


def test_predict_without_labels_and_with_a_bad_file(early_model_file, clean_demo_csv, tmp_path,
                                                    capsys):
    data = tmp_path / "new.csv"
    table = pd.read_csv(clean_demo_csv).drop(columns=["emotion_labels", "speakers"]).head(6)
    table.to_csv(data, index=False)
    model = load_model(early_model_file)
    predicted, _ = predict_dataset(model, data, features_root=clean_demo_csv.parent)
    assert len(predicted) == 6

    broken_root = tmp_path / "root"
    for m in MODALITIES:
        for rel in table[f"{m}_features"]:
            target = broken_root / rel.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((clean_demo_csv.parent / rel.lstrip("/")).read_bytes())
    np.save(broken_root / table["visual_features"].iloc[2].lstrip("/"),
            np.ones((4, 31), np.float32))
    capsys.readouterr()
    code = main(["predict", str(early_model_file), str(data), "--features-root", str(broken_root)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "width 31, expected 32 for 'visual'" in err and table["file_name_list"].iloc[2] in err
    out = tmp_path / "p.csv"
    code = main(["predict", str(early_model_file), str(data), "--features-root", str(broken_root),
                 "--on-bad-file", "skip", "--out", str(out)])
    assert code == 0
    assert len(pd.read_csv(out)) == 5
    assert f"skipped {table['file_name_list'].iloc[2]}" in capsys.readouterr().err


def test_predict_with_a_wrong_width_array_names_the_expected_width(early_model_file, tmp_path,
                                                                   capsys):
    files = {}
    for modality, width in {"visual": 32, "acoustic": 15, "lexical": 24}.items():
        files[modality] = tmp_path / f"{modality}.npy"
        np.save(files[modality], np.ones((5, width), np.float32))
    capsys.readouterr()
    code = main(["predict", str(early_model_file), "--npy",
                 *[f"{m}={p}" for m, p in files.items()]])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "acoustic: width 15, but the model expects 16" in err

    model = load_model(early_model_file)
    with pytest.raises(ConfigError, match="missing \\['lexical'\\]"):
        predict_arrays(model, {"visual": np.ones((3, 32)), "acoustic": np.ones((3, 16))})
    with pytest.raises(ConfigError, match="visual: contains NaN/inf"):
        predict_arrays(model, {"visual": np.full((3, 32), np.nan), "acoustic": np.ones((3, 16)),
                               "lexical": np.ones(24)})
    # an unreadable --npy file is a clear error too
    (tmp_path / "text.npy").write_text("hello")
    code = main(["predict", str(early_model_file), "--npy", f"visual={tmp_path / 'text.npy'}",
                 f"acoustic={files['acoustic']}", f"lexical={files['lexical']}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "visual=" in err


def test_untrusted_types_are_refused_without_trust(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), np.arange(40) % 2
    estimator = Pipeline([("custom", PassThrough()), ("clf", ShrinkageLDA())]).fit(X, y)
    card = ModelCard(label_names=["a", "b"], modalities=["audio"], widths={"audio": 3},
                     pooling={"audio": "mean"}, system="audio", model="lda", input="pooled")
    path = save_model(SavedModel(card, estimator), tmp_path / "custom.zip")

    with pytest.raises(EmofusionError) as info:
        load_model(path)
    message = str(info.value)
    assert "PassThrough" in message and "--trust" in message and str(path) in message

    features = tmp_path / "x.npy"
    np.save(features, X[:1])
    capsys.readouterr()
    assert main(["predict", str(path), "--npy", f"audio={features}"]) == 2
    err = capsys.readouterr().err
    assert "PassThrough" in err and "--trust" in err and "Traceback" not in err

    trusted = load_model(path, trust=True)
    np.testing.assert_allclose(trusted.predict_proba(X), estimator.predict_proba(X))
    assert main(["predict", str(path), "--npy", f"audio={features}", "--trust"]) == 0


def test_not_a_model_file_is_a_clear_error(tmp_path, capsys):
    bogus = tmp_path / "model.zip"
    bogus.write_text("nope")
    capsys.readouterr()
    assert main(["predict", str(bogus), "--npy", f"a={bogus}"]) == 2
    err = capsys.readouterr().err
    assert "not an emofusion model file" in err and "emofusion train" in err


# ----------------------------------------------------------------------------- config


def test_config_yaml_round_trip(tmp_path):
    config = build_config({
        "dataset": tmp_path / "data.csv", "out": tmp_path / "runs" / "x",
        "features_root": tmp_path / "features.zip", "modalities": ["acoustic", "lexical"],
        "systems": ["unimodal", "stacking"], "split": "k5",
        "pooling": {"acoustic": "stats", "lexical": "max"}, "model": "svm",
        "param_grid": {"C": [0.1, 1.0], "kernel": ["rbf"], "gamma": [None, "scale"]},
        "scaling": "speaker_strict", "imbalance": "smote", "inner_folds": 4,
        "on_bad_file": "skip", "jobs": 2, "cache_dir": tmp_path / "cache", "seed": 5,
        "n_bootstrap": 200})
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    loaded = RunConfig.from_yaml(path)
    assert loaded == config
    assert loaded.model_dump() == config.model_dump()
    # command-line style overrides win; None means "not given"
    overridden = RunConfig.from_yaml(path, split="speaker", seed=None)
    assert overridden.split == "speaker" and overridden.seed == 5


@pytest.mark.parametrize(("values", "field"), [
    ({"inner_folds": 1}, "inner_folds"),
    ({"systems": ["early", "bogus"]}, "systems"),
    ({"split": "leave-one-out"}, "split"),
    ({"scaling": "minmax"}, "scaling"),
    ({"n_bootstrap": 10}, "n_bootstrap"),
    ({"datset": "typo.csv"}, "datset"),
])
def test_invalid_config_names_the_field(values, field):
    with pytest.raises(ConfigError) as info:
        build_config({"dataset": "data.csv", **values})
    message = str(info.value)
    assert message.startswith("invalid configuration:")
    assert field in message


def test_invalid_config_from_the_command_line_and_yaml(tmp_path, capsys):
    capsys.readouterr()
    assert main(["run", "data.csv", "--out", str(tmp_path / "o"), "--split", "k"]) == 2
    err = capsys.readouterr().err
    assert "split" in err and "Traceback" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: data.csv\ninner_folds: zero\n")
    with pytest.raises(ConfigError, match="inner_folds"):
        RunConfig.from_yaml(bad)
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        RunConfig.from_yaml(bad)
    assert main(["run", "data.csv", "--out", "o", "--pooling", "visual"]) == 2
    assert "--pooling expects NAME=VALUE" in capsys.readouterr().err
    assert main(["run", "data.csv", "--out", "o", "--model", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_models_command_lists_the_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert {"lda", "svm", "rf", "logreg"} <= set(names)
    svm_line = next(line for line in out.splitlines() if line.startswith("svm "))
    assert "[pooled]" in svm_line and "C {0.1,1,10}" in svm_line


def test_default_systems_cover_every_choice():
    assert build_config({"dataset": "d.csv"}).systems == list(SYSTEM_CHOICES)
