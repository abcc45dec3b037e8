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
workers), with ``--backend dask --scheduler local --jobs 2`` (the run starts a local Dask cluster
of 2 single-threaded worker processes on the same 2 cores, and stops it) and with ``--backend
dask --scheduler tcp://...`` against a running cluster of the same shape (``dask scheduler`` and
``dask worker --nworkers 2 --nthreads 1``, started before the runs and stopped after them, as a
cluster is used: its first run meets freshly started workers, the next three are reported with
three loky runs, alternating): the overheads are dask / median loky - 1 (the running cluster's
from the median of its three runs).

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
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
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
    """The default protocol in this process on `backend` (``loky``, or dask: ``local`` for a local
    cluster the run starts, or a running scheduler's address):
    wall and CPU seconds, peak RSS of this process and its reaped workers, pooled UA."""
    from emofusion import build_config, run

    options = {} if backend == "loky" else {"backend": "dask", "dask_scheduler": backend}
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


def dask_overhead(root: Path, size: int, work: Path, repeats: int = 3) -> dict:
    """Warm-cache runs on the same 2 cores: loky, Dask on a local cluster the run starts, and
    Dask against a running cluster (its first run on fresh workers, then `repeats` more);
    medians of the repeated runs, alternating loky and the running cluster."""
    csv, _ = ensure_data(root, size)
    cache = work / f"cache{size}"
    if not cache.is_dir():  # growth did not run this size
        run_in_subprocess(csv, work / "warmup", cache)
    local = run_in_subprocess(csv, work / "dask-local", cache, "local")
    loky, running = [], []
    with running_cluster(work / "cluster") as address:
        first = run_in_subprocess(csv, work / "dask-first", cache, address)
        for k in range(repeats):
            loky.append(run_in_subprocess(csv, work / f"loky{k}", cache))
            running.append(run_in_subprocess(csv, work / f"dask{k}", cache, address))
    loky_seconds = statistics.median(r["seconds"] for r in loky)
    running_seconds = statistics.median(r["seconds"] for r in running)
    return {"n_utterances": size, "loky_seconds": [r["seconds"] for r in loky],
            "dask_local_seconds": local["seconds"],
            "overhead_local": round(local["seconds"] / loky_seconds - 1, 3),
            "dask_running_first_seconds": first["seconds"],
            "dask_running_seconds": [r["seconds"] for r in running],
            "overhead_running_cluster": round(running_seconds / loky_seconds - 1, 3),
            "same_ua": all(r["ua"] == local["ua"] for r in [*loky, first, *running])}


@contextmanager
def running_cluster(folder: Path, workers: int = 2):
    """A `dask scheduler` and `dask worker --nworkers 2 --nthreads 1` on this machine; yields
    the scheduler's address once the workers are up, and stops them afterwards."""
    from distributed import Client

    folder.mkdir(parents=True)
    address_file = folder / "scheduler.json"
    module = [sys.executable, "-m"]
    processes = [subprocess.Popen([*module, "distributed.cli.dask_scheduler",
                                   "--scheduler-file", str(address_file), "--port", "0",
                                   "--no-dashboard"], stderr=subprocess.DEVNULL)]
    try:
        while not address_file.is_file():
            time.sleep(0.2)
        processes.append(subprocess.Popen(
            [*module, "distributed.cli.dask_worker", "--scheduler-file", str(address_file),
             "--nworkers", str(workers), "--nthreads", "1", "--no-dashboard"],
            stderr=subprocess.DEVNULL))
        with Client(scheduler_file=str(address_file)) as client:
            client.wait_for_workers(workers, timeout=120)
            address = client.scheduler.address
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=60)


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
