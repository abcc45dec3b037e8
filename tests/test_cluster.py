"""`--backend dask` against a real Dask cluster: a `dask scheduler` and a `dask worker` process
(two single-threaded worker processes under nannies) started on 127.0.0.1 by the module fixture,
stopped at the end even when a test fails.

The dask run's predictions must equal the loky run's exactly (LDA and the PyTorch MLP), a run
schedules one task per fold and base system (and, when asked, one per grid point of each
search, with the same result), the fold setup travels once per worker (a task
carries only its fold and base), a worker killed with SIGKILL in the middle of a task changes
nothing, and mismatched versions or workers that keep dying end the run
with one clear message.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import yaml

distributed = pytest.importorskip("distributed")

import emofusion  # noqa: E402
from emofusion import cluster, runner  # noqa: E402
from emofusion.cli import main  # noqa: E402
from emofusion.config import build_config  # noqa: E402
from emofusion.evaluation.experiment import run_fold  # noqa: E402

WORKERS = 2
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
FAST = "systems: [unimodal, early, late_mean]\ninner_folds: 2\nn_bootstrap: 100\n"
"""Every kind of system but stacking (its inner folds triple the time), short inner searches."""
MLP_CONFIG = FAST + "model: mlp\nparam_grid:\n  max_epochs: [2]\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(arguments: list[str], log: Path, **env: str) -> subprocess.Popen:
    with log.open("w") as handle:
        return subprocess.Popen([sys.executable, "-m", "dask", *arguments], stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **SINGLE_THREADED, **env})


def _stop(process: subprocess.Popen) -> None:
    """Stop the process group (the process and the worker processes its nannies started)."""
    for sig, patience in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(patience)
            return
        except subprocess.TimeoutExpired:
            continue


def _cluster(folder: Path, workers: int, memory_limit: str, **scheduler_env: str
             ) -> Iterator[str]:
    """Start a scheduler and `workers` single-threaded worker processes with this memory limit
    each; yield the scheduler's address once they are up; stop them all."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    processes = []
    try:
        processes.append(_start(["scheduler", "--host", "127.0.0.1", "--port",
                                 address.rsplit(":", 1)[1], "--no-dashboard"],
                                folder / "scheduler.log", **scheduler_env))
        processes.append(_start(["worker", address, "--nworkers", str(workers), "--nthreads",
                                 "1", "--host", "127.0.0.1", "--no-dashboard",
                                 "--local-directory", str(folder), "--memory-limit",
                                 memory_limit], folder / "workers.log"))
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory) -> Iterator[str]:
    """The address of a running local scheduler with `WORKERS` single-threaded workers."""
    yield from _cluster(tmp_path_factory.mktemp("dask-cluster"), WORKERS, "0")


@pytest.fixture
def client(scheduler) -> Iterator:
    """A client of the test cluster, with all its workers up (a killed one is restarted)."""
    with distributed.Client(scheduler, timeout=30, set_as_default=False) as connection:
        connection.wait_for_workers(WORKERS, timeout=120)
        yield connection


@pytest.fixture(scope="module")
def data(small_demo_writer, tmp_path_factory) -> Path:
    """60 utterances of 10 speakers, no problems; returns the CSV."""
    return small_demo_writer(tmp_path_factory.mktemp("cluster-data"), n_utterances=60,
                             bad_files=False)


def _run(data: Path, out: Path, config_text: str, *options: str) -> pd.DataFrame:
    config = out.parent / f"{out.name}.yaml"
    config.write_text(config_text)
    code = main(["run", str(data), "--config", str(config), "--out", str(out), "--split", "k5",
                 "--jobs", "2", "--no-cache", *options])
    assert code == 0
    return pd.read_csv(out / "predictions.csv")


@pytest.fixture(scope="module")
def predictions_only() -> Iterator[None]:
    """As `fast_report`, for the CLI too: no metrics, plots, report or summary table."""
    import emofusion.report.writer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(emofusion.report.writer, "write_report", lambda *args, **kwargs: {})
        patch.setattr(runner, "print_summary", lambda *args: None)
        yield


@pytest.fixture(scope="module")
def loky_predictions(data, tmp_path_factory, predictions_only) -> dict[str, pd.DataFrame]:
    """predictions.csv of the loky runs, per model."""
    base = tmp_path_factory.mktemp("loky-runs")
    return {"lda": _run(data, base / "lda", FAST),
            "mlp": _run(data, base / "mlp", MLP_CONFIG)}


