"""Named models: what `--model NAME` and `emofusion models` know about.

A `ModelSpec` builds a fresh, unfitted scikit-learn estimator and says which hyper-parameter grid
the nested search explores and what input the estimator consumes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

InputKind = Literal["pooled", "sequence", "text"]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model.

    Attributes:
        name: the name used on the command line and in configs.
        description: one line shown by `emofusion models`.
        build: ``build(seed, class_weight)`` returns an unfitted estimator; ``class_weight`` is
            ``"balanced"`` or ``None`` and is ignored by models that cannot weight classes.
        grid: default hyper-parameter grid, keys are the estimator's own parameter names.
        input: ``"pooled"`` for (n, d) float matrices, ``"sequence"`` for the (n, n_modalities)
            object array of frame sequences described in docs/ARCHITECTURE.md, ``"text"`` for an
            (n, 1) object array of transcripts.
        multimodal: True when one estimator consumes all modalities at once (model-level fusion).
        supports_class_weight: whether ``class_weight`` changes the estimator.
        scale_invariant: the model gives the same predictions for any per-feature affine
            rescaling of its input (so no StandardScaler is put in front of it).
        reads_transcripts: a sequence model that also takes the dataset's ``transcript``
            column as one more modality (cells are ``str``).
        portfolio: for a portfolio (e.g. ``auto``), the member models whose families and
            grids are compared on the speaker-grouped inner folds; ``build`` is then unused.
        size_limits: for a portfolio, member -> (max training rows, max rows x features)
            beyond which the member is not tried (see `SearchedClassifier`).
    """

    name: str
    description: str
    build: Callable[[int, str | None], Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    input: InputKind = "pooled"
    multimodal: bool = False
    supports_class_weight: bool = True
    scale_invariant: bool = False
    reads_transcripts: bool = False
    portfolio: tuple[str, ...] = ()
    size_limits: dict[str, tuple[int | None, float | None]] = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}
_LOADED: dict[str, bool] = {"classical": False, "deep": False}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (names are unique)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model '{spec.name}' is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_builtin_models(deep: bool = True) -> None:
    """Import the built-in model modules (they register on import); the deep ones (torch) only
    when `deep`. Tracked per group, so importing one group directly does not hide the other."""
    if not _LOADED["classical"]:
        from emofusion.models import classical  # noqa: F401  (registers on import)

        _LOADED["classical"] = True
    if deep and not _LOADED["deep"]:
        _LOADED["deep"] = True
        with contextlib.suppress(ImportError):  # without torch the deep models are not listed
            from emofusion.models import deep  # noqa: F401


def available_models() -> dict[str, ModelSpec]:
    """All registered models by name."""
    _load_builtin_models()
    return dict(_REGISTRY)


def get_model(name: str) -> ModelSpec:
    """Look a model up by name, with a clear error listing the known names."""
    from emofusion.errors import ConfigError

    _load_builtin_models(deep=False)  # classical names need no torch import (fold workers)
    models = dict(_REGISTRY) if name in _REGISTRY else available_models()
    if name not in models:
        known = ", ".join(sorted(models))
        hint = " (deep models need: pip install 'emofusion[deep]')" if "gru" not in models else ""
        raise ConfigError(f"unknown model '{name}'. Known models: {known}{hint}")
    return models[name]
