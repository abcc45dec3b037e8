"""A fitted model that predicts new utterances, saved without pickle.

A saved model is one zip file holding ``model.json`` (label names, modalities and their widths,
pooling, system, scaling, the extractors that made the features) and ``estimator.skops`` (the
fitted estimator in skops' safe format). Before anything in the estimator file is built,
loading lists the types it would create: beyond those skops trusts by default (NumPy arrays,
builtin containers, scikit-learn estimators), only the exact types of `SAVED_MODEL_TYPES`,
which emofusion itself writes, are accepted. Anything else (``builtins.eval``, ``os.system``,
``torch.load``, a user's own class, ...) is refused unless the user passes ``trust=True``
(``--trust`` on the command line).
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

# Every type that skops does not trust by default (``skops.io.get_untrusted_types``) and that a
# model file written by emofusion holds, for every registered model, system and imbalance
# option. Exact names, never prefixes: a whole namespace (``builtins.``, ``torch.``) contains
# functions that run code when a file names them. Each entry was reviewed: skops rebuilds it
# from stored attributes and arrays, and it runs no code named by the file. A new estimator
# class must be reviewed the same way and added here; tests/models/test_saved_model_safety.py
# names every type that a saved model holds and this set lacks.
SAVED_MODEL_TYPES: frozenset[str] = frozenset({
    # emofusion estimators
    "emofusion.evaluation.nested.SearchedClassifier",
    "emofusion.fusion.late.LateFusionClassifier",
    "emofusion.fusion.stacking.FixedWeighting",
    "emofusion.fusion.stacking.StackingFusionClassifier",
    "emofusion.models.classical.CalibratedSVC",
    "emofusion.models.classical.NearestNeighboursClassifier",
    "emofusion.models.layer_selector.LayerSelector",
    "emofusion.models.lda.ShrinkageLDA",
    "emofusion.models.pipeline.GroupResampledClassifier",
    "emofusion.models.text.TfidfClassifier",
    "emofusion.models.deep.e2e.EmbeddingFusionHead",
    "emofusion.models.deep.e2e.EndToEndFusionClassifier",
    "emofusion.models.deep.mlp.TorchMLPClassifier",
    "emofusion.models.deep.sequence.SequenceClassifier",
    "emofusion.models.deep.spectrogram.SpectrogramCNNClassifier",
    "emofusion.models.deep.text.TextFinetuneClassifier",
    # scikit-learn internals of fitted estimators (svm, rf, gb, mlp_sklearn)
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.tree._tree.Tree",
})


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
        speaker_fallback: per normalised input (each feature modality, or ``early`` of a
            sequence model), the (mean, std) lists used for speakers without statistics.
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
    protocol: str = "speaker_independent"
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
    payload = skops.io.dumps(model.estimator)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("model.json", json.dumps(asdict(model.card), indent=1))
            archive.writestr("estimator.skops", payload)
    except OSError as exc:  # no permission, a folder in the way, a read-only file system
        raise EmofusionError(f"cannot write the model file {path} ({exc.strerror or exc}); "
                             "choose another --out") from exc
    return path


def load_model(path: Path, *, trust: bool = False) -> SavedModel:
    """Read a saved model.

    Args:
        path: the file written by `save_model`.
        trust: also load types that emofusion does not write (only for files you trust: such a
            type can run code while it is loaded).

    Raises:
        EmofusionError: unreadable file, or types that need ``trust``.
    """
    import skops.io

    try:
        with zipfile.ZipFile(path) as archive:
            card = ModelCard(**json.loads(archive.read("model.json")))
            payload = archive.read("estimator.skops")
        present = skops.io.get_untrusted_types(data=payload)  # constructs nothing
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        raise EmofusionError(f"{path}: not an emofusion model file ({exc}); create one with "
                             "`emofusion train`") from exc
    refused = sorted(set(present) - SAVED_MODEL_TYPES)
    if refused and not trust:
        raise EmofusionError(f"{path} contains types that emofusion does not write: {refused}. "
                             "Loading them could run code from the file; load it only if you "
                             "trust its source (--trust).")
    return SavedModel(card, skops.io.loads(payload, trusted=present))
