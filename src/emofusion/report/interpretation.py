"""Interpretation text generated from the numbers of a run.

Every sentence is derived from the metrics dict (``emofusion.evaluation.metrics``), the
predictions table and the significance comparisons (``emofusion.evaluation.significance``);
nothing is a canned claim. Systems are ranked by pooled UA (ties broken by pooled F1-micro);
"unimodal" and "fusion" systems come from the ``system_kinds`` mapping.

The predictions table has one row per (system, utterance) with the columns
``utterance_id, speaker, session, fold, system, true, predicted, proba_<label>...``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

ALPHA = 0.05


def _pct(value: float, decimals: int = 1) -> str:
    return f"{100 * value:.{decimals}f}%"


def _pp(value: float) -> str:
    return f"{100 * value:+.1f} pp"


def ranked_systems(
    metrics: Mapping[str, Any], system_kinds: Mapping[str, str], kind: str
) -> list[str]:
    """Systems of ``kind`` present in ``metrics``, best first by pooled UA then F1-micro."""
    systems = [s for s in metrics["systems"] if system_kinds.get(s) == kind]
    pooled = {s: metrics["systems"][s]["pooled"] for s in systems}
    return sorted(systems, key=lambda s: (-pooled[s]["ua"], -pooled[s]["f1_micro"]))


def _headline(metrics: Mapping[str, Any], system: str) -> str:
    """'UA 61.2% (pooled; 60.1 ± 4.0% over 5 folds), F1-micro 63.0%' for one system."""
    m = metrics["systems"][system]
    spread = f"{100 * m['mean']['ua']:.1f} ± {100 * m['std']['ua']:.1f}%"
    return (f"UA {_pct(m['pooled']['ua'])} (pooled; {spread} over {m['n_folds']} fold(s)), "
            f"F1-micro {_pct(m['pooled']['f1_micro'])}")


def _unimodal_ranking(metrics: Mapping[str, Any], unimodal: list[str]) -> list[str]:
    """Lines naming the best single modality and its margin over the others."""
    if not unimodal:
        return ["No single-modality system was evaluated."]
    best = unimodal[0]
    lines = [f"Best single modality: **{best}**, {_headline(metrics, best)}."]
    if len(unimodal) == 1:
        return lines + ["It is the only single-modality system, so there is no ranking."]
    top = metrics["systems"][best]["pooled"]
    for other in unimodal[1:]:
        pooled = metrics["systems"][other]["pooled"]
        lines.append(
            f"- {best} vs **{other}** (UA {_pct(pooled['ua'])}, F1-micro "
            f"{_pct(pooled['f1_micro'])}): "
            f"{_pp(top['ua'] - pooled['ua'])} UA, "
            f"{_pp(top['f1_micro'] - pooled['f1_micro'])} F1-micro."
        )
    return lines


def top_confusion(
    system_metrics: Mapping[str, Any], label_names: Sequence[str]
) -> tuple[str, str, float, int, int] | None:
    """Largest off-diagonal cell of the row-normalised confusion matrix.

    Returns:
        ``(true_label, predicted_label, share, count, support)`` or None when no utterance is
        misclassified.
    """
    counts = np.asarray(system_metrics["pooled"]["confusion"], dtype=float)
    normalized = np.asarray(system_metrics["pooled"]["confusion_normalized"], dtype=float)
    off = normalized.copy()
    np.fill_diagonal(off, -1.0)
    i, j = np.unravel_index(np.argmax(off), off.shape)
    if counts[i, j] == 0:
        return None
    return (label_names[i], label_names[j], float(normalized[i, j]), int(counts[i, j]),
            int(counts[i].sum()))


def _class_profile(
    system: str, system_metrics: Mapping[str, Any], label_names: Sequence[str]
) -> str:
    """One bullet: recall per class (best first) and the most frequent confusion."""
    per_class = system_metrics["pooled"]["per_class"]
    present = [label for label in label_names if per_class[label]["support"] > 0]
    ordered = sorted(present, key=lambda label: -per_class[label]["recall"])
    recalls = ", ".join(f"{label} {_pct(per_class[label]['recall'], 0)}" for label in ordered)
    text = (f"- **{system}** recognises {ordered[0]} best (recall per class: {recalls})"
            if ordered else f"- **{system}**: no labelled utterances")
    confusion = top_confusion(system_metrics, label_names)
    if confusion is None:
        return text + "; it makes no errors."
    true, predicted, share, count, support = confusion
    return (text + f". Most frequent confusion: {true} is taken for {predicted} in "
            f"{_pct(share, 0)} of cases ({count} of {support}).")


def _modality_profiles(
    metrics: Mapping[str, Any], label_names: Sequence[str], unimodal: list[str]
) -> list[str]:
    return [_class_profile(s, metrics["systems"][s], label_names) for s in unimodal]


def find_comparison(
    comparisons: Sequence[Mapping[str, Any]], system_a: str, system_b: str
) -> tuple[Mapping[str, Any], int] | None:
    """The comparison of the pair in either order and the sign that orients it as A - B.

    A comparison that could not be run carries an ``error`` key instead of test results.
    """
    for comparison in comparisons:
        pair = (comparison.get("system_a"), comparison.get("system_b"))
        if pair == (system_a, system_b):
            return comparison, 1
        if pair == (system_b, system_a):
            return comparison, -1
    return None


def mcnemar_p(comparison: Mapping[str, Any]) -> float:
    """The McNemar p-value the verdict uses: Holm-adjusted over the pairs tested when the
    comparison carries it (``p_holm``), else the raw one."""
    return comparison["mcnemar"].get("p_holm", comparison["mcnemar"]["p_value"])


def comparison_verdict(comparison: Mapping[str, Any]) -> str:
    """"significant" when the (Holm-adjusted) McNemar p < 0.05 AND the bootstrap CI excludes 0,
    "not significant" when neither holds, otherwise "mixed (the two tests disagree)"."""
    boot = comparison["bootstrap"]
    ci_excludes_zero = boot["ci_low"] > 0 or boot["ci_high"] < 0
    p_small = mcnemar_p(comparison) < ALPHA
    if ci_excludes_zero and p_small:
        return "significant"
    if not ci_excludes_zero and not p_small:
        return "not significant"
    return "mixed (the two tests disagree)"


def significance_phrase(
    comparisons: Sequence[Mapping[str, Any]], system_a: str, system_b: str
) -> str:
    """Verdict on A vs B from McNemar p and the speaker-bootstrap CI of the UA difference."""
    found = find_comparison(comparisons, system_a, system_b)
    if found is None:
        return "no significance test was run for this pair"
    comparison, sign = found
    if "error" in comparison:
        return f"the paired tests could not be run ({comparison['error']})"
    boot = comparison["bootstrap"]
    low, high = sorted((sign * boot["ci_low"], sign * boot["ci_high"]))
    holm = comparison["mcnemar"].get("p_holm")
    adjusted = "" if holm is None else f" (Holm-adjusted over all pairs tested: {holm:.3g})"
    evidence = (f"McNemar p = {comparison['mcnemar']['p_value']:.3g} on accuracy{adjusted}; 95% "
                f"speaker-bootstrap CI of the UA difference [{_pp(low)}, {_pp(high)}], "
                f"{boot['n_speakers']} speakers")
    return f"{comparison_verdict(comparison)} ({evidence})"


def _fusion_section(
    metrics: Mapping[str, Any],
    fusion: list[str],
    unimodal: list[str],
    comparisons: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Whether the best fusion beats the best single modality, by how much, how reliably."""
    if not fusion:
        return ["No fusion system was evaluated in this run."]
    best_fusion = fusion[0]
    lines = [f"Best fusion system: **{best_fusion}**, {_headline(metrics, best_fusion)}."]
    if not unimodal:
        return lines
    best_uni = unimodal[0]
    f_pooled = metrics["systems"][best_fusion]["pooled"]
    u_pooled = metrics["systems"][best_uni]["pooled"]
    ua_gain = f_pooled["ua"] - u_pooled["ua"]
    verb = "beats" if ua_gain > 0 else "does not beat"
    lines.append(
        f"It {verb} the best single modality ({best_uni}) on UA: {_pp(ua_gain)} UA, "
        f"{_pp(f_pooled['f1_micro'] - u_pooled['f1_micro'])} F1-micro; "
        f"{significance_phrase(comparisons, best_fusion, best_uni)}."
    )
    return lines


