"""Turn a model name and the run's options into a scikit-learn (imbalanced-learn) pipeline.

Scaling and resampling live inside the pipeline, so cross-validation and grid search refit them
on each training part only: nothing is fitted on held-out speakers.
"""

from __future__ import annotations

from typing import Any

from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from emofusion.errors import ConfigError
from emofusion.models.registry import ModelSpec

CLASSIFIER_STEP = "clf"


def build_pipeline(spec: ModelSpec, *, imbalance: str = "none", scale: bool = True,
                   seed: int = 0) -> Pipeline:
    """scaler -> optional resampler -> classifier.

    Args:
        spec: the model.
        imbalance: ``none``, ``class_weight``, ``oversample`` (RandomOverSampler) or ``smote``.
        scale: add a StandardScaler (pooled models that are not scale-invariant; sequence models
            standardise inside).
        seed: random state of resampler and classifier.
    """
    if spec.input == "sequence" and imbalance in ("oversample", "smote"):
        raise ConfigError(f"model '{spec.name}' takes frame sequences; use --imbalance "
                          "class_weight instead of resampling")
    steps: list[tuple[str, Any]] = []
    if scale and spec.input == "pooled" and not spec.scale_invariant:
        steps.append(("scale", StandardScaler()))
    if imbalance == "oversample":
        steps.append(("resample", RandomOverSampler(random_state=seed)))
    elif imbalance == "smote":
        steps.append(("resample", SMOTE(random_state=seed)))
    class_weight = "balanced" if imbalance == "class_weight" else None
    steps.append((CLASSIFIER_STEP, spec.build(seed, class_weight)))
    return Pipeline(steps)


def prefixed_grid(grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """A model grid with keys addressed to the pipeline's classifier step."""
    return {f"{CLASSIFIER_STEP}__{key}": list(values) for key, values in grid.items()}


def grid_size(grid: dict[str, list[Any]]) -> int:
    """Number of candidates in a grid."""
    size = 1
    for values in grid.values():
        size *= len(values)
    return size
