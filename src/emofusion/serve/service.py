"""`PredictionService`: a saved model loaded once, answering one utterance at a time.

Raw media go through the extractors recorded in the model (`extract_single`), exactly as the
command-line `emofusion predict` does; feature arrays go straight to `predict_arrays`. Each
answer has the label, every class's probability and, for late fusion and stacking, each
modality's own probabilities. `predict` is safe to call from several threads at once: the model
is only read, and each call writes its uploads to its own temporary folder.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emofusion.errors import ConfigError, DataProblemError
from emofusion.inference import (
    MIN_ADAPTATION_UTTERANCES,
    adapts_to_speakers,
    model_inputs,
    predict_arrays,
    require_speaker_adaptive,
)
from emofusion.models.saved import SavedModel, load_model
from emofusion.serve.enrolment import Enrolment, check_speaker
from emofusion.serve.inputs import RequestProblem, Utterance, check_audio, check_text

TRANSCRIPT = "transcript"
"""The modality of models that read the transcript's words themselves."""
FIELD_OF_SOURCE = {"audio": "audio", "text": "text", "visual": "video"}
"""Extractor source -> the request field that carries it."""
WARM_UP_SECONDS = 1.0


@dataclass(frozen=True)
class Limits:
    """What one utterance may be: audio length in seconds and transcript length in characters."""

    max_audio_seconds: float = 60.0
    max_text_chars: int = 5000


def modality_fields(model: SavedModel) -> dict[str, str | None]:
    """Per modality of the model, the request field it is extracted from (``audio``, ``text``,
    ``video``), or None when it can only be sent as a feature array."""
    from emofusion.features.extract import resolve_extractors
    from emofusion.features.extractors import EXTRACTORS

    card = model.card
    specs = {spec.modality: spec for spec in resolve_extractors(card.extractors)} if card.extractors else {}
    fields: dict[str, str | None] = {}
    for modality in card.modalities:
        if modality == TRANSCRIPT:
            fields[modality] = "text"
        elif modality in specs:
            fields[modality] = FIELD_OF_SOURCE[EXTRACTORS[specs[modality].extractor].source]
        else:
            fields[modality] = None
    return fields


def _class_probabilities(labels: list[str], probabilities: np.ndarray) -> dict[str, Any]:
    """``{"label", "probabilities": {class: p}}`` for one (n_classes,) probability vector."""
    return {"label": labels[int(np.argmax(probabilities))],
            "probabilities": {name: round(float(p), 6) for name, p in zip(labels, probabilities,
                                                                          strict=True)}}


def _late_fusion_part(estimator: Any, n_classes: int) -> tuple[Any, np.ndarray] | None:
    """The late-fusion estimator holding the modality models, and the class codes its models'
    ``classes_`` index; None for systems without modality models of their own."""
    if hasattr(estimator, "base_"):  # stacking: modality models fitted on its class positions
        return estimator.base_, np.asarray(estimator.classes_)
    if hasattr(estimator, "modality_probabilities"):
        return estimator, np.arange(n_classes)
    return None


