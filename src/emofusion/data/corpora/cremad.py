"""CREMA-D reader: `AudioWAV/1001_DFA_ANG_XX.wav` (or the same names in a flat folder).

Name fields: actor id (1001-1091), sentence code, emotion (ANG, DIS, FEA, HAP, NEU, SAD) and
intensity level (LO, MD, HI, XX unspecified). The speaker is the actor id; the transcript is the
sentence. Video comes from `VideoFlash/<same stem>.flv` (or `.mp4`) when that folder exists.
Extra column: ``intensity`` (low/medium/high/unspecified).
"""

from __future__ import annotations

import re
from pathlib import Path

from emofusion.data.corpora.base import RawCorpus, make_row, no_utterances, require_dir
from emofusion.data.corpora.labels import ordered
from emofusion.data.corpora.naming import decode_all, index_by_stem, list_files, match_names
from emofusion.errors import Problem

NAME = "CREMA-D"
LAYOUT = "ActorID_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX.wav)"
PATTERN = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")
EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear",
            "HAP": "happiness", "NEU": "neutral", "SAD": "sadness"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
VIDEO_SUFFIXES = (".flv", ".mp4")


def read(root: Path) -> RawCorpus:
    """Parse every CREMA-D clip in `root/AudioWAV` (or directly in `root`)."""
    root = require_dir(root, NAME, "AudioWAV/ (or the .wav files themselves)")
    audio_dir = root / "AudioWAV" if (root / "AudioWAV").is_dir() else root
    videos = index_by_stem(root / "VideoFlash", VIDEO_SUFFIXES)
    problems: list[Problem] = []
    rows = []
    for path, m in match_names(list_files(audio_dir, (".wav",)), PATTERN, LAYOUT, problems):
        actor, sentence, emotion, level = m.groups()
        fields = {"emotion": (emotion, EMOTIONS), "sentence": (sentence, SENTENCES),
                  "intensity": (level, LEVELS)}
        codes = decode_all(fields, path, problems)
        if codes is not None:
            rows.append(make_row(path.stem, actor, codes["emotion"], audio_path=path,
                                 video_path=videos.get(path.stem, ""),
                                 transcript=codes["sentence"], intensity=codes["intensity"]))
    if not rows and not problems:
        raise no_utterances(root, NAME, "AudioWAV/1001_DFA_ANG_XX.wav files")
    return RawCorpus(name=NAME, rows=rows, problems=problems,
                     vocabulary=ordered(EMOTIONS.values()), extra_columns=("intensity",))
