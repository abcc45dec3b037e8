"""McNemar and speaker-bootstrap tests on constructed paired predictions."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from emofusion.evaluation.significance import (
    compare_systems,
    mcnemar,
    speaker_bootstrap_ua_diff,
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
