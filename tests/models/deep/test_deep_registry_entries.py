"""The deep models are registered with their input kind and small grids."""

from __future__ import annotations

import pytest
from sklearn.base import clone

import emofusion.models.deep  # noqa: F401  (registers the deep models)
from emofusion.models.registry import available_models

EXPECTED = {
    "mlp": ("pooled", False), "gru": ("sequence", False), "lstm": ("sequence", False),
    "transformer": ("sequence", False), "attention": ("sequence", False),
    "fusion_concat": ("sequence", True), "fusion_gated": ("sequence", True),
    "fusion_attention": ("sequence", True), "spectrogram_cnn": ("sequence", False),
    "text_finetune": ("text", False), "e2e_fusion_head": ("sequence", True),
    "e2e": ("sequence", True),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registered(name):
    spec = available_models()[name]
    assert (spec.input, spec.multimodal) == EXPECTED[name]
    est = spec.build(7, "balanced")
    params = est.get_params()
    assert params["random_state"] == 7 and params["class_weight"] == "balanced"
    assert params["n_threads"] == 1 and params["device"] == "cpu"
    for key, values in spec.grid.items():
        assert key in params and len(values) <= 2
    clone(est)


def test_fusion_models_use_modality_dropout():
    for name in ("fusion_concat", "fusion_gated", "fusion_attention"):
        est = available_models()[name].build(0, None)
        assert est.modality_dropout > 0 and est.fusion == name.split("_")[1]
