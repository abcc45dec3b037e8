"""Every model x imbalance x scaling combination runs every system (unimodal, early, late_vote,
late_mean, stacking) on a small corpus: one outer fold of the real fold runner each, with the
model's grid cut to two candidates (the inner search still runs).

Sequence models have no pooled features to scale (scaling leaves frames as they are) and SMOTE
cannot interpolate frame sequences (refused with a message when the config is built), so their
part of the matrix is every imbalance option that applies, with one training epoch.
"""

from __future__ import annotations

import numpy as np
import pytest

from emofusion.config import build_config
from emofusion.errors import ConfigError
from emofusion.evaluation.experiment import make_setup, run_fold
from emofusion.evaluation.splits import make_outer_folds
from emofusion.models.registry import available_models
from emofusion.runner import _system_inputs, prepare_data

IMBALANCE = ["none", "class_weight", "oversample", "smote"]
SCALING = ["standard", "speaker", "speaker_strict", "none"]
RAW_MEDIA_MODELS = {"e2e", "e2e_fusion_head", "spectrogram_cnn", "text_finetune"}
"""Need spectrograms or transcripts with a local text encoder: tested end to end in
tests/models/deep/test_deep_end_to_end_models.py and tests/test_end_to_end_system.py."""
ENSEMBLE_SIZE = {"rf": {"n_estimators": [5, 10]}, "gb": {"max_iter": [10]}}
"""Few trees and boosting rounds: the matrix is about the options, not about the ensembles."""


@pytest.fixture(scope="module")
def matrix_csv(small_demo_writer, tmp_path_factory):
    return small_demo_writer(tmp_path_factory.mktemp("matrix"), n_utterances=120, bad_files=False)


def _run_first_fold(csv, tmp_path, **options) -> dict[str, np.ndarray]:
    config = build_config({"dataset": csv, "out": tmp_path / "run", "split": "k2",
                           "modalities": ["acoustic", "lexical"], "inner_folds": 2,
                           "cache_dir": csv.parent / "pooled-cache", **options})  # shared
    data = prepare_data(config)
    manifest = data.manifest
    spec = available_models()[config.model]
    setup = make_setup(config, _system_inputs(data, config, spec), manifest.y, manifest.speakers,
                       list(manifest.modalities), len(manifest.label_names))
    fold = make_outer_folds(config.split, manifest.table, manifest.y, config.seed)[0]
    output = run_fold(fold, setup)
    for name, probabilities in output.probabilities.items():
        assert probabilities.shape == (len(fold.test), 4), name
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, err_msg=name)
    return output.probabilities


def _quick_grid(model: str) -> dict[str, list] | None:
    """The model's grid cut to two candidates (the inner grid search still runs), ensembles cut
    by `ENSEMBLE_SIZE`; None (the model's own search) for a model without a grid or a portfolio
    such as auto."""
    spec = available_models()[model]
    if not spec.grid or getattr(spec, "portfolio", ()):
        return None
    grid = {key: values[:1] for key, values in spec.grid.items()}
    first = next(iter(spec.grid))
    grid[first] = spec.grid[first][:2]
    return {**grid, **ENSEMBLE_SIZE.get(model, {})}


def _pooled_models() -> list[str]:
    return sorted(n for n, s in available_models().items() if s.input == "pooled"
                  and not getattr(s.build, "__module__", "").startswith("emofusion.models.deep"))


def _classical_matrix() -> list:
    """Every (model, imbalance, scaling); the product beyond each model with every imbalance
    option (standard scaling) and every scaling with lda and logreg is marked slow."""
    quick = {(m, i, "standard") for m in _pooled_models() for i in IMBALANCE}
    quick |= {(m, i, s) for m in ("lda", "logreg") for i in IMBALANCE for s in SCALING}
    return [pytest.param(m, i, s, marks=() if (m, i, s) in quick else pytest.mark.slow)
            for m in _pooled_models() for i in IMBALANCE for s in SCALING]


@pytest.mark.parametrize(("model", "imbalance", "scaling"), _classical_matrix())
def test_every_classical_combination_runs_every_system(matrix_csv, tmp_path, model, imbalance,
                                                       scaling):
    probabilities = _run_first_fold(matrix_csv, tmp_path, model=model, imbalance=imbalance,
                                    scaling=scaling, param_grid=_quick_grid(model))
    assert set(probabilities) == {"acoustic", "lexical", "early", "late_vote", "late_mean",
                                  "stacking"}


def _deep_models() -> list[str]:
    return sorted(n for n, s in available_models().items() if n not in RAW_MEDIA_MODELS
                  and n not in _pooled_models() and s.input != "text")


@pytest.mark.slow
@pytest.mark.parametrize("imbalance", IMBALANCE)
@pytest.mark.parametrize("model", _deep_models())
def test_every_deep_combination_runs_or_is_refused_clearly(matrix_csv, tmp_path, model,
                                                           imbalance):
    spec = available_models()[model]
    options = {"model": model, "imbalance": imbalance, "param_grid": {"max_epochs": [1]}}
    if imbalance == "smote" and spec.input == "sequence":
        with pytest.raises(ConfigError, match="smote interpolates feature vectors"):
            build_config({"dataset": matrix_csv, **options})
        return
    scalings = SCALING if spec.input == "pooled" else ["standard"]
    for scaling in scalings:
        probabilities = _run_first_fold(matrix_csv, tmp_path / scaling, scaling=scaling, **options)
        assert {"late_mean", "stacking"} <= set(probabilities)
