"""emofusion: speaker-independent multimodal emotion recognition.

    >>> import emofusion
    >>> config = emofusion.RunConfig(dataset="dataset.csv", out="runs/first")
    >>> result = emofusion.run(config)      # writes runs/first/{report.html, metrics.json, ...}
    >>> result.summary()
"""

from emofusion.config import RunConfig, build_config
from emofusion.runner import RunResult, run

__version__ = "0.1.0"
__all__ = ["RunConfig", "RunResult", "build_config", "run", "__version__"]
