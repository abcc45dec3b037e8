"""IEMOCAP reader: `IEMOCAP_full_release/SessionN/dialog/EmoEvaluation/<dialog>.txt`.

Only lines starting with "[" are utterance lines::

    [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]

(the evaluators' lines "C-E1: ...", "A-E2: ...", "% ..." are ignored). Codes: neu, hap, exc, sad,
ang, fru, sur, fea, dis, oth; ``xxx`` (no agreement) is always excluded. Excitement is merged into
happiness by default (the usual 5,531-utterance 4-class set).

Per utterance: audio `SessionN/sentences/wav/<dialog>/<utt>.wav` (required), video
`SessionN/dialog/avi/DivX/<dialog>.avi` when present (the dialog's recording: cut it at
``[start, end]``, hence ``span_media=("video_path",)``), transcript from
`SessionN/dialog/transcriptions/<dialog>.txt` lines ``<utt> [006.2901-008.2357]: text``.
Speaker = session + the gender letter of the id's last part (``Ses01F_impro01_M003`` ->
``Ses01M``; the dialog's letter only says who wore the motion-capture markers).
Extra column ``script``: the script id ("script01_2") for scripted dialogs, else the dialog name,
to keep the same lines together when grouping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from emofusion.data.corpora.base import RawCorpus, make_row, no_utterances, require_dir
from emofusion.data.corpora.labels import ordered
from emofusion.data.corpora.naming import decode
from emofusion.errors import Problem

NAME = "IEMOCAP"
NO_AGREEMENT = "no agreement (xxx)"
EMOTIONS = {"neu": "neutral", "hap": "happiness", "exc": "excitement", "sad": "sadness",
            "ang": "anger", "fru": "frustration", "sur": "surprise", "fea": "fear",
            "dis": "disgust", "oth": "other", "xxx": NO_AGREEMENT}
_NUMBER = r"(\d+(?:\.\d*)?)"
LINE = re.compile(rf"\[\s*{_NUMBER}\s*-\s*{_NUMBER}\s*\]\s+(\S+)\s+(\S+)\s+\[[^\]]*\]")
UTTERANCE_ID = re.compile(r"(Ses(\d\d)[FM]_.+)_([FM])[A-Za-z0-9]*")
TRANSCRIPT_LINE = re.compile(r"(\S+)\s+\[[^\]]*\]:\s?(.*)")
SCRIPT = re.compile(r"_(script\d+_\d+)")
LINE_FORMAT = "'[start - end]<TAB>utterance_id<TAB>code<TAB>[v, a, d]'"


@dataclass(frozen=True)
class _Dialog:
    """What the utterance lines of one dialog share."""

    file: Path
    name: str
    wav_dir: Path
    video: Path | str
    transcripts: dict[str, str]
    script: str


def read(root: Path) -> RawCorpus:
    """Parse every EmoEvaluation file of `root` (the IEMOCAP_full_release folder)."""
    root = require_dir(root, NAME, "Session1 ... Session5 (IEMOCAP_full_release)")
    files = sorted(path for path in root.glob("Session*/dialog/EmoEvaluation/*.txt")
                   if not path.name.startswith("."))
    if not files:
        raise no_utterances(root, NAME, "SessionN/dialog/EmoEvaluation/*.txt")
    problems: list[Problem] = []
    rows = [row for file in files for row in _read_dialog(_dialog(file), problems)]
    vocabulary = ordered(name for name in EMOTIONS.values() if name != NO_AGREEMENT)
    return RawCorpus(name=NAME, rows=rows, problems=problems, vocabulary=vocabulary,
                     extra_columns=("script",), span_media=("video_path",))


def _dialog(file: Path) -> _Dialog:
    """The shared context of the dialog annotated in `file`."""
    session_dir = file.parents[2]
    name = file.stem
    video = session_dir / "dialog" / "avi" / "DivX" / f"{name}.avi"
    script = SCRIPT.search(name)
    return _Dialog(
        file=file, name=name, wav_dir=session_dir / "sentences" / "wav" / name,
        video=video if video.is_file() else "",
        transcripts=read_transcripts(session_dir / "dialog" / "transcriptions" / file.name),
        script=script.group(1) if script else name,
    )


def read_transcripts(path: Path) -> dict[str, str]:
    """Utterance id -> text from one transcription file; {} when the file is absent."""
    if not path.is_file():
        return {}
    found = (TRANSCRIPT_LINE.fullmatch(line.strip())
             for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    return {m.group(1): m.group(2).strip() for m in found if m}


def _read_dialog(dialog: _Dialog, problems: list[Problem]) -> list[dict]:
    """Rows for the utterance lines of one EmoEvaluation file."""
    lines = dialog.file.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = (_parse_line(line.strip(), f"{dialog.file}:{number}", dialog, problems)
            for number, line in enumerate(lines, start=1) if line.startswith("["))
    return [row for row in rows if row is not None]


def _parse_line(line: str, where: str, dialog: _Dialog, problems: list[Problem]) -> dict | None:
    """The row for one utterance line, or None after recording why it cannot be read."""
    m = LINE.fullmatch(line)
    ident = UTTERANCE_ID.fullmatch(m.group(3)) if m else None
    if m is None or ident is None or ident.group(1) != dialog.name:
        problems.append(Problem(
            reason=f"cannot read annotation line {line!r}",
            fix=f"write it as {LINE_FORMAT} with an id of dialog {dialog.name}, or delete it",
            utterance_id=next((part for part in line.split() if part.startswith("Ses")), ""),
            path=where,
        ))
        return None
    start, end, uid, code = m.groups()
    label = decode(code, EMOTIONS, "emotion", where, problems, utterance_id=uid,
                   fix="correct the code on that line")
    if label is None:
        return None
    session = f"Ses{ident.group(2)}"
    return make_row(uid, session + ident.group(3), label, session=session,
                    audio_path=dialog.wav_dir / f"{uid}.wav",
                    transcript=dialog.transcripts.get(uid, ""), video_path=dialog.video,
                    start=float(start), end=float(end), script=dialog.script)
