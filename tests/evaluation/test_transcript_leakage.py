"""Text leakage: repeated transcripts across speakers are measured by the audit, and the
`transcript` split keeps every test line out of training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emofusion import build_config, run
from emofusion.data.manifest import IEMOCAP_LABELS
from emofusion.evaluation.splits import make_outer_folds, normalise_transcript


@pytest.fixture(scope="module")
def scripted_csv(small_demo_writer, tmp_path_factory):
    course = small_demo_writer(tmp_path_factory.mktemp("scripted"), bad_files=False)
    frame = pd.read_csv(course)
    generic = pd.DataFrame({
        "utterance_id": frame["file_name_list"],
        "speaker": frame["speakers"],
        "label": [IEMOCAP_LABELS[k] for k in frame["emotion_labels"]],
        # a fifth of the lines are a shared script read by every speaker
        "transcript": [f"Scripted line {i % 12}." if i % 5 == 0 else f"free line {i}"
                       for i in range(len(frame))],
        "acoustic_features": frame["acoustic_features"],
    })
    generic["session"] = generic["speaker"].str[-2:]
    path = course.parent / "scripted.csv"
    generic.to_csv(path, index=False)
    return path


def _run(csv, tmp_path, split):
    config = build_config({"dataset": csv, "out": tmp_path / split, "split": split, "jobs": 1,
                           "systems": ["unimodal"], "n_bootstrap": 100})
    return run(config, progress=False)


def test_audit_reports_the_share_of_test_lines_seen_in_training(scripted_csv, tmp_path):
    audit = _run(scripted_csv, tmp_path, "session").audit
    shares = [f["share_of_test_lines_seen_in_training"] for f in audit["transcript_overlap"]]
    assert len(shares) == 5
    assert all(0.1 < share < 0.35 for share in shares)
    assert any("word for word" in note for note in audit["notes"])


def test_transcript_split_keeps_test_lines_out_of_training(scripted_csv, tmp_path):
    table = pd.read_csv(scripted_csv, dtype=str, keep_default_na=False)
    y = np.zeros(len(table), dtype=int)
    lines = table["transcript"].map(normalise_transcript).to_numpy()
    for fold in make_outer_folds("transcript", table, y):
        assert not set(lines[fold.test]) & set(lines[fold.train])
        assert not set(table["session"].to_numpy()[fold.test]) & set(table["session"].to_numpy()[fold.train])
    audit = _run(scripted_csv, tmp_path, "transcript").audit
    assert all(f["share_of_test_lines_seen_in_training"] == 0.0 for f in audit["transcript_overlap"])
