"""Readable emotion class names, their common spellings, and class selection.

Every reader maps its corpus' codes to the names in `CANONICAL_ORDER`; `classes="4"` selects
`FOUR_CLASS`, `classes="all"` the corpus' whole vocabulary, and a comma-separated list of names
(any spelling in `ALIASES`) selects exactly those classes.
"""

from __future__ import annotations

from collections.abc import Iterable

from emofusion.errors import ConfigError

FOUR_CLASS: tuple[str, ...] = ("anger", "sadness", "happiness", "neutral")
CANONICAL_ORDER: tuple[str, ...] = FOUR_CLASS + (
    "frustration", "excitement", "surprise", "fear", "disgust",
    "calm", "boredom", "contempt", "other",
)
ALIASES: dict[str, str] = {
    "ang": "anger", "angry": "anger",
    "sad": "sadness",
    "hap": "happiness", "happy": "happiness", "joy": "happiness",
    "neu": "neutral",
    "fru": "frustration", "frustrated": "frustration",
    "exc": "excitement", "excited": "excitement",
    "sur": "surprise", "surprised": "surprise",
    "fea": "fear", "fearful": "fear",
    "dis": "disgust", "disgusted": "disgust",
    "bored": "boredom",
    "oth": "other",
}


def canonical(label: str) -> str:
    """The readable name for `label` ("Angry" -> "anger"); unknown names are lower-cased."""
    name = str(label).strip().lower()
    return ALIASES.get(name, name)


def ordered(labels: Iterable[str]) -> tuple[str, ...]:
    """`labels` without duplicates: canonical names in `CANONICAL_ORDER`, then the rest sorted."""
    unique = set(labels)
    known = [name for name in CANONICAL_ORDER if name in unique]
    return tuple(known + sorted(unique.difference(CANONICAL_ORDER)))


def resolve_classes(classes: str, vocabulary: tuple[str, ...]) -> tuple[str, ...]:
    """The selected class names for a `classes` option ("4", "all" or "name,name,...")."""
    option = str(classes).strip().lower()
    if option == "4":
        return FOUR_CLASS
    if option == "all":
        return vocabulary
    names = tuple(dict.fromkeys(canonical(part) for part in option.split(",") if part.strip()))
    unknown = [name for name in names if name not in vocabulary]
    if not names or unknown:
        raise ConfigError(
            f"classes={classes!r}: {', '.join(unknown) or 'no class names'} not in this corpus. "
            f"Use '4', 'all', or a comma-separated list of: {', '.join(vocabulary)}"
        )
    return names
