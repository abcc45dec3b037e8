"""Saved-model files are safe to open: crafted skops files that would run code are refused
before anything in them is constructed, and every model emofusion writes loads without
``--trust`` (its types are exactly those of `SAVED_MODEL_TYPES`)."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from emofusion.cli import main
from emofusion.errors import EmofusionError
from emofusion.models.lda import ShrinkageLDA
from emofusion.models.saved import ModelCard, load_model, save_model

CARD = ModelCard(label_names=["low", "high"], modalities=["b"], widths={"b": 3},
                 pooling={"b": "mean"}, system="b", model="lda", input="pooled")


def _schema(skops_file: bytes) -> dict[str, Any]:
    return json.loads(zipfile.ZipFile(io.BytesIO(skops_file)).read("schema.json"))


def _with_root(skops_file: bytes, root: dict[str, Any]) -> bytes:
    """`skops_file` (arrays and format version kept) with `root` as its top-level node."""
    header = {k: v for k, v in _schema(skops_file).items() if k in ("protocol", "_skops_version")}
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(skops_file)) as source, \
            zipfile.ZipFile(buffer, "w") as archive:
        for name in source.namelist():
            if name != "schema.json":
                archive.writestr(name, source.read(name))
        archive.writestr("schema.json", json.dumps({**root, **header}))
    return buffer.getvalue()


def _node(value: Any) -> dict[str, Any]:
    """skops' own schema node for `value` (as written by `skops.io.dumps`)."""
    return {k: v for k, v in _schema(sio.dumps(value)).items()
            if k not in ("protocol", "_skops_version")}


def _call_node(function: str, args: tuple, extra_args: tuple = ()) -> dict[str, Any]:
    """A ConstructorFromReduceNode: on construction skops calls ``function(*args, *extra)``;
    `extra_args` are ready-made schema nodes."""
    module, name = function.rsplit(".", 1)
    arguments = _node(args)
    arguments["content"] += list(extra_args)
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": arguments}


