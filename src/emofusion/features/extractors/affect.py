"""Affect-lexicon features of the transcript: VADER sentiment (Hutto & Gilbert 2014).

``vader`` uses the lexicon shipped inside the ``vaderSentiment`` package (7,500 scored words and
emoticons; nothing is downloaded) and gives a small ``(11,)`` vector per utterance, in the order
of `VADER_FEATURES`:

* ``neg``, ``neu``, ``pos``: shares of the text that are negative / neutral / positive;
* ``compound``: the normalised overall valence in [-1, 1];
* ``exclamations``, ``questions``: counts of ``!`` and ``?``;
* ``all_caps``: words of two or more letters written in capitals (VADER's emphasis cue);
* ``negations``: negation words (``not``, ``never``, ``n't`` forms, VADER's list);
* ``positive_share``, ``negative_share``: fraction of tokens whose lexicon valence is > 0 / < 0;
* ``tokens``: number of tokens (VADER's tokenisation: whitespace, punctuation stripped from
  words, emoticons kept).

Needs the ``text`` extra: ``pip install 'emofusion[text]'``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from emofusion.errors import require
from emofusion.features.extractors.text import TextExtractor

VADER_FEATURES = ("neg", "neu", "pos", "compound", "exclamations", "questions", "all_caps",
                  "negations", "positive_share", "negative_share", "tokens")
"""Column names of the ``vader`` vector."""


def _is_all_caps(token: str) -> bool:
    letters = [char for char in token if char.isalpha()]
    return len(letters) >= 2 and all(char.isupper() for char in letters)


class Vader(TextExtractor):
    """VADER sentiment scores and lexical affect counts of the transcript: ``(11,)``."""

    name = "vader"
    width = len(VADER_FEATURES)
    chunk_size: ClassVar[int] = 256

    def __init__(self) -> None:
        self._vader: Any = None
        self._analyzer: Any = None

    def prepare(self) -> None:
        if self._analyzer is None:  # reads the lexicon file once per process
            self._vader = require("vaderSentiment.vaderSentiment", "text", "The vader extractor")
            self._analyzer = self._vader.SentimentIntensityAnalyzer()

    def features(self, text: str) -> np.ndarray:
        """The `VADER_FEATURES` of one non-empty text: float32 ``(11,)``."""
        self.prepare()
        scores = self._analyzer.polarity_scores(text)
        tokens = self._vader.SentiText(text).words_and_emoticons
        valences = [self._analyzer.lexicon.get(token.lower(), 0.0) for token in tokens]
        negations = sum(self._vader.negated([token]) for token in tokens)
        share = 1.0 / max(len(tokens), 1)
        return np.array([
            scores["neg"], scores["neu"], scores["pos"], scores["compound"],
            text.count("!"), text.count("?"), sum(map(_is_all_caps, tokens)), negations,
            share * sum(v > 0 for v in valences), share * sum(v < 0 for v in valences),
            len(tokens),
        ], dtype=np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.features(text) for text in texts])
