"""The lower bounds in pyproject.toml are true: the core tests pass with the LOWEST allowed
version of every core dependency.

A fresh virtual environment (no system site-packages) gets uv from the package index, then
``uv pip install --resolution lowest-direct`` installs emofusion with each direct dependency at
the lowest version its ``>=`` bound allows (their own dependencies at compatible versions), and
a pooled classical run end to end (run folder, metrics, train/predict round trip, saved-model
safety, significance) runs in it. Skipped, with the reason, when the index cannot be reached.

The venv is kept under ``~/.cache/emofusion/min-deps/`` for the next session, one per checkout
(emofusion is installed editable from it) and interpreter. It is rebuilt when pyproject.toml,
the Python version or the install command change, when it is older than `CACHE_DAYS` (the
dependencies' own dependencies are re-resolved) or incomplete; a clean machine builds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]

CORE_TESTS = [
    "tests/test_cli_and_predict.py::test_run_writes_the_whole_run_folder",
    "tests/test_cli_and_predict.py::test_metrics_are_reproducible_from_predictions",
    "tests/test_cli_and_predict.py::test_train_then_predict_round_trip",
    "tests/test_cli_and_predict.py::test_fusion_systems_round_trip_through_a_model_file",
    "tests/test_cli_and_predict.py::test_untrusted_types_are_refused_without_trust",
    "tests/evaluation/test_significance.py",
]
INSTALL_MINUTES = 4
INSTALL_ARGS = ["--resolution", "lowest-direct", "-e", str(REPO_ROOT), "pytest>=8"]
CACHE_DAYS = 7
CACHE_ROOT = Path.home() / ".cache" / "emofusion" / "min-deps"


def lower_bounds() -> dict[str, str]:
    """Core dependency name -> its lowest allowed version (every one must have a ``>=``)."""
    text = (REPO_ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.M | re.S)
    assert block, "pyproject.toml has no [project] dependencies list"
    bounds = {}
    code = "\n".join(line.split("#")[0] for line in block[1].splitlines())
    for requirement in re.findall(r'"([^"]+)"', code):
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^]]*\])?\s*>=\s*([0-9][^,;\s]*).*", requirement)
        assert match, f"core dependency without a lower bound: {requirement!r}"
        bounds[match[1].lower()] = match[2]
    return bounds


def _run(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def _index_unreachable(output: str) -> bool:
    signs = ("Could not fetch", "Failed to establish", "Temporary failure in name resolution",
             "No matching distribution found for uv", "Network is unreachable",
             "Failed to fetch", "error sending request", "dns error", "ConnectTimeout")
    return any(sign in output for sign in signs)


def _cache_folder() -> Path:
    """This checkout's and this interpreter's cached venv folder (other checkouts keep theirs)."""
    owner = f"{REPO_ROOT}\n{os.path.realpath(sys.executable)}"
    return CACHE_ROOT / hashlib.sha256(owner.encode()).hexdigest()[:16]


def _venv_key() -> str:
    """Hash of what the cached venv's contents depend on (see the module docstring)."""
    inputs = [sys.version, (REPO_ROOT / "pyproject.toml").read_text(), INSTALL_ARGS]
    return hashlib.sha256(json.dumps(inputs).encode()).hexdigest()


def _usable(folder: Path) -> bool:
    """A complete cached venv (renamed into place only after a successful install) of the same
    key, not expired, whose interpreter still runs."""
    try:
        stamp = json.loads((folder / "stamp.json").read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("key") != _venv_key() or time.time() - stamp.get("built", 0) > CACHE_DAYS * 86400:
        return False
    python = folder / "venv" / "bin" / "python"
    return _run([str(python), "-m", "uv", "--version"], timeout=60).returncode == 0


def _build(folder: Path) -> None:
    """A venv in `folder` with uv, then emofusion at the lowest allowed core versions (skips the
    test when the package index cannot be reached); the stamp is written last."""
    venv.create(folder / "venv", with_pip=True, system_site_packages=False)
    python = folder / "venv" / "bin" / "python"
    got_uv = _run([str(python), "-m", "pip", "install", "--quiet", "uv"], timeout=300)
    if got_uv.returncode:
        output = got_uv.stdout + got_uv.stderr
        if _index_unreachable(output):
            pytest.skip(f"the package index cannot be reached (pip install uv): {output[-300:]}")
        raise AssertionError(f"pip install uv failed:\n{output}")
    install = _run([str(python), "-m", "uv", "pip", "install", "--python", str(python),
                    *INSTALL_ARGS], timeout=INSTALL_MINUTES * 60)
    output = install.stdout + install.stderr
    if install.returncode and _index_unreachable(output):
        pytest.skip(f"the package index cannot be reached (uv pip install): {output[-300:]}")
    assert install.returncode == 0, f"the lowest allowed versions do not install:\n{output}"
    (folder / "stamp.json").write_text(json.dumps({"key": _venv_key(), "built": time.time()}))


@pytest.fixture(scope="module")
def lowest_venv() -> Path:
    """A venv holding emofusion with the lowest allowed core dependencies (and pytest): the
    cached one when usable, else a new one built beside it that replaces it."""
    cached = _cache_folder()
    if not _usable(cached):
        building = cached.with_name(f"{cached.name}.building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        try:
            _build(building)
            shutil.rmtree(cached, ignore_errors=True)
            building.rename(cached)  # a venv runs from any folder (pyvenv.cfg is relative)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return cached / "venv" / "bin" / "python"


def _installed(python: Path) -> dict[str, str]:
    listing = _run([str(python), "-m", "uv", "pip", "freeze", "--python", str(python)],
                   timeout=60).stdout
    pairs = (line.split("==") for line in listing.splitlines() if "==" in line)
    return {name.lower().replace("_", "-"): version for name, version in pairs}


@pytest.mark.slow
def test_core_tests_pass_with_the_lowest_allowed_dependencies(lowest_venv):
    installed = _installed(lowest_venv)
    for name, lowest in lower_bounds().items():
        assert Version(installed[name]) == Version(lowest), (
            f"{name}: {installed[name]} installed, lowest allowed {lowest}")
    done = _run([str(lowest_venv), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                 *CORE_TESTS], timeout=300, cwd=REPO_ROOT)
    assert done.returncode == 0, (
        "core tests fail with the lowest allowed versions "
        f"({', '.join(f'{n}=={v}' for n, v in sorted(installed.items()))}); raise the bound of "
        f"the dependency at fault in pyproject.toml:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    assert re.search(r"\b\d+ passed", done.stdout) and "skipped" not in done.stdout, done.stdout


def test_every_core_dependency_has_a_lower_bound():
    bounds = lower_bounds()
    assert {"numpy", "scipy", "scikit-learn", "joblib", "skops", "pandas"} <= set(bounds)
