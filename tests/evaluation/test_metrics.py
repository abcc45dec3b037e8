"""Metrics recomputed from a tiny predictions table with hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emofusion.evaluation.metrics import compute_metrics, summary_table

LABELS = ["a", "b", "c"]

# rows 0..7; fold 0 = speaker s1 (rows 0, 1, 4, 6), fold 1 = speaker s2 (rows 2, 3, 5, 7)
TRUE = ["a", "a", "a", "a", "b", "b", "c", "c"]
PRED = ["a", "a", "b", "b", "b", "b", "a", "c"]
FOLD = [0, 0, 1, 1, 0, 1, 0, 1]
PROBA_A = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
PROBA_B = [0.05, 0.1, 0.2, 0.3, 0.25, 0.5, 0.35, 0.4]


def tiny_table(system: str = "s", extra_labels: tuple[str, ...] = ()) -> pd.DataFrame:
    """The 8-utterance table above; proba_c = 1 - proba_a - proba_b."""
    frame = pd.DataFrame({
        "utterance_id": [f"u{i}" for i in range(8)],
        "speaker": ["s1" if f == 0 else "s2" for f in FOLD],
        "session": 1,
        "fold": FOLD,
        "system": system,
        "true": TRUE,
        "predicted": PRED,
        "proba_a": PROBA_A,
        "proba_b": PROBA_B,
    })
    frame["proba_c"] = 1 - frame["proba_a"] - frame["proba_b"]
    for label in extra_labels:
        frame[f"proba_{label}"] = 0.0
    return frame


def test_pooled_headline_metrics_match_hand_computation():
    pooled = compute_metrics(tiny_table(), LABELS)["systems"]["s"]["pooled"]
    assert pooled["f1_micro"] == pytest.approx(5 / 8)  # = accuracy
    assert pooled["ua"] == pytest.approx((2 / 4 + 2 / 2 + 1 / 2) / 3)
    f1_a, f1_b, f1_c = 4 / 7, 2 / 3, 2 / 3  # P/R: a 2/3, 1/2; b 1/2, 1; c 1, 1/2
    assert pooled["f1_macro"] == pytest.approx((f1_a + f1_b + f1_c) / 3)
    assert pooled["f1_weighted"] == pytest.approx((4 * f1_a + 2 * f1_b + 2 * f1_c) / 8)
    assert pooled["per_class"]["a"] == pytest.approx(
        {"precision": 2 / 3, "recall": 0.5, "f1": 4 / 7, "support": 4})
    assert pooled["confusion"] == [[2, 2, 0], [0, 2, 0], [1, 0, 1]]
    assert np.allclose(pooled["confusion_normalized"], [[.5, .5, 0], [0, 1, 0], [.5, 0, .5]])


def test_ranking_scores_match_hand_computation():
    pooled = compute_metrics(tiny_table(), LABELS)["systems"]["s"]["pooled"]
    auc = pooled["roc_auc_ovr"]
    # a: positives score above every negative; b: 9 of 12 pairs ordered; c: all ordered
    assert auc["per_class"] == pytest.approx({"a": 1.0, "b": 0.75, "c": 1.0})
    assert auc["macro"] == pytest.approx(2.75 / 3)
    assert pooled["average_precision"]["per_class"]["a"] == pytest.approx(1.0)
    assert pooled["average_precision"]["per_class"]["c"] == pytest.approx(1.0)


def test_per_fold_mean_and_std():
    m = compute_metrics(tiny_table(), LABELS)["systems"]["s"]
    fold0, fold1 = m["per_fold"]
    assert fold0["fold"] == 0 and fold0["test_speakers"] == ["s1"] and fold0["n"] == 4
    assert fold0["f1_micro"] == pytest.approx(3 / 4)
    assert fold0["ua"] == pytest.approx(2 / 3)  # recalls a 1, b 1, c 0
    assert fold0["f1_macro"] == pytest.approx((0.8 + 1 + 0) / 3)
    assert fold1["f1_micro"] == pytest.approx(1 / 2)
    assert fold1["ua"] == pytest.approx(2 / 3)  # recalls a 0, b 1, c 1
    assert fold1["f1_macro"] == pytest.approx((0 + 0.5 + 1) / 3)
    assert m["mean"]["f1_micro"] == pytest.approx(0.625)
    assert m["std"]["f1_micro"] == pytest.approx(0.25 / np.sqrt(2))  # ddof = 1
    assert m["std"]["ua"] == pytest.approx(0.0)


def test_single_fold_has_zero_std_and_absent_class_gets_none():
    table = tiny_table(extra_labels=("d",))
    table["fold"] = 0
    m = compute_metrics(table, LABELS + ["d"])["systems"]["s"]
    assert m["n_folds"] == 1 and m["std"] == {"f1_micro": 0.0, "ua": 0.0, "f1_macro": 0.0}
    pooled = m["pooled"]
    assert pooled["roc_auc_ovr"]["per_class"]["d"] is None
    assert pooled["average_precision"]["per_class"]["d"] is None
    assert pooled["roc_auc_ovr"]["macro"] == pytest.approx(2.75 / 3)
    assert pooled["confusion"][3] == [0, 0, 0, 0]
    assert pooled["ua"] == pytest.approx(2 / 3)  # absent class does not count


def test_several_systems_json_and_summary_table():
    table = pd.concat([tiny_table("s"), tiny_table("t").assign(predicted=TRUE)])
    metrics = compute_metrics(table, LABELS)
    assert list(metrics["systems"]) == ["s", "t"]
    assert metrics["systems"]["t"]["pooled"]["ua"] == 1.0
    assert json.loads(json.dumps(metrics)) == metrics
    summary = summary_table(metrics)
    assert list(summary.index) == ["s", "t"]
    assert summary.loc["s", "F1-micro pooled"] == "62.5"
    assert summary.loc["s", "F1-micro mean±std"] == "62.5 ± 17.7"
    assert summary.loc["t", "UA mean±std"] == "100.0 ± 0.0"


def test_missing_probabilities_give_none_and_unknown_label_raises():
    table = tiny_table().drop(columns=["proba_b"])
    pooled = compute_metrics(table, LABELS)["systems"]["s"]["pooled"]
    assert pooled["roc_auc_ovr"] == {"per_class": dict.fromkeys(LABELS), "macro": None}
    with pytest.raises(ValueError, match="not in label_names"):
        compute_metrics(tiny_table(), ["a", "b"])


@pytest.mark.parametrize("seed", range(5))
def test_headline_metrics_from_counts_equal_sklearn_with_absent_and_unpredicted_classes(seed):
    from sklearn import metrics as skm

    from emofusion.evaluation.metrics import balanced_accuracy, headline_metrics

    rng = np.random.default_rng(seed)
    y_true = rng.choice(["a", "b", "c"], size=40)  # "d" is never true
    y_pred = rng.choice(["a", "b", "d"], size=40)  # "c" is never predicted
    ours = headline_metrics(y_true, y_pred)
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        ua = skm.balanced_accuracy_score(y_true, y_pred)
    assert ours["ua"] == pytest.approx(ua)
    assert ours["f1_micro"] == pytest.approx(skm.f1_score(y_true, y_pred, average="micro"))
    assert ours["f1_macro"] == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    codes = {"a": 0, "b": 1, "c": 2, "d": 3}
    assert balanced_accuracy(np.array([codes[v] for v in y_true]),
                             np.array([codes[v] for v in y_pred]), 4) == pytest.approx(ua)
