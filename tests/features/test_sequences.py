"""Frame sequences: packing into one array, compact pickling for fold workers, frame-level
early fusion, and the PyTorch stores using packed frames in place."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from joblib import Parallel, delayed

from emofusion.features.sequences import (
    align_frames,
    as_object_array,
    frame_level_concatenation,
    pack_frames,
    packed,
    shared_rows,
)


def _frames(rng, n=12, width=5, missing=()):
    return [None if i in missing else rng.normal(size=(int(rng.integers(1, 7)), width))
            for i in range(n)]


def test_pack_frames_keeps_values_and_missing_cells_in_one_float32_array():
    rng = np.random.default_rng(0)
    frames = _frames(rng, missing=(3,))
    views = pack_frames(frames)
    assert views[3] is None
    bases = {id(v.base) for v in views if v is not None}
    assert len(bases) == 1
    for original, view in zip(frames, views, strict=True):
        if original is not None:
            assert view.dtype == np.float32
            np.testing.assert_allclose(view, original, rtol=1e-6)


def test_packed_cells_pickle_as_bases_and_come_back_as_views_of_them():
    rng = np.random.default_rng(1)
    columns = [pack_frames(_frames(rng, n=300, width=40)), pack_frames(_frames(rng, n=300, width=8))]
    cells = packed(as_object_array(columns))
    rebuild, (bases, offsets, lengths) = cells.__reduce__()  # one array per column, not 600
    for base, column in zip(bases, columns, strict=True):
        assert np.shares_memory(base, column[0]) and len(base) == sum(len(c) for c in column)
    assert offsets.shape == lengths.shape == (300, 2)
    for protocol in (4, 5):  # 5 (cloudpickle, dask) rebuilds each base as a flat buffer
        back = pickle.loads(pickle.dumps(cells, protocol=protocol))
        for (i, j), cell in np.ndenumerate(cells):
            np.testing.assert_array_equal(back[i, j], cell)
        assert shared_rows(list(back[:, 0])) is not None  # estimators still use it in place
    subset = pickle.loads(pickle.dumps(cells[:5]))  # a row selection pickles as a plain array
    np.testing.assert_array_equal(subset[4, 1], cells[4, 1])


def test_frame_level_concatenation_aligns_each_modality_to_the_longest():
    rng = np.random.default_rng(2)
    cells = as_object_array([_frames(rng, width=3), _frames(rng, width=2)])
    fused = frame_level_concatenation(cells)
    for i, row in enumerate(cells):
        length = max(len(row[0]), len(row[1]))
        expected = np.hstack([align_frames(row[0], length), align_frames(row[1], length)])
        np.testing.assert_allclose(fused[i, 0], expected, rtol=1e-6)
    assert len({id(fused[i, 0].base) for i in range(len(fused))}) == 1


def _store_summary(X, rows):
    from emofusion.models.deep._data import parse_cells

    store = parse_cells(X[rows], None, what="test")
    return store.frames[0].__class__.__name__, store.frames[0].flags.writeable, len(store.frames[0])


def test_fold_workers_fit_on_the_shared_memory_map_without_copying():
    pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    cells = packed(as_object_array([pack_frames(_frames(rng, n=4000, width=64))]))
    kind, writeable, n_frames = Parallel(n_jobs=2, backend="loky", max_nbytes="1K")(
        delayed(_store_summary)(cells, rows) for rows in (np.arange(10), np.arange(10, 30)))[1]
    assert (kind, writeable) == ("memmap", False)  # the worker's store is joblib's read-only map
    assert n_frames == sum(len(c) for c in cells[:, 0])  # the whole shared base, not a copy of 20 rows


def test_sequence_store_uses_packed_frames_in_place_and_standardises_batches_only(monkeypatch):
    torch = pytest.importorskip("torch")
    from emofusion.models.deep._data import Batcher, frame_statistics, parse_cells

    rng = np.random.default_rng(4)
    frames = pack_frames(_frames(rng, n=40, width=6))
    base_before = frames[0].base.copy()
    X = as_object_array([frames])
    rows = np.arange(5, 40)
    store = parse_cells(X[rows], None, what="test")
    assert np.shares_memory(store.frames[0], frames[0])
    store.standardise(*frame_statistics(store, np.arange(len(rows))))
    np.testing.assert_array_equal(frames[0].base, base_before)  # caller's frames untouched
    batches = {}
    for budget in (0, 2**30):  # gathered per batch vs padded once up front
        monkeypatch.setattr(Batcher, "precompute_bytes", budget)
        batcher = Batcher(store, np.arange(len(rows)), 4, torch.float32, "cpu")
        batches[budget] = {int(r): x[k, :int(b.lengths[k, 0])].numpy()
                           for b in batcher.sequential() for x in b.xs
                           for k, r in enumerate(b.rows)}
    all_frames = np.concatenate([frames[r] for r in rows])
    for r, x in batches[0].items():
        np.testing.assert_allclose(x, batches[2**30][r], rtol=1e-6)
        expected = (frames[rows[r]] - all_frames.mean(0)) / all_frames.std(0)
        np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5)
