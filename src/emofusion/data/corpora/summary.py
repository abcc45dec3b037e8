"""Printable summary of an utterance table: utterances per label, per speaker and per split."""

from __future__ import annotations

import pandas as pd

from emofusion.data.corpora.base import CorpusTable
from emofusion.data.corpora.labels import ordered


def corpus_summary(table: CorpusTable | pd.DataFrame) -> str:
    """Counts per label, then a speaker x label table (and split x label when there is a split).

    Accepts a `CorpusTable` (its description heads the text and its label order is used) or a
    bare utterance table with ``speaker`` and ``label`` columns.
    """
    if isinstance(table, CorpusTable):
        head, labels, frame = [table.description], list(table.label_names), table.table
    else:
        frame = table
        head, labels = [f"{len(frame)} utterances"], list(ordered(frame["label"]))
    lines = head + ["", "Utterances per label:"]
    counts = frame["label"].value_counts()
    lines += [f"  {label:<14}{int(counts.get(label, 0)):>7}" for label in labels]
    groups = [("speaker", "Utterances per speaker and label:")]
    if "split" in frame.columns:
        groups.append(("split", "Utterances per split and label:"))
    for column, title in groups:
        lines += ["", title, _crosstab(frame, column, labels)]
    return "\n".join(lines)


MAX_ROWS = 30
"""Rows shown per count table; corpora with more speakers (MELD has ~300 characters) show the
largest ones and one line summing the rest."""


def _crosstab(frame: pd.DataFrame, column: str, labels: list[str]) -> str:
    """A `column` x label count table with totals, as text (at most `MAX_ROWS` rows)."""
    table = pd.crosstab(frame[column], frame["label"]).reindex(columns=labels, fill_value=0)
    table["total"] = table.sum(axis=1)
    totals = table.sum(axis=0)
    if len(table) > MAX_ROWS:
        order = table["total"].sort_values(ascending=False, kind="stable").index
        rest = table.loc[order[MAX_ROWS:]]
        table = table.loc[order[:MAX_ROWS]]
        table.loc[f"({len(rest)} more)"] = rest.sum(axis=0)
    table.loc["total"] = totals
    table.index.name = column
    table.columns.name = None
    return table.to_string()
