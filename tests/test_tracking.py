"""`emofusion run --mlflow FOLDER`: parameters, metrics per system and fold, and the report and
predictions as artifacts, in a local SQLite MLflow store (the optional `tracking` extra)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from emofusion.cli import main
from emofusion.tracking import tracking_uri

RUN_OPTIONS = ["--split", "k3", "--systems", "unimodal", "early", "--modalities", "acoustic",
               "lexical", "--jobs", "1", "--no-cache"]


@pytest.fixture(scope="module")
def data(small_demo_writer, tmp_path_factory) -> Path:
    return small_demo_writer(tmp_path_factory.mktemp("tracking-data"), n_utterances=40,
                             bad_files=False)


def _run(data: Path, out: Path, store: Path) -> int:
    config = out.parent / "run.yaml"
    config.write_text("n_bootstrap: 100\ninner_folds: 2\n")
    return main(["run", str(data), "--config", str(config), "--out", str(out), *RUN_OPTIONS,
                 "--mlflow", str(store)])


@pytest.mark.slow
def test_a_run_is_logged_with_parameters_metrics_per_fold_and_artifacts(data, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    store, out = tmp_path / "mlruns", tmp_path / "run"
    assert _run(data, out, store) == 0
    client = mlflow.MlflowClient(tracking_uri(str(store))[0])
    [logged] = client.search_runs([client.get_experiment_by_name("emofusion").experiment_id])
    assert logged.info.run_name == "run" and logged.info.status == "FINISHED"
    assert logged.data.params["model"] == "lda" and logged.data.params["split"] == "k3"
    metrics = json.loads((out / "metrics.json").read_text())
    for system, values in metrics["systems"].items():
        for name in ("ua", "f1_micro", "f1_macro"):
            assert logged.data.metrics[f"{system}.{name}"] == pytest.approx(values["pooled"][name])
        assert logged.data.metrics[f"{system}.ua_low"] == values["speaker_bootstrap"]["ua"][0]
        history = client.get_metric_history(logged.info.run_id, f"{system}.fold.ua")
        logged_folds = sorted((m.step, m.value) for m in history)
        assert [step for step, _ in logged_folds] == [fold["fold"] for fold in values["per_fold"]]
        assert [value for _, value in logged_folds] == pytest.approx(
            [fold["ua"] for fold in values["per_fold"]])
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"report.html", "metrics.json", "predictions.csv", "config.yaml"} <= artifacts
    assert (store / "mlflow.db").is_file() and (store / "artifacts").is_dir()


def test_without_mlflow_the_run_is_refused_before_it_starts(data, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow fails
    assert _run(data, tmp_path / "run", tmp_path / "mlruns") == 2
    err = capsys.readouterr().err
    assert "--mlflow needs the optional package 'mlflow'" in err
    assert "pip install 'emofusion[tracking]'" in err
    assert not (tmp_path / "run").exists()


def test_tracking_uri_keeps_uris_and_puts_a_folder_store_in_the_folder(tmp_path):
    assert tracking_uri("http://host:5000") == ("http://host:5000", None)
    uri, artifacts = tracking_uri(str(tmp_path / "store"))
    assert uri == f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    assert artifacts == (tmp_path / "store" / "artifacts").as_uri()