def unimodal_agreement(predictions: pd.DataFrame, unimodal: Sequence[str]) -> dict[str, Any]:
    """Shares of utterances on which the unimodal systems disagree / any is right / all wrong.

    Args:
        predictions: the predictions table.
        unimodal: the unimodal system names (at least two).

    Returns:
        ``{"n", "disagree", "oracle", "all_wrong", "best_accuracy"}``: counts are over the
        utterances every listed system predicted; ``best_accuracy`` is the highest single
        system accuracy on those utterances.
    """
    rows = predictions[predictions["system"].isin(list(unimodal))]
    wide = rows.pivot_table(index="utterance_id", columns="system", values="predicted",
                            aggfunc="first").dropna()
    true = rows.drop_duplicates("utterance_id").set_index("utterance_id")["true"]
    true = true.loc[wide.index].astype(str)
    correct = wide.astype(str).eq(true, axis=0)
    return {
        "n": int(len(wide)),
        "disagree": float(wide.astype(str).ne(wide.iloc[:, 0].astype(str), axis=0).any(axis=1).mean()),
        "oracle": float(correct.any(axis=1).mean()),
        "all_wrong": float((~correct.any(axis=1)).mean()),
        "best_accuracy": float(correct.mean(axis=0).max()),
    }


def _complementarity(predictions: pd.DataFrame, unimodal: list[str]) -> list[str]:
    if len(unimodal) < 2:
        return ["Complementarity needs at least two single-modality systems; skipped."]
    stats = unimodal_agreement(predictions, unimodal)
    if stats["n"] == 0:
        return ["The single-modality systems share no utterances; complementarity skipped."]
    return [
        f"Over the {stats['n']} utterances predicted by all of {', '.join(unimodal)}:",
        f"- the modalities disagree (do not all predict the same label) on "
        f"{_pct(stats['disagree'])} of utterances;",
        f"- at least one modality is right on {_pct(stats['oracle'])} (oracle accuracy, vs "
        f"{_pct(stats['best_accuracy'])} for the best single modality: "
        f"{_pp(stats['oracle'] - stats['best_accuracy'])} headroom for fusion);",
        f"- all modalities are wrong on {_pct(stats['all_wrong'])}.",
    ]


