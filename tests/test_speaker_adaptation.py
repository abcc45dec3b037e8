"""Speaker adaptation is a declared protocol: the run says so, and `emofusion predict` adapts to
a speaker from its own unlabelled utterances or an enrolment file, and says when it could not."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emofusion.cli import main
from emofusion.config import build_config


def test_scaling_speaker_is_the_speaker_adaptive_protocol():
    assert build_config({"dataset": "d.csv", "scaling": "speaker"}).protocol == "speaker_adaptive"
    assert build_config({"dataset": "d.csv", "protocol": "speaker_adaptive"}).scaling == "speaker"
    strict = build_config({"dataset": "d.csv", "scaling": "speaker_strict"})
    assert strict.protocol == "speaker_independent"
    assert build_config({"dataset": "d.csv"}).protocol == "speaker_independent"


@pytest.fixture(scope="module")
def adaptive_model(clean_demo_csv, tmp_path_factory):
    """A speaker-adaptive acoustic model trained on all speakers but F01, and F01's rows."""
    base = tmp_path_factory.mktemp("adaptive")
    table = pd.read_csv(clean_demo_csv)
    train = clean_demo_csv.with_name("adaptive-train.csv")
    table[table["speakers"] != "F01"].to_csv(train, index=False)
    model = base / "model.zip"
    assert main(["train", str(train), "--system", "acoustic", "--protocol", "speaker_adaptive",
                 "--out", str(model), "--cache-dir", str(base / "cache")]) == 0
    return model, table[table["speakers"] == "F01"], base


def _predict(model, rows: pd.DataFrame, csv, out, *extra) -> pd.DataFrame:
    rows.to_csv(csv, index=False)
    assert main(["predict", str(model), str(csv), "--out", str(out), *extra]) == 0
    return pd.read_csv(out)


def test_predict_adapts_to_a_speaker_from_its_own_utterances_or_enrolment(
        adaptive_model, clean_demo_csv, capsys):
    model, speaker_rows, base = adaptive_model
    folder = clean_demo_csv.parent
    everyone = _predict(model, speaker_rows, folder / "f01-all.csv", base / "all.csv")
    assert (everyone["adaptation"] == "own utterances").all()
    assert "own utterances" in capsys.readouterr().err

    single = speaker_rows.iloc[:1]
    alone = _predict(model, single, folder / "f01-one.csv", base / "one.csv")
    assert alone["adaptation"].tolist() == ["training average"]
    assert "training speakers' average" in capsys.readouterr().err

    enrolled = _predict(model, single, folder / "f01-one.csv", base / "enrolled.csv",
                        "--enrol", str(folder / "f01-all.csv"))
    assert enrolled["adaptation"].tolist() == ["enrolment"]
    columns = [c for c in everyone.columns if c.startswith("proba_")]
    # enrolment with all of F01's utterances gives the statistics of predicting them together
    np.testing.assert_allclose(enrolled[columns].to_numpy(), everyone[columns].to_numpy()[:1])
    assert not np.allclose(alone[columns].to_numpy(), everyone[columns].to_numpy()[:1])


def test_enrolment_is_refused_for_speaker_independent_models(clean_demo_csv, tmp_path, capsys):
    model = tmp_path / "strict.zip"
    assert main(["train", str(clean_demo_csv), "--system", "acoustic", "--out", str(model),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    code = main(["predict", str(model), str(clean_demo_csv), "--enrol", str(clean_demo_csv)])
    assert code == 2
    assert "speaker-adaptive models only" in capsys.readouterr().err


def test_the_report_declares_the_protocol(clean_demo_csv, tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(clean_demo_csv), "--out", str(out), "--protocol", "speaker_adaptive",
                 "--split", "k3", "--systems", "unimodal", "--cache-dir", str(tmp_path / "c")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "speaker_adaptive"
    first_line = (out / "report.md").read_text().splitlines()[0]
    assert "speaker-adaptive" in first_line
