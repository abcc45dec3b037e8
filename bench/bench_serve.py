"""Load test of `emofusion serve` on localhost: a bounded client sends N requests (default
2,000) with C in flight (default 16) for each of two inputs, and reports errors, throughput and
latency percentiles.

The model: late fusion (mean of probabilities) of eGeMAPS (openSMILE, audio) and MiniLM
(transcript) trained with `emofusion train` on the shared RAVDESS speech data (4 classes, all
actors; the transcript is one of the two fixed RAVDESS sentences). Features are extracted once
into ``~/.cache/emofusion/bench/serve_ravdess`` and reused.

Inputs: (1) ``features``: the eGeMAPS (88) and MiniLM (384) arrays as JSON, so the request
costs parsing and inference only; (2) ``wav3s_text``: a 3-second 16 kHz wav and its transcript,
so every request runs both extractors. The server runs in a subprocess (``--workers`` threads
for predictions); the client shares the same 2 cores, so the numbers include its cost. The CPU
time the server and the client spend per request is reported too: unlike throughput and
latency, it does not depend on what else the machine is doing.

Prints one JSON line. Usage: python bench/bench_serve.py [--requests 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RAVDESS = REPO_ROOT.parent / "shared" / "data" / "ravdess_speech_16k"
CACHE = Path.home() / ".cache" / "emofusion" / "bench"
FEATURES = CACHE / "serve_ravdess"
CLIP = RAVDESS / "Actor_01" / "03-01-05-01-01-01-01.wav"  # angry, "Kids are talking by the door"
TRANSCRIPT = "Kids are talking by the door"
DEADLINE_SECONDS = 900.0


def ensure_model() -> Path:
    """The late-fusion model file (extracting and training only what is missing)."""
    from emofusion.cli import main
    from emofusion.data.corpora import read_corpus
    from emofusion.features.extract import extract_corpus

    corpus = read_corpus("ravdess", RAVDESS)
    csv = extract_corpus(corpus.table, list(corpus.label_names), FEATURES, ["egemaps", "minilm"],
                         corpus=corpus.description, progress=False)
    model = FEATURES / "late_mean.zip"
    if not model.is_file():
        assert main(["train", str(csv), "--system", "late_mean", "--out", str(model)]) == 0
    return model


def three_second_wav() -> bytes:
    """The first 3 s of `CLIP` (zero-padded if shorter) as 16-bit wav bytes."""
    import soundfile

    samples, rate = soundfile.read(CLIP, dtype="float32")
    samples = np.pad(samples[: 3 * rate], (0, max(0, 3 * rate - len(samples))))
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def features_json(model_path: Path, wav: bytes, folder: Path) -> str:
    """The request's feature arrays, extracted from the same wav and transcript."""
    from emofusion.features.extract import extract_single
    from emofusion.models.saved import load_model

    (folder / "clip.wav").write_bytes(wav)
    arrays = extract_single(load_model(model_path).card.extractors, wav=folder / "clip.wav",
                            text=TRANSCRIPT)
    return json.dumps({name: array.tolist() for name, array in arrays.items()})


def server_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process's children: the server."""
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    ticks = 0
    for pid in children:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile_ms(latencies: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(latencies, q)), 1) if latencies else float("nan")


async def load(url: str, request: dict, n_requests: int, concurrency: int) -> dict:
    """Send `request` (httpx ``post`` keyword arguments) `n_requests` times to /predict with
    `concurrency` in flight; stop early at `DEADLINE_SECONDS`."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    start, server_cpu, client_cpu = time.perf_counter(), server_cpu_seconds(), time.process_time()

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < n_requests and time.perf_counter() - start < DEADLINE_SECONDS:
            sent += 1
            began = time.perf_counter()
            try:
                answer = await client.post("/predict", **request)
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code}: {answer.text[:200]}")
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
            latencies.append(time.perf_counter() - began)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    per_request_ms = 1000 / max(len(latencies), 1)
    return {"requests": len(latencies), "errors": len(errors), "error_examples": errors[:3],
            "seconds": round(seconds, 1), "throughput_rps": round(len(latencies) / seconds, 1),
            "server_cpu_ms_per_request": round((server_cpu_seconds() - server_cpu) * per_request_ms, 1),
            "client_cpu_ms_per_request": round((time.process_time() - client_cpu) * per_request_ms, 1),
            "p50_ms": percentile_ms(latencies, 50), "p90_ms": percentile_ms(latencies, 90),
            "p99_ms": percentile_ms(latencies, 99), "max_ms": percentile_ms(latencies, 100),
            "stopped_at_deadline": len(latencies) < n_requests}


def main() -> None:
    import tempfile

    from emofusion.serve.server import background_server

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="requests per input")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="the server's prediction threads")
    args = parser.parse_args()
    if not RAVDESS.is_dir():
        print(json.dumps({"benchmark": "serve_load", "skipped": f"{RAVDESS} not found"}))
        return
    load_start = os.getloadavg()
    model = ensure_model()
    wav = three_second_wav()
    with tempfile.TemporaryDirectory() as folder:
        features = features_json(model, wav, Path(folder))
    inputs = {"features": {"data": {"features": features}},
              "wav3s_text": {"files": {"audio": ("clip.wav", wav, "audio/wav")},
                             "data": {"text": TRANSCRIPT}}}
    results = {}
    started = time.perf_counter()
    with background_server(model, "--workers", str(args.workers)) as url:
        for name, request in inputs.items():
            asyncio.run(load(url, request, 20, 4))  # warm-up, not counted
            results[name] = asyncio.run(load(url, request, args.requests, args.concurrency))
    print(json.dumps({
        "benchmark": "serve_load", "model": "late_mean (eGeMAPS + MiniLM), RAVDESS 4 classes",
        "requests_per_input": args.requests, "concurrency": args.concurrency,
        "server_workers": args.workers, "features_request_bytes": len(features),
        "wav_request_bytes": len(wav), "inputs": results, "cpu_count": os.cpu_count(),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_average_start": load_start, "load_average_end": os.getloadavg()}))


if __name__ == "__main__":
    main()
