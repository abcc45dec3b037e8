"""`emofusion sweep sweep.yaml`: a grid of runs over config fields and seeds, one run folder each.

The sweep file::

    out: runs/sweep                 # one run folder per grid point below it
    base:                           # RunConfig fields shared by every run
      dataset: features/dataset.csv
      backend: dask
      dask_scheduler: tcp://head:8786
    grid:                           # every combination of these values
      model: [lda, logreg]
      scaling: [standard, none]
    seeds: [0, 1, 2]                # each combination once per seed

Runs are computed one after the other, each on the base config's backend (its folds spread over
the cluster). Rerunning the same sweep skips finished runs (``metrics.json`` written), resumes
interrupted ones from their fold checkpoints, and starts the others.
"""

from __future__ import annotations

from itertools import product
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console

from emofusion.config import RunConfig, build_config
from emofusion.errors import ConfigError

SWEEP_OWNED = ("out", "seed")
"""RunConfig fields the sweep sets itself (the run folder, and the seed from ``seeds``)."""


class SweepSpec(BaseModel):
    """A sweep file: the runs' shared fields, the grid and the seeds."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="folder holding one run folder per grid point and seed")
    base: dict[str, Any] = Field(default_factory=dict, description="fields of every run")
    grid: dict[str, list[Any]] = Field(default_factory=dict,
                                       description="field -> values; every combination runs")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)


def load_sweep(path: Path) -> SweepSpec:
    """Read and check a sweep file (every run's config is validated by `sweep_runs`)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
        spec = SweepSpec(**(data if isinstance(data, dict) else {}))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read sweep file {path}: {exc}") from exc
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                            for err in exc.errors())
        raise ConfigError(f"sweep file {path}: {details}. It needs `out:` and may have `base:` "
                          "(run fields), `grid:` (field: [values]) and `seeds:` [list]") from exc
    owned = sorted(set(SWEEP_OWNED) & (set(spec.base) | set(spec.grid)))
    empty = sorted(field for field, values in spec.grid.items() if not values)
    if owned or empty:
        raise ConfigError(f"sweep file {path}: "
                          + (f"{owned} are set by the sweep (run folders below `out`, seeds "
                             "from `seeds`); remove them from base and grid" if owned else
                             f"grid fields {empty} have no values to try"))
    return spec


def _slug(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(_slug(v) for v in value)
    if isinstance(value, dict):
        return "+".join(f"{k}-{_slug(v)}" for k, v in value.items())
    return str(value).replace("/", "-").replace(" ", "")


def sweep_runs(spec: SweepSpec) -> list[tuple[str, RunConfig]]:
    """(run name, config) of every grid point and seed, in grid order; the name is the run
    folder below ``spec.out``, e.g. ``model=lda__scaling=none__seed=1``.

    Raises:
        ConfigError: a grid point is not a valid run config (naming the point).
    """
    runs = []
    fields = list(spec.grid)
    for values in product(*(spec.grid[f] for f in fields)):
        for seed in spec.seeds:
            point = {**dict(zip(fields, values, strict=True)), "seed": seed}
            name = "__".join(f"{field}={_slug(value)}" for field, value in point.items())
            try:
                config = build_config({**spec.base, **point, "out": spec.out / name})
            except ConfigError as exc:
                raise ConfigError(f"sweep run {name}: {exc}") from exc
            runs.append((name, config))
    return runs


def run_state(folder: Path) -> Literal["finished", "interrupted", "new"]:
    """``finished`` (its report is written), ``interrupted`` (fold checkpoints, no report) or
    ``new``."""
    if (folder / "metrics.json").is_file():
        return "finished"
    if (folder / "folds" / "run.json").is_file():
        return "interrupted"
    return "new"


def run_sweep(spec: SweepSpec, console: Console, progress: bool = True) -> list[Path]:
    """Compute every run of the sweep that is not finished; returns all run folders in order."""
    from emofusion.runner import run
    from emofusion.tracking import check_tracking, track

    runs = sweep_runs(spec)
    for number, (name, config) in enumerate(runs, start=1):
        state = run_state(config.out)
        console.print(f"[bold]sweep run {number}/{len(runs)}[/] {name}: "
                      + {"finished": "finished, skipped", "interrupted": "resuming",
                         "new": "starting"}[state])
        if state != "finished":
            check_tracking(config)
            track(run(config, progress=progress, console=console, resume=state == "interrupted",
                      overwrite=state == "new"), console.print)
    return [config.out for _, config in runs]