class PredictionService:
    """Answers utterances with one loaded model.

    Args:
        model: the loaded model.
        limits: the largest utterance accepted.
    """

    def __init__(self, model: SavedModel, limits: Limits | None = None):
        self.model = model
        self.limits = limits or Limits()
        self.fields = modality_fields(model)
        self.enrolment = Enrolment([m for m in model.card.modalities if m != TRANSCRIPT])

    @classmethod
    def from_file(cls, path: Path, *, trust: bool = False,
                  limits: Limits | None = None) -> PredictionService:
        """Load a model file under `load_model`'s trust rule."""
        return cls(load_model(path, trust=trust), limits)

    @property
    def accepted_fields(self) -> list[str]:
        """Raw-input fields this model can use, in ``audio, text, video`` order."""
        used = set(self.fields.values())
        return [name for name in FIELD_OF_SOURCE.values() if name in used]

    def describe(self) -> dict[str, Any]:
        """Labels, modalities, extractors, protocol and the training record, for ``GET /model``."""
        card = self.model.card
        return {
            "labels": list(card.label_names),
            "accepts": self.accepted_fields,
            "modalities": [{"name": m, "from": self.fields[m] or "features",
                            "width": card.widths.get(m), "pooling": card.pooling.get(m)}
                           for m in card.modalities],
            "modality_opinions": _late_fusion_part(self.model.estimator,
                                                   len(card.label_names)) is not None,
            "extractors": {m: {key: entry[key] for key in ("extractor", "params", "width", "kind")
                               if key in entry} for m, entry in card.extractors.items()},
            "protocol": {"system": card.system, "model": card.model, "input": card.input,
                         "scaling": card.scaling, "pooling": card.pooling},
            "training": card.training,
            "enrolment": {"adapts_to_speakers": adapts_to_speakers(card),
                          "min_utterances": MIN_ADAPTATION_UTTERANCES,
                          "speakers": len(self.enrolment.counts())},
        }

    def warm_up(self) -> None:
        """Load every extractor's resources now (openSMILE, MiniLM, ...) by predicting a 1 s
        tone and a short sentence, so the first request is not slow and a missing extra fails
        at start-up instead of at the first request."""
        import io

        import soundfile

        if not self.accepted_fields or "video" in self.accepted_fields:
            return
        audio = None
        if "audio" in self.accepted_fields:
            buffer = io.BytesIO()
            t = np.arange(int(16000 * WARM_UP_SECONDS)) / 16000
            soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
                            16000, format="WAV")
            audio = buffer.getvalue()
        text = "hello there" if "text" in self.accepted_fields else None
        self.predict(Utterance(audio=audio, text=text))

    def predict(self, utterance: Utterance) -> dict[str, Any]:
        """The answer for one utterance: ``label``, ``probabilities`` (every class),
        ``modalities`` (each modality's own answer for late fusion and stacking, else empty),
        ``input`` (what was read) and, for a model normalised per speaker, ``adaptation``
        (whose statistics normalised it: the speaker's enrolment or the training average).

        Raises:
            RequestProblem: the utterance does not fit the model (see `inputs`).
        """
        arrays, described = self._arrays(utterance)
        speaker = check_speaker(utterance.speaker) if utterance.speaker is not None else ""
        adapts = speaker and adapts_to_speakers(self.model.card)
        enrolment = self.enrolment.usable(speaker) if adapts else {}
        try:
            table = predict_arrays(self.model, arrays, speaker=speaker, enrolment=enrolment)
        except ConfigError as error:
            raise RequestProblem(f"{error}", 422) from error
        labels = list(self.model.card.label_names)
        fused = table[[f"proba_{name}" for name in labels]].to_numpy()[0]
        answer = {**_class_probabilities(labels, fused),
                  "modalities": self._modality_opinions(arrays, speaker, enrolment),
                  "input": described}
        if "adaptation" in table:
            answer["adaptation"] = {"speaker": speaker, "source": str(table["adaptation"][0]),
                                    "enrolled_utterances": self.enrolment.count(speaker)}
        return answer

    def enrol(self, utterance: Utterance) -> dict[str, Any]:
        """Keep the features of one unlabelled utterance of ``utterance.speaker`` to adapt to
        that speaker: ``speaker``, ``utterances`` kept, ``min_utterances`` and ``adapts`` (whether
        predictions for the speaker now use them).

        Raises:
            RequestProblem: the model is not speaker-adaptive, no speaker is named, or the
                utterance does not fit the model.
        """
        try:
            require_speaker_adaptive(self.model.card, "enrolment")
        except ConfigError as error:
            raise RequestProblem(f"{error}, or just POST /predict", 422) from error
        speaker = check_speaker(utterance.speaker)
        arrays, _ = self._arrays(utterance)
        count = self.enrolment.add(speaker, arrays)
        return {"speaker": speaker, "utterances": count,
                "min_utterances": MIN_ADAPTATION_UTTERANCES,
                "adapts": count >= MIN_ADAPTATION_UTTERANCES}

    def _arrays(self, utterance: Utterance) -> tuple[dict[str, Any], dict[str, Any]]:
        """The model's inputs for one utterance (extracted or sent as features) and a short
        description of what was read."""
        self._check_fields(utterance)
        arrays, described = self._extract(utterance)
        arrays.update(utterance.features)
        described.update({f"features.{m}": list(a.shape) for m, a in utterance.features.items()})
        return arrays, described

    def _check_fields(self, utterance: Utterance) -> None:
        """Refuse inputs the model does not use, and name what it lacks, before any work."""
        given = utterance.given()
        unused = [name for name in given if name not in self.accepted_fields]
        if unused:
            raise RequestProblem(f"{', '.join(unused)}: this model does not use "
                                 f"{' or '.join(unused)}; {self._what_to_send()}", 422)
        card = self.model.card
        unknown = [m for m in utterance.features if m not in card.modalities or m == TRANSCRIPT]
        if unknown:
            raise RequestProblem(f"features: the model has no feature modality {unknown}; "
                                 f"{self._what_to_send()}", 422)
        twice = [m for m in utterance.features if self.fields[m] in given]
        if twice:
            raise RequestProblem(f"features: {twice} would also be extracted from the "
                                 f"{self.fields[twice[0]]} sent; send one or the other", 422)
        missing = [m for m in card.modalities
                   if m not in utterance.features and self.fields[m] not in given]
        if missing:
            raise RequestProblem(f"the model needs {missing}, which this request lacks; "
                                 f"{self._what_to_send()}", 422)

    def _what_to_send(self) -> str:
        by_field = [f"{name} (for {', '.join(m for m, f in self.fields.items() if f == name)})"
                    for name in self.accepted_fields]
        arrays = [m for m in self.model.card.modalities if m != TRANSCRIPT]
        options = by_field + ([f"feature arrays for {', '.join(arrays)}"] if arrays else [])
        return "send " + " and/or ".join(options)

    def _extract(self, utterance: Utterance) -> tuple[dict[str, Any], dict[str, Any]]:
        """Features of the raw inputs, and a short description of what was read."""
        arrays: dict[str, Any] = {}
        described: dict[str, Any] = {}
        text = None
        if utterance.text is not None:
            text = check_text(utterance.text, self.limits.max_text_chars)
            described["text_characters"] = len(text)
            if TRANSCRIPT in self.fields:
                arrays[TRANSCRIPT] = text
        clip = None
        if utterance.audio is not None:
            clip = check_audio(utterance.audio, self.limits.max_audio_seconds)
            described.update(audio_seconds=round(clip.seconds, 3), audio_sample_rate=clip.sample_rate)
        if utterance.video is not None and not utterance.video:
            raise RequestProblem("video: the uploaded file is empty (0 bytes); choose a video", 422)
        extract_text = text is not None and any(
            field == "text" and m != TRANSCRIPT for m, field in self.fields.items())
        if clip is None and utterance.video is None and not extract_text:
            return arrays, described
        with tempfile.TemporaryDirectory(prefix="emofusion-serve-") as folder:
            wav = _write(Path(folder) / f"audio{clip.suffix}", clip.data) if clip else None
            video = (_write(Path(folder) / f"video{utterance.video_suffix}", utterance.video)
                     if utterance.video is not None else None)
            arrays.update(self._run_extractors(wav, text if extract_text else None, video))
        return arrays, described

    def _run_extractors(self, wav: Path | None, text: str | None,
                        video: Path | None) -> dict[str, np.ndarray]:
        from emofusion.features.extract import extract_single

        try:
            return extract_single(self.model.card.extractors, wav=wav, text=text, video=video)
        except DataProblemError as error:
            reasons = "; ".join(f"{p.reason} -> {p.fix}" for p in error.problems)
            raise RequestProblem(f"the input could not be turned into features: {reasons}",
                                 422) from error

    def _modality_opinions(self, arrays: dict[str, Any], speaker: str,
                           enrolment: dict) -> dict[str, dict[str, Any]]:
        """Each modality model's answer, for late fusion and stacking; {} otherwise."""
        labels = list(self.model.card.label_names)
        part = _late_fusion_part(self.model.estimator, len(labels))
        if part is None:
            return {}
        fusion, class_codes = part
        frames = {m: [a if m == TRANSCRIPT else np.atleast_2d(np.asarray(a, dtype=np.float32))]
                  for m, a in arrays.items()}
        X = model_inputs(self.model, frames, np.array([speaker]), enrolment)
        opinions = {}
        for (name, _), fitted, probabilities in zip(fusion.estimators, fusion.estimators_,
                                                    fusion.modality_probabilities(X), strict=True):
            full = np.zeros(len(labels))
            full[class_codes[np.asarray(fitted.classes_)]] = probabilities[0]
            opinions[name] = _class_probabilities(labels, full)
        return opinions


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
