"""Classical models: ShrinkageLDA against direct solutions and sklearn, the course grids,
imbalance pipelines, and the late-fusion rules."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy.special import softmax
from sklearn.base import clone
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GroupKFold, ParameterGrid, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from emofusion.config import RunConfig, build_config
from emofusion.errors import ConfigError
from emofusion.evaluation.experiment import make_plan
from emofusion.evaluation.nested import fit_with_search
from emofusion.fusion.late import LateFusionClassifier, combine_probabilities
from emofusion.models.classical import ShrinkageLDA
from emofusion.models.pipeline import (
    CLASSIFIER_STEP,
    GroupResampledClassifier,
    build_pipeline,
    classifier_prefix,
    core_classifier,
    prefixed_grid,
)
from emofusion.models.registry import ModelSpec, available_models, get_model

SVM_GRID = {"C": [0.1, 1, 10], "kernel": ["linear", "rbf", "poly"]}
RF_GRID = {"n_estimators": [50, 100, 200], "max_depth": [None, 10, 20]}


def _classes_data(n: int, d: int, n_classes: int = 3, seed: int = 0):
    """Gaussian classes with different means and correlated, unequally scaled features."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    mixing = rng.standard_normal((d, d)) / np.sqrt(d) + np.eye(d)
    X = rng.standard_normal((n, d)) @ mixing * rng.uniform(0.5, 3.0, d)
    X += 1.5 * rng.standard_normal((n_classes, d))[y] + 4.0
    return X, y


def _direct_lda(X, y, intensity):
    """The model ShrinkageLDA documents, by plain numpy: features scaled to unit within-class
    variance, covariance (1 - s) S + s mu I, Gaussian class posteriors with frequency priors."""
    classes, codes = np.unique(y, return_inverse=True)
    n, d = X.shape
    means = np.array([X[codes == k].mean(axis=0) for k in range(len(classes))])
    centred = X - means[codes]
    scale = np.sqrt((centred**2).mean(axis=0))
    Z = centred / scale
    S = Z.T @ Z / n
    mu = np.trace(S) / d
    covariance = (1 - intensity) * S + intensity * mu * np.eye(d)
    scaled_means = means / scale
    W = np.linalg.solve(covariance, scaled_means.T)  # (d, K)
    priors = np.bincount(codes) / n
    coef = (W / scale[:, None]).T
    intercept = -0.5 * np.einsum("kd,dk->k", scaled_means, W) + np.log(priors)
    return coef, intercept, Z


def assert_same_discriminant(model, coef, intercept):
    """Linear class scores are defined up to a term shared by all classes (it depends on the
    origin of the features), so the differences to class 0 are compared. The tolerance allows
    for a single-precision Gram matrix; a wrong solve is off by far more."""
    ours, theirs = model.coef_ - model.coef_[0], coef - coef[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-5 * np.abs(theirs).max())
    ours, theirs = model.intercept_ - model.intercept_[0], intercept - intercept[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-5 * np.abs(theirs).max())


# ----------------------------------------------------------------------------- ShrinkageLDA


@pytest.mark.parametrize("estimator", [ShrinkageLDA(), ShrinkageLDA(shrinkage=0.2),
                                       ShrinkageLDA(class_weight="balanced")],
                         ids=["auto", "fixed", "balanced"])
def test_shrinkage_lda_passes_sklearn_check_estimator(estimator):
    check_estimator(estimator)


@pytest.mark.parametrize(("n", "d"), [(36, 90), (400, 12)], ids=["n<d (dual)", "n>=d (primal)"])
@pytest.mark.parametrize("intensity", [0.05, 0.3, 0.9])
def test_shrinkage_lda_matches_a_direct_numpy_solve(n, d, intensity):
    X, y = _classes_data(n, d)
    model = ShrinkageLDA(shrinkage=intensity).fit(X, y)
    coef, intercept, _ = _direct_lda(X, y, intensity)
    assert model.shrinkage_ == intensity
    assert_same_discriminant(model, coef, intercept)
    expected = softmax(X @ coef.T + intercept, axis=1)
    np.testing.assert_allclose(model.predict_proba(X), expected, atol=1e-4)
    confident = expected.max(axis=1) > 0.51  # rows not on a decision boundary
    np.testing.assert_array_equal(model.predict(X)[confident], np.argmax(expected, axis=1)[confident])


