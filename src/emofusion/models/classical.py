"""Classical classifiers on pooled features, registered by name.

All are scikit-learn estimators. The default, `lda`, is `emofusion.models.lda.ShrinkageLDA` with
its shrinkage chosen by an efficient speaker-grouped search inside the training speakers.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted, validate_data

from emofusion.models.lda import ShrinkageLDA
from emofusion.models.registry import ModelSpec, register
from emofusion.models.text import TfidfClassifier


def _portfolio_build(seed: int, class_weight: str | None):
    raise TypeError("a portfolio is searched through its members (SearchedClassifier)")


class CalibratedSVC(ClassifierMixin, BaseEstimator):
    """An SVC with calibrated probabilities (sigmoid calibration on internal 5-fold CV of the
    training data, one final SVC), exposing the SVC's own hyper-parameters for grid search.

    This is what ``SVC(probability=True)`` did before scikit-learn deprecated it in favour of
    ``CalibratedClassifierCV(SVC(), ensemble=False)``.
    """

    def __init__(self, C=1.0, kernel="rbf", gamma="scale", degree=3, class_weight=None,
                 random_state=None):
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.degree = degree
        self.class_weight = class_weight
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def fit(self, X, y):
        """Fit on X (n, d), y (n,)."""
        X, y = validate_data(self, X, y, accept_sparse=True)
        svc = SVC(C=self.C, kernel=self.kernel, gamma=self.gamma, degree=self.degree,
                  class_weight=self.class_weight, random_state=self.random_state)
        self.calibrated_ = CalibratedClassifierCV(svc, ensemble=False).fit(X, y)
        self.classes_ = self.calibrated_.classes_
        return self

    def predict_proba(self, X):
        """(n, n_classes) calibrated probabilities."""
        check_is_fitted(self)
        return self.calibrated_.predict_proba(X)

    def predict(self, X):
        """The SVC's own decision per row, shape (n,) (as ``SVC.predict``; it honours
        class weights, which the probability calibration does not)."""
        check_is_fitted(self)
        return self.calibrated_.calibrated_classifiers_[0].estimator.predict(X)


class NearestNeighboursClassifier(ClassifierMixin, BaseEstimator):
    """k nearest neighbours with k capped at the number of training rows (small inner folds of
    a small corpus can hold fewer rows than the grid's k)."""

    def __init__(self, n_neighbors: int = 5):
        self.n_neighbors = n_neighbors

    def fit(self, X, y):
        """Fit on X (n, d), y (n,)."""
        X, y = validate_data(self, X, y)
        # brute force: no tree objects in saved model files (see models/saved.py)
        self.knn_ = KNeighborsClassifier(min(self.n_neighbors, len(X)), algorithm="brute").fit(X, y)
        self.classes_ = self.knn_.classes_
        return self

    def predict_proba(self, X):
        """(n, n_classes) neighbour votes."""
        check_is_fitted(self)
        return self.knn_.predict_proba(validate_data(self, X, reset=False))

    def predict(self, X):
        """Class per row, shape (n,)."""
        probabilities = self.predict_proba(X)
        return self.classes_[probabilities.argmax(axis=1)]


def _spec(name: str, description: str, build, grid=None, weighted: bool = True,
          scale_invariant: bool = False) -> None:
    register(ModelSpec(name=name, description=description, build=build, grid=grid or {},
                       supports_class_weight=weighted, scale_invariant=scale_invariant))


_spec("lda", "Shrinkage LDA, shrinkage searched over speaker-grouped inner folds on an efficient "
      "path (fast strong default)",
      lambda seed, cw: ShrinkageLDA(shrinkage="cv", class_weight=cw), scale_invariant=True)
_spec("lda_lw", "Shrinkage LDA with the analytic Ledoit-Wolf intensity (no search)",
      lambda seed, cw: ShrinkageLDA(shrinkage="auto", class_weight=cw), scale_invariant=True)
_spec("svm", "SVC with probabilities; grid C {0.1,1,10} x kernel {linear,rbf,poly} (course grid)",
      lambda seed, cw: CalibratedSVC(class_weight=cw, random_state=seed),
      {"C": [0.1, 1, 10], "kernel": ["linear", "rbf", "poly"]})
_spec("svm_rbf", "RBF SVC with probabilities; grid C {1,10}",
      lambda seed, cw: CalibratedSVC(kernel="rbf", class_weight=cw, random_state=seed),
      {"C": [1, 10]})
_spec("logreg", "Multinomial logistic regression; grid C {0.01,0.1,1}",
      lambda seed, cw: LogisticRegression(max_iter=2000, class_weight=cw),
      {"C": [0.01, 0.1, 1.0]})
_spec("rf", "Random forest; grid n_estimators {50,100,200} x max_depth {None,10,20} (course grid)",
      lambda seed, cw: RandomForestClassifier(class_weight=cw, random_state=seed, n_jobs=1),
      {"n_estimators": [50, 100, 200], "max_depth": [None, 10, 20]})
_spec("gb", "Histogram gradient boosting; grid learning_rate {0.05,0.1}",
      lambda seed, cw: HistGradientBoostingClassifier(class_weight=cw, random_state=seed),
      {"learning_rate": [0.05, 0.1]})
_spec("knn", "k nearest neighbours; grid k {5,15,31} (at most the training rows)",
      lambda seed, cw: NearestNeighboursClassifier(), {"n_neighbors": [5, 15, 31]}, weighted=False)
_spec("mlp_sklearn", "scikit-learn MLP 128-64 with early stopping inside the training data",
      lambda seed, cw: MLPClassifier(hidden_layer_sizes=(128, 64), early_stopping=True,
                                     max_iter=300, random_state=seed),
      {"alpha": [1e-4, 1e-2]}, weighted=False)
_spec("svm_linear", "Linear SVC with probabilities; grid C {0.01,0.1}",
      lambda seed, cw: CalibratedSVC(kernel="linear", class_weight=cw, random_state=seed),
      {"C": [0.01, 0.1]})
register(ModelSpec(
    name="tfidf", description="Transcripts: word 1-2-gram TF-IDF (fitted in each training fold) + "
    "logistic regression; grid class_weight {none, balanced}",
    build=lambda seed, cw: TfidfClassifier(class_weight=cw, random_state=seed),
    grid={"class_weight": [None, "balanced"]}, input="text"))
register(ModelSpec(
    name="auto", description="Per system, the best of lda, logreg (up to 4M rows x features) and "
    "svm_rbf (up to 2,000 rows and 1M rows x features), family and grid chosen on the training "
    "speakers' inner folds",
    build=_portfolio_build, portfolio=("lda", "logreg", "svm_rbf"), scale_invariant=True,
    size_limits={"logreg": (None, 4e6), "svm_rbf": (2000, 1e6)}))
