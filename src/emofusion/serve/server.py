"""``emofusion serve``: load the model once, warm up its extractors, run uvicorn."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emofusion.errors import ConfigError, require

API_KEY_VARIABLE = "EMOFUSION_API_KEY"


@dataclass(frozen=True)
class ServeOptions:
    """How to serve: address, access, limits and concurrency (see `create_app`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    trust: bool = False
    max_upload_mb: float = 25.0
    max_audio_seconds: float = 60.0
    workers: int = 2
    timeout: float = 60.0


def build_app(model_path: Path, options: ServeOptions):
    """The application for `model_path`, its extractors loaded. The API key is
    ``options.api_key``, else the ``EMOFUSION_API_KEY`` environment variable, else none."""
    require("fastapi", "serve", "emofusion serve")
    require("multipart", "serve", "emofusion serve (uploads)")
    from emofusion.serve.app import create_app
    from emofusion.serve.service import Limits, PredictionService

    if options.workers < 1 or options.max_upload_mb <= 0 or options.timeout <= 0:
        raise ConfigError("--workers, --max-upload-mb and --timeout must be positive")
    service = PredictionService.from_file(
        model_path, trust=options.trust, limits=Limits(max_audio_seconds=options.max_audio_seconds))
    service.warm_up()
    return create_app(service, api_key=options.api_key or os.environ.get(API_KEY_VARIABLE) or None,
                      max_upload_bytes=int(options.max_upload_mb * 2**20),
                      workers=options.workers, timeout=options.timeout)


def run_server(model_path: Path, options: ServeOptions, announce=print) -> None:
    """Serve `model_path` until interrupted; BLAS, torch and OpenCV use one thread per worker.
    `announce` receives one line with the address once the model is loaded."""
    uvicorn = require("uvicorn", "serve", "emofusion serve")
    from emofusion.features.extract import one_thread

    with one_thread():
        app = build_app(model_path, options)
        announce(f"serving {model_path} on http://{options.host}:{options.port}/ "
                 f"(API docs at /docs)")
        uvicorn.run(app, host=options.host, port=options.port, log_level="warning")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on at the moment."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def background_server(model_path: Path, *options: str, startup_seconds: float = 180.0,
                      host: str = "127.0.0.1") -> Iterator[str]:
    """``emofusion serve model_path *options`` in a subprocess on a free port of `host` (for
    tests and benchmarks); yields its base URL once ``/health`` answers, stops it afterwards.

    Raises:
        RuntimeError: the server exited, or did not answer within `startup_seconds`.
    """
    port = free_port(host)
    process = subprocess.Popen(
        [sys.executable, "-m", "emofusion.cli", "serve", str(model_path), "--host", host,
         "--port", str(port), *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://{host}:{port}"
    try:
        _wait_until_healthy(url, process, startup_seconds)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_healthy(url: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"emofusion serve exited with status {process.returncode}:\n"
                               f"{process.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"emofusion serve did not answer at {url} within {seconds:g} s")
