"""Classification metrics recomputed from the predictions table.

The predictions table (see docs/ARCHITECTURE.md) is a DataFrame with one row per
(system, utterance) and the columns

    utterance_id, speaker, session, fold, system, true, predicted, proba_<label>...

where ``true``/``predicted`` hold label *names* and there is one ``proba_<label>`` column per
label name. Every number here is computed from that table, with ``sklearn.metrics`` or (for the
headline metrics, computed for every fold) from confusion counts, tested equal to sklearn.

Headline metrics:

* ``f1_micro``: micro-averaged F1. With exactly one label per utterance it equals accuracy,
  which the emotion-recognition literature calls weighted accuracy (WA).
* ``ua``: unweighted accuracy = balanced accuracy = mean recall over the classes that occur
  in the true labels.
* ``f1_macro``: unweighted mean of per-class F1 over the classes that occur in the true or
  predicted labels (sklearn's default), with 0 for an ill-defined F1.

``compute_metrics`` returns plain Python types only, so the result can be written with
``json.dump`` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

HEADLINE = ("f1_micro", "ua", "f1_macro")
"""The three headline metrics reported per fold, as mean ± std, and pooled."""

REQUIRED_COLUMNS = ("utterance_id", "speaker", "fold", "system", "true", "predicted")


def proba_column(label: str) -> str:
    """Name of the predicted-probability column for ``label``."""
    return f"proba_{label}"


def check_predictions(predictions: pd.DataFrame, label_names: Sequence[str]) -> None:
    """Raise ``ValueError`` if required columns are missing or labels are unknown.

    Args:
        predictions: the predictions table (columns listed in the module docstring).
        label_names: the ordered class names.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions table lacks the column(s) {missing}")
    known = set(label_names)
    for column in ("true", "predicted"):
        unknown = sorted(set(predictions[column].astype(str)) - known)
        if unknown:
            raise ValueError(
                f"column '{column}' holds label(s) {unknown} not in label_names {list(label_names)}"
            )


