"""McNemar and speaker-bootstrap tests on constructed paired predictions."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from emofusion.evaluation.significance import (
    _speaker_weights,
    all_pairs,
    compare_systems,
    holm,
    mcnemar,
    speaker_bootstrap_ua_diff,
    system_interval,
    system_intervals,
)

LABELS = ["anger", "happiness", "neutral", "sadness"]


def paired_table(
    accuracy: dict[str, float],
    n_speakers: int = 40,
    per_speaker: int = 30,
    seed: int = 0,
    clustered: bool = False,
) -> pd.DataFrame:
    """Predictions of several systems on the same utterances (seeded).

    A system is right on each utterance with probability ``accuracy[system]``; with
    ``clustered`` the correctness is drawn once per speaker (all or nothing), so utterances of
    one speaker are fully dependent. Wrong predictions pick another label at random.
    """
    rng = np.random.default_rng(seed)
    n = n_speakers * per_speaker
    speaker = np.repeat([f"spk{i:02d}" for i in range(n_speakers)], per_speaker)
    true = rng.choice(LABELS, size=n)
    frames = []
    for system, acc in accuracy.items():
        draws = np.repeat(rng.random(n_speakers), per_speaker) if clustered else rng.random(n)
        right = draws < acc
        shift = rng.integers(1, len(LABELS), size=n)
        wrong = [LABELS[(LABELS.index(t) + s) % len(LABELS)] for t, s in zip(true, shift, strict=True)]
        frames.append(pd.DataFrame({
            "utterance_id": [f"u{i:05d}" for i in range(n)], "speaker": speaker,
            "session": 1, "fold": 0, "system": system, "true": true,
            "predicted": np.where(right, true, wrong),
        }))
    return pd.concat(frames, ignore_index=True)


def rows(table: pd.DataFrame, system: str) -> pd.DataFrame:
    return table[table["system"] == system]


def test_mcnemar_exact_p_on_known_counts():
    a = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 3
    b = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 3
    result = mcnemar(a, b)
    assert (result["b"], result["c"], result["n"]) == (10, 2, 20)
    # two-sided exact: 2 * P(X <= 2), X ~ Bin(12, 0.5) = 2 * (1 + 12 + 66) / 4096
    assert result["p_value"] == pytest.approx(158 / 4096)
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0


def test_bootstrap_observed_ua_matches_sklearn():
    table = paired_table({"A": 0.7, "B": 0.5}, n_speakers=10)
    result = speaker_bootstrap_ua_diff(rows(table, "A"), rows(table, "B"), n_boot=50)
    for system, key in (("A", "ua_a"), ("B", "ua_b")):
        part = rows(table, system)
        assert result[key] == pytest.approx(balanced_accuracy_score(part["true"],
                                                                    part["predicted"]))
    assert result["diff"] == pytest.approx(result["ua_a"] - result["ua_b"])


def test_bootstrap_ci_contains_true_difference_and_excludes_zero():
    table = paired_table({"A": 0.80, "B": 0.55})  # population UA difference 0.25
    result = speaker_bootstrap_ua_diff(rows(table, "A"), rows(table, "B"), n_boot=1000)
    assert result["ci_low"] < 0.25 < result["ci_high"]
    assert result["ci_low"] > 0
    assert result["share_diff_le_0"] == 0.0
    assert result["diff_mean"] == pytest.approx(result["diff"], abs=0.01)


def test_bootstrap_equal_systems_ci_contains_zero():
    table = paired_table({"A": 0.6, "B": 0.6}, seed=3)
    result = speaker_bootstrap_ua_diff(rows(table, "A"), rows(table, "B"), n_boot=1000)
    assert result["ci_low"] < 0 < result["ci_high"]
    assert 0.05 < result["share_diff_le_0"] < 0.95


def test_bootstrap_resamples_speakers_not_utterances():
    """Speaker-level dependence must widen the interval; utterance resampling would not."""
    widths = {}
    for clustered in (False, True):
        table = paired_table({"A": 0.6, "B": 0.6}, seed=5, clustered=clustered)
        result = speaker_bootstrap_ua_diff(rows(table, "A"), rows(table, "B"), n_boot=500)
        widths[clustered] = result["ci_high"] - result["ci_low"]
    assert widths[True] > 3 * widths[False]


def test_bootstrap_is_fast_and_seeded():
    table = paired_table({"A": 0.7, "B": 0.6}, n_speakers=60)
    a, b = rows(table, "A"), rows(table, "B")
    start = time.perf_counter()
    first = speaker_bootstrap_ua_diff(a, b, n_boot=1000, seed=1)
    assert time.perf_counter() - start < 1.0
    assert speaker_bootstrap_ua_diff(a, b, n_boot=1000, seed=1) == first


def test_compare_systems_uses_the_same_utterances():
    table = paired_table({"A": 0.8, "B": 0.5}, n_speakers=12)
    shuffled = table.sample(frac=1.0, random_state=0)  # order must not matter
    (result,) = compare_systems(shuffled, LABELS, [("A", "B")], n_boot=200, seed=0)
    assert result["n_utterances"] == 360 and result["n_speakers"] == 12
    assert result["mcnemar"]["n"] == 360
    a, b = rows(table, "A"), rows(table, "B")
    right_a = (a["true"] == a["predicted"]).to_numpy()
    right_b = (b["true"] == b["predicted"]).to_numpy()
    assert result["mcnemar"]["b"] == int(np.sum(right_a & ~right_b))
    assert result["accuracy_a"] == pytest.approx(right_a.mean())
    assert result["mcnemar"]["p_value"] < 1e-6


def test_compare_systems_rejects_different_utterances():
    table = paired_table({"A": 0.8, "B": 0.5}, n_speakers=4)
    table = table.drop(index=table.index[(table["system"] == "B")][:3])
    with pytest.raises(ValueError, match="same utterances"):
        compare_systems(table, LABELS, [("A", "B")], n_boot=10)


# ----------------------------------------------------------------------------- multiplicity


def test_holm_matches_a_hand_computed_example():
    # sorted: .005*4 = .02, .01*3 = .03, .03*2 = .06, .04*1 = .04 -> running max .02 .03 .06 .06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(holm([0.2]), [0.2])
    assert holm([]).shape == (0,)


def test_every_pair_is_tested_and_holm_adjusted():
    systems = ["A", "B", "C", "D"]
    assert all_pairs(systems) == [("A", "B"), ("A", "C"), ("A", "D"), ("B", "C"), ("B", "D"),
                                  ("C", "D")]
    table = paired_table({"A": 0.8, "B": 0.5, "C": 0.52, "D": 0.75}, n_speakers=12)
    results = compare_systems(table, LABELS, all_pairs(systems), n_boot=100)
    raw = [r["mcnemar"]["p_value"] for r in results]
    adjusted = [r["mcnemar"]["p_holm"] for r in results]
    np.testing.assert_allclose(adjusted, holm(raw))
    assert all(a >= p for a, p in zip(adjusted, raw, strict=True))
    assert max(adjusted) > max(raw) or max(raw) == 1.0
    # a single pair is its own family
    (single,) = compare_systems(table, LABELS, [("A", "B")], n_boot=100)
    assert single["mcnemar"]["p_holm"] == single["mcnemar"]["p_value"]


def test_a_pair_that_cannot_be_compared_is_recorded_or_raised():
    table = paired_table({"A": 0.8, "B": 0.5}, n_speakers=6)
    ok, missing = compare_systems(table, LABELS, [("A", "B"), ("A", "Z")], n_boot=50,
                                  record_errors=True)
    assert missing == {"system_a": "A", "system_b": "Z", "error": "no predictions for system 'Z'"}
    assert ok["mcnemar"]["p_holm"] == ok["mcnemar"]["p_value"]  # the family is what was tested
    with pytest.raises(ValueError, match="no predictions for system 'Z'"):
        compare_systems(table, LABELS, [("A", "B"), ("A", "Z")], n_boot=50)


def test_all_pairs_of_eight_systems_are_fast():
    table = paired_table({f"S{k}": 0.5 + 0.04 * k for k in range(8)}, n_speakers=60)
    start = time.perf_counter()
    results = compare_systems(table, LABELS, all_pairs([f"S{k}" for k in range(8)]))
    assert time.perf_counter() - start < 5.0
    assert len(results) == 28 and all("p_holm" in r["mcnemar"] for r in results)


# ----------------------------------------------------------------------------- per-system CIs


def test_system_interval_equals_a_weighted_loop_over_the_same_resamples():
    table = rows(paired_table({"A": 0.65}, n_speakers=9, per_speaker=20, seed=2), "A")
    result = system_interval(table, n_boot=300, seed=4)
    speakers = np.unique(table["speaker"])
    weights = _speaker_weights(len(speakers), 300, 4)
    index = np.searchsorted(speakers, table["speaker"])
    ua, accuracy = [], []
    for draw in weights:
        weight = draw[index]
        keep = weight > 0
        ua.append(balanced_accuracy_score(table["true"][keep], table["predicted"][keep],
                                          sample_weight=weight[keep]))
        accuracy.append(np.average(table["true"] == table["predicted"], weights=weight))
    np.testing.assert_allclose(result["ua"], np.percentile(ua, [2.5, 97.5]))
    np.testing.assert_allclose(result["f1_micro"], np.percentile(accuracy, [2.5, 97.5]))
    pooled_ua = balanced_accuracy_score(table["true"], table["predicted"])
    assert result["ua"][0] < pooled_ua < result["ua"][1]
    assert result["n_speakers"] == 9 and result["n_boot"] == 300


def test_system_interval_is_a_point_when_every_speaker_is_alike():
    one = rows(paired_table({"A": 0.6}, n_speakers=1, per_speaker=40), "A")
    alike = pd.concat([one.assign(speaker=f"s{k}", utterance_id=one["utterance_id"] + f"-{k}")
                       for k in range(6)])
    result = system_interval(alike, n_boot=200)
    pooled = balanced_accuracy_score(one["true"], one["predicted"])
    assert result["ua"] == pytest.approx([pooled, pooled])
    accuracy = (one["true"] == one["predicted"]).mean()
    assert result["f1_micro"] == pytest.approx([accuracy, accuracy])


def test_system_intervals_widen_with_speaker_dependence_and_are_fast():
    widths = {}
    for clustered in (False, True):
        table = paired_table({"A": 0.6}, seed=5, clustered=clustered)
        low, high = system_interval(rows(table, "A"), n_boot=500)["ua"]
        widths[clustered] = high - low
    assert widths[True] > 3 * widths[False]

    eight = paired_table({f"S{k}": 0.5 + 0.04 * k for k in range(8)}, n_speakers=60)
    start = time.perf_counter()
    intervals = system_intervals(eight, n_boot=1000)
    assert time.perf_counter() - start < 2.0
    assert list(intervals) == [f"S{k}" for k in range(8)]
    assert intervals["S7"]["ua"][0] > intervals["S0"]["ua"][1]  # .78 vs .50 accuracy


# ----------------------------------------------------------------------------- the report


def test_report_tests_every_pair_and_gives_each_system_an_interval(tmp_path):
    from emofusion.report.writer import write_report

    accuracy = {"acoustic": 0.8, "visual": 0.6, "lexical": 0.45, "early": 0.85}
    table = paired_table(accuracy, n_speakers=8)
    kinds = {"acoustic": "unimodal", "visual": "unimodal", "lexical": "unimodal",
             "early": "fusion"}
    result = write_report(tmp_path, table, LABELS, kinds, config={}, audit={}, dropped=[],
                          warnings=[], n_boot=200)
    pairs = [(c["system_a"], c["system_b"]) for c in result["comparisons"]]
    assert pairs == all_pairs(list(accuracy))
    np.testing.assert_allclose([c["mcnemar"]["p_holm"] for c in result["comparisons"]],
                               holm([c["mcnemar"]["p_value"] for c in result["comparisons"]]))
    written = json.loads((tmp_path / "metrics.json").read_text())
    for system in accuracy:
        interval = written["systems"][system]["speaker_bootstrap"]
        assert interval == system_interval(rows(table, system), n_boot=200, seed=0)
        low, high = interval["ua"]
        assert low <= written["systems"][system]["pooled"]["ua"] <= high
    report = (tmp_path / "report.md").read_text()
    assert "UA 95% CI" in report and "F1-micro 95% CI" in report and "Holm p" in report
    low, high = written["systems"]["early"]["speaker_bootstrap"]["f1_micro"]
    assert f"[{100 * low:.1f}, {100 * high:.1f}]" in report
    assert f"[{100 * low:.1f}, {100 * high:.1f}]" in (tmp_path / "report.html").read_text()
