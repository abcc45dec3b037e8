"""ShrinkageLDA on wide features (d > n): the dual (Woodbury) solver fits the primal model and
its speaker-grouped search equals fixed-shrinkage refits; and a fit never fails on finite input
(tiny within-class variance, constant or collinear features, no shrinkage)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import get_scorer

from emofusion.evaluation.splits import inner_folds
from emofusion.models.lda import SOLVERS, ShrinkageLDA

WIDE = (8, 10, 150)  # speakers, rows per speaker, features: 80 rows, 150 features
TALL = (8, 30, 12)


def _speakers_and_classes(n_speakers: int, per_speaker: int, d: int, seed: int = 0):
    """(X (n, d), y (n,), speakers (n,)): correlated features (rank-10 signal plus noise) in
    unequal units, a shift per speaker, and 4 classes that move the first 5 features."""
    rng = np.random.default_rng(seed)
    n = n_speakers * per_speaker
    y = rng.permutation(np.arange(n) % 4)
    speakers = np.repeat(np.arange(n_speakers), per_speaker)
    X = rng.standard_normal((n, 10)) @ rng.standard_normal((10, d)) + rng.standard_normal((n, d))
    X += rng.standard_normal((n_speakers, d))[speakers]
    X[:, :5] += 0.8 * y[:, None]
    return X * rng.uniform(0.1, 10.0, d) + rng.uniform(-5.0, 5.0, d), y, speakers


def _fit_both(X, y, speakers, **params) -> tuple[ShrinkageLDA, ShrinkageLDA]:
    primal = ShrinkageLDA(solver="primal", **params).fit(X, y, groups=speakers)
    dual = ShrinkageLDA(solver="dual", **params).fit(X, y, groups=speakers)
    assert (primal.solver_, dual.solver_) == ("primal", "dual")
    return primal, dual


@pytest.mark.parametrize("shape", [WIDE, TALL], ids=["d>n", "d<n"])
@pytest.mark.parametrize("params", [
    {"shrinkage": "cv"},
    {"shrinkage": "cv", "class_weight": "balanced", "scoring": "f1_macro",
     "shrinkage_grid": (0.05, 0.3, "auto", 0.9)},
    {"shrinkage": "auto"},
    {"shrinkage": 0.05},
], ids=["cv", "cv-weighted-f1-auto", "ledoit-wolf", "fixed"])
def test_the_dual_solver_fits_the_primal_model(shape, params):
    X, y, speakers = _speakers_and_classes(*shape)
    primal, dual = _fit_both(X, y, speakers, **params)
    assert dual.shrinkage_ == pytest.approx(primal.shrinkage_, rel=1e-5)
    np.testing.assert_allclose(dual.predict_proba(X), primal.predict_proba(X), atol=1e-5)
    scores = primal.decision_function(X)
    np.testing.assert_allclose(dual.decision_function(X), scores, atol=1e-5 * np.abs(scores).max())
    if params["shrinkage"] == "cv":  # candidates ranked in single precision (primal)
        assert dual.best_params_ == primal.best_params_
        assert dual.best_score_ == pytest.approx(primal.best_score_, abs=1e-3)
        assert dual.cv_scores_ == pytest.approx(primal.cv_scores_, abs=1e-3)
        np.testing.assert_allclose(dual.oof_proba_, primal.oof_proba_, atol=1e-5)
        for ours, theirs in zip(dual.cv_held_out_, primal.cv_held_out_, strict=True):
            np.testing.assert_array_equal(ours, theirs)


def test_auto_uses_the_dual_solver_exactly_when_features_outnumber_rows():
    X, y, _ = _speakers_and_classes(4, 10, 41)
    assert ShrinkageLDA(solver="auto").fit(X, y).solver_ == "dual"
    assert ShrinkageLDA(solver="auto").fit(X[:, :40], y).solver_ == "primal"
    with pytest.raises(ValueError, match="solver must be one of"):
        ShrinkageLDA(solver="svd").fit(X, y)


@pytest.mark.parametrize("scoring", ["balanced_accuracy", "matthews_corrcoef"])
def test_the_wide_search_equals_fixed_shrinkage_refits(scoring):
    """Each candidate's inner score, and the out-of-fold probabilities at the chosen one, are
    those of primal fixed-shrinkage fits on the same speaker-grouped inner folds."""
    X, y, speakers = _speakers_and_classes(*WIDE, seed=1)
    model = ShrinkageLDA(shrinkage="cv", scoring=scoring).fit(X, y, groups=speakers)
    assert model.solver_ == "dual"
    folds = inner_folds(y, speakers, 3)
    scorer = get_scorer(scoring)
    refits = {str(value): [ShrinkageLDA(shrinkage=value, solver="primal").fit(X[train], y[train])
                           for train, _ in folds] for value in model.shrinkage_grid}
    expected = {value: np.mean([scorer(fitted, X[held], y[held])
                                for fitted, (_, held) in zip(fits, folds, strict=True)])
                for value, fits in refits.items()}
    assert model.cv_scores_ == pytest.approx(expected, abs=1e-3)
    best = max(expected, key=expected.get)
    assert model.best_params_ == {"shrinkage": float(best)}
    for fitted, (_, held) in zip(refits[best], folds, strict=True):
        np.testing.assert_allclose(model.oof_proba_[held], fitted.predict_proba(X[held]), atol=1e-5)


def _near_identical_utterances(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X (16, 33), labels (16,)): a small copy of the failing case found on pure-tone wavs
    through a tiny hf_audio encoder: two classes whose rows are almost identical (within-class
    standard deviation 1e-6 to 1e-3 of the total), standardised features, one constant."""
    rng = np.random.default_rng(seed)
    labels = np.tile(["anger", "happiness"], 8)
    sign = np.where(labels == "anger", 1.0, -1.0)[:, None]
    X = sign * rng.choice([-1.0, 1.0], 32) + rng.standard_normal((16, 32)) * 10 ** rng.uniform(-6, -3, 32)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return np.c_[X, np.full(16, 0.5)], labels


