"""Growth benchmark: the default protocol on generated course-layout corpora of growing size, and
the Dask backend's overhead against loky on the same cores.

For each size (default 1,000, 5,000 and 20,000 utterances; 10 speakers, the course widths:
visual T ~ 30 x 2048, acoustic T ~ 10 x 128, lexical 768), the corpus is generated once (kept in
``--data-root``) and the default protocol (3 modalities + early + both late fusions + stacking,
nested speaker-grouped search, leave one speaker out, 2 loky workers) runs cold (empty pooled
cache) in a fresh process: wall and CPU seconds, and peak memory: the peak resident size of the
largest single process (the main process or one worker; memory-mapped features shared by the
workers count in each).

Then, on the ``--overhead-size`` corpus with the cache warm, the same protocol with loky (2
workers) and with ``--backend dask --scheduler local --jobs 2`` (a local Dask cluster of 2
single-threaded worker processes on the same 2 cores): the overhead is dask / loky - 1.

Wall times depend on what else runs on the machine: the JSON line gives the load average at the
start, and CPU seconds. Prints one JSON line.

Usage: python bench/bench_growth.py [--sizes 1000 5000 20000] [--overhead-size 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_core import _cpu_seconds

LOAD_AT_START = round(os.getloadavg()[0], 2)


def ensure_data(root: Path, n_utterances: int) -> tuple[Path, float]:
    """The generated corpus of `n_utterances` (made once) and the seconds its generation took
    (0 when it was already there)."""
    from emofusion.data.demo import write_demo_dataset

    csv = root / f"course{n_utterances}" / "dataset.csv"
    start = time.perf_counter()
    if not csv.is_file():
        write_demo_dataset(csv.parent, n_utterances=n_utterances, seed=1, bad_files=False)
    return csv, time.perf_counter() - start


def measure_run(csv: Path, out: Path, cache: Path, backend: str) -> dict:
    """The default protocol in this process on `backend` (loky, or dask on a local cluster):
    wall and CPU seconds, peak RSS of this process and its reaped workers, pooled UA."""
    from emofusion import build_config, run

    options = {"backend": "dask", "dask_scheduler": "local"} if backend == "dask" else {}
    config = build_config({"dataset": csv, "out": out, "cache_dir": cache, "jobs": 2, **options})
    start = time.perf_counter()
    result = run(config, progress=False)
    wall = time.perf_counter() - start
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # reap the workers so their usage is counted
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return {"seconds": round(wall, 1), "cpu_seconds": round(_cpu_seconds(), 1),
            "peak_mib": round(max(u.ru_maxrss for u in usage) / 1024),
            "ua": {k: round(v["pooled"]["ua"], 4) for k, v in result.metrics["systems"].items()}}


def run_in_subprocess(csv: Path, out: Path, cache: Path, backend: str = "loky") -> dict:
    """`measure_run` in a fresh interpreter, so imports and memory are counted from zero."""
    done = subprocess.run([sys.executable, __file__, "--measure-run", str(csv), str(out),
                           str(cache), backend], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth(root: Path, sizes: list[int], work: Path) -> list[dict]:
    """One cold run per corpus size."""
    rows = []
    for size in sizes:
        csv, generate_seconds = ensure_data(root, size)
        cold = run_in_subprocess(csv, work / f"cold{size}", work / f"cache{size}")
        rows.append({"n_utterances": size, "generate_seconds": round(generate_seconds, 1),
                     "data_mib": round(sum(f.stat().st_size for f in csv.parent.rglob("*")
                                           if f.is_file()) / 2**20),
                     **{k: cold[k] for k in ("seconds", "cpu_seconds", "peak_mib")},
                     "ua_early": cold["ua"].get("early")})
        print(f"{size} utterances: {rows[-1]}", file=sys.stderr)
    return rows


def dask_overhead(root: Path, size: int, work: Path) -> dict:
    """Warm-cache runs on loky and on a local Dask cluster, same 2 cores."""
    csv, _ = ensure_data(root, size)
    cache = work / f"cache{size}"
    if not cache.is_dir():  # growth did not run this size
        run_in_subprocess(csv, work / "warmup", cache)
    loky = run_in_subprocess(csv, work / "loky", cache)
    dask = run_in_subprocess(csv, work / "dask", cache, "dask")
    return {"n_utterances": size, "loky_seconds": loky["seconds"], "dask_seconds": dask["seconds"],
            "overhead": round(dask["seconds"] / loky["seconds"] - 1, 3),
            "same_ua": loky["ua"] == dask["ua"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 5000, 20000])
    parser.add_argument("--overhead-size", type=int, default=1000, help="0 skips the Dask part")
    parser.add_argument("--data-root", type=Path,
                        default=Path.home() / ".cache/emofusion/bench/growth")
    parser.add_argument("--keep-data", action="store_true", help="keep the generated corpora")
    parser.add_argument("--measure-run", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_run:
        csv, out, cache, backend = args.measure_run
        print(json.dumps(measure_run(Path(csv), Path(out), Path(cache), backend)))
        return
    work = Path(tempfile.mkdtemp(prefix="emofusion-growth-"))
    result: dict = {"benchmark": "growth_default_protocol", "cores": os.cpu_count(),
                    "load_average_1min_at_start": LOAD_AT_START,
                    "runs": growth(args.data_root, args.sizes, work)}
    if args.overhead_size:
        result["dask_vs_loky"] = dask_overhead(args.data_root, args.overhead_size, work)
    shutil.rmtree(work, ignore_errors=True)
    if not args.keep_data:
        shutil.rmtree(args.data_root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
