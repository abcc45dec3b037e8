"""Leakage audit: proof, per fold, that no test speaker reached anything that was fitted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from emofusion.evaluation.splits import OuterFold, normalise_transcript


def _fold_entry(fold: OuterFold, speakers: np.ndarray, inner: dict[str, list]) -> dict[str, Any]:
    test_speakers = sorted(set(speakers[fold.test]))
    train_speakers = sorted(set(speakers[fold.train]))
    inner_clean = all(
        not (set(train) & set(val)) and not (set(test_speakers) & (set(train) | set(val)))
        for splits in inner.values() for train, val in splits
    )
    return {
        "fold": fold.index,
        "held_out": list(fold.held_out),
        "test_speakers": test_speakers,
        "train_speakers": train_speakers,
        "n_train": int(len(fold.train)),
        "n_test": int(len(fold.test)),
        "overlap": sorted(set(test_speakers) & set(train_speakers)),
        "inner_groups_checked": bool(inner_clean),
    }


def transcript_overlap(fold: OuterFold, transcripts: pd.Series) -> float:
    """Share of test utterances whose (normalised) transcript occurs among training utterances."""
    lines = transcripts.map(normalise_transcript).to_numpy()
    seen = set(lines[fold.train]) - {""}
    test_lines = lines[fold.test]
    known = test_lines != ""
    return float(np.mean([line in seen for line in test_lines[known]])) if known.any() else 0.0


def fitted_steps(config, model_input: str) -> list[str]:
    """Where each fitted component learned its parameters."""
    steps = [
        "StandardScaler / resampler / classifier: inside one pipeline, refitted on the training "
        "part of every inner split and finally on the outer fold's training speakers only",
        f"hyper-parameter search: GridSearchCV, or the model's own search (the LDA shrinkage), "
        f"over {config.inner_folds} speaker-grouped inner folds of the training speakers "
        f"(scoring: {config.scoring})",
        "stacking meta-learner: trained on out-of-fold probabilities of the training speakers "
        "(speaker-grouped inner folds), applied once to the test fold",
        "late fusion: no fitted parameters (late_mean averages the unimodal models' "
        "probabilities; late_vote takes the majority class, ties going to the tied class with "
        "the highest mean probability)",
    ]
    if config.imbalance in ("oversample", "smote"):
        steps.append(f"{config.imbalance}: applied inside the pipeline, after the split, to "
                     "training rows only")
    if config.scaling == "speaker":
        steps.append("speaker normalisation (transductive): each speaker's statistics come from "
                     "its own utterances, test speakers included; no labels are used")
    if config.scaling == "speaker_strict":
        steps.append("speaker normalisation (strict): statistics of training speakers only; test "
                     "speakers use the training speakers' average statistics")
    if config.transcripts != "off":
        steps.append("transcript system (when the dataset has varied transcripts): TF-IDF "
                     "vocabulary and IDF fitted inside the pipeline on training rows only, like "
                     "any scaler; the audit counts the documents each fold's vectoriser saw")
    if model_input == "sequence":
        steps.append("deep models: input standardisation and early stopping on a validation "
                     "split of whole training speakers; the test fold is never passed to fit")
    return steps


def vectoriser_audit(folds: list[OuterFold], searches: list[dict[str, dict]]) -> dict[str, Any]:
    """Per fold, how many transcripts the transcript system's vocabulary and IDF were fitted on,
    against the fold's training rows: any excess would be test text."""
    per_fold = [{"fold": f.index, "documents_fitted": s["transcript"]["n_fitted_documents"],
                 "training_rows": int(len(f.train))}
                for f, s in zip(folds, searches, strict=True)
                if "n_fitted_documents" in s.get("transcript", {})]
    return {"per_fold": per_fold, "fitted_on_test_rows": int(sum(
        max(0, e["documents_fitted"] - e["training_rows"]) for e in per_fold))}


def model_selection(searches: list[dict[str, dict]]) -> dict[str, dict[str, Any]]:
    """Per system, how often each model family won the inner-fold search over the outer folds
    (``auto`` portfolios; a single model wins every fold) and the mean winning inner score."""
    chosen: dict[str, dict[str, Any]] = {}
    for fold in searches:
        for system, record in fold.items():
            if "model" not in record:
                continue
            entry = chosen.setdefault(system, {"chosen_in_folds": {}, "inner_scores": []})
            wins = entry["chosen_in_folds"]
            wins[record["model"]] = wins.get(record["model"], 0) + 1
            if record.get("inner_score") is not None:
                entry["inner_scores"].append(record["inner_score"])
    return {system: {"chosen_in_folds": e["chosen_in_folds"],
                     "mean_inner_score": round(float(np.mean(e["inner_scores"])), 4)
                     if e["inner_scores"] else None}
            for system, e in chosen.items()}


def build_audit(folds: list[OuterFold], inner_splits: list[dict[str, list]], speakers: np.ndarray,
                table: pd.DataFrame, config, model_input: str,
                searches: list[dict[str, dict]] | None = None) -> dict[str, Any]:
    """The audit section of metrics.json and the report.

    Args:
        folds: outer folds.
        inner_splits: per fold, per system, the (train speakers, validation speakers) of each
            inner split actually used.
        speakers: (n,) speaker per row of `table`.
        table: the manifest table used for the run.
        config: the run config.
        model_input: "pooled" or "sequence".
    """
    entries = [_fold_entry(f, speakers, inner) for f, inner in zip(folds, inner_splits, strict=True)]
    audit: dict[str, Any] = {
        "split": config.split,
        "folds": entries,
        "fitted_steps": fitted_steps(config, model_input),
        "passed": all(not e["overlap"] and e["inner_groups_checked"] for e in entries),
        "notes": [],
    }
    if "transcript" in table.columns and (table["transcript"].astype(str) != "").any():
        overlaps = [transcript_overlap(f, table["transcript"]) for f in folds]
        audit["transcript_overlap"] = [
            {"fold": f.index, "share_of_test_lines_seen_in_training": round(o, 4)}
            for f, o in zip(folds, overlaps, strict=True)]
        audit["notes"].append(
            f"On average {np.mean(overlaps):.1%} of test utterances have a transcript that occurs "
            "word for word among training utterances; text models can memorise those lines. "
            "Use --split transcript to measure text without that overlap.")
    searches = searches or [{} for _ in folds]
    selection = model_selection(searches)
    if selection:
        audit["model_selection"] = selection
    vectoriser = vectoriser_audit(folds, searches)
    if vectoriser["per_fold"]:
        audit["transcript_vectoriser"] = vectoriser
        audit["passed"] = audit["passed"] and vectoriser["fitted_on_test_rows"] == 0
    if not audit["passed"]:
        audit["notes"].append("LEAKAGE: some test speakers are also training speakers.")
    return audit