def _model_zip(path: Path, estimator_file: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.json", json.dumps(asdict(CARD)))
        archive.writestr("estimator.skops", estimator_file)
    return path


def _payloads(marker: Path, folder: Path) -> dict[str, dict[str, Any]]:
    """Each payload creates `marker` when constructed."""
    malicious_pickle = folder / "weights.pt"

    class _Touch:
        def __reduce__(self):
            return (Path.touch, (marker,))

    malicious_pickle.write_bytes(pickle.dumps(_Touch()))
    # torch.load(path, None, pickle) unpickles without weights_only: any pickle runs
    pickle_module = {"__class__": "pickle", "__module__": "torch.serialization",
                     "__loader__": "FunctionNode"}
    return {
        "builtins.eval": _call_node("builtins.eval", (f"open({str(marker)!r}, 'w').close()",)),
        "os.system": _call_node("os.system", (f"touch '{marker}'",)),
        "subprocess.Popen": _call_node("subprocess.Popen", (["touch", str(marker)],)),
        "torch.load": _call_node("torch.load", (str(malicious_pickle), None), (pickle_module,)),
    }


def _estimator_file(payload: dict[str, Any], hidden: bool) -> bytes:
    """The payload as the whole estimator file, or hidden in one attribute of a fitted LDA
    (whose own types are all trusted)."""
    if not hidden:
        return _with_root(sio.dumps(None), payload)
    rng = np.random.default_rng(0)
    lda_file = sio.dumps(ShrinkageLDA().fit(rng.standard_normal((40, 3)), np.arange(40) % 2))
    root = _schema(lda_file)
    root["content"]["content"]["shrinkage_grid"] = payload
    return _with_root(lda_file, root)


def _wait_for(path: Path, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.05)
    return path.exists()


@pytest.mark.parametrize("hidden", [False, True], ids=["top_level", "inside_an_lda"])
@pytest.mark.parametrize("function", ["builtins.eval", "os.system", "subprocess.Popen",
                                      "torch.load"])
def test_crafted_model_files_are_refused_before_anything_runs(tmp_path, capsys, function, hidden):
    marker = tmp_path / "payload-ran"
    payload = _payloads(marker, tmp_path)[function]
    path = _model_zip(tmp_path / "model.zip", _estimator_file(payload, hidden))

    with pytest.raises(EmofusionError) as info:
        load_model(path)
    assert function in str(info.value) and "--trust" in str(info.value)
    assert str(path) in str(info.value)
    features = tmp_path / "x.npy"
    np.save(features, np.zeros(3))
    capsys.readouterr()
    assert main(["predict", str(path), "--npy", f"b={features}"]) == 2
    err = capsys.readouterr().err
    assert function in err and "Traceback" not in err
    time.sleep(0.2)  # a started process would have touched the marker by now
    assert not marker.exists()

    # the crafted file is a real exploit: trusting it runs the payload
    with contextlib.suppress(Exception):  # what the payload returns is no estimator
        load_model(path, trust=True)
    assert _wait_for(marker)


# ------------------------------------------------------------- every model emofusion writes

WORDS = ["calm", "quiet", "soft", "slow", "loud", "angry", "fast", "sharp"]


def _write_dataset(folder: Path, transcripts: bool, n: int = 48) -> Path:
    """A generic manifest: 4 speakers, 2 classes, a (T, 24) spectrogram-like sequence modality
    'spec', a (6,) vector modality 'b' (widths are multiples of 3 for the spectrogram CNN) and,
    with `transcripts`, a transcript column."""
    rng = np.random.default_rng(0)
    rows = []
    for modality in ("spec", "b"):
        (folder / modality).mkdir(parents=True)
    for i in range(n):
        label = i % 2
        spec = rng.normal(size=(int(rng.integers(8, 17)), 24)) + label
        np.save(folder / "spec" / f"u{i}.npy", spec.astype(np.float32))
        np.save(folder / "b" / f"u{i}.npy", (rng.normal(size=6) + label).astype(np.float32))
        rows.append({"utterance_id": f"u{i}", "speaker": f"S{i // 2 % 4}",
                     "label": ["low", "high"][label],
                     "transcript": " ".join(rng.choice(WORDS[4 * label:4 * label + 4], 3)),
                     "spec_features": f"spec/u{i}.npy", "b_features": f"b/u{i}.npy"})
    table = pd.DataFrame(rows)
    table.drop(columns=[] if transcripts else ["transcript"]).to_csv(folder / "dataset.csv",
                                                                      index=False)
    return folder / "dataset.csv"


@pytest.fixture(scope="module")
def tiny_datasets(tmp_path_factory, tiny_bert_writer) -> dict[str, Any]:
    """Datasets without and with transcripts, and a tiny local text encoder."""
    folder = tmp_path_factory.mktemp("every-model")
    return {"plain": _write_dataset(folder / "plain", transcripts=False),
            "text": _write_dataset(folder / "text", transcripts=True),
            "encoder": tiny_bert_writer(folder / "bert", WORDS)}


def _quick_grid(spec, text_model: str) -> dict[str, list] | None:
    """One candidate per searched parameter, one epoch, five trees or boosting rounds, a tiny
    text encoder (the saved types do not depend on these values); None (the model's own search)
    for a portfolio such as auto."""
    if getattr(spec, "portfolio", ()):
        return None
    quick = {key: values[:1] for key, values in spec.grid.items()}
    for key in spec.build(0, None).get_params():
        if key.endswith("max_epochs"):
            quick[key] = [1]
        elif key.endswith("model_path"):
            quick[key] = [text_model]
        elif key in ("n_estimators", "max_iter"):
            quick[key] = [5]
    return quick


def _model_names() -> list[str]:
    from emofusion.models.registry import available_models

    return sorted(available_models())


COMBINATIONS = [(system, "none") for system in ("unimodal", "early", "late_vote", "late_mean",
                                                "stacking")]
COMBINATIONS += [("early", imbalance) for imbalance in ("class_weight", "oversample", "smote")]
def _cases() -> list:
    return [(model, system, imbalance)
            for model in _model_names() for system, imbalance in COMBINATIONS]


def _saved_types_problem(trained, description: str) -> str | None:
    from emofusion.models.saved import SAVED_MODEL_TYPES

    written = sio.get_untrusted_types(data=sio.dumps(trained.estimator))
    unlisted = sorted(set(written) - SAVED_MODEL_TYPES)
    if not unlisted:
        return None
    return (f"{description} saves types that emofusion.models.saved.SAVED_MODEL_TYPES does not "
            f"list: {unlisted}. Review each (skops must rebuild it from stored attributes "
            "without running code named by the file; its __setstate__ must not read files or "
            "import by name) and add its exact name there.")


def _train(csv: Path, tmp_path: Path, system: str, **options):
    from emofusion.config import build_config
    from emofusion.inference import train_model

    try:
        return train_model(build_config({"dataset": csv, "out": tmp_path / "unused",
                                         "inner_folds": 2, "cache_dir": tmp_path / "cache",
                                         **options}), system)
    except EmofusionError as refused:  # a combination the library refuses (e.g. smote + gru)
        pytest.skip(f"not a valid combination: {refused}")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # five rounds
@pytest.mark.parametrize(("model", "system", "imbalance"), _cases())
def test_every_saved_model_holds_only_listed_types(tiny_datasets, tmp_path, model, system,
                                                   imbalance):
    from emofusion.models.registry import get_model

    spec = get_model(model)
    reads_text = spec.input == "text" or spec.reads_transcripts
    if system == "unimodal":
        system = "transcript" if spec.input == "text" else "b"
    trained = _train(tiny_datasets["text" if reads_text else "plain"], tmp_path, system,
                     model=model, imbalance=imbalance,
                     param_grid=_quick_grid(spec, tiny_datasets["encoder"]))
    problem = _saved_types_problem(
        trained, f"model '{model}', system '{system}', imbalance '{imbalance}'")
    assert problem is None, problem
    loaded = load_model(save_model(trained, tmp_path / "model.zip"))  # without --trust
    assert type(loaded.estimator) is type(trained.estimator)
    np.testing.assert_array_equal(loaded.estimator.classes_, trained.estimator.classes_)


@pytest.mark.slow
@pytest.mark.parametrize("system", ["early", "stacking"])
def test_saved_models_of_a_dataset_with_transcripts_hold_only_listed_types(tiny_datasets,
                                                                           tmp_path, system):
    """The default model on a dataset whose transcripts are one more modality."""
    trained = _train(tiny_datasets["text"], tmp_path, system)
    problem = _saved_types_problem(trained, f"the default model, system '{system}', with "
                                            "transcripts")
    assert problem is None, problem
    assert type(load_model(save_model(trained, tmp_path / "m.zip")).estimator) is \
        type(trained.estimator)
