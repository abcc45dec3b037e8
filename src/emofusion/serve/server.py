"""``emofusion serve``: load the model once, warm up its extractors, run uvicorn."""

from __future__ import annotations

import os
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
