"""Audio extractors on generated wavs: loading, shapes, widths, spectrogram3 layout, failures."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("soundfile")
pytest.importorskip("librosa")

from extractor_test_media import RATE, chirp, noise, tone, write_wav  # noqa: E402

from emofusion.features.extractors import EXTRACTORS, ExtractionFailed, build_extractor  # noqa: E402
from emofusion.features.extractors.audio import load_audio, time_derivative  # noqa: E402


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wavs")
    left = tone(1.5, 440.0, rate=44100)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    empty = folder / "empty.wav"
    write_wav(empty, np.zeros(0, np.float32))
    garbage = folder / "garbage.wav"
    garbage.write_bytes(b"this is not audio" * 10)
    return {
        "sine": write_wav(folder / "sine.wav", tone(1.0)),
        "noise": write_wav(folder / "noise.wav", noise(1.0)),
        "chirp": write_wav(folder / "chirp.wav", chirp(2.0)),
        "constant": write_wav(folder / "constant.wav", tone(2.0, 1000.0)),
        "stereo44k": write_wav(folder / "stereo44k.wav", stereo, rate=44100),
        "empty": str(empty),
        "garbage": str(garbage),
    }


def test_stereo_44k_is_mixed_to_mono_and_resampled(wavs):
    signal = load_audio(wavs["stereo44k"], 16000)
    assert signal.ndim == 1 and abs(len(signal) - 1.5 * RATE) <= 2
    assert np.max(np.abs(signal[1000:-1000])) == pytest.approx(0.25, abs=0.01)  # (0.5 + 0) / 2
    spectrum = np.abs(np.fft.rfft(signal))
    assert np.fft.rfftfreq(len(signal), 1 / RATE)[spectrum.argmax()] == pytest.approx(440, abs=2)


@pytest.mark.parametrize(("name", "params", "shape"), [
    ("egemaps", {}, (88,)),
    ("compare", {}, (6373,)),
    ("logmel", {}, (101, 64)),
    ("mfcc", {}, (101, 40)),
    ("mfcc", {"n_mfcc": 13, "deltas": 2}, (101, 39)),
    ("spectrogram3", {}, (51, 3 * 321)),
    ("spectrogram3", {"n_bands": 40}, (51, 120)),
    ("spectrogram3", {"max_freq": 4000}, (51, 3 * 161)),
])
def test_shapes_and_widths(wavs, name, params, shape):
    extractor = build_extractor(name, params)
    for key in ("sine", "noise"):
        features = extractor({"audio_path": wavs[key]})
        assert features.shape == shape and features.dtype == np.float32
        assert np.isfinite(features).all()
    assert extractor.width == shape[-1]
    assert extractor.kind == ("vector" if len(shape) == 1 else "sequence")


def test_egemaps_lld_is_a_25_wide_sequence_at_10ms(wavs):
    features = build_extractor("egemaps_lld")({"audio_path": wavs["chirp"]})
    assert features.shape[1] == 25 and abs(features.shape[0] - 200) <= 6


def test_compare_lld_is_a_65_wide_sequence_at_10ms(wavs):
    features = build_extractor("compare_lld")({"audio_path": wavs["chirp"]})
    assert features.shape[1] == 65 and abs(features.shape[0] - 200) <= 6


def test_start_end_cut_changes_t(wavs):
    logmel = build_extractor("logmel")
    whole = logmel({"audio_path": wavs["chirp"], "start": float("nan"), "end": float("nan")})
    cut = logmel({"audio_path": wavs["chirp"], "start": 0.5, "end": 1.0})
    assert whole.shape == (201, 64) and cut.shape == (51, 64)
    # the cut is the same audio as frames 50..100 of the whole file (up to the edge frames)
    assert np.allclose(cut[3:-3], whole[53:98], atol=1e-3)


def test_spectrogram3_layout_channels_and_delta(wavs):
    spec = build_extractor("spectrogram3", {"n_bands": 64})
    bands = 64
    moving = spec({"audio_path": wavs["chirp"]}).reshape(-1, 3, bands)
    steady = spec({"audio_path": wavs["constant"]}).reshape(-1, 3, bands)
    for features in (moving, steady):  # channel-major: [log | delta | delta2]
        assert np.allclose(features[:, 1], time_derivative(features[:, 0]), atol=1e-4)
        assert np.allclose(features[:, 2], time_derivative(features[:, 1]), atol=1e-4)
    interior = slice(5, -5)
    assert np.abs(steady[interior, 1]).mean() < 0.01
    assert np.abs(moving[interior, 1]).mean() > 20 * np.abs(steady[interior, 1]).mean()
    # the chirp's energy moves to higher bands over time: positive deltas above, then below
    peak = moving[:, 0].argmax(axis=1)
    assert peak[-10] > peak[10]


def test_time_derivative_of_a_ramp_is_its_slope():
    ramp = np.arange(20, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]])
    assert np.allclose(time_derivative(ramp)[2:-2], [[1.0, -2.0]])


@pytest.mark.parametrize(("key", "item", "message"), [
    ("missing", {"audio_path": "/nonexistent/a.wav"}, "not found"),
    ("none", {"audio_path": ""}, "no audio file"),
    ("garbage", {}, "cannot read"),
    ("empty", {}, "empty"),
    ("sine", {"start": 5.0}, "beyond the end"),
    ("sine", {"start": 0.6, "end": 0.2}, "not after"),
])
def test_bad_inputs_fail_with_a_reason(wavs, key, item, message):
    extractor = build_extractor("logmel")
    item = {"audio_path": wavs.get(key, ""), **item}
    with pytest.raises(ExtractionFailed, match=message):
        extractor(item)
    [result] = extractor.extract_batch([item])
    assert isinstance(result, ExtractionFailed) and result.fix


@pytest.mark.parametrize("name", [n for n, c in EXTRACTORS.items()
                                  if c.source == "audio" and n != "hf_audio"])  # needs a model
def test_params_rebuild_the_same_extractor(name):
    extractor = build_extractor(name)
    assert build_extractor(name, extractor.params()).params() == extractor.params()
