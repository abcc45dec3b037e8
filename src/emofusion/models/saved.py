"""A fitted model that predicts new utterances, saved without pickle.

A saved model is one zip file holding ``model.json`` (label names, modalities and their widths,
pooling, system, scaling, the extractors that made the features) and ``estimator.skops`` (the
fitted estimator in skops' safe format). Loading checks every type the estimator file would
create; types outside emofusion, scikit-learn, imbalanced-learn, NumPy and SciPy are refused
unless the user passes ``trust=True`` (``--trust`` on the command line).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emofusion.errors import EmofusionError

FORMAT_VERSION = 1
TRUSTED_PREFIXES = ("emofusion.", "sklearn.", "imblearn.", "numpy.", "scipy.", "builtins.",
                    "collections.", "torch.")


@dataclass
class ModelCard:
    """What a saved model expects and how it was trained.

    Attributes:
        label_names: ordered class names.
        modalities: modality names in the order the estimator consumes them.
        widths: frame width per modality.
        pooling: pooling per modality (pooled models).
        system: the system trained (a modality name, ``early``, ``late_vote``, ...).
        model: registry name of the classifier.
        input: ``pooled`` or ``sequence``.
        scaling: the run's scaling option.
        speaker_fallback: per modality, (mean, std) lists used for speakers without statistics.
        extractors: per modality, the features.json entry of the extractor that made it.
        training: a short record of the training data (corpus, n utterances, speakers).
    """

    label_names: list[str]
    modalities: list[str]
    widths: dict[str, int]
    pooling: dict[str, str]
    system: str
    model: str
    input: str
    scaling: str = "standard"
    speaker_fallback: dict[str, list[list[float]]] = field(default_factory=dict)
    extractors: dict[str, dict[str, Any]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


@dataclass
class SavedModel:
    """A model card plus its fitted estimator."""

    card: ModelCard
    estimator: Any

    def predict_proba(self, X) -> np.ndarray:
        """(n, n_classes) probabilities in `card.label_names` order."""
        out = np.zeros((len(X), len(self.card.label_names)))
        out[:, self.estimator.classes_] = self.estimator.predict_proba(X)
        return out


def save_model(model: SavedModel, path: Path) -> Path:
    """Write `model` to one zip file at `path`."""
    import skops.io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.json", json.dumps(asdict(model.card), indent=1))
        archive.writestr("estimator.skops", skops.io.dumps(model.estimator))
    return path


def _untrusted(types: list[str]) -> list[str]:
    return [t for t in types if not t.startswith(TRUSTED_PREFIXES)]


def load_model(path: Path, *, trust: bool = False) -> SavedModel:
    """Read a saved model.

    Args:
        path: the file written by `save_model`.
        trust: also load types outside the known libraries (only for files you trust).

    Raises:
        EmofusionError: unreadable file, or types that need ``trust``.
    """
    import skops.io

    try:
        with zipfile.ZipFile(path) as archive:
            card = ModelCard(**json.loads(archive.read("model.json")))
            payload = archive.read("estimator.skops")
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, TypeError) as exc:
        raise EmofusionError(f"{path}: not an emofusion model file ({exc}); create one with "
                             "`emofusion train`") from exc
    types = skops.io.get_untrusted_types(data=payload)
    refused = _untrusted(types)
    if refused and not trust:
        raise EmofusionError(f"{path} contains types outside emofusion and its libraries: "
                             f"{refused}. Load it only if you trust its source (--trust).")
    estimator = skops.io.loads(payload, trusted=types)
    return SavedModel(card, estimator)
