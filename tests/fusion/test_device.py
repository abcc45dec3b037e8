"""`--device` reaches every PyTorch model of a run and is refused when it cannot be honoured."""

from __future__ import annotations

import numpy as np
import pytest

from emofusion.config import build_config
from emofusion.errors import ConfigError
from emofusion.evaluation.experiment import make_plan
from emofusion.models.pipeline import core_classifier


def _base(model: str, device: str):
    config = build_config({"dataset": "d.csv", "model": model, "device": device})
    inputs = {"a": np.zeros((4, 2)), "b": np.zeros((4, 2))}
    [(_, pipeline, _)] = make_plan(config, inputs, ["a", "b"]).base_estimator("a").candidates
    return core_classifier(pipeline)


def test_device_reaches_pytorch_models_only():
    pytest.importorskip("torch")
    assert _base("mlp", "auto").device == "auto"
    assert _base("mlp", "cpu").device == "cpu"
    assert "device" not in _base("lda", "auto").get_params()


def test_cuda_without_a_gpu_is_refused_up_front():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        build_config({"dataset": "d.csv", "model": "mlp", "device": "cuda"})