@pytest.fixture
def submitted_keys(monkeypatch) -> list[str]:
    """The key of every task `cluster.run_folds` submits."""
    keys: list[str] = []
    real = cluster.submit_tasks

    def recording(*args):
        futures = real(*args)
        keys.extend(future.key for future in futures)
        return futures

    monkeypatch.setattr(cluster, "submit_tasks", recording)
    return keys


BASES = ("visual", "acoustic", "lexical", "early")
"""The base systems of the demo data: one task each per fold (late fusion is combined)."""


@pytest.mark.parametrize("model, config_text", [("lda", FAST), ("mlp", MLP_CONFIG)],
                         ids=["lda", "mlp"])
def test_dask_run_reproduces_the_loky_predictions(model, config_text, scheduler, client, data,
                                                  loky_predictions, tmp_path, submitted_keys,
                                                  capsys):
    predictions = _run(data, tmp_path / model, config_text, "--backend", "dask", "--scheduler",
                       scheduler)
    pd.testing.assert_frame_equal(predictions, loky_predictions[model], check_exact=True)
    assert "5 folds (20 tasks) on 2 Dask workers" in capsys.readouterr().err
    tasks = {tuple(key.split("-")[2:4]) for key in submitted_keys}  # emofusion-fold-NN-BASE-id
    assert len(submitted_keys) == 20
    assert tasks == {(f"{fold:02d}", base) for fold in range(5) for base in BASES}


@pytest.mark.slow
def test_scheduler_local_starts_a_cluster_of_jobs_processes(data, loky_predictions, tmp_path,
                                                           capsys):
    predictions = _run(data, tmp_path / "lda", FAST, "--backend", "dask", "--scheduler", "local")
    assert "5 folds (20 tasks) on 2 Dask workers (2 threads)" in capsys.readouterr().err
    pd.testing.assert_frame_equal(predictions, loky_predictions["lda"], check_exact=True)


@pytest.fixture
def setup_and_folds(data, tmp_path, fold_setup_maker):
    """(fold setup, outer folds) of a 5-fold run on the test data; config options as keywords."""
    return lambda **options: fold_setup_maker(data, tmp_path / "o", split="k5", **options)


def test_the_fold_setup_travels_once_per_worker_and_tasks_carry_only_their_fold(
        client, setup_and_folds):
    setup, folds = setup_and_folds()
    setup_bytes = len(cloudpickle.dumps(setup))
    future = cluster.scatter_setup(client, setup)
    try:
        holders = client.who_has([future])[future.key]
        assert sorted(holders) == sorted(client.nthreads())  # one copy on every worker
        per_task = [cluster.task_bytes(fold, base, future) for fold in folds for base in BASES]
        print(f"\nfold setup {setup_bytes} bytes, sent once per worker; "
              f"bytes per task: {min(per_task)}-{max(per_task)}")
        assert max(per_task) < setup_bytes / 20
        assert max(per_task) < 4096  # the function, ~60 row indices, a name, the setup's key
    finally:
        client.cancel([future])


def test_grid_points_are_tasks_of_their_own_and_change_no_prediction(client, setup_and_folds,
                                                                    monkeypatch):
    setup, folds = setup_and_folds(model="logreg", systems=["unimodal", "early"],
                                   param_grid={"C": [0.01, 1.0]})
    folds = folds[:2]
    assert not cluster.splits_grids(client, folds, setup)  # 8 fold x base tasks, 2 threads
    keys: list[str] = []
    real_submit = client.submit

    def recording(*args, key, **kwargs):
        keys.append(key)
        return real_submit(*args, key=key, **kwargs)

    monkeypatch.setattr(client, "submit", recording)
    outputs = {o.fold.index: o for o in cluster.run_folds(client, folds, setup, grid_tasks=True)}
    grid_keys = {tuple(key.split("-")[2:6]) for key in keys if key.startswith("emofusion-grid")}
    assert grid_keys == {(f"{fold.index:02d}", base, "logreg", str(point)) for fold in folds
                         for base in BASES for point in (0, 1)}
    assert len(keys) == len(grid_keys) + len(folds) * len(BASES)
    for fold in folds:
        local = run_fold(fold, setup)
        assert outputs[fold.index].searches == local.searches
        for system, probabilities in local.probabilities.items():
            np.testing.assert_array_equal(outputs[fold.index].probabilities[system],
                                          probabilities)