@pytest.mark.parametrize("solver", ["primal", "dual"])
@pytest.mark.parametrize("shrinkage", [0.8, 0.3, 0.0, "auto", "cv"])
def test_tiny_within_class_variance_fits_without_error(shrinkage, solver):
    X, labels = _near_identical_utterances()
    speakers = np.arange(16) // 4
    model = ShrinkageLDA(shrinkage=shrinkage, solver=solver).fit(X, labels, groups=speakers)
    np.testing.assert_array_equal(model.predict(X), labels)
    assert np.isfinite(model.coef_).all() and np.isfinite(model.predict_proba(X)).all()
    if shrinkage != 0.0:  # without shrinkage the (singular, d > n) model is not unique
        reference = ShrinkageLDA(shrinkage=model.shrinkage_, solver="dual").fit(X, labels)
        coef = reference.coef_[1] - reference.coef_[0]
        np.testing.assert_allclose(model.coef_[1] - model.coef_[0], coef,
                                   atol=1e-4 * np.abs(coef).max())


def test_no_shrinkage_on_collinear_features_is_sklearns_lda():
    """Duplicated features make the covariance singular: the single-precision factorisation
    fails and the fit falls back to double precision; the classes' means lie in the
    covariance's range, so the model is still the least-squares LDA of scikit-learn."""
    rng = np.random.default_rng(0)
    y = np.arange(300) % 3
    X = rng.standard_normal((300, 6)) + y[:, None]
    X = np.c_[X, X[:, :4], 2.0 * X[:, :4]]
    ours = ShrinkageLDA(shrinkage=0.0, solver="primal").fit(X, y)
    theirs = LinearDiscriminantAnalysis(solver="lsqr").fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(6, 40), d=st.integers(1, 60),
       shrinkage=st.sampled_from([0.0, 1e-6, 0.5, 1.0, "auto", "cv"]),
       solver=st.sampled_from(SOLVERS), magnitude=st.sampled_from([1e-30, 1.0, 1e30]))
def test_any_finite_input_fits_with_valid_probabilities(seed, n, d, shrinkage, solver, magnitude):
    """Constant, duplicated and class-constant features in tiny or huge units, any intensity."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.standard_normal((n, d))
    kind = rng.integers(0, 4, d)  # 0 plain, 1 constant, 2 a copy of feature 0, 3 class-constant
    X[:, kind == 1] = rng.standard_normal()
    X[:, kind == 2] = X[:, [0]]
    X[:, kind == 3] = y[:, None] + 1e-9 * X[:, kind == 3]
    X *= magnitude
    model = ShrinkageLDA(shrinkage=shrinkage, solver=solver).fit(X, y, groups=np.arange(n) % 3)
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(model.predict(X)) <= {0, 1, 2}
