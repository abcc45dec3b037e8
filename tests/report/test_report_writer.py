"""Interpretation text and the report writer on seeded synthetic predictions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emofusion.evaluation.metrics import compute_metrics
from emofusion.evaluation.significance import all_pairs, compare_systems
from emofusion.report.interpretation import interpret, significance_phrase
from emofusion.report.writer import write_report

LABELS = ["anger", "happiness", "neutral", "sadness"]
KINDS = {"acoustic": "unimodal", "visual": "unimodal", "lexical": "unimodal",
         "early": "fusion", "late_mean": "fusion"}
ACCURACY = {"acoustic": 0.8, "visual": 0.6, "lexical": 0.45, "early": 0.85, "late_mean": 0.7}


def make_predictions(
    accuracy: dict[str, float],
    confuse: dict[str, dict[str, str]] | None = None,
    n_speakers: int = 8,
    per_speaker: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """Seeded predictions table; ``confuse[system][true] = label`` fixes that system's errors."""
    rng = np.random.default_rng(seed)
    n = n_speakers * per_speaker
    speaker_idx = np.repeat(np.arange(n_speakers), per_speaker)
    true = rng.choice(LABELS, size=n)
    frames = []
    for system, acc in accuracy.items():
        mapping = (confuse or {}).get(system, {})
        right = rng.random(n) < acc
        predicted = [
            t if ok else mapping.get(t) or rng.choice([x for x in LABELS if x != t])
            for t, ok in zip(true, right, strict=True)
        ]
        proba = rng.random((n, len(LABELS))) * 0.3
        proba[np.arange(n), [LABELS.index(p) for p in predicted]] += 0.7
        proba /= proba.sum(axis=1, keepdims=True)
        frame = pd.DataFrame({
            "utterance_id": [f"u{i:04d}" for i in range(n)],
            "speaker": [f"spk{i}" for i in speaker_idx], "session": speaker_idx // 2,
            "fold": speaker_idx % 4, "system": system, "true": true, "predicted": predicted,
        })
        for k, label in enumerate(LABELS):
            frame[f"proba_{label}"] = proba[:, k]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def predictions() -> pd.DataFrame:
    return make_predictions(ACCURACY, confuse={"visual": {"anger": "sadness"}})


def test_interpretation_names_best_modality_confusion_and_margin(predictions):
    metrics = compute_metrics(predictions, LABELS)
    pairs = [("early", "acoustic"), ("acoustic", "visual")]
    comparisons = compare_systems(predictions, LABELS, pairs, n_boot=200)
    text = interpret(metrics, predictions, LABELS, KINDS, comparisons)

    assert "Best single modality: **acoustic**" in text
    pooled = {s: metrics["systems"][s]["pooled"] for s in KINDS}
    margin = pooled["acoustic"]["ua"] - pooled["visual"]["ua"]
    assert f"{100 * margin:+.1f} pp UA" in text

    visual = predictions[(predictions["system"] == "visual") & (predictions["true"] == "anger")]
    share = (visual["predicted"] == "sadness").mean()
    assert f"anger is taken for sadness in {100 * share:.0f}% of cases" in text

    assert "Best fusion system: **early**" in text
    assert "beats the best single modality (acoustic)" in text

    uni = predictions[predictions["system"].isin(["acoustic", "visual", "lexical"])]
    right = (uni["true"] == uni["predicted"]).groupby(uni["utterance_id"]).any()
    assert f"at least one modality is right on {100 * right.mean():.1f}%" in text
    assert "F1-micro = accuracy = weighted accuracy" in text


def test_significance_phrase_follows_ci_and_p():
    def comparison(low: float, high: float, p: float) -> dict:
        return {"system_a": "f", "system_b": "u", "mcnemar": {"p_value": p},
                "bootstrap": {"ci_low": low, "ci_high": high, "n_speakers": 10}}

    assert significance_phrase([comparison(-0.01, 0.05, 0.3)], "f", "u").startswith(
        "not significant")
    assert significance_phrase([comparison(0.02, 0.05, 0.001)], "f", "u").startswith(
        "significant")
    # reversed pair: CI is flipped to f - u
    assert "[-5.0 pp, -2.0 pp]" in significance_phrase([comparison(0.02, 0.05, 0.001)],
                                                       "u", "f")
    assert significance_phrase([], "f", "u") == "no significance test was run for this pair"


def test_interpretation_with_one_modality_and_no_fusion():
    table = make_predictions({"acoustic": 0.7}, n_speakers=4)
    metrics = compute_metrics(table, LABELS)
    text = interpret(metrics, table, LABELS, {"acoustic": "unimodal"}, [])
    assert "Best single modality: **acoustic**" in text
    assert "only single-modality system" in text
    assert "No fusion system was evaluated" in text
    assert "at least two single-modality systems" in text