def _wa_statement(metrics: Mapping[str, Any], predictions: pd.DataFrame) -> list[str]:
    """Check F1-micro = accuracy = WA for every system, from the predictions themselves."""
    mismatched = []
    for system, m in metrics["systems"].items():
        rows = predictions[predictions["system"] == system]
        accuracy = float((rows["true"].astype(str) == rows["predicted"].astype(str)).mean())
        if abs(accuracy - m["pooled"]["f1_micro"]) > 1e-9:
            mismatched.append(system)
    if mismatched:
        return [f"F1-micro differs from accuracy for {', '.join(mismatched)}: check the data."]
    return [
        f"Each utterance has exactly one label, so F1-micro = accuracy = weighted accuracy "
        f"(WA); this holds for all {len(metrics['systems'])} system(s) here. UA (balanced "
        f"accuracy, mean per-class recall) is the metric that is not inflated by frequent "
        f"classes."
    ]


def interpret(
    metrics: Mapping[str, Any],
    predictions: pd.DataFrame,
    label_names: Sequence[str],
    system_kinds: Mapping[str, str],
    comparisons: Sequence[Mapping[str, Any]],
) -> str:
    """Markdown interpretation of a run (sub-sections with ``###`` headings, bullet lists).

    Args:
        metrics: the ``compute_metrics`` dict.
        predictions: the predictions table.
        label_names: the ordered class names.
        system_kinds: system -> "unimodal" | "fusion"; other systems are not ranked.
        comparisons: ``compare_systems`` results (possibly empty).

    Returns:
        markdown text; handles one or zero unimodal and zero fusion systems.
    """
    unimodal = ranked_systems(metrics, system_kinds, "unimodal")
    fusion = ranked_systems(metrics, system_kinds, "fusion")
    sections = [
        ("Single modalities", _unimodal_ranking(metrics, unimodal)),
        ("What each modality gets right and wrong",
         _modality_profiles(metrics, label_names, unimodal) or ["No single-modality system."]),
        ("Fusion", _fusion_section(metrics, fusion, unimodal, comparisons)),
        ("Complementarity of the modalities", _complementarity(predictions, unimodal)),
        ("Metrics", _wa_statement(metrics, predictions)),
    ]
    parts = [f"### {title}\n\n" + "\n".join(lines) for title, lines in sections]
    return "\n\n".join(parts) + "\n"
