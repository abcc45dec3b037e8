"""hf_audio on tiny randomly initialised checkpoints written by the tests (nothing is downloaded):
every layer pooled to (L, 2d), chunking, Whisper's padded window, errors, the driver and loader."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("soundfile")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from extractor_test_media import noise, tone, write_wav  # noqa: E402

from emofusion.data.manifest import load_manifest  # noqa: E402
from emofusion.errors import ConfigError  # noqa: E402
from emofusion.features.extract import extract_corpus  # noqa: E402
from emofusion.features.extractors import ExtractionFailed, build_extractor  # noqa: E402
from emofusion.features.extractors.speech import (  # noqa: E402
    ALLOW_DOWNLOAD_ENV,
    FrameMoments,
    HFAudio,
    chunk_bounds,
)
from emofusion.features.loading import load_modality  # noqa: E402

HIDDEN, LAYERS = 16, 2
SMALL_CNN = {"conv_dim": (16, 16), "conv_stride": (5, 4), "conv_kernel": (10, 4),
             "num_feat_extract_layers": 2, "num_conv_pos_embeddings": 8,
             "num_conv_pos_embedding_groups": 2}
ENCODERS = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
    "hubert": ("HubertConfig", "HubertModel"),
    "wavlm": ("WavLMConfig", "WavLMModel"),
    "data2vec": ("Data2VecAudioConfig", "Data2VecAudioModel"),
}


def _write_ssl_encoder(folder, family: str) -> str:
    """A 2-layer, hidden-size-16 encoder of ``family`` with its feature extractor config."""
    config_class, model_class = (getattr(transformers, name) for name in ENCODERS[family])
    config = config_class(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
                          intermediate_size=32, **SMALL_CNN)
    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(
        folder)
    return str(folder)


def _write_whisper(folder) -> str:
    """A tiny Whisper (2 encoder layers, d_model 16) and the standard 80-mel feature extractor."""
    config = transformers.WhisperConfig(
        d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=64,
        max_target_positions=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1)
    torch.manual_seed(0)
    transformers.WhisperModel(config).save_pretrained(folder)
    transformers.WhisperFeatureExtractor().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech-models")
    folders = {family: _write_ssl_encoder(root / family, family) for family in ENCODERS}
    folders["whisper"] = _write_whisper(root / "whisper")
    return folders


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech-wavs")
    return {"short": write_wav(folder / "short.wav", tone(1.5, 300)),
            "long": write_wav(folder / "long.wav", noise(6.0, seed=1)),
            "tiny": write_wav(folder / "tiny.wav", tone(0.05))}


@pytest.mark.parametrize("family", [*ENCODERS, "whisper"])
def test_every_layer_is_pooled_to_mean_and_std(checkpoints, wavs, family):
    extractor = build_extractor("hf_audio", {"model": checkpoints[family]})
    features = extractor({"audio_path": wavs["short"]})
    assert extractor.kind == "layers"
    assert features.shape == (LAYERS + 1, 2 * HIDDEN) and features.dtype == np.float32
    assert extractor.width == 2 * HIDDEN
    assert np.all(features[:, HIDDEN:] >= 0)  # the std half
    assert not np.allclose(features[0], features[-1])  # layers differ


def _reference_frames(folder: str, wav: str) -> tuple[np.ndarray, int]:
    """The encoder's own hidden states ``(L, T, d)`` for the whole file, and its sample count."""
    from emofusion.features.extractors.audio import load_audio

    signal = load_audio(wav, 16000)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    encoder = model.get_encoder() if model.config.is_encoder_decoder else model
    inputs = transformers.AutoFeatureExtractor.from_pretrained(folder)(
        signal, sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder(**inputs, output_hidden_states=True).hidden_states
    return torch.stack(hidden)[:, 0].numpy(), len(signal)


def _mean_std(frames: np.ndarray) -> np.ndarray:
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1)], axis=1)


def test_pooling_matches_the_encoders_own_hidden_states(checkpoints, wavs):
    features = build_extractor("hf_audio", {"model": checkpoints["wav2vec2"]})(
        {"audio_path": wavs["short"]})
    frames, _ = _reference_frames(checkpoints["wav2vec2"], wavs["short"])
    assert np.allclose(features, _mean_std(frames), atol=1e-5)