@pytest.mark.parametrize(("n", "d"), [(30, 70), (300, 15), (500, 40)])
def test_ledoit_wolf_intensity_equals_sklearn(n, d):
    X, y = _classes_data(n, d, seed=n)
    model = ShrinkageLDA(shrinkage="auto").fit(X, y)
    _, _, Z = _direct_lda(X, y, 0.0)
    expected = ledoit_wolf_shrinkage(Z, assume_centered=True)
    assert 0.0 < expected < 1.0
    assert model.shrinkage_ == pytest.approx(expected, rel=1e-5)
    assert_same_discriminant(model, *_direct_lda(X, y, expected)[:2])


def test_without_shrinkage_it_is_sklearn_lda():
    X, y = _classes_data(600, 8, n_classes=4)
    ours = ShrinkageLDA(shrinkage=0.0).fit(X, y)
    theirs = LinearDiscriminantAnalysis(solver="lsqr").fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_shrinkage_lda_handles_string_labels_weights_and_constant_features():
    X, y = _classes_data(120, 6)
    X[:, 2] = 7.0  # a constant feature must not break the within-class scaling
    names = np.array(["anger", "sadness", "happiness"])[y]
    model = ShrinkageLDA().fit(X, names)
    assert list(model.classes_) == ["anger", "happiness", "sadness"]
    assert set(model.predict(X)) <= set(names)
    assert (model.predict(X) == names).mean() > 0.8
    rare = np.r_[np.zeros(90, int), np.ones(10, int)]
    Xr = _classes_data(100, 4, n_classes=2)[0]
    plain = ShrinkageLDA().fit(Xr, rare)
    balanced = ShrinkageLDA(class_weight="balanced").fit(Xr, rare)
    # equal priors move the intercepts by exactly the log prior ratio
    shift = (balanced.intercept_ - plain.intercept_) - (balanced.intercept_ - plain.intercept_)[0]
    np.testing.assert_allclose(shift, [0.0, np.log(0.9 / 0.1)], atol=1e-8)
    with pytest.raises(ValueError, match="at least two classes"):
        ShrinkageLDA().fit(Xr, np.zeros(100, int))
    with pytest.raises(ValueError, match="shrinkage"):
        ShrinkageLDA(shrinkage=1.5).fit(Xr, rare)


# ----------------------------------------------------------------------------- grids


def test_course_grids_are_in_the_registry():
    models = available_models()
    assert {"lda", "svm", "rf", "logreg", "knn"} <= set(models)
    assert get_model("svm").grid == SVM_GRID
    assert get_model("rf").grid == RF_GRID
    with pytest.raises(ConfigError, match="unknown model 'nope'.*lda.*svm"):
        get_model("nope")


@pytest.mark.parametrize(("model", "grid"), [("svm", SVM_GRID), ("rf", RF_GRID)])
def test_course_grids_are_expressible_through_the_config(tmp_path, model, grid):
    config = build_config({"dataset": "data.csv", "model": model, "param_grid": grid})
    path = tmp_path / "run.yaml"
    path.write_text(config.to_yaml())
    loaded = RunConfig.from_yaml(path)
    assert loaded.param_grid == grid  # None survives YAML as null
    assert yaml.safe_load(path.read_text())["param_grid"] == grid

    spec = get_model(model)
    inputs = {"a": np.zeros((4, 2)), "b": np.zeros((4, 2)), "early": np.zeros((4, 4))}
    def searched_grid(config) -> dict:
        plan = make_plan(config, inputs, ["a", "b"])
        [(name, _, searched)] = plan.base_estimator("a").candidates
        assert name == model
        return searched

    assert searched_grid(loaded) == grid
    assert searched_grid(build_config({"dataset": "d.csv", "model": model})) == spec.grid

    candidates = list(ParameterGrid(prefixed_grid(grid)))
    assert len(candidates) == 9
    pipeline = build_pipeline(spec, seed=3)
    for candidate in candidates:
        pipeline.set_params(**candidate)  # every candidate names a real classifier parameter
        for key, value in candidate.items():
            assert pipeline.get_params()[key] == value


def test_svm_course_grid_search_runs_grouped(monkeypatch):
    X, y = _classes_data(90, 5, n_classes=3)
    speakers = np.repeat(np.array(["s1", "s2", "s3", "s4", "s5", "s6"]), 15)
    result = fit_with_search(build_pipeline(get_model("svm")), SVM_GRID, X, y, speakers,
                             inner_folds=3, scoring="balanced_accuracy")
    assert set(result.best_params) == {"C", "kernel"}
    assert result.best_params["C"] in SVM_GRID["C"]
    assert result.best_params["kernel"] in SVM_GRID["kernel"]
    assert 0.0 <= result.inner_score <= 1.0
    assert len(result.inner_speakers) == 3
    for train, validation in result.inner_speakers:
        assert not set(train) & set(validation)
        assert len(validation) == 2
    classifier = result.estimator.named_steps[CLASSIFIER_STEP]
    assert result.best_params["C"] == classifier.C
    assert result.estimator.predict_proba(X).shape == (90, 3)


