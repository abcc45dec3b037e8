"""scikit-learn's estimator checks on the pooled MLP and on the GRU sequence model."""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import check_estimator

from emofusion.models.deep import SequenceClassifier, TorchMLPClassifier


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_mlp_passes_check_estimator():
    est = TorchMLPClassifier(hidden_sizes=(32, 16), lr=1e-2, max_epochs=30, patience=5,
                             batch_size=64, random_state=0)
    check_estimator(est)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_gru_passes_check_estimator():
    # a numeric (n, d) matrix is one modality with one frame per utterance
    est = SequenceClassifier(encoder="gru", hidden_size=8, attention_size=8, lr=1e-2,
                             max_epochs=30, patience=5, batch_size=64, random_state=0)
    check_estimator(est)