def test_whisper_pools_only_the_frames_covering_the_audio(checkpoints, wavs):
    features = build_extractor("hf_audio", {"model": checkpoints["whisper"]})(
        {"audio_path": wavs["short"]})
    frames, n_samples = _reference_frames(checkpoints["whisper"], wavs["short"])
    assert frames.shape[1] == 1500  # the 30 s window, 20 ms frames
    audio_frames = math.ceil(1500 * n_samples / (30 * 16000))
    assert audio_frames == 75  # 1.5 s
    assert np.allclose(features, _mean_std(frames[:, :audio_frames]), atol=1e-5)
    assert not np.allclose(features, _mean_std(frames), atol=1e-3)


def test_chunked_long_file_is_close_to_unchunked_and_short_files_are_not_cut(checkpoints, wavs):
    chunked = build_extractor("hf_audio", {"model": checkpoints["wav2vec2"], "chunk_seconds": 2})
    whole = build_extractor("hf_audio", {"model": checkpoints["wav2vec2"], "chunk_seconds": 60})
    long_chunked, long_whole = chunked({"audio_path": wavs["long"]}), whole({"audio_path": wavs["long"]})
    assert long_chunked.shape == long_whole.shape == (LAYERS + 1, 2 * HIDDEN)
    assert not np.array_equal(long_chunked, long_whole)  # three 2 s chunks were encoded
    assert np.allclose(long_chunked, long_whole, atol=0.02)
    assert np.array_equal(chunked({"audio_path": wavs["short"]}),
                          whole({"audio_path": wavs["short"]}))


def test_frame_moments_over_chunks_equal_the_moments_of_all_frames():
    frames = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 101, 5))
    moments = FrameMoments()
    for first, stop in chunk_bounds(101, 30):
        moments.add(frames[:, first:stop])
    expected = np.concatenate([frames.mean(axis=1), frames.std(axis=1)], axis=1)
    assert np.allclose(moments.pooled(), expected, atol=1e-5)
    with pytest.raises(ExtractionFailed, match="no frames"):
        FrameMoments().pooled()


def test_chunks_are_equal_and_cover_the_signal():
    assert chunk_bounds(100, 30) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert chunk_bounds(20, 30) == [(0, 20)]
    bounds = chunk_bounds(16000 * 41, 16000 * 20)  # 41 s in 20 s chunks: 3 x 13.7 s, no 1 s tail
    assert len(bounds) == 3 and bounds[-1][1] == 16000 * 41
    assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


def test_params_devices_and_user_errors(checkpoints, wavs, monkeypatch, tmp_path):
    extractor = HFAudio(checkpoints["hubert"], chunk_seconds=10, device="auto")
    assert extractor.params() == {"model": checkpoints["hubert"], "chunk_seconds": 10.0}
    assert extractor.settings() == {**extractor.params(), "device": "auto"}
    assert build_extractor("hf_audio", extractor.settings()).params() == extractor.params()
    with pytest.raises(ExtractionFailed, match="shorter than"):
        extractor({"audio_path": wavs["tiny"]})
    with pytest.raises(ConfigError, match="device"):
        HFAudio(checkpoints["hubert"], device="tpu")
    with pytest.raises(ConfigError, match="chunk_seconds"):
        HFAudio(checkpoints["hubert"], chunk_seconds=0.5)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            HFAudio(checkpoints["hubert"], device="cuda").prepare()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # belt and braces: no network in tests
    monkeypatch.delenv(ALLOW_DOWNLOAD_ENV, raising=False)
    for missing in ("emofusion-tests/no-such-model", str(tmp_path)):
        with pytest.raises(ConfigError, match=ALLOW_DOWNLOAD_ENV):
            HFAudio(missing).prepare()


def _table(wav_paths: list[str]) -> pd.DataFrame:
    n = len(wav_paths)
    return pd.DataFrame({"utterance_id": [f"u{i}" for i in range(n)],
                         "speaker": [f"s{i}" for i in range(n)], "session": "1",
                         "label": ["a", "b", "a"][:n], "audio_path": wav_paths,
                         "transcript": "", "video_path": "", "start": np.nan, "end": np.nan})


