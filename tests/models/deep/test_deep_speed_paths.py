"""The fast paths of the sequence models compute what the slow ones did, and a sequence model
goes through `emofusion train` / `emofusion predict`."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from emofusion.cli import main
from emofusion.models.deep._base import AdamW
from emofusion.models.deep._modules import BiRNN, length_mask


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_birnn_equals_packed_bidirectional_rnn(kind, n_layers):
    torch.manual_seed(0)
    ours = BiRNN(kind, 5, 7, n_layers, dropout=0.0).double().eval()
    ref = (torch.nn.GRU if kind == "gru" else torch.nn.LSTM)(
        5, 7, num_layers=n_layers, batch_first=True, bidirectional=True).double().eval()
    with torch.no_grad():
        for i, (fwd, bwd) in enumerate(ours.layers):
            for name, p in fwd.named_parameters():
                getattr(ref, name.replace("l0", f"l{i}")).copy_(p)
            for name, p in bwd.named_parameters():
                getattr(ref, name.replace("l0", f"l{i}") + "_reverse").copy_(p)
    lengths = torch.tensor([6, 1, 4, 6, 3])
    x = torch.randn(5, 6, 5, dtype=torch.float64)
    x[~length_mask(lengths, 6)] = 1e3  # padding must not leak into real frames
    with torch.no_grad():
        got = ours(x, lengths, full=False)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        want, _ = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=6)
    mask = length_mask(lengths, 6)
    assert torch.allclose(got[mask], want[mask], atol=1e-10)
    full = torch.randn(3, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(ours(full, torch.tensor([4, 4, 4]), full=True), ref(full)[0],
                              atol=1e-10)


def test_adamw_matches_torch_and_does_not_import_dynamo():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3).double()
    b = torch.nn.Linear(4, 3).double()
    b.load_state_dict(a.state_dict())
    ours = AdamW(a.parameters(), lr=1e-2, weight_decay=0.1)
    x = torch.randn(8, 4, dtype=torch.float64)
    for _ in range(5):
        ours.zero_grad()
        a(x).pow(2).sum().backward()
        ours.step()
    ref = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(5):
        ref.zero_grad()
        b(x).pow(2).sum().backward()
        ref.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-12)


def test_sequence_fit_does_not_import_dynamo(tmp_path):
    import subprocess

    code = ("import sys, numpy as np\n"
            "from emofusion.models.deep import SequenceClassifier\n"
            "rng = np.random.default_rng(0)\n"
            "X = np.empty((30, 1), dtype=object)\n"
            "for i in range(30): X[i, 0] = rng.normal(size=(int(rng.integers(1, 6)), 3))"
            ".astype('float32')\n"
            "SequenceClassifier(max_epochs=2, random_state=0).fit(X, np.arange(30) % 2)\n"
            "print('torch._dynamo' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"


def _write_dataset(folder, rng, n=48):
    """A generic manifest: 4 speakers, 2 classes, sequence modality 'a' and vector 'b'."""
    rows = []
    for modality in ("a", "b"):
        (folder / modality).mkdir(parents=True)
    for i in range(n):
        label = i % 2
        T = int(rng.integers(2, 9))
        a = rng.normal(size=(T, 3)) + label
        a[rng.integers(T)] += 2.0 * label
        np.save(folder / "a" / f"u{i}.npy", a.astype(np.float32))
        np.save(folder / "b" / f"u{i}.npy", (rng.normal(size=4) + label).astype(np.float32))
        rows.append({"utterance_id": f"u{i}", "speaker": f"S{i // 2 % 4}",
                     "label": ["low", "high"][label], "a_features": f"a/u{i}.npy",
                     "b_features": f"b/u{i}.npy"})
    with open(folder / "dataset.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "dataset.csv"


@pytest.mark.parametrize("model", ["mlp", "gru", "lstm", "transformer", "attention", "fusion_concat",
                                   "fusion_gated", "fusion_attention", "e2e_fusion_head"])
def test_every_deep_model_runs_trains_and_predicts_from_the_command_line(tmp_path, model):
    data = _write_dataset(tmp_path / "data", np.random.default_rng(0))
    config = tmp_path / "run.yaml"
    config.write_text("param_grid: {max_epochs: [3]}\ninner_folds: 2\nsplit: k2\n")
    assert main(["run", str(data), "--config", str(config), "--model", model,
                 "--out", str(tmp_path / "run"), "--no-cache"]) == 0
    with open(tmp_path / "run" / "predictions.csv") as f:
        systems = {row["system"] for row in csv.DictReader(f)}
    early = "model_fusion" if model.startswith(("fusion", "e2e")) else "early"
    assert {"a", "b", early} <= systems
    saved = tmp_path / "model.zip"
    assert main(["train", str(data), "--config", str(config), "--model", model,
                 "--system", "early", "--out", str(saved), "--no-cache"]) == 0
    out = tmp_path / "pred.csv"
    assert main(["predict", str(saved), str(data), "--out", str(out)]) == 0
    with open(out) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 48
    proba = np.array([[float(r["proba_low"]), float(r["proba_high"])] for r in table])
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert {r["predicted"] for r in table} <= {"low", "high"}
