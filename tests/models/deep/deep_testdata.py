"""Tiny synthetic data for the deep-model tests (imported by the test_deep_* files)."""

from __future__ import annotations

import numpy as np


def sequences(n, rng, *, widths=(5,), t_range=(1, 12), n_classes=3, shift=1.0):
    """Object array (n, len(widths)) of float32 (T, d) cells whose mean depends on the class."""
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    X = np.empty((n, len(widths)), dtype=object)
    for i in range(n):
        for m, d in enumerate(widths):
            T = int(rng.integers(*t_range))
            X[i, m] = (rng.normal(size=(T, d)) + shift * y[i]).astype(np.float32)
    return X, y


def few_frames_task(n, rng, *, d=4, t_range=(15, 26)):
    """Two classes that differ only in *which* frames carry two spikes.

    Class 0: dims 0 and 1 spike together in the same two frames. Class 1: dim 0 spikes in two
    frames and dim 1 in two other frames. Per-dimension totals are equal, so the mean over frames
    carries no class information; a model must look at individual frames.
    """
    y = np.arange(n) % 2
    rng.shuffle(y)
    X = np.empty((n, 1), dtype=object)
    for i in range(n):
        T = int(rng.integers(*t_range))
        a = rng.normal(size=(T, d))
        f = rng.choice(T, 4, replace=False)
        a[f[:2], 0] += 4.0
        if y[i] == 0:
            a[f[:2], 1] += 4.0
        else:
            a[f[2:], 1] += 4.0
        X[i, 0] = a.astype(np.float32)
    return X, y


def frame_means(X):
    return np.stack([c.mean(axis=0) for c in X[:, 0]])
