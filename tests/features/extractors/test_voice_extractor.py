"""The ``ge2e`` speaker-encoder extractor: every LSTM layer pooled, (3, 512), from a checkpoint the
tests write (random weights of the real shapes) and from the weights inside the installed
Resemblyzer package (on real RAVDESS speech when the shared data is there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("librosa")

from extractor_test_media import chirp, noise  # noqa: E402

from emofusion.errors import ConfigError, MissingExtraError  # noqa: E402
from emofusion.features.extractors import build_extractor  # noqa: E402
from emofusion.features.extractors.base import ExtractionFailed  # noqa: E402
from emofusion.features.extractors.voice import HIDDEN, MEL_BANDS, packaged_weights  # noqa: E402

RAVDESS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ravdess_speech_16k"


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    """A Resemblyzer-format checkpoint of a randomly initialised 3-layer encoder."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(MEL_BANDS, HIDDEN, 3, batch_first=True)
    state = {f"lstm.{name}": value for name, value in lstm.state_dict().items()}
    state.update({"linear.weight": torch.zeros(HIDDEN, HIDDEN), "linear.bias": torch.zeros(HIDDEN)})
    path = tmp_path_factory.mktemp("ge2e") / "pretrained.pt"
    torch.save({"model_state": state, "step": 1}, path)
    return path


def test_every_layer_is_pooled_over_the_frames(random_checkpoint):
    extractor = build_extractor("ge2e", {"weights": str(random_checkpoint)})
    signal = chirp(2.0) + 0.05 * noise(2.0)
    features = extractor.from_signal(signal)
    assert features.shape == (3, 2 * HIDDEN) and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert np.abs(features[:, :HIDDEN]).max() <= 1.0  # frame means of tanh-bounded outputs
    assert (features[:, HIDDEN:] >= 0).all() and features[:, HIDDEN:].max() > 0  # frame stds
    assert not np.allclose(features[0], features[1])  # three different layers
    np.testing.assert_array_equal(features, extractor.from_signal(signal))
    assert extractor.params() == {"weights": str(random_checkpoint)}


def test_quiet_recordings_are_raised_to_the_same_loudness(random_checkpoint):
    extractor = build_extractor("ge2e", {"weights": str(random_checkpoint)})
    speech = chirp(1.5) + 0.05 * noise(1.5)
    quiet = 0.003 * speech / np.sqrt(np.mean(speech ** 2))  # about -50 dBFS
    np.testing.assert_allclose(extractor.from_signal(quiet), extractor.from_signal(2 * quiet),
                               atol=1e-4)
    louder = extractor.from_signal(10 * quiet)  # -30 dBFS already: left as it is
    assert not np.allclose(louder, extractor.from_signal(100 * quiet), atol=1e-3)


def test_silence_and_too_short_audio_fail_with_the_fix(random_checkpoint):
    extractor = build_extractor("ge2e", {"weights": str(random_checkpoint)})
    for signal in (np.zeros(16000, dtype=np.float32), chirp(0.05)):
        with pytest.raises(ExtractionFailed, match="after trimming silence") as failure:
            extractor.from_signal(signal)
        assert "drop this utterance" in failure.value.fix


def test_a_broken_checkpoint_is_one_config_error_naming_the_file(tmp_path):
    broken = tmp_path / "pretrained.pt"
    torch.save({"model_state": {"lstm.weight_ih_l0": torch.zeros(3)}}, broken)
    with pytest.raises(ConfigError, match=r"ge2e: cannot load .*pretrained\.pt"):
        build_extractor("ge2e", {"weights": str(broken)}).from_signal(chirp(1.0))


def test_without_resemblyzer_the_audio_extra_is_named(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "resemblyzer" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"emofusion\[audio\]"):
        build_extractor("ge2e").from_signal(chirp(1.0))


def test_the_packaged_encoder_separates_emotions_of_real_speech():
    import importlib.util

    import librosa

    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip("Resemblyzer (the audio extra) is not installed")

    clips = sorted(clip for pattern in ("03-01-01-01-*.wav", "03-01-05-02-*.wav")
                   for clip in RAVDESS.glob(f"Actor_0[1-4]/{pattern}")) if RAVDESS.is_dir() else []
    if len(clips) < 32:  # per actor 4 neutral and 4 strongly angry clips
        pytest.skip(f"RAVDESS shared data not found under {RAVDESS}")
    assert packaged_weights().is_file()
    extractor = build_extractor("ge2e")
    features = np.stack([extractor.from_signal(librosa.load(clip, sr=16000)[0])[1]
                         for clip in clips])  # the second layer
    angry = np.array([clip.stem.split("-")[2] == "05" for clip in clips])
    actors = np.array([clip.parent.name for clip in clips])
    for actor in np.unique(actors):  # each actor's strong anger against their neutral speech
        own = actors == actor
        features[own] -= features[own].mean(axis=0)
    correct = 0
    for actor in np.unique(actors):  # the anger direction of the other actors, per actor
        others = actors != actor
        held_out = features[~others] @ (features[others & angry].mean(axis=0)
                                         - features[others & ~angry].mean(axis=0))
        correct += int(held_out[angry[~others]].min() > held_out[~angry[~others]].max())
    assert correct >= 3  # of 4 actors: anger and neutral fully separated
