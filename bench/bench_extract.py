"""Extraction throughput on real data, one worker process per extractor (jobs=1, one thread).

* ``egemaps``, ``compare`` (ComParE 2016 functionals) and ``logmel`` on RAVDESS speech files
  (16 kHz): audio seconds per wall second and per CPU second (= per core, since extraction runs
  in one thread);
* ``minilm`` and ``vader`` on MELD train sentences: utterances per wall / CPU second.

Each extractor runs through `extract_corpus` (read, extract, atomic .npy write, index) into an
empty temporary folder in a fresh interpreter, after its model is loaded (load time reported
apart); peak RSS is that process's. On a shared machine wall time depends on the load (the
1-minute load average is recorded); CPU time much less so.

Prints one JSON line. Usage: python bench/bench_extract.py [--files 120] [--sentences 2000]
[--extractors egemaps,compare,logmel,minilm,vader]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
RAVDESS = DATA / "ravdess_speech_16k"
MELD = DATA / "meld"
TEXT_EXTRACTORS = ("minilm", "vader")


def _table(extractor: str, n: int):
    import pandas as pd

    from emofusion.data.corpora import read_corpus

    if extractor in TEXT_EXTRACTORS:
        table = read_corpus("meld", MELD, classes="all").table
        table = table[table["split"] == "train"].head(n)
    else:
        table = read_corpus("ravdess", RAVDESS, classes="all").table.sort_values("utterance_id")
        table = table.iloc[:: max(1, len(table) // n)].head(n)  # spread over actors/emotions
    return pd.DataFrame(table).reset_index(drop=True)


def measure(extractor: str, n: int) -> dict:
    """In this process: load the extractor, then extract `n` utterances; timings and peak RSS."""
    import soundfile as sf

    from emofusion.features.extract import cached_extractor, extract_corpus, one_thread
    from emofusion.features.extractors import build_extractor

    table = _table(extractor, n)
    start = time.perf_counter()
    with one_thread():
        cached_extractor(extractor, build_extractor(extractor, {}).params())
    load = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as out:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        extract_corpus(table, sorted(set(table["label"])), out, [extractor], jobs=1,
                       progress=False)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    result = {"n": len(table), "load_seconds": round(load, 2), "wall_seconds": round(wall, 2),
              "cpu_seconds": round(cpu, 2),
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if extractor in TEXT_EXTRACTORS:
        result["utterances_per_wall_second"] = round(len(table) / wall, 1)
        result["utterances_per_cpu_second"] = round(len(table) / cpu, 1)
    else:
        audio = sum(sf.info(path).duration for path in table["audio_path"])
        result["audio_seconds"] = round(audio, 1)
        result["audio_seconds_per_wall_second"] = round(audio / wall, 1)
        result["audio_seconds_per_cpu_second"] = round(audio / cpu, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=120, help="RAVDESS files per audio extractor")
    parser.add_argument("--sentences", type=int, default=2000,
                        help="MELD sentences per text extractor")
    parser.add_argument("--extractors", default="egemaps,compare,logmel,minilm,vader",
                        help="comma-separated extractors to measure")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: one extractor
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.sentences if args.one in TEXT_EXTRACTORS
                                 else args.files)))
        return
    if not (RAVDESS.is_dir() and MELD.is_dir()):
        print(json.dumps({"benchmark": "extract_throughput", "skipped": f"{DATA} incomplete"}))
        return
    result = {"benchmark": "extract_throughput", "cores": os.cpu_count(), "threads": 1,
              "load_avg_1min_start": round(os.getloadavg()[0], 1)}
    for name in args.extractors.split(","):
        done = subprocess.run([sys.executable, __file__, "--one", name, "--files", str(args.files),
                               "--sentences", str(args.sentences)],
                              capture_output=True, text=True, check=True)
        result[name] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_avg_1min_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
