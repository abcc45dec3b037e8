"""Speaker enrolment for a served speaker-adaptive model.

A model trained under ``--protocol speaker_adaptive`` normalises every speaker with that
speaker's own statistics. ``emofusion predict`` takes them from an enrolment CSV or from the
speaker's rows of its input; the service keeps them in memory instead: ``POST /enrol`` stores the
features of unlabelled utterances of a named speaker, and ``POST /predict`` with that ``speaker``
normalises with them once the speaker has `MIN_ADAPTATION_UTTERANCES` utterances (before that,
and for unnamed speakers, with the training speakers' average; every answer says which).
Enrolments live as long as the process and are bounded in number.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from emofusion.inference import MIN_ADAPTATION_UTTERANCES
from emofusion.serve.inputs import RequestProblem

MAX_SPEAKERS = 1000
"""Speakers kept at once; enrolling one more is refused until one is deleted."""
MAX_UTTERANCES = 100
"""Utterances kept per speaker; each new one beyond that replaces the oldest."""
MAX_SPEAKER_CHARS = 200


def check_speaker(speaker: str | None) -> str:
    """The speaker name of a request, stripped; `RequestProblem` when it is empty or too long."""
    name = (speaker or "").strip()
    if not name:
        raise RequestProblem("speaker: give the speaker's name or id (any text)", 422)
    if len(name) > MAX_SPEAKER_CHARS:
        raise RequestProblem(f"speaker: at most {MAX_SPEAKER_CHARS} characters, got {len(name)}",
                             422)
    return name


class Enrolment:
    """Unlabelled utterances' feature arrays per speaker, safe to use from several threads.

    Args:
        modalities: the model's feature modalities (no transcript), stored per utterance.
        max_speakers: speakers kept at once.
        max_utterances: utterances kept per speaker (the oldest go first).
    """

    def __init__(self, modalities: list[str], max_speakers: int = MAX_SPEAKERS,
                 max_utterances: int = MAX_UTTERANCES):
        self.modalities = list(modalities)
        self.max_speakers = max_speakers
        self.max_utterances = max_utterances
        self._utterances: dict[str, list[dict[str, np.ndarray]]] = {}
        self._lock = threading.Lock()

    def add(self, speaker: str, arrays: dict[str, Any]) -> int:
        """Store one utterance (modality -> (T, d) or (d,) array) of `speaker`; its count after.

        Raises:
            RequestProblem: the speaker limit is reached.
        """
        frames = {m: np.atleast_2d(np.asarray(arrays[m], dtype=np.float32))
                  for m in self.modalities}
        with self._lock:
            if speaker not in self._utterances and len(self._utterances) >= self.max_speakers:
                raise RequestProblem(f"the service already keeps {self.max_speakers} enrolled "
                                     "speakers; delete some with DELETE /speakers/{speaker}", 409)
            kept = [*self._utterances.get(speaker, []), frames][-self.max_utterances:]
            self._utterances[speaker] = kept
            return len(kept)

    def count(self, speaker: str) -> int:
        """Utterances kept for `speaker` (0 when unknown)."""
        with self._lock:
            return len(self._utterances.get(speaker, []))

    def counts(self) -> dict[str, int]:
        """Speaker -> utterances kept, for every enrolled speaker."""
        with self._lock:
            return {name: len(kept) for name, kept in self._utterances.items()}

    def remove(self, speaker: str) -> bool:
        """Forget `speaker`; False when it was not enrolled."""
        with self._lock:
            return self._utterances.pop(speaker, None) is not None

    def usable(self, speaker: str) -> dict[str, dict[str, list[np.ndarray]]]:
        """``{speaker: modality -> arrays}`` when the speaker has enough utterances to adapt
        to (`MIN_ADAPTATION_UTTERANCES`), else ``{}`` (the training average is used)."""
        with self._lock:
            kept = list(self._utterances.get(speaker, []))
        if len(kept) < MIN_ADAPTATION_UTTERANCES:
            return {}
        return {speaker: {m: [frames[m] for frames in kept] for m in self.modalities}}
