"""The transcript system: added when transcripts vary, fused with the other modalities, and its
TF-IDF vectoriser never sees a test speaker's text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofusion.config import build_config
from emofusion.models.text import TfidfClassifier
from emofusion.runner import run

WORDS = {"anger": "furious shouting", "sadness": "tears lonely", "happiness": "wonderful joy",
         "neutral": "table chair"}


@pytest.fixture(scope="module")
def transcript_csv(clean_demo_csv):
    """The demo corpus with a transcript column: often a class word pair, always the speaker's
    own marker word, so text fitted on test rows would carry the test speakers' words."""
    table = pd.read_csv(clean_demo_csv)
    names = list(WORDS)
    rng = np.random.default_rng(0)
    table["transcript"] = [
        f"{WORDS[names[code]] if rng.random() < 0.6 else 'well'} marker{speaker} line{i}"
        for i, (code, speaker) in enumerate(zip(table["emotion_labels"], table["speakers"],
                                                strict=True))]
    csv = clean_demo_csv.with_name("with_transcripts.csv")
    table.to_csv(csv, index=False)
    return csv


def test_transcripts_join_the_run_and_the_vectoriser_never_sees_test_text(
        transcript_csv, tmp_path, fast_report, monkeypatch):
    import emofusion.runner as runner

    current: dict = {}
    fits: list[tuple[int, set[str]]] = []
    real_fit, real_run_base = TfidfClassifier.fit, runner.run_base

    def recording_fit(self, X, y):
        fits.append((current["fold"], {str(t) for t in np.asarray(X, dtype=object).ravel()}))
        return real_fit(self, X, y)

    def tracking_run_base(fold, name, setup):
        current["fold"] = fold.index
        return real_run_base(fold, name, setup)

    monkeypatch.setattr(TfidfClassifier, "fit", recording_fit)
    monkeypatch.setattr(runner, "run_base", tracking_run_base)  # jobs=1: tasks run here
    result = run(build_config({"dataset": transcript_csv, "out": tmp_path / "run", "split": "k3",
                               "jobs": 1, "cache_dir": tmp_path / "cache"}), progress=False)
    assert {"transcript", "early", "late_mean", "stacking"} <= set(result.predictions["system"])
    assert result.audit["transcript_vectoriser"]["fitted_on_test_rows"] == 0
    texts = pd.read_csv(transcript_csv)["transcript"].to_numpy()
    folds = {o.fold.index: o for o in result.folds}
    assert {index for index, _ in fits} == set(folds)
    for index, fitted in fits:  # inner-search fits, refits and stacking's out-of-fold fits
        fold = folds[index].fold
        assert fitted <= set(texts[fold.train]), f"fold {index}: a test transcript was fitted"
    for output in result.folds:
        assert output.searches["transcript"]["n_fitted_documents"] == len(output.fold.train)
    transcript = result.predictions[result.predictions["system"] == "transcript"]
    assert (transcript["true"] == transcript["predicted"]).mean() > 0.4  # class words carry signal


def test_fixed_sentences_do_not_make_a_transcript_system(clean_demo_csv, tmp_path, fast_report):
    table = pd.read_csv(clean_demo_csv)
    table["transcript"] = np.where(np.arange(len(table)) % 2, "Kids are talking by the door",
                                   "Dogs are sitting by the door")
    csv = clean_demo_csv.with_name("fixed_sentences.csv")
    table.to_csv(csv, index=False)
    result = run(build_config({"dataset": csv, "out": tmp_path / "run", "split": "k3", "jobs": 1,
                               "systems": ["unimodal"], "cache_dir": tmp_path / "c"}),
                 progress=False)
    assert "transcript" not in set(result.predictions["system"])


def test_the_report_says_which_family_auto_chose(clean_demo_csv, tmp_path):
    result = run(build_config({"dataset": clean_demo_csv, "out": tmp_path / "run", "split": "k3",
                               "jobs": 1, "model": "auto", "systems": ["unimodal", "early"],
                               "cache_dir": tmp_path / "c", "n_bootstrap": 100}), progress=False)
    selection = result.audit["model_selection"]
    assert set(selection) == {"visual", "acoustic", "lexical", "early"}
    for system, entry in selection.items():
        assert sum(entry["chosen_in_folds"].values()) == 3
        assert set(entry["chosen_in_folds"]) <= {"lda", "logreg", "svm_rbf"}
        for output in result.folds:
            scores = output.searches[system]["candidate_scores"]
            assert set(scores) == {"lda", "logreg", "svm_rbf"}
            winner = output.searches[system]["model"]
            assert scores[winner] == max(v for v in scores.values() if v is not None)
    assert "Model selection" in (tmp_path / "run" / "report.md").read_text()
