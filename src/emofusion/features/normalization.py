"""Per-speaker normalisation of pooled features.

Each speaker's utterances are z-normalised with that speaker's own mean and standard deviation.
In the transductive variant (``scaling: speaker``) the test speaker's statistics come from its own
unlabelled features, which is legitimate (no labels are used) and is stated in the report. The
strict variant (``scaling: speaker_strict``) computes statistics only for training speakers;
any other speaker is normalised with the average of the training speakers' statistics, as a
deployed system without enrolment data would be.
"""

from __future__ import annotations

import numpy as np


def speaker_normalise(X: np.ndarray, speakers: np.ndarray,
                      fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Z-normalise rows per speaker.

    Args:
        X: (n, d) pooled features.
        speakers: (n,) speaker of each row.
        fit_rows: indices of rows whose speakers get their own statistics; None = all rows.

    Returns:
        (n, d) normalised copy.
    """
    fitted = np.unique(speakers if fit_rows is None else speakers[fit_rows])
    stats = {}
    for speaker in fitted:
        rows = X[speakers == speaker]
        stats[speaker] = (rows.mean(axis=0), rows.std(axis=0) + 1e-8)
    fallback = tuple(np.mean([s[i] for s in stats.values()], axis=0) for i in (0, 1))
    out = np.empty_like(X, dtype=np.float64)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        mean, std = stats.get(speaker, fallback)
        out[rows] = (X[rows] - mean) / std
    return out