def test_driver_records_layers_and_the_loader_pools_them(checkpoints, wavs, tmp_path, monkeypatch):
    paths = [wavs["short"], wavs["long"], wavs["short"]]
    spec = {"ssl": {"extractor": "hf_audio", "model": checkpoints["wav2vec2"]}}
    csv = extract_corpus(_table(paths), ["a", "b"], tmp_path, spec, jobs=1, progress=False,
                         device="cpu")
    entry = json.loads((tmp_path / "features.json").read_text())["modalities"]["ssl"]
    assert entry["kind"] == "layers" and entry["width"] == 2 * HIDDEN
    assert entry["layers"] == LAYERS + 1 and "device" not in entry["params"]

    calls = []
    monkeypatch.setattr(HFAudio, "from_signal", lambda self, signal: calls.append(1))
    extract_corpus(_table(paths), ["a", "b"], tmp_path, spec, jobs=1, progress=False)
    assert calls == []  # cached: nothing re-encoded

    manifest = load_manifest(csv)
    data = load_modality(manifest, "ssl", ["mean", "layer-1", "layer0", "flat"], jobs=1)
    stored = np.stack([np.load(tmp_path / p) for p in pd.read_csv(csv)["ssl_features"]])
    assert not data.problems
    assert np.allclose(data.pooled["mean"], stored.mean(axis=1))
    assert np.allclose(data.pooled["layer-1"], stored[:, -1])
    assert np.allclose(data.pooled["layer0"], stored[:, 0])
    assert np.allclose(data.pooled["flat"], stored.reshape(3, -1))

    np.save(tmp_path / pd.read_csv(csv)["ssl_features"][1], stored[1, :2])  # one layer missing
    data = load_modality(manifest, "ssl", ["flat"], jobs=1)
    assert [p.utterance_id for p in data.problems] == ["u1"]
    assert "2 layers (rows), expected 3" in data.problems[0].reason
    with pytest.raises(ConfigError, match="layer5"):
        load_modality(manifest, "ssl", ["layer5"], jobs=1)


def test_device_reaches_the_in_process_extractor(checkpoints, wavs, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: device='cuda' would work")
    spec = {"ssl": {"extractor": "hf_audio", "model": checkpoints["wav2vec2"]}}
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        extract_corpus(_table([wavs["short"]]), ["a"], tmp_path, spec, jobs=1, progress=False,
                       device="cuda")


def test_cli_passes_extractor_parameters_and_refuses_unknown_ones(checkpoints, wavs, tmp_path,
                                                                  capsys):
    from emofusion.cli import main

    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"utterance_id": ["a1", "a2", "b1", "b2"], "speaker": ["A", "A", "B", "B"],
                  "label": ["angry", "happy", "angry", "happy"],
                  "audio_path": [wavs["short"], wavs["long"], wavs["long"], wavs["short"]]}
                 ).to_csv(manifest, index=False)
    out = tmp_path / "features"
    assert main(["extract", str(manifest), "--corpus", "manifest", "--modalities", "hf_audio",
                 "--param", f"hf_audio.model={checkpoints['hubert']}", "hf_audio.chunk_seconds=4",
                 "--device", "cpu", "--out", str(out)]) == 0
    entry = json.loads((out / "features.json").read_text())["modalities"]["hf_audio"]
    assert entry["params"] == {"model": checkpoints["hubert"], "chunk_seconds": 4.0}
    assert entry["layers"] == LAYERS + 1
    capsys.readouterr()
    assert main(["extract", str(manifest), "--corpus", "manifest", "--modalities", "hf_audio",
                 "--param", "logmel.n_mels=40", "--out", str(out)]) == 2
    assert "EXTRACTOR.PARAMETER=VALUE" in capsys.readouterr().err


def test_extract_train_with_a_layer_pooling_and_predict_a_wav(checkpoints, tmp_path, capsys):
    from emofusion.cli import main

    rows = []
    for number, speaker in enumerate("ABCD"):
        for index, (label, freq) in enumerate([("angry", 200), ("happy", 700)] * 2):
            seconds = 1.0 + 0.1 * index
            signal = tone(seconds, freq) + noise(seconds, seed=10 * number + index)
            path = write_wav(tmp_path / f"{speaker}{index}.wav", signal)
            rows.append({"utterance_id": f"{speaker}{index}", "speaker": speaker, "label": label,
                         "audio_path": path})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    out, model = tmp_path / "features", tmp_path / "model.zip"
    assert main(["extract", str(tmp_path / "manifest.csv"), "--corpus", "manifest",
                 "--modalities", "hf_audio", "--param", f"hf_audio.model={checkpoints['wavlm']}",
                 "--out", str(out), "--jobs", "1"]) == 0
    assert main(["train", str(out / "dataset.csv"), "--system", "hf_audio",
                 "--pooling", "hf_audio=layer-1", "--out", str(model)]) == 0
    capsys.readouterr()
    assert main(["predict", str(model), "--wav", rows[0]["audio_path"]]) == 0
    prediction = capsys.readouterr().out.splitlines()
    assert prediction[0].startswith("utterance_id,predicted") and len(prediction) == 2
    probabilities = [float(value) for value in prediction[1].split(",")[2:]]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-3)
