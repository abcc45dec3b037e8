"""The classical estimators emofusion adds pass scikit-learn's estimator checks (TfidfClassifier
reads text, so sklearn's numeric checks do not apply; it is tested in test_transcript_system)."""

from __future__ import annotations

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from emofusion.evaluation.nested import SearchedClassifier
from emofusion.models.classical import NearestNeighboursClassifier
from emofusion.models.lda import ShrinkageLDA
from emofusion.models.pipeline import GroupResampledClassifier


def _portfolio() -> SearchedClassifier:
    logreg = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    lda = Pipeline([("clf", ShrinkageLDA(shrinkage="cv"))])
    return SearchedClassifier([("logreg", logreg, {"C": [0.1, 1.0]}), ("lda", lda, {})],
                              inner_folds=2)


@pytest.mark.parametrize("estimator", [
    NearestNeighboursClassifier(),
    GroupResampledClassifier(LogisticRegression(), "oversample"),
    GroupResampledClassifier(ShrinkageLDA(shrinkage="cv"), "smote"),
    _portfolio(),
], ids=["knn", "oversample", "smote-lda", "portfolio"])
def test_sklearn_estimator_checks(estimator):
    check_estimator(estimator)
