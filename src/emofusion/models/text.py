"""Classical transcript models: TF-IDF of word and character n-grams and a linear classifier.

The vectoriser is part of the estimator, so its vocabulary and IDF are fitted on the training
rows it is given (inside each training fold, inside each inner fold of the search) and never on
a test speaker's text.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from emofusion.models.pipeline import make_sampler


def transcript_column(X) -> np.ndarray:
    """The transcripts of X, an (n, 1) object array (or (n,) sequence), as (n,) str."""
    array = np.asarray(X, dtype=object)
    column = array[:, 0] if array.ndim == 2 else array
    return np.array(["" if value is None else str(value) for value in column], dtype=object)


class TfidfClassifier(ClassifierMixin, BaseEstimator):
    """Word (1-2)-gram TF-IDF (sublinear tf), optionally with character (2-5)-grams, + logistic
    regression. (On MELD, character n-grams cost twice the time and did not help.)

    Args:
        C: inverse regularisation strength of the logistic regression.
        use_chars: add character n-grams within word boundaries (robust to spelling, any script).
        min_df: minimum document frequency of a kept n-gram.
        class_weight: ``"balanced"`` or None.
        resample: None, ``"oversample"`` or ``"smote"`` (on the TF-IDF vectors of the training
            rows, since raw text cannot be interpolated).
        random_state: seed of the resampler.
    """

    def __init__(self, C: float = 1.0, use_chars: bool = False, min_df: int = 1,
                 class_weight=None, resample: str | None = None, random_state: int = 0):
        self.C = C
        self.use_chars = use_chars
        self.min_df = min_df
        self.class_weight = class_weight
        self.resample = resample
        self.random_state = random_state

    def _vectorisers(self) -> list[TfidfVectorizer]:
        words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=self.min_df,
                                token_pattern=r"(?u)\b\w+\b|[!?]")
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                                min_df=self.min_df)
        return [words, chars] if self.use_chars else [words]

    def _transform(self, texts: np.ndarray):
        return sparse.hstack([v.transform(texts) for v in self.vectorisers_]).tocsr()

    def _resampled(self, features, y):
        if self.resample is None:
            return features, y
        return make_sampler(self.resample, y, self.random_state).fit_resample(features, y)

    def fit(self, X, y):
        """Fit on X, an (n, 1) object array of transcripts, and y (n,)."""
        texts = transcript_column(X)
        self.vectorisers_ = [v.fit(texts) for v in self._vectorisers()]
        self.n_documents_ = len(texts)  # what the vocabulary and IDF were fitted on (audit)
        features, targets = self._resampled(self._transform(texts), np.asarray(y))
        self.classifier_ = LogisticRegression(C=self.C, class_weight=self.class_weight,
                                              max_iter=3000).fit(features, targets)
        self.classes_ = self.classifier_.classes_
        return self

    def predict_proba(self, X):
        """(n, n_classes) probabilities for (n, 1) transcripts."""
        check_is_fitted(self)
        return self.classifier_.predict_proba(self._transform(transcript_column(X)))

    def predict(self, X):
        """Class per row, shape (n,)."""
        probabilities = self.predict_proba(X)
        return self.classes_[probabilities.argmax(axis=1)]
