"""Corpus readers: a corpus on disk -> one utterance table (`CorpusTable`).

    >>> corpus = read_corpus("iemocap", Path("IEMOCAP_full_release"))      # doctest: +SKIP
    >>> corpus.description                                                 # doctest: +SKIP
    'IEMOCAP 4-class, exc merged into hap: 5531 utterances from 10 speakers; ...'

Every reader (`READERS`) parses its corpus into a `RawCorpus`; `finalise` then selects the
classes (``classes="4"``: anger, sadness, happiness, neutral; ``"all"``; or a comma-separated
list), excludes the other labels by design (counted in the description), and handles bad items
(malformed annotation lines, unknown codes, missing or empty media files) per ``on_bad``:
``"fail"`` raises one `DataProblemError` listing them all, ``"skip"`` drops them and returns them
in `CorpusTable.problems`. See `emofusion.data.corpora.base` for the column contract.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from emofusion.data.corpora import cremad, emodb, iemocap, manifest, meld, ravdess
from emofusion.data.corpora.base import COLUMNS, CorpusTable, RawCorpus
from emofusion.data.corpora.finalise import finalise
from emofusion.data.corpora.labels import FOUR_CLASS
from emofusion.data.corpora.summary import corpus_summary
from emofusion.errors import ConfigError

Reader = Callable[[Path], RawCorpus]

READERS: dict[str, Reader] = {
    "iemocap": iemocap.read,
    "ravdess": ravdess.read,
    "cremad": cremad.read,
    "emodb": emodb.read,
    "meld": meld.read,
    "manifest": manifest.read,
}
_SPELLINGS = {"crema-d": "cremad", "crema_d": "cremad", "emo-db": "emodb", "emo_db": "emodb",
              "csv": "manifest"}


def read_corpus(
    name: str,
    root: Path,
    *,
    classes: str = "4",
    merge_excited: bool = True,
    on_bad: str = "fail",
) -> CorpusTable:
    """Read corpus `name` from `root` into one utterance table.

    Args:
        name: one of `READERS` (iemocap, ravdess, cremad, emodb, meld, manifest).
        root: the corpus folder (for ``manifest``: the CSV, or a folder with manifest.csv).
        classes: "4" (anger, sadness, happiness, neutral), "all", or "name,name,...".
        merge_excited: count IEMOCAP excitement as happiness (the usual 4-class set).
        on_bad: "fail" raises `DataProblemError` listing every problem; "skip" drops the
            items concerned and lists them in `CorpusTable.problems`.

    Raises:
        ConfigError: unknown corpus name, `classes` or `on_bad` value.
        DataProblemError: the corpus cannot be read, or has problems and ``on_bad="fail"``.
    """
    key = str(name).strip().lower()
    key = _SPELLINGS.get(key, key)
    if key not in READERS:
        raise ConfigError(f"unknown corpus {name!r}; choose one of: {', '.join(READERS)}")
    raw = READERS[key](Path(root))
    return finalise(raw, classes=classes, merge_excited=merge_excited, on_bad=on_bad)


__all__ = ["COLUMNS", "FOUR_CLASS", "READERS", "CorpusTable", "RawCorpus", "corpus_summary",
           "finalise", "read_corpus"]
