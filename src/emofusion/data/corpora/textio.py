"""Reading annotation CSVs as text without mangling non-ASCII characters.

`read_csv_records` decodes UTF-8 (with or without BOM) and falls back to Windows-1252 for files
saved by older tools, then repairs *mojibake*: UTF-8 bytes that were once decoded as
Windows-1252 and saved again ("I\u00e2\u20ac\u2122m" for "I\u2019m"). Every cell is read as str
so ids such as "03" keep their leading zeros; empty cells are "". Blank lines are skipped.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from emofusion.errors import Problem

# A lead byte of a multi-byte UTF-8 sequence, shown as Windows-1252, followed by a
# continuation byte shown the same way: the signature of UTF-8 decoded as Windows-1252.
_MOJIBAKE = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d"
                       "\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022"
                       "\u2026\u2030\u2039\u203a\u20ac\u2122]")


def read_csv_records(
    path: Path, problems: list[Problem]
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(column names, `(line number, record)` per data line) of a CSV file.

    Text is decoded and mojibake repaired; cells are str ("" when empty or missing), column
    names are stripped of surrounding spaces, blank lines are skipped. A line with more cells
    than the header is appended to `problems` instead of being returned.
    """
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = [name.strip() for name in next(reader, [])]
    records = []
    for cells in reader:
        if len(cells) > len(columns):
            problems.append(Problem(
                reason=f"line has {len(cells)} cells but the header has {len(columns)}",
                fix='quote cells that contain commas ("a, b")', path=f"{path}:{reader.line_num}",
            ))
        elif any(cell.strip() for cell in cells):
            cells = [fix_mojibake(cell) for cell in cells] + [""] * (len(columns) - len(cells))
            records.append((reader.line_num, dict(zip(columns, cells, strict=True))))
    return columns, records


def fix_mojibake(text: str) -> str:
    """`text` with UTF-8-read-as-Windows-1252 sequences decoded properly; else unchanged."""
    if not _MOJIBAKE.search(text):
        return text
    try:
        return _as_cp1252_bytes(text).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _as_cp1252_bytes(text: str) -> bytes:
    """Encode as Windows-1252, keeping the five bytes it leaves undefined as themselves."""
    out = bytearray()
    for char in text:
        try:
            out += char.encode("cp1252")
        except UnicodeEncodeError:
            if ord(char) > 0xFF:
                raise
            out.append(ord(char))
    return bytes(out)
