"""RAVDESS reader: `Actor_NN/MM-VV-EE-II-SS-RR-AA.wav` (and `.mp4` video) anywhere under root.

Fields: MM modality (01 audio-video, 02 video-only, 03 audio-only), VV vocal channel (01 speech,
02 song), EE emotion, II intensity (01 normal, 02 strong), SS statement, RR repetition, AA actor
(odd male, even female). One row per recording: the `.wav` (modality 03) gives `audio_path`, the
`.mp4` with the same VV-...-AA fields gives `video_path` (audio-video 01 preferred over
video-only 02); a video without audio makes a row of its own. The utterance id is the file stem.
Extra columns: ``channel`` (speech/song) and ``intensity`` (normal/strong).
"""

from __future__ import annotations

import re
from pathlib import Path

from emofusion.data.corpora.base import RawCorpus, make_row, no_utterances, require_dir
from emofusion.data.corpora.labels import ordered
from emofusion.data.corpora.naming import decode_all, list_files, match_names
from emofusion.errors import Problem

NAME = "RAVDESS"
LAYOUT = "MM-VV-EE-II-SS-RR-AA (e.g. 03-01-05-02-01-01-12.wav)"
PATTERN = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
EMOTIONS = {"01": "neutral", "02": "calm", "03": "happiness", "04": "sadness",
            "05": "anger", "06": "fear", "07": "disgust", "08": "surprise"}
CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
AUDIO_SUFFIXES = (".wav",)
VIDEO_SUFFIXES = (".mp4",)


def read(root: Path) -> RawCorpus:
    """Parse every RAVDESS recording under `root` (searched recursively)."""
    root = require_dir(root, NAME, "the Actor_NN folders")
    problems: list[Problem] = []
    files = list_files(root, AUDIO_SUFFIXES + VIDEO_SUFFIXES, recursive=True)
    parsed = match_names(files, PATTERN, LAYOUT, problems)
    audio = [(path, m) for path, m in parsed if path.suffix.lower() in AUDIO_SUFFIXES]
    videos = _videos_by_key(parsed)
    rows = []
    for path, m in audio:
        video = videos.pop(_key(m), "")
        rows.append(_row(m, path, audio_path=path, video_path=video, problems=problems))
    for path in videos.values():
        m = PATTERN.fullmatch(path.stem)
        rows.append(_row(m, path, video_path=path, problems=problems))
    rows = [row for row in rows if row is not None]
    if not rows and not problems:
        raise no_utterances(root, NAME, "Actor_NN/MM-VV-EE-II-SS-RR-AA.wav files")
    return RawCorpus(name=NAME, rows=rows, problems=problems,
                     vocabulary=ordered(EMOTIONS.values()),
                     extra_columns=("channel", "intensity"))


def _key(m: re.Match[str]) -> str:
    """The fields that identify a recording regardless of modality (VV-EE-II-SS-RR-AA)."""
    return "-".join(m.groups()[1:])


def _videos_by_key(parsed: list[tuple[Path, re.Match[str]]]) -> dict[str, Path]:
    """Video files by recording key; audio-video (01) wins over video-only (02)."""
    videos = [(path, m) for path, m in parsed if path.suffix.lower() in VIDEO_SUFFIXES]
    by_key: dict[str, Path] = {}
    for path, m in sorted(videos, key=lambda item: item[1].group(1), reverse=True):
        by_key[_key(m)] = path
    return by_key


def _row(
    m: re.Match[str], path: Path, *, problems: list[Problem],
    audio_path: Path | str = "", video_path: Path | str = "",
) -> dict | None:
    """The row for one recording, or None when one of its codes is unknown."""
    _, channel, emotion, intensity, statement, _, actor = m.groups()
    fields = {"emotion": (emotion, EMOTIONS), "vocal channel": (channel, CHANNELS),
              "intensity": (intensity, INTENSITIES), "statement": (statement, STATEMENTS)}
    codes = decode_all(fields, path, problems)
    if codes is None:
        return None
    return make_row(path.stem, f"Actor_{actor}", codes["emotion"], audio_path=audio_path,
                    video_path=video_path, transcript=codes["statement"],
                    channel=codes["vocal channel"], intensity=codes["intensity"])
