"""Optional MLflow logging of a finished run (``--mlflow URI``; ``pip install
'emofusion[tracking]'``).

One MLflow run per emofusion run, in the experiment ``emofusion``: every config field as a
parameter; per system the pooled UA, F1-micro and macro-F1 (``<system>.ua``), their
speaker-bootstrap interval bounds (``<system>.ua_low``/``_high``) and each outer fold's values
(``<system>.fold.ua`` at step = fold index); the report, metrics, predictions and config as
artifacts.

URI: a folder (created if needed) keeps an SQLite store ``mlflow.db`` and the artifacts in
``artifacts/`` inside it; anything with ``://`` (``sqlite:///x.db``, ``http://host:5000``) is
passed to MLflow as it is.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from emofusion.config import RunConfig
from emofusion.errors import require

EXPERIMENT = "emofusion"
ARTIFACTS = ("report.html", "report.md", "metrics.json", "predictions.csv", "config.yaml",
             "folds.json")
HEADLINE = ("ua", "f1_micro", "f1_macro")


def tracking_uri(target: str) -> tuple[str, str | None]:
    """(MLflow tracking URI, artifact location or None) for a ``--mlflow`` value."""
    if "://" in target:
        return target, None
    folder = Path(target).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def run_metrics(metrics: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(key, value, step) of every logged metric of a run's metrics.json content."""
    rows = []
    for system, values in metrics["systems"].items():
        rows += [(f"{system}.{name}", values["pooled"][name], 0) for name in HEADLINE]
        intervals = values.get("speaker_bootstrap", {})
        for name in (n for n in HEADLINE if n in intervals):
            rows += [(f"{system}.{name}_{end}", bound, 0)
                     for end, bound in zip(("low", "high"), intervals[name], strict=True)]
        rows += [(f"{system}.fold.{name}", fold[name], fold["fold"])
                 for fold in values["per_fold"] for name in HEADLINE]
    return rows


def log_run(config: RunConfig, metrics: dict[str, Any], run_dir: Path) -> str:
    """Log one finished run to ``config.mlflow``; returns the MLflow run id.

    Args:
        config: the run's `RunConfig` (its fields become parameters).
        metrics: the run's metrics (metrics.json content).
        run_dir: the run folder whose `ARTIFACTS` are uploaded.
    """
    mlflow = require("mlflow", "tracking", "--mlflow")
    from mlflow.entities import Metric, Param

    uri, artifacts = tracking_uri(config.mlflow)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (experiment.experiment_id if experiment else
                     client.create_experiment(EXPERIMENT, artifact_location=artifacts))
    run_id = client.create_run(experiment_id, run_name=Path(run_dir).name).info.run_id
    now = int(time.time() * 1000)
    params = [Param(key, str(value)[:6000])
              for key, value in config.model_dump(mode="json").items()]
    logged = [Metric(key, float(value), now, step) for key, value, step in run_metrics(metrics)
              if value is not None]
    for start in range(0, max(len(logged), 1), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=logged[start:start + 1000],
                         params=params if start == 0 else [])
    for name in ARTIFACTS:
        if (Path(run_dir) / name).is_file():
            client.log_artifact(run_id, str(Path(run_dir) / name))
    client.set_terminated(run_id)
    return run_id


def check_tracking(config: RunConfig) -> None:
    """Before a run: MissingExtraError when ``config.mlflow`` is set and MLflow is missing."""
    if config.mlflow:
        require("mlflow", "tracking", "--mlflow")


def track(result: Any, announce) -> None:
    """Log a finished `RunResult` when its config asks for it (``mlflow``) and announce it."""
    if result.config.mlflow:
        run_id = log_run(result.config, result.metrics, result.run_dir)
        announce(f"logged to MLflow ({result.config.mlflow}), run id {run_id}")
