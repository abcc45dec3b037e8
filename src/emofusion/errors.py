"""User-facing errors: each message says what is wrong, where, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


class EmofusionError(Exception):
    """Base class for problems the user can fix; the CLI prints them without a traceback."""


class ConfigError(EmofusionError):
    """The run configuration or a command-line option is invalid."""


class MissingExtraError(EmofusionError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the optional package '{package}'. "
            f"Install it with: pip install 'emofusion[{extra}]'"
        )


@dataclass(frozen=True)
class Problem:
    """One problem found in the input data.

    Attributes:
        reason: what is wrong, e.g. "file not found".
        fix: how to fix it.
        utterance_id: the utterance concerned, or "" for dataset-level problems.
        path: the file concerned, or "".
    """

    reason: str
    fix: str
    utterance_id: str = ""
    path: str = ""

    def describe(self) -> str:
        where = " ".join(part for part in (self.utterance_id, self.path and f"({self.path})") if part)
        return f"{where}: {self.reason} -> {self.fix}" if where else f"{self.reason} -> {self.fix}"

    def to_dict(self) -> dict[str, str]:
        return {"utterance_id": self.utterance_id, "path": self.path,
                "reason": self.reason, "fix": self.fix}


class DataProblemError(EmofusionError):
    """The dataset has problems; all of them are listed at once."""

    def __init__(self, problems: list[Problem], hint: str = ""):
        self.problems = list(problems)
        shown = self.problems[:50]
        lines = [f"Found {len(self.problems)} problem(s) in the input data:"]
        lines += [f"  - {p.describe()}" for p in shown]
        if len(self.problems) > len(shown):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise `MissingExtraError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module.split(".")[0], extra, purpose) from exc
