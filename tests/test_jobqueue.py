"""HPC batch systems (dask-jobqueue) from the run config: the job script each system would
submit (no job is submitted; no batch system is needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emofusion.cli import main
from emofusion.config import RunConfig

pytest.importorskip("dask_jobqueue")

from emofusion.cluster import jobqueue_cluster  # noqa: E402

SLURM_RUN = """\
backend: dask
dask_scheduler: jobqueue
jobqueue:
  system: slurm
  cores: 8
  memory: 16GB
  walltime: "02:00:00"
  queue: cpu
  account: emotion
  jobs: 4
  job_extra_directives: ["--exclusive"]
  job_script_prologue: ["source ~/venvs/emofusion/bin/activate"]
"""

EXPECTED_LINES = {
    "slurm": ["#SBATCH -p cpu", "#SBATCH -A emotion", "#SBATCH --cpus-per-task=8",
              "#SBATCH --mem=15G", "#SBATCH -t 02:00:00", "#SBATCH --exclusive"],
    "pbs": ["#PBS -q cpu", "#PBS -A emotion", "#PBS -l select=1:ncpus=8:mem=15GB",
            "#PBS -l walltime=02:00:00"],
    "sge": ["#$ -q cpu", "#$ -P emotion", "#$ -l h_rt=02:00:00"],
    "lsf": ["#BSUB -q cpu", '#BSUB -P "emotion"', "#BSUB -n 8", "#BSUB -W 02:00:00"],
}


def _config(tmp_path: Path, system: str) -> RunConfig:
    path = tmp_path / "run.yaml"
    path.write_text(SLURM_RUN.replace("system: slurm", f"system: {system}"))
    return RunConfig.from_yaml(path, dataset=tmp_path / "dataset.csv")


@pytest.mark.parametrize("system", sorted(EXPECTED_LINES))
def test_the_job_script_follows_the_run_config(system, tmp_path):
    config = _config(tmp_path, system)
    cluster = jobqueue_cluster(config.jobqueue)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    for expected in EXPECTED_LINES[system]:
        assert expected in lines, (expected, script)
    assert "source ~/venvs/emofusion/bin/activate" in lines
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert "--nthreads 1" in worker and "--nworkers 8" in worker  # one fold per process
    assert "--nanny" in worker


@pytest.mark.parametrize("yaml_text, message", [
    ("backend: dask\ndask_scheduler: jobqueue\n", "go together"),
    ("backend: dask\ndask_scheduler: local\njobqueue: {system: slurm}\n", "go together"),
    ("backend: dask\ndask_scheduler: jobqueue\njobqueue: {system: torque}\n",
     "jobqueue.system: Input should be 'slurm', 'pbs', 'sge' or 'lsf'"),
])
def test_jobqueue_mistakes_are_one_message(yaml_text, message, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text)
    code = main(["run", str(tmp_path / "dataset.csv"), "--config", str(config), "--out",
                 str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err.replace("\n", "") and "Traceback" not in err