# ----------------------------------------------------------------------------- imbalance


@pytest.mark.parametrize(("imbalance", "class_weight", "resampled"), [
    ("none", None, False),
    ("class_weight", "balanced", False),
    ("oversample", None, True),
    ("smote", None, True),
])
def test_imbalance_options_build_the_expected_pipeline(imbalance, class_weight, resampled):
    pipeline = build_pipeline(get_model("logreg"), imbalance=imbalance, seed=7)
    assert isinstance(pipeline, Pipeline)
    assert [name for name, _ in pipeline.steps] == ["scale", "clf"]
    assert isinstance(pipeline.named_steps["scale"], StandardScaler)
    step = pipeline.named_steps["clf"]
    assert isinstance(step, GroupResampledClassifier) is resampled
    assert core_classifier(pipeline).class_weight == class_weight
    if resampled:
        assert step.method == imbalance and step.random_state == 7

    # behaviour: the resampler balances only what the classifier is fitted on
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(80, int), np.ones(20, int)]
    X = rng.standard_normal((100, 3)) + y[:, None]
    pipeline.set_params(**{classifier_prefix(pipeline).removesuffix("__"):
                           DummyClassifier(strategy="prior")})
    fitted = pipeline.fit(X, y).named_steps["clf"]
    prior = (fitted.estimator_ if resampled else fitted).class_prior_
    np.testing.assert_allclose(prior, [0.5, 0.5] if resampled else [0.8, 0.2])
    assert len(pipeline.predict(X)) == 100  # nothing is resampled at prediction time


@pytest.mark.parametrize("method", ["oversample", "smote"])
def test_resampling_keeps_each_row_with_its_speaker(method):
    """Resampled rows keep their speaker, so a speaker-searching model (the default LDA) still
    searches on whole speakers; a synthetic SMOTE row belongs to its nearest original's speaker."""
    rng = np.random.default_rng(0)
    speakers = np.repeat(np.array(list("abcdef")), 20)
    y = np.where(np.arange(120) % 5 == 0, 1, 0)
    X = rng.standard_normal((120, 4)) + 5 * (speakers[:, None] == np.array(list("abcd")))
    seen = {}

    class Spy(ShrinkageLDA):
        def fit(self, X, y, groups=None):
            seen["X"], seen["y"], seen["groups"] = X, y, groups
            return super().fit(X, y, groups)

    model = GroupResampledClassifier(Spy(shrinkage="cv"), method, random_state=0)
    model.fit(X, y, groups=speakers)
    X_res, groups_res = seen["X"], seen["groups"]
    assert len(groups_res) == len(X_res) > 120
    assert np.bincount(seen["y"]).tolist() == [96, 96]
    for row, label, speaker in zip(X_res, seen["y"], groups_res, strict=True):
        same_class = np.flatnonzero(y == label)
        nearest = same_class[np.argmin(((X[same_class] - row) ** 2).sum(axis=1))]
        assert speakers[nearest] == speaker
    assert set(model.best_params_) == {"estimator__shrinkage"}


def test_class_weight_reaches_every_weighting_model():
    for name, spec in available_models().items():
        if spec.input != "pooled" or not spec.supports_class_weight or spec.portfolio:
            continue
        classifier = core_classifier(build_pipeline(spec, imbalance="class_weight"))
        assert classifier.get_params()["class_weight"] == "balanced", name


def test_smote_is_refused_and_oversampling_wraps_sequence_models():
    spec = ModelSpec("seq", "a sequence model", lambda seed, cw: DummyClassifier(),
                     input="sequence")
    with pytest.raises(ConfigError, match="smote interpolates feature vectors"):
        build_pipeline(spec, imbalance="smote")
    assert [n for n, _ in build_pipeline(spec, imbalance="class_weight").steps] == ["clf"]
    # sequences are repeated whole, with their speakers
    assert isinstance(build_pipeline(spec, imbalance="oversample").named_steps["clf"],
                      GroupResampledClassifier)


# ----------------------------------------------------------------------------- late fusion


