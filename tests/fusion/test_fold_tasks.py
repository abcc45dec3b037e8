"""A run's fold is one task per base system, combined when all are done: the combination equals
the fold computed in one piece whatever order the tasks finish in, and late fusion and stacking
reuse the bases' test probabilities instead of predicting the test rows again."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from emofusion.config import build_config
from emofusion.evaluation import experiment
from emofusion.evaluation.nested import SearchedClassifier
from emofusion.models.registry import get_model
from emofusion.runner import _checked_folds, _system_inputs, prepare_data


@pytest.fixture(scope="module")
def setup_and_folds(clean_demo_csv, tmp_path_factory, fold_setup_maker):
    return fold_setup_maker(clean_demo_csv, tmp_path_factory.mktemp("o"), split="k3")


def test_each_base_predicts_the_test_rows_once_and_the_fusions_reuse_it(setup_and_folds,
                                                                        monkeypatch):
    setup, folds = setup_and_folds
    assert experiment.fold_bases(setup) == ["visual", "acoustic", "lexical", "early"]
    predicted_rows: list[int] = []
    real = SearchedClassifier.predict_proba

    def counting(self, X):
        predicted_rows.append(len(X))
        return real(self, X)

    monkeypatch.setattr(SearchedClassifier, "predict_proba", counting)
    output = experiment.run_fold(folds[0], setup)
    assert list(output.probabilities) == ["visual", "acoustic", "lexical", "early", "late_vote",
                                          "late_mean", "stacking"]
    assert predicted_rows == [len(folds[0].test)] * 4  # not again for late_vote/mean, stacking
    for probabilities in output.probabilities.values():
        assert probabilities.shape == (len(folds[0].test), setup.n_classes)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_tasks_finishing_in_any_order_make_the_folds_computed_in_one_piece(setup_and_folds):
    setup, folds = setup_and_folds
    folds = folds[:2]
    tasks = experiment.fold_tasks(folds, setup)
    assert [(fold.index, name) for fold, name in tasks] == [
        (fold.index, name) for fold in folds for name in ("visual", "acoustic", "lexical", "early")]
    outputs = [experiment.run_base(fold, name, setup.for_base(name)) for fold, name in tasks]
    order = np.random.default_rng(0).permutation(len(outputs))
    arrived: list[int] = []

    def finishing() -> object:
        for i in order:
            arrived.append(int(i))
            yield outputs[i]

    for fold_output in experiment.combined_folds(folds, setup, finishing()):
        index = fold_output.fold.index
        own = [i for i, (fold, _) in enumerate(tasks) if fold.index == index]
        assert set(own) <= set(arrived) and arrived[-1] in own  # yielded at its last task
        whole = experiment.run_fold(fold_output.fold, setup)
        assert list(fold_output.probabilities) == list(whole.probabilities)
        for system, probabilities in whole.probabilities.items():
            np.testing.assert_array_equal(fold_output.probabilities[system], probabilities,
                                          err_msg=system)
        assert fold_output.searches.keys() == whole.searches.keys()
    assert len(arrived) == len(outputs)


def test_speaker_scaling_normalises_the_inputs_once_for_all_folds(clean_demo_csv, tmp_path,
                                                                  monkeypatch):
    config = build_config({"dataset": clean_demo_csv, "out": tmp_path / "o", "split": "k3",
                           "use_cache": False, "scaling": "speaker",
                           "systems": ["unimodal", "early"]})
    data = prepare_data(config)
    manifest = data.manifest
    inputs = _system_inputs(data, config, get_model(config.model))
    setup = experiment.make_setup(config, inputs, manifest.y, manifest.speakers,
                                  list(manifest.modalities), len(manifest.label_names))
    assert setup.normalised
    per_task = replace(setup, inputs=inputs, normalised=False)  # each task normalises
    folds = _checked_folds(data, config)[:2]
    calls = []
    real = experiment.normalise_inputs
    monkeypatch.setattr(experiment, "normalise_inputs",
                        lambda *args: calls.append(args) or real(*args))
    once = [experiment.run_fold(fold, setup) for fold in folds]
    assert calls == []
    again = [experiment.run_fold(fold, per_task) for fold in folds]
    assert len(calls) == 2 * 4  # folds x bases
    for fold_once, fold_again in zip(once, again, strict=True):
        for system, probabilities in fold_again.probabilities.items():
            np.testing.assert_array_equal(fold_once.probabilities[system], probabilities)
