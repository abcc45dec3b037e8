"""PyTorch models as scikit-learn estimators (needs ``pip install 'emofusion[deep]'``).

Importing this package imports torch (an ImportError tells the registry that deep models are
unavailable) and registers the deep models. See docs/deep_models.md for inputs and defaults.
"""

from __future__ import annotations

import torch  # noqa: F401  (ImportError here = deep models not listed)

from emofusion.models.deep._base import TorchClassifier
from emofusion.models.deep.e2e import EmbeddingFusionHead, EndToEndFusionClassifier
from emofusion.models.deep.mlp import TorchMLPClassifier
from emofusion.models.deep.sequence import SequenceClassifier
from emofusion.models.deep.spectrogram import SpectrogramCNNClassifier
from emofusion.models.deep.text import TextFinetuneClassifier
from emofusion.models.registry import ModelSpec, register

__all__ = [
    "EmbeddingFusionHead",
    "EndToEndFusionClassifier",
    "SequenceClassifier",
    "SpectrogramCNNClassifier",
    "TextFinetuneClassifier",
    "TorchClassifier",
    "TorchMLPClassifier",
]


def _sequence(encoder: str, **extra):
    def build(seed, class_weight):
        return SequenceClassifier(encoder=encoder, random_state=seed, class_weight=class_weight,
                                  **extra)
    return build


def _fusion(fusion: str):
    return _sequence("attention", fusion=fusion, modality_dropout=0.25)


_SPECS = [
    ModelSpec(
        "mlp",
        "PyTorch MLP 128-64 (ReLU, dropout) on pooled features; early stopping on training "
        "speakers",
        lambda seed, cw: TorchMLPClassifier(random_state=seed, class_weight=cw),
        grid={"dropout": [0.2, 0.5]},
        input="pooled",
    ),
    ModelSpec(
        "gru",
        "BiGRU over frames with masked attention pooling",
        _sequence("gru"),
        grid={"hidden_size": [32, 64]},
        input="sequence",
    ),
    ModelSpec(
        "lstm",
        "BiLSTM over frames with masked attention pooling",
        _sequence("lstm"),
        grid={"hidden_size": [32, 64]},
        input="sequence",
    ),
    ModelSpec(
        "transformer",
        "Transformer encoder (2 layers, d_model 64, 4 heads) over frames + attention pooling",
        _sequence("transformer"),
        grid={"dropout": [0.1, 0.3]},
        input="sequence",
    ),
    ModelSpec(
        "attention",
        "Linear frame projection + learned attention pooling (cheap; emotion in few frames)",
        _sequence("attention"),
        grid={"hidden_size": [32, 64]},
        input="sequence",
    ),
    ModelSpec(
        "fusion_concat",
        "Model-level fusion: per-modality attention encoders, concatenated; modality dropout",
        _fusion("concat"),
        grid={"modality_dropout": [0.0, 0.25]},
        input="sequence",
        multimodal=True,
    ),
    ModelSpec(
        "fusion_gated",
        "Model-level fusion: per-modality attention encoders, gated multimodal unit; "
        "modality dropout",
        _fusion("gated"),
        grid={"modality_dropout": [0.0, 0.25]},
        input="sequence",
        multimodal=True,
    ),
    ModelSpec(
        "fusion_attention",
        "Model-level fusion: per-modality attention encoders, cross-modal attention; "
        "modality dropout",
        _fusion("attention"),
        grid={"modality_dropout": [0.0, 0.25]},
        input="sequence",
        multimodal=True,
    ),
    ModelSpec(
        "spectrogram_cnn",
        "End-to-end CNN over (T, 3*F) log-spectrogram + delta + delta-delta images",
        lambda seed, cw: SpectrogramCNNClassifier(random_state=seed, class_weight=cw),
        grid={},
        input="sequence",
    ),
    ModelSpec(
        "text_finetune",
        "Fine-tunes a local text encoder (default all-MiniLM-L6-v2) on raw transcripts",
        lambda seed, cw: TextFinetuneClassifier(random_state=seed, class_weight=cw),
        grid={},
        input="text",  # X = (n, 1) object array of transcripts
    ),
    ModelSpec(
        "e2e",
        "End-to-end audio + text: spectrogram CNN and fine-tuned text encoder, then a fusion "
        "head on their frozen embeddings (spectrogram3 features + transcript column)",
        lambda seed, cw: EndToEndFusionClassifier(
            cnn=SpectrogramCNNClassifier(), text=TextFinetuneClassifier(), head=EmbeddingFusionHead(),
            random_state=seed, class_weight=cw),
        grid={},
        input="sequence",
        multimodal=True,
        reads_transcripts=True,
    ),
    ModelSpec(
        "e2e_fusion_head",
        "End-to-end fusion head: frozen branch embeddings concatenated -> dropout -> linear",
        lambda seed, cw: EmbeddingFusionHead(random_state=seed, class_weight=cw),
        grid={"dropout": [0.2, 0.5]},
        input="sequence",
        multimodal=True,
    ),
]

for _spec in _SPECS:
    register(_spec)
