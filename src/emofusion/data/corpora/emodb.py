"""EmoDB (Berlin Database of Emotional Speech) reader: `wav/03a01Fa.wav`.

Name fields: speaker (two digits), text code (a01 ... b10), emotion letter from the German
name (W Wut anger, L Langeweile boredom, E Ekel disgust, A Angst fear, F Freude happiness,
T Trauer sadness, N neutral) and a version letter. The transcript is the German sentence of the
text code ("" for a code not in the published list of ten). Files are read from `root/wav` or,
when that folder is absent, from `root` itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from emofusion.data.corpora.base import RawCorpus, make_row, no_utterances, require_dir
from emofusion.data.corpora.labels import ordered
from emofusion.data.corpora.naming import decode, list_files, match_names
from emofusion.errors import Problem

NAME = "EmoDB"
LAYOUT = "SSTTTEV: speaker, text, emotion, version (e.g. 03a01Fa.wav)"
PATTERN = re.compile(r"(\d\d)([a-z]\d\d)([A-Z])([a-z])")
EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear",
            "F": "happiness", "T": "sadness", "N": "neutral"}
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}


def read(root: Path) -> RawCorpus:
    """Parse every EmoDB clip in `root/wav` (or directly in `root`)."""
    root = require_dir(root, NAME, "wav/ (or the .wav files themselves)")
    wav_dir = root / "wav" if (root / "wav").is_dir() else root
    problems: list[Problem] = []
    rows = []
    for path, m in match_names(list_files(wav_dir, (".wav",)), PATTERN, LAYOUT, problems):
        speaker, text, emotion, _version = m.groups()
        label = decode(emotion, EMOTIONS, "emotion", path, problems)
        if label is not None:
            rows.append(make_row(path.stem, speaker, label, audio_path=path,
                                 transcript=SENTENCES.get(text, ""), text_id=text))
    if not rows and not problems:
        raise no_utterances(root, NAME, "wav/03a01Fa.wav files")
    return RawCorpus(name=NAME, rows=rows, problems=problems,
                     vocabulary=ordered(EMOTIONS.values()), extra_columns=("text_id",))