def confusion_counts(true_codes: np.ndarray, predicted_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts, rows = true class, from integer codes (n,)."""
    flat = np.bincount(true_codes * n_classes + predicted_codes, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def balanced_accuracy(true_codes: np.ndarray, predicted_codes: np.ndarray, n_classes: int) -> float:
    """UA of integer codes (n,): mean recall over the classes present in `true_codes`, as
    ``sklearn.metrics.balanced_accuracy_score`` (without its input checks, for inner loops)."""
    return _unweighted_accuracy(confusion_counts(true_codes, predicted_codes, n_classes))


def _unweighted_accuracy(counts: np.ndarray) -> float:
    """Mean recall over the classes with support in a (K, K) confusion matrix (rows = true)."""
    support = counts.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(counts)[present] / support[present]))


def headline_from_confusion(counts: np.ndarray) -> dict[str, float]:
    """F1-micro, UA and macro-F1 from a (K, K) confusion matrix (rows = true), exactly as
    sklearn computes them: UA over the classes present in the true labels, macro-F1 over the
    classes present in the true or predicted labels, F1 = 2TP / (support + predicted)."""
    hits = np.diag(counts).astype(float)
    support, predicted = counts.sum(axis=1), counts.sum(axis=0)
    seen = support + predicted > 0
    return {
        "f1_micro": float(hits.sum() / counts.sum()),
        "ua": _unweighted_accuracy(counts),
        "f1_macro": float(np.mean(2 * hits[seen] / (support + predicted)[seen])),
    }


def headline_metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, float]:
    """F1-micro (= accuracy = WA), UA (balanced accuracy) and macro-F1 of label names (n,)."""
    names, codes = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]),
                             return_inverse=True)
    n = len(y_true)
    return headline_from_confusion(confusion_counts(codes[:n], codes[n:], len(names)))


def _per_class(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, dict]:
    """Precision, recall, F1 and support per label (0 where undefined)."""
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }


def _probabilities(frame: pd.DataFrame, labels: list[str]) -> np.ndarray | None:
    """The (n, n_labels) probability matrix, or None when a column is missing or has NaN."""
    columns = [proba_column(label) for label in labels]
    if any(c not in frame.columns for c in columns):
        return None
    proba = frame[columns].to_numpy(dtype=float)
    return None if np.isnan(proba).any() else proba


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _ranking_scores(
    y_true: np.ndarray, proba: np.ndarray | None, labels: list[str]
) -> tuple[dict, dict]:
    """One-vs-rest ROC AUC and average precision per class, plus their macro means.

    A class absent from ``y_true`` (or present in every row) gets None, as does every class
    when probabilities are unavailable.
    """
    auc: dict[str, float | None] = {}
    ap: dict[str, float | None] = {}
    for k, label in enumerate(labels):
        positive = y_true == label
        if proba is None or positive.all() or not positive.any():
            auc[label] = ap[label] = None
            continue
        auc[label] = float(skm.roc_auc_score(positive, proba[:, k]))
        ap[label] = float(skm.average_precision_score(positive, proba[:, k]))
    return (
        {"per_class": auc, "macro": _mean_or_none(list(auc.values()))},
        {"per_class": ap, "macro": _mean_or_none(list(ap.values()))},
    )


def pooled_metrics(frame: pd.DataFrame, label_names: Sequence[str]) -> dict[str, Any]:
    """Metrics over all rows of one system (all folds pooled).

    Args:
        frame: the predictions rows of ONE system (columns as in the module docstring).
        label_names: the ordered class names; confusion rows/columns follow this order.

    Returns:
        dict with ``n``, the headline metrics, ``f1_weighted``, ``per_class``,
        ``confusion`` (counts, rows = true), ``confusion_normalized`` (row-normalised; a row
        with no support is all 0), ``roc_auc_ovr`` and ``average_precision`` (each
        ``{"per_class": {label: float | None}, "macro": float | None}``).
    """
    labels = list(label_names)
    y_true = frame["true"].astype(str).to_numpy()
    y_pred = frame["predicted"].astype(str).to_numpy()
    confusion = skm.confusion_matrix(y_true, y_pred, labels=labels)
    row_sums = confusion.sum(axis=1, keepdims=True)
    normalized = np.divide(confusion, row_sums, out=np.zeros(confusion.shape), where=row_sums > 0)
    auc, ap = _ranking_scores(y_true, _probabilities(frame, labels), labels)
    return {
        "n": int(len(frame)),
        **headline_metrics(y_true, y_pred),
        "f1_weighted": float(
            skm.f1_score(y_true, y_pred, average="weighted", zero_division=0)
        ),
        "per_class": _per_class(y_true, y_pred, labels),
        "confusion": confusion.astype(int).tolist(),
        "confusion_normalized": normalized.tolist(),
        "roc_auc_ovr": auc,
        "average_precision": ap,
    }


def fold_metrics(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Headline metrics per outer fold of one system.

    Args:
        frame: the predictions rows of ONE system.

    Returns:
        list ordered by fold of ``{fold, test_speakers, n, f1_micro, ua, f1_macro}``.
    """
    rows = []
    for fold, part in frame.groupby("fold", sort=True):
        rows.append({
            "fold": int(fold),
            "test_speakers": sorted(part["speaker"].astype(str).unique().tolist()),
            "n": int(len(part)),
            **headline_metrics(part["true"].astype(str), part["predicted"].astype(str)),
        })
    return rows


def _fold_spread(per_fold: list[dict[str, Any]]) -> tuple[dict, dict]:
    """Mean and sample std (ddof=1; 0 with a single fold) of the headline metrics."""
    mean, std = {}, {}
    for name in HEADLINE:
        values = np.array([row[name] for row in per_fold], dtype=float)
        mean[name] = float(values.mean())
        std[name] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return mean, std


def system_metrics(frame: pd.DataFrame, label_names: Sequence[str]) -> dict[str, Any]:
    """All metrics of one system: ``n``, ``n_folds``, ``pooled``, ``per_fold``, ``mean``, ``std``.

    Args:
        frame: the predictions rows of ONE system.
        label_names: the ordered class names.
    """
    per_fold = fold_metrics(frame)
    mean, std = _fold_spread(per_fold)
    return {
        "n": int(len(frame)),
        "n_folds": len(per_fold),
        "pooled": pooled_metrics(frame, label_names),
        "per_fold": per_fold,
        "mean": mean,
        "std": std,
    }


def compute_metrics(predictions: pd.DataFrame, label_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of every system in the predictions table.

    Args:
        predictions: the predictions table (columns in the module docstring).
        label_names: the ordered class names.

    Returns:
        ``{"label_names": [...], "systems": {system: system_metrics(...)}}`` with systems in
        order of first appearance; JSON-serialisable (plain floats, ints, lists, None).
    """
    check_predictions(predictions, label_names)
    systems = {}
    for system in pd.unique(predictions["system"]):
        frame = predictions[predictions["system"] == system]
        systems[str(system)] = system_metrics(frame, label_names)
    return {"label_names": list(label_names), "systems": systems}


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def summary_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per system with the headline metrics in percent, ready for printing.

    Args:
        metrics: the result of ``compute_metrics``.

    Returns:
        DataFrame indexed by system with the columns ``folds``, ``n``, then for F1-micro, UA
        and macro-F1 a ``<metric> mean±std`` column (over folds) and a ``<metric> pooled``
        column, all formatted as strings in percent.
    """
    names = {"f1_micro": "F1-micro", "ua": "UA", "f1_macro": "macro-F1"}
    rows = {}
    for system, m in metrics["systems"].items():
        row: dict[str, Any] = {"folds": m["n_folds"], "n": m["n"]}
        for key, name in names.items():
            row[f"{name} mean±std"] = f"{_pct(m['mean'][key])} ± {_pct(m['std'][key])}"
            row[f"{name} pooled"] = _pct(m["pooled"][key])
        rows[system] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "system"
    return table
