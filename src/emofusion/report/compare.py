"""`emofusion compare RUN...`: one table of several runs' systems, with 95 % speaker-bootstrap
intervals of UA, F1-micro and macro-F1, and paired tests between runs that predicted the same
utterances (McNemar, Holm-adjusted over all pairs, and the speaker bootstrap of the UA
difference; `emofusion.evaluation.significance`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofusion.errors import ConfigError
from emofusion.evaluation.significance import _speaker_weights, _ua, compare_systems

METRICS = {"ua": "UA", "f1_micro": "F1-micro", "f1_macro": "macro-F1"}


def read_run(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """A finished run's predictions table and class names.

    Raises:
        ConfigError: `folder` lacks predictions.csv or metrics.json (not a finished run).
    """
    folder = Path(folder)
    try:
        label_names = json.loads((folder / "metrics.json").read_text())["label_names"]
        return pd.read_csv(folder / "predictions.csv", dtype={"speaker": str}), label_names
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{folder} is not a finished run folder ({exc}); give folders written "
                          "by `emofusion run` or `emofusion sweep`") from exc


def _speaker_class_counts(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per speaker s and class k (classes: true or predicted labels): ``support`` (S, K)
    utterances of class k, ``hits`` (S, K) of those predicted k, ``predicted`` (S, K)
    utterances predicted k."""
    true, predicted = rows["true"].astype(str).to_numpy(), rows["predicted"].astype(str).to_numpy()
    _, s_idx = np.unique(rows["speaker"].astype(str), return_inverse=True)
    classes = np.unique(np.concatenate([true, predicted]))
    shape = (s_idx.max() + 1, len(classes))
    counts = [np.zeros(shape) for _ in range(3)]
    t_idx, p_idx = np.searchsorted(classes, true), np.searchsorted(classes, predicted)
    np.add.at(counts[0], (s_idx, t_idx), 1.0)
    np.add.at(counts[1], (s_idx, t_idx), (t_idx == p_idx).astype(float))
    np.add.at(counts[2], (s_idx, p_idx), 1.0)
    return counts[0], counts[1], counts[2]


def _headline(support: np.ndarray, hits: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """UA, F1-micro (accuracy) and macro-F1 from summed counts: (K,) arrays, or (B, K) for B
    resamples (then each metric is (B,))."""
    f1_denominator = support + predicted
    f1 = np.divide(2 * hits, f1_denominator, out=np.zeros_like(hits), where=f1_denominator > 0)
    return {"ua": _ua(support, hits), "f1_micro": hits.sum(axis=-1) / support.sum(axis=-1),
            "f1_macro": f1.sum(axis=-1) / (f1_denominator > 0).sum(axis=-1)}


def system_row(rows: pd.DataFrame, n_boot: int, seed: int) -> dict[str, float]:
    """One system's pooled UA, F1-micro and macro-F1 with 95 % speaker-bootstrap intervals
    (``<metric>``, ``<metric>_low``, ``<metric>_high``); the resamples draw as many speakers as
    there are, with replacement (the same draws as the run report's intervals)."""
    counts = _speaker_class_counts(rows)
    point = _headline(*(c.sum(axis=0) for c in counts))
    weights = _speaker_weights(counts[0].shape[0], n_boot, seed)
    boot = _headline(*(weights @ c for c in counts))
    row: dict[str, float] = {"n": float(len(rows)), "speakers": float(counts[0].shape[0])}
    for name in METRICS:
        low, high = np.percentile(boot[name], [2.5, 97.5])
        row.update({name: float(point[name]), f"{name}_low": float(low),
                    f"{name}_high": float(high)})
    return row


def run_labels(folders: Sequence[Path]) -> list[str]:
    """Short names of the runs: the folder names, or the paths when two names coincide."""
    names = [Path(f).name for f in folders]
    return names if len(set(names)) == len(names) else [str(f) for f in folders]


def compare_runs(folders: Sequence[Path], systems: Sequence[str] | None = None,
                 n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The comparison table and the paired tests of several runs.

    Args:
        folders: finished run folders.
        systems: systems to compare (default: every system of every run).
        n_boot, seed: speaker-bootstrap resamples and seed.

    Returns:
        ``table``: one row per (run, system) with ``run, system, n, speakers`` and each metric
        with its interval; ``paired``: `compare_systems` results for every pair of runs and
        every system both have (``system_a``/``system_b`` are ``run:system``); a pair whose runs
        predicted different utterances carries an ``error`` instead.
    """
    if len(folders) < 1:
        raise ConfigError("give at least one run folder to compare")
    frames, labels = [], set()
    for label, folder in zip(run_labels(folders), folders, strict=True):
        predictions, label_names = read_run(folder)
        labels.update(label_names)
        frames.append(predictions.assign(run=label))
    every = pd.concat(frames, ignore_index=True)
    if systems:
        every = every[every["system"].isin(systems)]
        if every.empty:
            raise ConfigError(f"none of the runs has the systems {list(systems)}")
    table = pd.DataFrame([{"run": run, "system": system, **system_row(rows, n_boot, seed)}
                          for (run, system), rows in every.groupby(["run", "system"], sort=False)])
    every = every.assign(system=every["run"] + ":" + every["system"])
    pairs = [(f"{a}:{system}", f"{b}:{system}") for system in table["system"].unique()
             for a, b in combinations(runs_with(table, system), 2)]
    return table, compare_systems(every, sorted(labels), pairs, n_boot, seed, record_errors=True)


def runs_with(table: pd.DataFrame, system: str) -> list[str]:
    """The runs of the comparison table that have `system`, in table order."""
    return table.loc[table["system"] == system, "run"].tolist()


def plot_comparison(table: pd.DataFrame, path: Path) -> Path:
    """Each metric's value and interval per (run, system) as a horizontal error-bar chart."""
    import matplotlib.pyplot as plt

    names = (table["run"] + " · " + table["system"]).tolist()
    figure, axes = plt.subplots(1, len(METRICS), sharey=True,
                                figsize=(4 * len(METRICS), 0.35 * len(names) + 1.5))
    for axis, (metric, title) in zip(axes, METRICS.items(), strict=True):
        values = table[metric].to_numpy() * 100
        errors = np.vstack([values - table[f"{metric}_low"] * 100,
                            table[f"{metric}_high"] * 100 - values])
        axis.errorbar(values, np.arange(len(names)), xerr=errors, fmt="o", capsize=3)
        axis.set_title(f"{title} (%), 95 % speaker bootstrap")
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(np.arange(len(names)), names)
    axes[0].invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
