"""Paired significance tests between two systems evaluated on the same utterances.

Two complementary tests, always run on the SAME utterances (an inner join on
``utterance_id`` of the two systems' predictions, checked to cover identical sets):

* ``mcnemar``: exact (binomial) McNemar test on paired per-utterance correctness. It tests
  accuracy (= F1-micro = WA) and treats utterances as independent.
* ``speaker_bootstrap_ua_diff``: bootstrap of the UA difference that resamples SPEAKERS with
  replacement, because utterances of one speaker are not independent; in a speaker-independent
  evaluation the speaker is the unit of independence.

Which pairs are tested must not depend on the test scores: `all_pairs` lists every pair of
systems, and `compare_systems` adds Holm-adjusted McNemar p-values over the pairs it tests
(`holm`). `system_intervals` gives each system's own UA and F1-micro a 95 % speaker-bootstrap
interval.

Input frames have the predictions-table columns ``utterance_id, speaker, true, predicted``
(label names); see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

PAIR_COLUMNS = ("utterance_id", "speaker", "true", "predicted")


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, Any]:
    """Exact two-sided McNemar test on paired correctness.

    Args:
        correct_a: shape (n,), whether system A got utterance i right.
        correct_b: shape (n,), the same for system B on the same utterances in the same order.

    Returns:
        ``{"n", "b", "c", "p_value"}`` where ``b`` counts utterances only A got right and ``c``
        those only B got right; ``p_value`` is the two-sided binomial p of b out of b + c at
        0.5 (1.0 when b + c = 0).
    """
    a = np.asarray(correct_a, dtype=bool)
    b_arr = np.asarray(correct_b, dtype=bool)
    if a.shape != b_arr.shape or a.ndim != 1:
        raise ValueError(f"correctness vectors must have equal 1-D shapes, got {a.shape}, "
                         f"{b_arr.shape}")
    b = int(np.sum(a & ~b_arr))
    c = int(np.sum(~a & b_arr))
    p_value = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"n": int(a.size), "b": b, "c": c, "p_value": p_value}


def _sorted_rows(frame: pd.DataFrame, system: str) -> dict[str, np.ndarray]:
    """One system's ``PAIR_COLUMNS`` as (n,) str arrays sorted by utterance_id.

    Raises:
        ValueError: the system has no rows, or several for one utterance.
    """
    if frame.empty:
        raise ValueError(f"no predictions for system '{system}'")
    columns = {c: frame[c].to_numpy().astype(str) for c in PAIR_COLUMNS}
    order = np.argsort(columns["utterance_id"], kind="stable")
    columns = {c: values[order] for c, values in columns.items()}
    ids = columns["utterance_id"]
    if (ids[1:] == ids[:-1]).any():
        raise ValueError(f"system {system} has several predictions for one utterance_id")
    return columns


def _paired_rows(rows_a: dict[str, np.ndarray], rows_b: dict[str, np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """Two `_sorted_rows` aligned: ``utterance_id, speaker, true, predicted_a, predicted_b``."""
    ids_a, ids_b = rows_a["utterance_id"], rows_b["utterance_id"]
    if not np.array_equal(ids_a, ids_b):
        raise ValueError(
            "paired tests need both systems on the same utterances: "
            f"{np.setdiff1d(ids_a, ids_b).size} only in A, {np.setdiff1d(ids_b, ids_a).size} "
            "only in B")
    for column in ("speaker", "true"):
        if (rows_a[column] != rows_b[column]).any():
            raise ValueError(f"the two systems disagree on '{column}' for some utterances")
    return {"utterance_id": ids_a, "speaker": rows_a["speaker"], "true": rows_a["true"],
            "predicted_a": rows_a["predicted"], "predicted_b": rows_b["predicted"]}


def paired_predictions(pred_a: pd.DataFrame, pred_b: pd.DataFrame) -> pd.DataFrame:
    """Join two systems' predictions on ``utterance_id`` after checking coverage.

    Args:
        pred_a, pred_b: predictions rows of one system each (columns ``PAIR_COLUMNS``).

    Returns:
        DataFrame with ``utterance_id, speaker, true, predicted_a, predicted_b`` (as str),
        sorted by ``utterance_id``.

    Raises:
        ValueError: if a system repeats an utterance, the two systems do not cover exactly the
            same utterances, or they disagree on an utterance's speaker or true label.
    """
    return pd.DataFrame(_paired_rows(_sorted_rows(pred_a, "A"), _sorted_rows(pred_b, "B")))


def _speaker_counts(frame: pd.DataFrame,
                    columns: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-speaker confusion-matrix diagonals and row sums.

    Args:
        frame: rows (a DataFrame or a dict of (n,) arrays) with ``speaker``, ``true`` and the
            prediction `columns`.
        columns: one column of predicted labels per system.

    Returns:
        ``support`` (S, K): utterances of class k by speaker s; one ``hits`` (S, K) per column:
        of those, how many that system classified correctly. These are the row sums and
        diagonals of each speaker's confusion matrix, all UA and accuracy need.
    """
    speakers, s_idx = np.unique(frame["speaker"].astype(str), return_inverse=True)
    classes, k_idx = np.unique(frame["true"].astype(str), return_inverse=True)
    shape = (len(speakers), len(classes))
    support = np.zeros(shape)
    np.add.at(support, (s_idx, k_idx), 1.0)
    hits = []
    for column in columns:
        correct = np.asarray(frame[column].astype(str) == frame["true"].astype(str), float)
        counts = np.zeros(shape)
        np.add.at(counts, (s_idx, k_idx), correct)
        hits.append(counts)
    return support, hits


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, shape (m,), in the order given.

    The i-th smallest of m p-values is multiplied by m - i (i from 0), a running maximum keeps
    the adjusted values in the same order as the raw ones, and they are capped at 1. Rejecting
    every hypothesis whose adjusted p is below alpha controls the family-wise error rate at
    alpha.
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def all_pairs(systems: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair of `systems`, in the given order (fixed before any score is seen)."""
    return list(combinations(systems, 2))


def with_holm(comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``mcnemar["p_holm"]`` to every comparison that has test results, adjusting over all
    of them (comparisons carrying an ``error`` are left as they are)."""
    tested = [c for c in comparisons if "mcnemar" in c]
    for comparison, adjusted in zip(tested, holm([c["mcnemar"]["p_value"] for c in tested]),
                                    strict=True):
        comparison["mcnemar"]["p_holm"] = float(adjusted)
    return comparisons


def _ua(support: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """UA per row of (B, K) class supports and hits; classes with no support are skipped."""
    present = support > 0
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=present)
    return recall.sum(axis=-1) / present.sum(axis=-1)


def _speaker_weights(n_speakers: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_speakers) draw counts: resampling S speakers with replacement is a
    multinomial count of how often each speaker is drawn."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_speakers, np.full(n_speakers, 1.0 / n_speakers), size=n_boot)


def _bootstrap_from_paired(paired, n_boot: int, seed: int) -> dict[str, Any]:
    """Speaker bootstrap of UA(A) - UA(B) on already paired predictions."""
    support, (hits_a, hits_b) = _speaker_counts(paired, ("predicted_a", "predicted_b"))
    n_speakers = support.shape[0]
    weights = _speaker_weights(n_speakers, n_boot, seed)
    boot_support = weights @ support
    diffs = _ua(boot_support, weights @ hits_a) - _ua(boot_support, weights @ hits_b)
    total = support.sum(axis=0)
    ua_a, ua_b = float(_ua(total, hits_a.sum(axis=0))), float(_ua(total, hits_b.sum(axis=0)))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {
        "n_boot": int(n_boot),
        "seed": int(seed),
        "n_speakers": int(n_speakers),
        "ua_a": ua_a,
        "ua_b": ua_b,
        "diff": ua_a - ua_b,
        "diff_mean": float(diffs.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "share_diff_le_0": float(np.mean(diffs <= 0)),
    }


def speaker_bootstrap_ua_diff(
    pred_a: pd.DataFrame, pred_b: pd.DataFrame, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Bootstrap the UA difference A - B by resampling speakers with replacement.

    Each resample draws as many speakers as there are, with replacement, and recomputes both
    systems' UA on all utterances of the drawn speakers (a speaker drawn twice counts twice).
    Per-speaker counts are precomputed, so each resample is one matrix product.

    Args:
        pred_a, pred_b: predictions rows of one system each, columns ``utterance_id, speaker,
            true, predicted``; both must cover the same utterances (checked).
        n_boot: number of resamples.
        seed: seed of the numpy random generator.

    Returns:
        ``{"n_boot", "seed", "n_speakers", "ua_a", "ua_b", "diff"`` (observed UA difference),
        ``"diff_mean"`` (mean over resamples), ``"ci_low", "ci_high"`` (95 % percentile
        interval) and ``"share_diff_le_0"`` (share of resamples where A is not better)}.
    """
    return _bootstrap_from_paired(paired_predictions(pred_a, pred_b), n_boot, seed)


def _compare_rows(rows_a: dict[str, np.ndarray], rows_b: dict[str, np.ndarray],
                  system_a: str, system_b: str, n_boot: int, seed: int) -> dict[str, Any]:
    paired = _paired_rows(rows_a, rows_b)
    correct_a = paired["predicted_a"] == paired["true"]
    correct_b = paired["predicted_b"] == paired["true"]
    boot = _bootstrap_from_paired(paired, n_boot, seed)
    return {
        "system_a": system_a,
        "system_b": system_b,
        "n_utterances": int(len(correct_a)),
        "n_speakers": boot["n_speakers"],
        "accuracy_a": float(correct_a.mean()),
        "accuracy_b": float(correct_b.mean()),
        "ua_a": boot["ua_a"],
        "ua_b": boot["ua_b"],
        "ua_diff": boot["diff"],
        "mcnemar": mcnemar(correct_a, correct_b),
        "bootstrap": boot,
    }


def compare_systems(
    predictions: pd.DataFrame,
    label_names: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    n_boot: int = 1000,
    seed: int = 0,
    *,
    record_errors: bool = False,
) -> list[dict[str, Any]]:
    """McNemar test and speaker bootstrap of every pair; both tests of a pair use the same
    utterances.

    Pass `all_pairs` of the systems (or pairs fixed before the run): pairs picked after seeing
    the scores make the p-values meaningless. Each system's rows are prepared once.

    Args:
        predictions: the predictions table.
        label_names: the ordered class names; true/predicted labels must be among them.
        pairs: ``(system_a, system_b)`` tuples; differences are A - B.
        n_boot, seed: passed to the bootstrap (the same seed for each pair).
        record_errors: a pair that cannot be compared gets ``{"system_a", "system_b",
            "error"}`` instead of raising ValueError.

    Returns:
        per pair, in order, ``{"system_a", "system_b", "n_utterances", "n_speakers",
        "accuracy_a", "accuracy_b", "ua_a", "ua_b", "ua_diff", "mcnemar": {...},
        "bootstrap": {...}}`` (differences are A - B); each ``mcnemar`` also has ``p_holm``,
        its p-value Holm-adjusted over all the pairs compared.
    """
    unknown = set(predictions["true"].astype(str)) - set(label_names)
    frames = {str(s): frame for s, frame in predictions.groupby("system", sort=False)}
    prepared: dict[str, dict[str, np.ndarray]] = {}
    results = []
    for a, b in pairs:
        try:
            if unknown:
                raise ValueError(f"true labels {sorted(unknown)} are not in label_names")
            for system in (a, b):
                if system not in prepared:
                    prepared[system] = _sorted_rows(frames.get(system, predictions[:0]), system)
            results.append(_compare_rows(prepared[a], prepared[b], a, b, n_boot, seed))
        except ValueError as exc:
            if not record_errors:
                raise
            results.append({"system_a": a, "system_b": b, "error": str(exc)})
    return with_holm(results)


def _interval(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def system_interval(rows: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """95 % speaker-bootstrap intervals of one system's pooled UA and F1-micro (= accuracy).

    Args:
        rows: the system's predictions (columns ``speaker, true, predicted``), one per utterance.
        n_boot: number of resamples; each draws as many speakers as there are, with replacement.
        seed: seed of the numpy random generator.

    Returns:
        ``{"n_boot", "seed", "n_speakers", "ua": [low, high], "f1_micro": [low, high]}``.
    """
    support, (hits,) = _speaker_counts(rows, ("predicted",))
    weights = _speaker_weights(support.shape[0], n_boot, seed)
    boot_support, boot_hits = weights @ support, weights @ hits
    accuracy = boot_hits.sum(axis=1) / boot_support.sum(axis=1)
    return {"n_boot": int(n_boot), "seed": int(seed), "n_speakers": int(support.shape[0]),
            "ua": _interval(_ua(boot_support, boot_hits)), "f1_micro": _interval(accuracy)}


def system_intervals(predictions: pd.DataFrame, n_boot: int = 1000,
                     seed: int = 0) -> dict[str, dict[str, Any]]:
    """`system_interval` for every system of the predictions table, in order of appearance."""
    return {str(system): system_interval(rows, n_boot, seed)
            for system, rows in predictions.groupby("system", sort=False)}