def test_grid_points_become_tasks_when_the_cluster_has_threads_to_spare(setup_and_folds):
    class Cluster:
        def __init__(self, threads: int):
            self.threads = threads

        def nthreads(self) -> dict[str, int]:
            return {f"worker{k}": 1 for k in range(self.threads)}

    setup, folds = setup_and_folds()
    assert not cluster.splits_grids(Cluster(20), folds, setup)  # 5 folds x 4 bases
    assert cluster.splits_grids(Cluster(21), folds, setup)


def test_versions_of_the_workers_are_compared_with_this_process(scheduler, data, tmp_path,
                                                                capsys, monkeypatch):
    installed = emofusion.__version__  # what the workers run
    monkeypatch.setattr(emofusion, "__version__", "0.0.0-elsewhere")
    code = main(["run", str(data), "--out", str(tmp_path / "o"), "--split", "k5", "--no-cache",
                 "--backend", "dask", "--scheduler", scheduler])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "the Dask workers run other library versions" in err
    assert f"emofusion {installed} (here 0.0.0-elsewhere)" in err.replace("\n", "")


def test_version_mismatches_name_worker_library_and_both_versions():
    mine = {"emofusion": "0.1.0", "numpy": "2.0"}
    workers = {"tcp://a:1": {"emofusion": "0.1.0", "numpy": "2.0"},
               "tcp://b:2": {"emofusion": "0.1.0", "numpy": "1.26"}}
    assert cluster.version_mismatches(mine, workers) == ["tcp://b:2: numpy 1.26 (here 2.0)"]


def test_dask_without_a_scheduler_is_refused(data, tmp_path, capsys):
    code = main(["run", str(data), "--out", str(tmp_path / "o"), "--backend", "dask"])
    err = capsys.readouterr().err
    assert code == 2 and "backend dask needs a scheduler" in err and "--scheduler local" in err
    assert not (tmp_path / "o").exists()


def _kill_a_worker_during_a_fold(client: distributed.Client, deadline: float) -> str:
    """SIGKILL the process of a worker while it computes a fold's task; returns its address."""
    while time.monotonic() < deadline:
        busy = [address for address, keys in client.processing().items()
                if any(str(key).startswith("emofusion-fold") for key in keys)]
        if busy:
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            return busy[0]
        time.sleep(0.05)
    raise AssertionError("no fold started on the cluster")


def _run_in_thread(config) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = runner.run(config, progress=False)
        except Exception as exc:  # reported by the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def _mlp_config(data: Path, out: Path, scheduler: str):
    values = {**yaml.safe_load(MLP_CONFIG), "dataset": data, "out": out, "split": "k5"}
    return build_config({**values, "use_cache": False, "backend": "dask",
                         "dask_scheduler": scheduler})


@pytest.mark.slow
def test_a_worker_killed_mid_fold_changes_no_prediction(scheduler, client, data, tmp_path,
                                                        loky_predictions):
    thread, outcome = _run_in_thread(_mlp_config(data, tmp_path / "run", scheduler))
    killed = _kill_a_worker_during_a_fold(client, time.monotonic() + 120)
    thread.join(300)
    assert "error" not in outcome, outcome.get("error")
    assert killed not in client.nthreads()  # the killed worker left (its nanny starts a new one)
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    pd.testing.assert_frame_equal(predictions, loky_predictions["mlp"], check_exact=True)


def _set_allowed_failures(count: int):
    def setter(dask_scheduler):
        dask_scheduler.allowed_failures = count
    return setter


@pytest.mark.slow
def test_a_fold_whose_workers_keep_dying_ends_with_a_clear_message(scheduler, client, data,
                                                                   tmp_path):
    client.run_on_scheduler(_set_allowed_failures(0))  # the first death is too many
    try:
        thread, outcome = _run_in_thread(_mlp_config(data, tmp_path / "run", scheduler))
        _kill_a_worker_during_a_fold(client, time.monotonic() + 120)
        thread.join(300)
    finally:
        client.run_on_scheduler(_set_allowed_failures(3))
    assert isinstance(outcome.get("error"), cluster.ClusterError), outcome
    message = str(outcome["error"])
    assert "killed its worker on each of 1 attempt(s) (the last worker, tcp://127.0.0.1" in message
    assert "had no memory limit and 1 thread(s)" in message  # the module cluster's workers
    assert "--memory-limit" in message and "--resume" in message


