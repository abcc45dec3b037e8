"""Outer folds on a Dask cluster (``--backend dask --scheduler tcp://HOST:PORT``).

* Each outer fold is one task per base system (`experiment.fold_tasks`: a modality, the
  transcript system, ``early`` / ``model_fusion``), so a run of 10 folds and 4 bases keeps 40
  workers busy; the client combines a fold's late fusion and stacking when all its tasks are done
  (`experiment.combined_folds`).
* When the cluster has more worker threads than the run has such tasks, every grid point of a
  base system's search is a task too (its inner-fold score); the base's task then only refits
  the best point (`submit_tasks`). A search with one candidate (the default LDA searches its
  shrinkage inside its own fit) stays one task.
* The fold setup (every feature matrix, labels, speakers, plan) is scattered to every worker
  once per run (`scatter_setup`); each task then carries only its fold (train/test row indices),
  its base system's name and a reference to the scattered setup (`task_bytes` measures it).
* A worker process runs one task at a time (`run_base_alone`): tasks change process-wide
  settings (BLAS thread limits, torch threads, torch's global random generator), so two tasks as
  threads of one worker would race. Start workers with ``--nthreads 1`` (and ``--nworkers N``)
  so that no worker thread waits on another.
* Each task first restores glibc's usual malloc thresholds in its worker process
  (`restore_malloc_thresholds`): Dask's worker setting made tasks 1.5-2x slower than in loky.
* Before any task, the workers' library versions must equal this process's
  (`check_worker_versions`): a fold computed with another scikit-learn is another experiment.
* A worker that dies (killed, out of memory) loses its task, which Dask reruns on another
  worker; a task that kills `distributed.scheduler.allowed-failures` workers in a row ends the
  run with a `ClusterError` (the finished folds stay saved; ``--resume`` continues).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import cloudpickle

from emofusion.config import JobQueueSettings
from emofusion.errors import EmofusionError, require
from emofusion.evaluation.experiment import (
    BaseOutput,
    FoldOutput,
    FoldSetup,
    combined_folds,
    fold_tasks,
    grid_point_tasks,
    run_base,
    score_grid_point,
)
from emofusion.evaluation.splits import OuterFold

CHECKED_DISTRIBUTIONS = ("numpy", "scipy", "scikit-learn", "pandas", "joblib", "torch",
                         "dask", "distributed", "cloudpickle")
"""Libraries whose versions change results or the wire format; emofusion itself is added."""

JOBQUEUE_CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster",
                     "lsf": "LSFCluster"}
ACCOUNT_KEYWORD = {"slurm": "account", "pbs": "account", "sge": "project", "lsf": "project"}
"""dask-jobqueue's name of the account charged, per batch system."""

_ONE_TASK_AT_A_TIME = threading.Lock()


class ClusterError(EmofusionError):
    """The Dask cluster cannot run the folds (version mismatch, workers dying)."""


def library_versions() -> dict[str, str | None]:
    """emofusion's and `CHECKED_DISTRIBUTIONS`' versions in this process (None: not installed)."""
    import emofusion

    versions: dict[str, str | None] = {"emofusion": emofusion.__version__}
    for name in CHECKED_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def version_mismatches(mine: dict[str, str | None],
                       workers: dict[str, dict[str, str | None]]) -> list[str]:
    """One line per worker and library whose version differs from `mine`.

    Args:
        mine: library -> version of this process (`library_versions`).
        workers: worker address -> its `library_versions`.
    """
    return [f"{address}: {name} {theirs.get(name)} (here {version})"
            for address, theirs in sorted(workers.items())
            for name, version in mine.items() if theirs.get(name) != version]


def check_worker_versions(client) -> None:
    """Raise `ClusterError` naming every worker whose libraries differ from this process's."""
    mismatches = version_mismatches(library_versions(), client.run(library_versions))
    if mismatches:
        raise ClusterError(
            "the Dask workers run other library versions than this process, so their folds "
            f"would not be this run's experiment: {'; '.join(mismatches)}. Install the same "
            "emofusion and libraries on every worker (e.g. one shared environment) and restart "
            "them")