def test_vote_tie_goes_to_the_highest_mean_probability():
    # three models, three different winners: a 3-way tie of one vote each
    p1 = np.array([[0.50, 0.30, 0.20]])
    p2 = np.array([[0.05, 0.60, 0.35]])
    p3 = np.array([[0.30, 0.25, 0.45]])
    mean = (p1 + p2 + p3) / 3
    assert np.argmax(mean) == 1
    fused = combine_probabilities([p1, p2, p3], "vote")
    assert np.argmax(fused) == 1
    # a 2-way tie among the voted classes ignores the unvoted class's mean
    q1 = np.array([[0.40, 0.05, 0.55]])
    q2 = np.array([[0.10, 0.85, 0.05]])
    assert np.argmax(combine_probabilities([q1, q2], "vote")) == 1  # mean favours class 1
    assert np.argmax(combine_probabilities([q2, q1], "vote")) == 1  # order does not matter


def test_vote_majority_beats_a_confident_minority():
    confident = np.array([[0.02, 0.97, 0.01]])
    weak = np.array([[0.40, 0.35, 0.25]])
    fused = combine_probabilities([weak, weak, confident], "vote")
    assert np.argmax(fused) == 0
    assert np.argmax(combine_probabilities([weak, weak, confident], "mean")) == 1


@pytest.mark.parametrize("rule", ["vote", "mean"])
def test_combined_rows_sum_to_one(rule):
    rng = np.random.default_rng(1)
    probabilities = [rng.dirichlet(np.ones(4), size=50) for _ in range(3)]
    fused = combine_probabilities(probabilities, rule)
    assert fused.shape == (50, 4)
    np.testing.assert_allclose(fused.sum(axis=1), 1.0)
    assert (fused >= 0).all()
    if rule == "mean":
        np.testing.assert_allclose(fused, np.mean(probabilities, axis=0))
    else:
        votes = sum(np.eye(4)[p.argmax(axis=1)] for p in probabilities)
        np.testing.assert_allclose(fused, (votes + 0.5 * np.mean(probabilities, axis=0)) / 3.5)


def test_late_fusion_classifier_is_a_usable_sklearn_estimator():
    X, y = _classes_data(120, 6, n_classes=3)
    model = LateFusionClassifier([("a", ShrinkageLDA()), ("b", ShrinkageLDA())],
                                 [(0, 3), (3, 6)], rule="vote")
    with pytest.raises(NotFittedError):
        model.predict_proba(X)
    fitted = clone(model).fit(X, y)
    per_modality = fitted.modality_probabilities(X)
    np.testing.assert_allclose(per_modality[0], ShrinkageLDA().fit(X[:, :3], y).predict_proba(X[:, :3]))
    np.testing.assert_allclose(fitted.predict_proba(X), combine_probabilities(per_modality, "vote"))
    np.testing.assert_array_equal(fitted.predict(X), fitted.predict_proba(X).argmax(axis=1))
    groups = np.repeat(np.arange(6), 20)
    scores = cross_val_score(model, X, y, groups=groups, cv=GroupKFold(3))
    assert scores.shape == (3,) and (scores > 1 / 3).all()
    assert model.get_params()["rule"] == "vote"


def test_calibrated_svc_passes_check_estimator_and_keeps_the_course_grid():
    from emofusion.models.classical import CalibratedSVC

    check_estimator(CalibratedSVC())
    assert set(SVM_GRID) <= set(CalibratedSVC().get_params())


def test_stacking_reuses_the_lda_search_out_of_fold_probabilities_exactly():
    from emofusion.evaluation.splits import inner_folds
    from emofusion.fusion.stacking import frozen_clone, out_of_fold_probabilities

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    X = rng.normal(size=(600, 50))
    X[:, 0] += y
    groups = np.repeat(np.arange(6), 100)
    model = ShrinkageLDA(shrinkage="cv").fit(X, y, groups=groups)
    folds = inner_folds(y, groups, 3)
    reused = out_of_fold_probabilities(model, X, y, folds, 4)
    refitted = np.zeros_like(reused)
    for train, held_out in folds:
        refitted[held_out] = frozen_clone(model).fit(X[train], y[train]).predict_proba(X[held_out])
    np.testing.assert_allclose(reused, refitted, atol=1e-5)
    other_folds = inner_folds(y, None, 3)  # different folds: must refit, not reuse
    assert not np.allclose(out_of_fold_probabilities(model, X, y, other_folds, 4), reused)


def test_shrinkage_lda_refit_without_search_forgets_the_old_search():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 5)), np.arange(80) % 2
    model = ShrinkageLDA(shrinkage="cv").fit(X, y, groups=np.arange(80) % 4)
    assert set(model.best_params_) == {"shrinkage"} and 0 <= model.best_score_ <= 1
    model.set_params(shrinkage=0.5, shrinkage_grid=None).fit(X, y)
    assert not hasattr(model, "best_params_") and not hasattr(model, "oof_proba_")
