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

from emofusion.features.sequences import is_pooled

Stats = tuple[np.ndarray, np.ndarray]


def statistics(X: np.ndarray) -> Stats:
    """The (mean, std) vectors (d,) of the rows of X (n, d); std floored by 1e-8."""
    return X.mean(axis=0), X.std(axis=0) + 1e-8


def speaker_statistics(X: np.ndarray, speakers: np.ndarray) -> dict[str, Stats]:
    """Per speaker, the (mean, std) vectors (d,) of its rows of X (n, d)."""
    return {s: statistics(X[speakers == s]) for s in np.unique(speakers)}


def average_statistics(stats: dict[str, Stats]) -> Stats:
    """The speakers' average (mean, std): the statistics for a speaker never seen."""
    return tuple(np.mean([s[i] for s in stats.values()], axis=0) for i in (0, 1))


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
    rows = slice(None) if fit_rows is None else fit_rows
    stats = speaker_statistics(X[rows], speakers[rows])
    fallback = average_statistics(stats)
    out = np.empty_like(X, dtype=np.float64)
    for speaker in np.unique(speakers):
        mask = speakers == speaker
        mean, std = stats.get(speaker, fallback)
        out[mask] = (X[mask] - mean) / std
    return out


def normalise_inputs(inputs: dict, speakers: np.ndarray, scaling: str,
                     fit_rows: np.ndarray | None = None) -> dict:
    """Apply the run's per-speaker scaling to every pooled (numeric) input.

    Args:
        inputs: input name -> (n, d) float matrix, or an object array (frames, transcripts;
            left as they are).
        speakers: (n,) speaker of each row.
        scaling: ``speaker`` (every speaker with its own statistics, test speakers included:
            the speaker-adaptive protocol), ``speaker_strict`` (statistics of the speakers of
            `fit_rows` only; any other speaker gets their average), or anything else (unchanged).
        fit_rows: the training rows (``speaker_strict``); None = all rows.

    Returns:
        input name -> normalised copy (or the same object when nothing applies).
    """
    if scaling not in ("speaker", "speaker_strict"):
        return inputs
    rows = fit_rows if scaling == "speaker_strict" else None
    return {name: speaker_normalise(X, speakers, rows) if is_pooled(X) else X
            for name, X in inputs.items()}
