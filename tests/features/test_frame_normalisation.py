"""Per-speaker normalisation of frame sequences."""

from __future__ import annotations

import numpy as np
import pytest

from emofusion.features.normalization import normalise_inputs, speaker_normalise_frames
from emofusion.features.sequences import shared_rows


@pytest.fixture
def corpus():
    """12 utterances of 3 speakers, 2 modalities; each speaker has its own offset and scale."""
    rng = np.random.default_rng(0)
    speakers = np.repeat(np.array(["a", "b", "c"]), 4)
    offset = {"a": 5.0, "b": -3.0, "c": 0.0}
    scale = {"a": 2.0, "b": 0.5, "c": 1.0}
    cells = np.empty((12, 2), dtype=object)
    for i, s in enumerate(speakers):
        cells[i, 0] = (offset[s] + scale[s] * rng.normal(size=(int(rng.integers(3, 9)), 4))
                       ).astype(np.float32)
        cells[i, 1] = None if i == 5 else (offset[s] + rng.normal(size=(2, 3))).astype(np.float32)
    return cells, speakers


def _speaker_frames(cells, speakers, speaker, m):
    return np.concatenate([c for c, s in zip(cells[:, m], speakers, strict=True)
                           if s == speaker and c is not None]).astype(np.float64)


def test_each_speaker_is_standardised_with_its_own_frames(corpus):
    cells, speakers = corpus
    before = [None if c is None else c.copy() for c in cells.ravel()]
    out = speaker_normalise_frames(cells, speakers)
    assert out.shape == cells.shape and out[5, 1] is None
    for m in range(2):
        for speaker in "abc":
            frames = _speaker_frames(out, speakers, speaker, m)
            np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-5)
            np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-4)
        present = [c for c in out[:, m] if c is not None]
        assert shared_rows(present) is not None  # views of one float32 array, used in place
    for old, new in zip(before, cells.ravel(), strict=True):  # input unchanged
        assert (old is None and new is None) or np.array_equal(old, new)
    assert [None if c is None else c.shape for c in out.ravel()] == \
        [None if c is None else c.shape for c in cells.ravel()]


def test_unseen_speakers_get_the_average_training_statistics(corpus):
    cells, speakers = corpus
    fit_rows = np.flatnonzero(speakers != "c")
    out = speaker_normalise_frames(cells, speakers, fit_rows=fit_rows)
    strict_a = out[speakers == "a", 0]
    own = speaker_normalise_frames(cells, speakers)[speakers == "a", 0]
    for a, b in zip(strict_a, own, strict=True):  # training speakers: their own statistics
        np.testing.assert_allclose(a, b, atol=1e-6)
    stats = [(f.mean(axis=0), f.std(axis=0) + 1e-8)
             for f in (_speaker_frames(cells, speakers, s, 0) for s in "ab")]
    mean = (stats[0][0] + stats[1][0]) / 2
    std = (stats[0][1] + stats[1][1]) / 2
    for i in np.flatnonzero(speakers == "c"):
        np.testing.assert_allclose(out[i, 0], (cells[i, 0] - mean) / std, rtol=1e-5, atol=1e-5)
    # the unseen speaker's own statistics are not used: its frames are not standardised
    assert abs(_speaker_frames(out, speakers, "c", 0).mean()) > 0.1


def test_transcript_columns_are_left_alone(corpus):
    cells, speakers = corpus
    with_text = np.empty((12, 2), dtype=object)
    with_text[:, 0] = cells[:, 0]
    with_text[:, 1] = [f"utterance {i}" for i in range(12)]
    out = speaker_normalise_frames(with_text, speakers)
    assert list(out[:, 1]) == [f"utterance {i}" for i in range(12)]
    np.testing.assert_allclose(_speaker_frames(out, speakers, "a", 0).mean(axis=0), 0.0, atol=1e-5)


def test_bad_inputs_raise(corpus):
    cells, speakers = corpus
    with pytest.raises(ValueError, match="speakers has shape"):
        speaker_normalise_frames(cells, speakers[:-1])
    cells[:8, 1] = None  # speakers a and b have no frames in modality 1
    with pytest.raises(ValueError, match="modality column 1 has no frames"):
        speaker_normalise_frames(cells, speakers, fit_rows=np.arange(8))


def test_the_runs_speaker_scaling_normalises_frame_inputs_and_leaves_transcripts(corpus):
    cells, speakers = corpus
    transcripts = np.array([[f"line {i}"] for i in range(len(cells))], dtype=object)
    inputs = {"acoustic": cells[:, [0]], "transcript": transcripts}
    adaptive = normalise_inputs(inputs, speakers, "speaker")
    for speaker in "ab":
        frames = _speaker_frames(adaptive["acoustic"], speakers, speaker, 0)
        np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-4)
    assert (adaptive["transcript"] == transcripts).all()
    strict = normalise_inputs(inputs, speakers, "speaker_strict", np.flatnonzero(speakers == "a"))
    assert abs(_speaker_frames(strict["acoustic"], speakers, "b", 0).mean()) > 0.1
    assert normalise_inputs(inputs, speakers, "standard") is inputs