AUDIT = {
    "folds": [{"fold": f, "test_speakers": [f"spk{f}", f"spk{f + 4}"],
               "train_speakers": [f"spk{s}" for s in range(8) if s % 4 != f],
               "inner_groups_checked": True, "overlap": []} for f in range(4)],
    "fitted_steps": ["scaler: fitted on the outer training fold only"],
    "notes": ["transcripts checked"],
    "transcript_overlap": {"0": 0, "1": 2},
}
DROPPED = [{"utterance_id": "u9999", "path": "visual/u9999.npy", "reason": "file not found",
            "fix": "restore the file or remove the row"}]


def run_report(tmp_path: Path, predictions: pd.DataFrame, warnings: list[str]) -> dict:
    kinds = {s: k for s, k in KINDS.items() if s in set(predictions["system"])}
    return write_report(
        tmp_path, predictions, LABELS, kinds,
        config={"seed": 0, "n_boot": 200, "data": Path("/data/course")},
        audit=AUDIT, dropped=DROPPED, warnings=warnings, n_boot=200, title="test run",
    )


def test_report_files_json_and_self_contained_html(tmp_path):
    systems = ["acoustic", "visual", "early"]  # few systems: figures dominate the run time
    predictions = make_predictions({s: ACCURACY[s] for s in systems})
    result = run_report(tmp_path, predictions, warnings=[])
    with open(tmp_path / "metrics.json", encoding="utf-8") as handle:
        loaded = json.load(handle)
    assert loaded == result
    assert set(loaded) == {"protocol", "label_names", "systems", "comparisons", "dropped",
                           "warnings", "audit"}
    assert loaded["protocol"] == "speaker_independent"
    pairs = [(c["system_a"], c["system_b"]) for c in loaded["comparisons"]]
    assert pairs == all_pairs(list(loaded["systems"]))  # every pair, not picked by score
    assert loaded["systems"]["early"]["pooled"]["f1_micro"] == pytest.approx(
        (predictions.query("system == 'early'").eval("true == predicted")).mean())
    assert loaded["dropped"] == DROPPED

    assert len(list((tmp_path / "plots").glob("*.png"))) == 1 + 3 * len(systems)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    sources = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "<script" not in page and 'class="warning"' not in page
    for text in ("Leakage audit", "Fitted steps", "spk3", "No speaker overlap",
                 "u9999", "file not found", "Interpretation", "Best single modality",
                 "/data/course", "Transcript overlap"):
        assert text in page

    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "(plots/confusion_acoustic.png)" in markdown
    assert "⚠" not in markdown


def test_warning_banner_and_marked_numbers(tmp_path):
    warning = "Random split: the same speakers appear in training and test"
    predictions = make_predictions({"acoustic": 0.7}, n_speakers=4)
    run_report(tmp_path, predictions, warnings=[warning])
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert 'class="warning"' in page and warning in page
    assert page.index('class="warning"') < page.index("<h2>Summary</h2>")
    assert markdown.index(warning) < markdown.index("## Summary")
    summary = markdown.split("## Summary")[1].split("## Per-fold")[0]
    acoustic_row = next(line for line in summary.splitlines() if line.startswith("| acoustic"))
    assert acoustic_row.count("⚠") == 8  # every metric value and interval of the row
    assert json.loads((tmp_path / "metrics.json").read_text())["warnings"] == [warning]
    assert "No pairs to compare." in markdown and "No fusion system was evaluated" in markdown


def test_unimodal_agreement_counts_disagreement_oracle_and_all_wrong():
    import pandas as pd

    from emofusion.report.interpretation import unimodal_agreement

    # u0: both right; u1: a right, b wrong (disagree); u2: both wrong, same label; u3: both
    # wrong, different labels (disagree)
    rows = [("u0", "a", "x", "x"), ("u1", "a", "x", "x"), ("u1", "b", "x", "z"),
            ("u0", "b", "x", "x"), ("u2", "a", "x", "y"), ("u2", "b", "x", "y"),
            ("u3", "a", "x", "y"), ("u3", "b", "x", "z")]
    table = pd.DataFrame(rows, columns=["utterance_id", "system", "true", "predicted"])
    stats = unimodal_agreement(table, ["a", "b"])
    assert stats == {"n": 4, "disagree": 0.5, "oracle": 0.5, "all_wrong": 0.5,
                     "best_accuracy": 0.5}