@pytest.mark.slow
def test_a_lost_client_resumes_on_the_cluster_without_recomputing_saved_folds(
        scheduler, client, data, tmp_path, loky_predictions, monkeypatch):
    from emofusion.evaluation.checkpoints import RunFolder

    config = _mlp_config(data, tmp_path / "run", scheduler)
    save = RunFolder.save

    def save_two_then_lose_the_client(folder, output):
        if len(folder.finished()) == 2:
            raise KeyboardInterrupt  # the client process goes away with 3 folds to do
        save(folder, output)

    monkeypatch.setattr(RunFolder, "save", save_two_then_lose_the_client)
    with pytest.raises(KeyboardInterrupt):
        runner.run(config, progress=False)
    assert len(RunFolder(config.out, resume=True).finished()) == 2
    time.sleep(1)
    assert not [key for keys in client.processing().values() for key in keys
                if str(key).startswith("emofusion-fold")]  # its tasks were cancelled
    monkeypatch.setattr(RunFolder, "save", save)
    computed = []
    original_run_folds = cluster.run_folds

    def counting_run_folds(client_, folds, setup):
        computed.extend(fold.index for fold in folds)
        yield from original_run_folds(client_, folds, setup)

    monkeypatch.setattr(cluster, "run_folds", counting_run_folds)
    runner.run(config, progress=False, resume=True)
    assert len(computed) == 3
    predictions = pd.read_csv(config.out / "predictions.csv")
    pd.testing.assert_frame_equal(predictions, loky_predictions["mlp"], check_exact=True)


@pytest.fixture
def one_gib_worker(tmp_path) -> Iterator[str]:
    """A scheduler that gives up on a task at its first dead worker, and one worker process whose
    nanny restarts it beyond 1 GiB."""
    yield from _cluster(tmp_path, 1, "1GiB", DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")


OUT_OF_MEMORY = FAST + "model: mlp\nparam_grid:\n  hidden_sizes: [[16384, 16384]]\n  max_epochs: [1]\n"
"""An MLP whose second layer alone holds 16384 x 16384 float32 weights: 1 GiB."""


def test_a_task_beyond_the_workers_memory_limit_ends_with_one_clear_line(one_gib_worker, data,
                                                                        tmp_path, capsys):
    config = tmp_path / "oom.yaml"
    config.write_text(OUT_OF_MEMORY)
    started = time.monotonic()
    code = main(["run", str(data), "--config", str(config), "--out", str(tmp_path / "o"),
                 "--split", "k5", "--no-cache", "--backend", "dask", "--scheduler",
                 one_gib_worker])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1]  # one line, the last
    assert "killed its worker on each of 1 attempt(s)" in errors[0]
    assert "had a memory limit of 1.00 GiB and 1 thread(s)" in errors[0]
    for fix in ("--memory-limit", "--nthreads 1", "--jobs", "--resume"):
        assert fix in errors[0]
    assert time.monotonic() - started < 60


FAULTS_OF_REPEATED_ARRAYS = """
import resource, sys
import numpy as np
if sys.argv[1] == "restore":
    from emofusion.cluster import restore_malloc_thresholds
    assert restore_malloc_thresholds()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    array = np.ones(2**18)  # 2 MiB, allocated and freed again
    del array
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.parametrize("restore", [False, True], ids=["dask-setting", "restored"])
def test_tasks_reuse_freed_memory_in_a_worker_started_as_dask_starts_it(restore):
    """Under Dask's MALLOC_TRIM_THRESHOLD_ every 2 MiB array is a fresh mmap whose 512 pages
    fault in again (the slowdown of tasks in Dask workers); restored, freed memory is reused."""
    done = subprocess.run([sys.executable, "-c", FAULTS_OF_REPEATED_ARRAYS,
                           "restore" if restore else "keep"], capture_output=True, text=True,
                          env={**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}, check=True)
    faults = int(done.stdout)
    assert (faults < 2_000) if restore else (faults > 50_000)