MALLOC_THRESHOLDS = {-3: 32 * 2**20, -1: 64 * 2**20}
"""glibc `mallopt` settings for a task's worker process: M_MMAP_THRESHOLD (-3) 32 MiB and
M_TRIM_THRESHOLD (-1) 64 MiB, the largest values glibc's own dynamic thresholds reach."""


def restore_malloc_thresholds() -> bool:
    """Give this process glibc's usual large-allocation behaviour back (False where there is no
    glibc `mallopt`).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also switches off
    glibc's dynamic mmap threshold: every array over 128 kB is then a fresh mmap, page-faulted
    in and unmapped when freed. The folds' many mid-size numpy temporaries made tasks 1.5-2x
    slower in Dask workers than in loky workers (numpy's ``astype`` 4.6x); with these
    thresholds they run as fast. A worker then keeps up to 64 MiB of freed heap for reuse.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return all(libc.mallopt(option, value) == 1 for option, value in MALLOC_THRESHOLDS.items())


def run_base_alone(fold: OuterFold, name: str, setup: FoldSetup,
                   points: list[tuple[str, int]] | None = None,
                   scores: list[float | None] | None = None) -> BaseOutput:
    """`run_base` (given its grid points' `scores` when grid-candidate tasks computed them),
    never concurrently with another task of the same worker process."""
    inner_scores = dict(zip(points, scores, strict=True)) if points else None
    with _ONE_TASK_AT_A_TIME:
        restore_malloc_thresholds()
        return run_base(fold, name, setup, inner_scores)


def score_grid_point_alone(fold: OuterFold, name: str, point: tuple[str, int],
                           setup: FoldSetup) -> float | None:
    """`score_grid_point`, never concurrently with another task of the same worker process."""
    with _ONE_TASK_AT_A_TIME:
        restore_malloc_thresholds()
        return score_grid_point(fold, name, point, setup)


def scatter_setup(client, setup: FoldSetup):
    """The setup sent once to every worker; returns its Dask future."""
    return client.scatter(setup, broadcast=True, hash=False)


def task_bytes(fold: OuterFold, name: str, setup_future) -> int:
    """Bytes of one task as the client ships it: the function, the fold, the base system's name
    and the setup's key (the scattered setup itself is not in it)."""
    return len(cloudpickle.dumps((run_base_alone, fold, name, setup_future)))


def splits_grids(client, folds: list[OuterFold], setup: FoldSetup) -> bool:
    """Whether the cluster has more worker threads than the run has (fold, base system) tasks:
    then each grid point of a base's search is a task of its own (`submit_tasks`)."""
    return sum(client.nthreads().values()) > len(fold_tasks(folds, setup))


def submit_tasks(client, folds: list[OuterFold], setup: FoldSetup, setup_future,
                 grid_tasks: bool = False) -> list:
    """One future per (fold, base system) task (`fold_tasks`); keys ``emofusion-fold-NN-BASE-*``.

    With `grid_tasks`, a base whose search has several grid points (`grid_point_tasks`) first
    scores each point in a task of its own (keys ``emofusion-grid-NN-BASE-MODEL-INDEX-*``); its
    (fold, base) task then refits the best point, given all the scores.
    """
    run_id = uuid.uuid4().hex[:8]
    futures = []
    for fold, name in fold_tasks(folds, setup):
        points = grid_point_tasks(fold, name, setup) if grid_tasks else []
        points = points if len(points) > 1 else []
        scores = [client.submit(score_grid_point_alone, fold, name, point, setup_future,
                                pure=False, key=f"emofusion-grid-{fold.index:02d}-{name}-"
                                                f"{point[0]}-{point[1]}-{run_id}")
                  for point in points]
        futures.append(client.submit(run_base_alone, fold, name, setup_future, points, scores,
                                     pure=False,
                                     key=f"emofusion-fold-{fold.index:02d}-{name}-{run_id}"))
    return futures


def killed_worker_message(exc) -> str:
    """One line for a task that killed a worker on every attempt (a `KilledWorker`): the task,
    the last worker's memory limit and threads, and the fixes."""
    from dask.utils import format_bytes

    worker = exc.last_worker
    limit = (f"a memory limit of {format_bytes(worker.memory_limit)}" if worker.memory_limit
             else "no memory limit")
    return (
        f"the Dask task {exc.task} killed its worker on each of {exc.allowed_failures + 1} "
        f"attempt(s) (the last worker, {worker.address}, had {limit} and {worker.nthreads} "
        "thread(s)): a worker is restarted when its tasks need more than its "
        "memory limit, or when it crashes. Give each worker more memory (`dask worker "
        "--memory-limit 8GB`, fewer --nworkers per machine), one thread each (--nthreads 1), "
        "or with --scheduler local fewer --jobs (each local worker gets an equal share of this "
        "machine's memory). The finished folds are saved: rerun with --resume to continue")


LOST_SETUP_RETRIES = 3
"""How often a run scatters its setup again after the cluster lost it with a worker."""


def run_folds(client, folds: list[OuterFold], setup: FoldSetup,
              grid_tasks: bool | None = None) -> Iterator[FoldOutput]:
    """Each fold's output as soon as all its tasks have finished on the cluster behind `client`
    (`combined_folds`; in finishing order). `grid_tasks`: one task per grid point of each
    search (None: when the cluster has more threads than fold x base tasks, `splits_grids`).
    Scattered data cannot be recomputed: when a killed worker took the setup with it, Dask
    cancels the tasks that need it, and the folds not yet finished are submitted again with
    the setup scattered anew.

    Raises:
        ClusterError: the workers' versions differ, a task killed too many workers, or the
            setup was lost more than LOST_SETUP_RETRIES times.
    """
    from distributed import CancelledError, KilledWorker, as_completed

    check_worker_versions(client)
    if grid_tasks is None:
        grid_tasks = splits_grids(client, folds, setup)
    remaining = list(folds)
    for attempt in range(LOST_SETUP_RETRIES + 1):
        setup_future = scatter_setup(client, setup)
        futures = submit_tasks(client, remaining, setup, setup_future, grid_tasks)
        finished: set[int] = set()
        try:
            outputs = (future.result() for future in as_completed(futures, loop=client.loop))
            for output in combined_folds(remaining, setup, outputs):
                finished.add(output.fold.index)
                yield output
            return
        except KilledWorker as exc:
            raise ClusterError(killed_worker_message(exc)) from exc
        except CancelledError as exc:
            if attempt == LOST_SETUP_RETRIES:
                raise ClusterError(
                    f"the cluster cancelled a task ({exc}) {attempt + 1} times, after losing the "
                    "data it depends on with a worker; the finished folds are saved: rerun with "
                    "--resume to continue") from exc
            remaining = [fold for fold in remaining if fold.index not in finished]
        finally:
            client.cancel([*futures, setup_future])


def worker_summary(client) -> dict[str, Any]:
    """Workers and threads of the cluster (for the progress line)."""
    threads = client.nthreads()
    return {"workers": len(threads), "threads": sum(threads.values()),
            "multi_threaded": sorted(a for a, n in threads.items() if n > 1)}


def jobqueue_cluster(settings: JobQueueSettings):
    """A dask-jobqueue cluster whose jobs each run ``settings.cores`` single-threaded worker
    processes (no job submitted yet: ``cluster.scale(jobs=settings.jobs)`` does that;
    ``cluster.job_script()`` shows the script)."""
    jobqueue = require("dask_jobqueue", "hpc", "--scheduler jobqueue")
    cluster_class = getattr(jobqueue, JOBQUEUE_CLUSTERS[settings.system])
    return cluster_class(
        cores=settings.cores, processes=settings.cores, memory=settings.memory,
        walltime=settings.walltime, queue=settings.queue, interface=settings.interface,
        job_extra_directives=settings.job_extra_directives,
        job_script_prologue=settings.job_script_prologue,
        scheduler_options={"dashboard_address": None},
        **{ACCOUNT_KEYWORD[settings.system]: settings.account})
