"""Report figures written as small PNG files.

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg canvas, so no
display, no pyplot state and no global backend switch are involved. Every function returns the
file name it wrote (relative to its output folder) or None when there was nothing to draw.

Inputs are the ``compute_metrics`` dict (emofusion.evaluation.metrics) and the predictions
table: one row per (system, utterance) with ``system, true, predicted, proba_<label>...``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from sklearn import metrics as skm

from emofusion.evaluation.metrics import proba_column

DPI = 100
KIND_COLOURS = {"unimodal": "#4c72b0", "fusion": "#dd8452"}


def plot_file_name(kind: str, system: str | None = None) -> str:
    """File name of a figure: ``<kind>.png`` or ``<kind>_<system>.png`` with a safe name."""
    if system is None:
        return f"{kind}.png"
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", system)
    return f"{kind}_{safe}.png"


def _save(fig: Figure, path: Path) -> str:
    """Render ``fig`` with the Agg canvas to ``path`` and return the file name.

    Margins are fixed with ``subplots_adjust``; ``tight_layout`` would double the drawing time.
    """
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    fig.clear()
    return path.name


def _matrix_panel(ax: Any, matrix: np.ndarray, labels: Sequence[str], title: str, fmt: str):
    """Draw one annotated confusion-matrix panel (rows = true, columns = predicted)."""
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    threshold = matrix.max() / 2 if matrix.size and matrix.max() > 0 else 0
    for (i, j), value in np.ndenumerate(matrix):
        colour = "white" if value > threshold else "black"
        ax.text(j, i, format(value, fmt), ha="center", va="center", color=colour, fontsize=8)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return image


def plot_confusion(
    system_metrics: Mapping[str, Any], label_names: Sequence[str], system: str, out_dir: Path
) -> str:
    """Counts and row-normalised confusion matrices side by side for one system.

    Args:
        system_metrics: ``compute_metrics(...)["systems"][system]``.
        label_names: the ordered class names (matrix order).
        system: the system name (title and file name).
        out_dir: folder to write into.
    """
    pooled = system_metrics["pooled"]
    counts = np.asarray(pooled["confusion"], dtype=int)
    normalized = np.asarray(pooled["confusion_normalized"], dtype=float)
    size = 2.6 + 0.35 * len(label_names)
    fig = Figure(figsize=(2 * size - 0.2, size))
    axes = fig.subplots(1, 2)
    _matrix_panel(axes[0], counts, label_names, "counts", "d")
    _matrix_panel(axes[1], normalized, label_names, "row-normalised (recall)", ".2f")
    fig.suptitle(f"{system}: confusion matrix (pooled over folds)", fontsize=10)
    fig.subplots_adjust(left=0.14, right=0.98, bottom=0.24, top=0.86, wspace=0.5)
    return _save(fig, out_dir / plot_file_name("confusion", system))


def _curve_plot(
    frame: pd.DataFrame, label_names: Sequence[str], system: str, out_dir: Path, kind: str
) -> str | None:
    """One-vs-rest ROC (``kind="roc"``) or precision-recall (``kind="pr"``) curves."""
    columns = [proba_column(label) for label in label_names]
    if any(c not in frame.columns for c in columns) or frame[columns].isna().any().any():
        return None
    y_true = frame["true"].astype(str).to_numpy()
    fig = Figure(figsize=(4.6, 4.0))
    ax = fig.subplots()
    drawn = 0
    for label, column in zip(label_names, columns, strict=True):
        positive = y_true == label
        if positive.all() or not positive.any():
            continue
        scores = frame[column].to_numpy(dtype=float)
        if kind == "roc":
            fpr, tpr, _ = skm.roc_curve(positive, scores)
            area = skm.roc_auc_score(positive, scores)
            ax.plot(fpr, tpr, label=f"{label} (AUC {area:.2f})")
        else:
            precision, recall, _ = skm.precision_recall_curve(positive, scores)
            area = skm.average_precision_score(positive, scores)
            ax.plot(recall, precision, label=f"{label} (AP {area:.2f})")
        drawn += 1
    if not drawn:
        return None
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel="false positive rate", ylabel="true positive rate")
    else:
        ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    title = "ROC, one-vs-rest" if kind == "roc" else "precision-recall, one-vs-rest"
    ax.set_title(f"{system}: {title}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right" if kind == "roc" else "lower left")
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.91)
    return _save(fig, out_dir / plot_file_name(kind, system))


def plot_roc(frame: pd.DataFrame, label_names: Sequence[str], system: str, out_dir: Path):
    """One-vs-rest ROC curves of one system, AUC per class in the legend.

    Args:
        frame: predictions rows of ONE system with ``true`` and ``proba_<label>`` columns.
        label_names: the ordered class names.
        system: the system name.
        out_dir: folder to write into.

    Returns:
        the file name, or None when probabilities are missing or no class is plottable.
    """
    return _curve_plot(frame, label_names, system, out_dir, "roc")


def plot_pr(frame: pd.DataFrame, label_names: Sequence[str], system: str, out_dir: Path):
    """One-vs-rest precision-recall curves of one system, average precision in the legend.

    Arguments and return value as for ``plot_roc``.
    """
    return _curve_plot(frame, label_names, system, out_dir, "pr")


def plot_ua_bars(
    metrics: Mapping[str, Any], out_dir: Path, system_kinds: Mapping[str, str] | None = None
) -> str:
    """Bar chart of UA mean ± std over folds per system, coloured by system kind.

    Args:
        metrics: the ``compute_metrics`` dict.
        out_dir: folder to write into.
        system_kinds: optional system -> "unimodal" | "fusion" (bar colour).
    """
    kinds = system_kinds or {}
    systems = list(metrics["systems"])
    means = [100 * metrics["systems"][s]["mean"]["ua"] for s in systems]
    stds = [100 * metrics["systems"][s]["std"]["ua"] for s in systems]
    colours = [KIND_COLOURS.get(kinds.get(s, ""), "#8c8c8c") for s in systems]
    fig = Figure(figsize=(1.6 + 0.8 * len(systems), 3.0))
    ax = fig.subplots()
    positions = np.arange(len(systems))
    ax.bar(positions, means, yerr=stds, capsize=4, color=colours)
    legend = [Patch(color=KIND_COLOURS[k], label=k)
              for k in dict.fromkeys(kinds.get(s) for s in systems) if k in KIND_COLOURS]
    if legend:
        ax.legend(handles=legend, fontsize=8, loc="upper right")
    for x, mean in zip(positions, means, strict=True):
        ax.text(x, mean / 2, f"{mean:.1f}", ha="center", va="center", color="white", fontsize=8)
    ax.set_xticks(positions, systems, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("UA (%), mean ± std over folds")
    ax.set_ylim(0, 100)
    ax.set_title("Unweighted accuracy per system", fontsize=10)
    fig.subplots_adjust(left=0.8 / fig.get_figwidth(), right=0.97, bottom=0.24, top=0.9)
    return _save(fig, out_dir / plot_file_name("ua_bars"))


def _system_plots(system_metrics: Mapping[str, Any], frame: pd.DataFrame, label_names: Sequence[str],
                  system: str, out_dir: Path) -> list[str]:
    """The confusion, ROC and PR figures of one system (the last two when drawable)."""
    written = [plot_confusion(system_metrics, label_names, system, out_dir)]
    for plot in (plot_roc, plot_pr):
        name = plot(frame, label_names, system, out_dir)
        if name is not None:
            written.append(name)
    return written


def write_plots(
    metrics: Mapping[str, Any],
    predictions: pd.DataFrame,
    label_names: Sequence[str],
    out_dir: Path,
    system_kinds: Mapping[str, str] | None = None,
    jobs: int = 1,
) -> list[str]:
    """Write every report figure into ``out_dir`` (created if needed).

    Files: ``ua_bars.png`` and per system ``confusion_<system>.png``, ``roc_<system>.png``,
    ``pr_<system>.png`` (the last two only when probabilities are available); names come
    from ``plot_file_name``.

    Args:
        metrics: the ``compute_metrics`` dict.
        predictions: the predictions table.
        label_names: the ordered class names.
        out_dir: folder for the PNG files.
        system_kinds: optional system -> kind, used for bar colours.
        jobs: local processes drawing systems in parallel (drawing is CPU-bound).

    Returns:
        the file names written, relative to ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    systems = predictions["system"].astype(str)
    per_system = Parallel(n_jobs=jobs, backend="loky")(
        delayed(_system_plots)(system_metrics, predictions[systems == system], label_names, system,
                               out_dir)
        for system, system_metrics in metrics["systems"].items())
    return [plot_ua_bars(metrics, out_dir, system_kinds)] + [name for names in per_system for name in names]
