"""Write a run's ``metrics.json``, figures, ``report.md`` and self-contained ``report.html``.

``write_report`` recomputes everything from the predictions table (one row per
(system, utterance): ``utterance_id, speaker, session, fold, system, true, predicted,
proba_<label>...``). The report is first assembled as a list of simple blocks (heading,
paragraph, table, list, image, code, markdown, banner) and then rendered twice: to markdown
(images as relative links into ``plots/``) and to HTML (images embedded as base64 data URIs,
inline CSS, no external resource), so both documents always say the same thing.

When ``warnings`` is non-empty (e.g. a random, non-speaker-independent split), a loud banner
opens both documents, every section repeats the caveat and every metric value carries a
warning mark.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from emofusion.evaluation.metrics import compute_metrics, summary_table
from emofusion.evaluation.significance import all_pairs, compare_systems, system_intervals
from emofusion.report.interpretation import comparison_verdict, interpret
from emofusion.report.plots import plot_file_name, write_plots

PLOTS_DIR = "plots"
WARN_MARK = " ⚠"

# ----------------------------------------------------------------------------- blocks


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    """A paragraph; ``**bold**`` and ``code`` spans are allowed."""

    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class BulletList:
    items: list[str]


@dataclass
class Image:
    path: str  # relative to the run folder
    alt: str


@dataclass
class Code:
    text: str
    lang: str = ""


@dataclass
class Markdown:
    """Markdown text limited to ``#`` headings, ``- `` bullets and paragraphs."""

    text: str


@dataclass
class Banner:
    title: str
    lines: list[str] = field(default_factory=list)


Block = Heading | Para | Table | BulletList | Image | Code | Markdown | Banner

# ----------------------------------------------------------------------------- helpers


def to_jsonable(value: Any) -> Any:
    """Recursively convert paths, numpy values, tuples, sets and NaN/inf to JSON types."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(v) for v in value)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "model_dump"):  # pydantic models
        return to_jsonable(value.model_dump(mode="json"))
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    return str(value)


@dataclass(frozen=True)
class Numbers:
    """Formats metric values, appending the warning mark when the run has warnings."""

    mark: str = ""

    def pct(self, value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}{self.mark}"

    def pp(self, value: float) -> str:
        return f"{100 * value:+.1f} pp{self.mark}"

    def dec(self, value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}{self.mark}"

    def p(self, value: float) -> str:
        return f"{value:.3g}{self.mark}"

    def interval(self, bounds: Sequence[float]) -> str:
        """'[52.1, 60.3]' in percent."""
        return f"[{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]{self.mark}"


def _humanize(key: str) -> str:
    text = str(key).replace("_", " ")
    return text[:1].upper() + text[1:]


def _cell(value: Any) -> str:
    """Readable table cell for a scalar, list or dict value."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_cell(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(_cell(v) for v in value) or "none"
    return str(value)


def _records_table(records: Sequence[Mapping[str, Any]], first: Sequence[str] = ()) -> Table:
    """Table of dicts; columns are ``first`` then any other key in order of appearance."""
    columns = list(first)
    for record in records:
        columns += [k for k in record if k not in columns]
    rows = [[_cell(record.get(c)) for c in columns] for record in records]
    return Table([_humanize(c) for c in columns], rows)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (Mapping, list, tuple, set))


def run_comparisons(
    predictions: pd.DataFrame,
    label_names: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    n_boot: int,
    seed: int,
) -> list[dict[str, Any]]:
    """``compare_systems`` of the pairs, McNemar p-values Holm-adjusted over every pair
    compared; a pair that cannot be compared gets an ``error`` entry."""
    return compare_systems(predictions, label_names, pairs, n_boot, seed, record_errors=True)


# ----------------------------------------------------------------------------- sections


def _section(title: str, body: list[Block], warned: bool) -> list[Block]:
    """Heading + optional caveat line + body."""
    caveat = [Para(f"**{WARN_MARK.strip()} The numbers in this section are affected by the "
                   "warning at the top of the report.**")] if warned else []
    return [Heading(title), *caveat, *body]


def _warning_blocks(warnings: Sequence[str]) -> list[Block]:
    if not warnings:
        return []
    return [Banner(
        f"WARNING: {len(warnings)} problem(s) make the numbers below unreliable "
        f"(each value is marked{WARN_MARK})",
        list(warnings),
    )]


def _summary_blocks(
    metrics: Mapping[str, Any], system_kinds: Mapping[str, str], fmt: Numbers
) -> list[Block]:
    table = summary_table(metrics)
    metric_columns = [c for c in table.columns if c not in ("folds", "n")]
    header = ["System", "Kind", *[_humanize(str(c)) for c in table.columns],
              "UA 95% CI", "F1-micro 95% CI"]
    rows = []
    for system, row in table.iterrows():
        cells = [str(row[c]) + (fmt.mark if c in metric_columns else "") for c in table.columns]
        intervals = metrics["systems"][system].get("speaker_bootstrap")
        cells += [fmt.interval(intervals[key]) if intervals else "" for key in ("ua", "f1_micro")]
        rows.append([str(system), system_kinds.get(str(system), "?"), *cells])
    return [
        Para("Metrics in percent. *mean ± std* is over outer folds (sample std, ddof = 1); "
             "*pooled* is computed once over all test predictions. F1-micro = accuracy = WA; "
             "UA = balanced accuracy (mean per-class recall). *95% CI*: percentile interval of "
             "the pooled value over speaker-bootstrap resamples (speakers drawn with "
             "replacement)."),
        Table(header, rows),
        Image(f"{PLOTS_DIR}/{plot_file_name('ua_bars')}", "UA per system"),
    ]


def _per_fold_blocks(metrics: Mapping[str, Any], fmt: Numbers) -> list[Block]:
    systems = list(metrics["systems"])
    folds: dict[int, dict[str, Any]] = {}
    for system in systems:
        for row in metrics["systems"][system]["per_fold"]:
            entry = folds.setdefault(row["fold"], {"speakers": row["test_speakers"],
                                                   "n": row["n"]})
            entry[system] = row["ua"]
    rows = [[str(fold), _cell(entry["speakers"]), str(entry["n"]),
             *[fmt.pct(entry.get(s)) for s in systems]]
            for fold, entry in sorted(folds.items())]
    return [Para("UA (%) per outer fold."),
            Table(["Fold", "Test speakers", "n", *systems], rows)]


def _per_class_blocks(
    metrics: Mapping[str, Any], label_names: Sequence[str], fmt: Numbers
) -> list[Block]:
    blocks: list[Block] = []
    for system, m in metrics["systems"].items():
        pooled = m["pooled"]
        auc, ap = pooled["roc_auc_ovr"], pooled["average_precision"]
        rows = [[label, str(c["support"]), fmt.pct(c["precision"]), fmt.pct(c["recall"]),
                 fmt.pct(c["f1"]), fmt.dec(auc["per_class"][label]),
                 fmt.dec(ap["per_class"][label])]
                for label, c in ((lbl, pooled["per_class"][lbl]) for lbl in label_names)]
        rows.append(["macro", str(pooled["n"]), "", "", fmt.pct(pooled["f1_macro"]),
                     fmt.dec(auc["macro"]), fmt.dec(ap["macro"])])
        blocks += [Heading(system, 3), Table(
            ["Class", "Support", "Precision %", "Recall %", "F1 %", "ROC AUC", "AP"], rows)]
    return blocks


def _figure_blocks(
    metrics: Mapping[str, Any], kinds: Sequence[str], written: set[str]
) -> list[Block]:
    blocks: list[Block] = []
    for system in metrics["systems"]:
        images = [Image(f"{PLOTS_DIR}/{plot_file_name(k, system)}", f"{k} {system}")
                  for k in kinds if plot_file_name(k, system) in written]
        blocks += [Heading(system, 3),
                   *(images or [Para("No class probabilities for this system.")])]
    return blocks


def _comparison_row(comparison: Mapping[str, Any], fmt: Numbers) -> list[str]:
    a, b = comparison["system_a"], comparison["system_b"]
    if "error" in comparison:
        return [a, b, *[""] * 9, f"not compared: {comparison['error']}"]
    boot, mc = comparison["bootstrap"], comparison["mcnemar"]
    return [
        a, b, str(comparison["n_utterances"]), str(comparison["n_speakers"]),
        fmt.pct(comparison["ua_a"]), fmt.pct(comparison["ua_b"]), fmt.pp(comparison["ua_diff"]),
        f"[{fmt.pp(boot['ci_low'])}, {fmt.pp(boot['ci_high'])}]",
        fmt.dec(boot["share_diff_le_0"]), f"{mc['b']} / {mc['c']}, p = {fmt.p(mc['p_value'])}",
        fmt.p(mc["p_holm"]), comparison_verdict(comparison),
    ]


def _significance_blocks(
    comparisons: Sequence[Mapping[str, Any]], n_boot: int, fmt: Numbers
) -> list[Block]:
    if not comparisons:
        return [Para("No pairs to compare.")]
    header = ["A", "B", "Utterances", "Speakers", "UA A %", "UA B %", "ΔUA (A−B)",
              "95% CI of ΔUA", "Share Δ≤0", "McNemar b / c, p", "Holm p", "Verdict"]
    n_tested = sum("mcnemar" in c for c in comparisons)
    return [
        Para("Every pair of systems is tested (pairs are not picked by their scores). Both "
             "tests use the SAME utterances (the two systems' predictions inner-joined on "
             "utterance_id). **McNemar** (exact binomial): b = utterances only A gets right, "
             "c = only B; it tests accuracy and treats utterances as independent; *Holm p* is "
             f"its p-value Holm-Bonferroni adjusted over the {n_tested} pairs tested. "
             f"**Speaker bootstrap** ({n_boot} resamples): speakers, the unit of independence, "
             "are resampled with replacement and UA is recomputed. *Significant* = Holm p < "
             "0.05 and the CI excludes 0."),
        Table(header, [_comparison_row(c, fmt) for c in comparisons]),
    ]


def _overlap_summary(audit: Mapping[str, Any]) -> list[Block]:
    """A one-line verdict on speaker overlap when the audit lists folds with ``overlap``."""
    folds = audit.get("folds")
    if not isinstance(folds, list) or not all(
        isinstance(f, Mapping) and "overlap" in f for f in folds
    ):
        return []
    leaking = [f for f in folds if f["overlap"]]
    if not leaking:
        return [Para(f"No speaker overlap between training and test in any of the "
                     f"{len(folds)} fold(s).")]
    details = "; ".join(f"fold {f.get('fold', '?')}: {_cell(f['overlap'])}" for f in leaking)
    return [Para(f"**{WARN_MARK.strip()} SPEAKER OVERLAP between training and test: "
                 f"{details}.**")]


def render_value(key: str, value: Any, level: int) -> list[Block]:
    """Generic blocks for any audit value: records → table, strings → list, dict → nested."""
    title = Heading(_humanize(key), level)
    if isinstance(value, Mapping):
        if all(_is_scalar(v) for v in value.values()):
            rows = [[_humanize(k), _cell(v)] for k, v in value.items()]
            return [title, Table(["Key", "Value"], rows)] if rows else [title, Para("none")]
        return [title, *[b for k, v in value.items() for b in render_value(k, v, level + 1)]]
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, Mapping) for v in value):
            return [title, _records_table(value)]
        return [title, BulletList([_cell(v) for v in value]) if value else Para("none")]
    return [Para(f"**{_humanize(key)}**: {_cell(value)}")]


def _audit_blocks(audit: Mapping[str, Any]) -> list[Block]:
    if not audit:
        return [Para("No leakage audit was recorded.")]
    blocks = _overlap_summary(audit)
    for key, value in audit.items():
        blocks += render_value(key, value, 3)
    return blocks


def _dropped_blocks(dropped: Sequence[Mapping[str, Any]]) -> list[Block]:
    if not dropped:
        return [Para("None: every utterance of the dataset was used.")]
    return [Para(f"{len(dropped)} utterance(s) were left out:"),
            _records_table(dropped, first=("utterance_id", "path", "reason", "fix"))]


def build_blocks(
    *,
    title: str,
    metrics: Mapping[str, Any],
    label_names: Sequence[str],
    system_kinds: Mapping[str, str],
    comparisons: Sequence[Mapping[str, Any]],
    interpretation: str,
    written: set[str],
    config: Mapping[str, Any],
    audit: Mapping[str, Any],
    dropped: Sequence[Mapping[str, Any]],
    warnings: Sequence[str],
    n_boot: int,
) -> list[Block]:
    """The whole report as a list of blocks, in section order."""
    warned = bool(warnings)
    fmt = Numbers(WARN_MARK if warned else "")
    config_yaml = yaml.safe_dump(to_jsonable(config), sort_keys=False, allow_unicode=True)
    return [
        Heading(title, 1),
        *_warning_blocks(warnings),
        *_section("Summary", _summary_blocks(metrics, system_kinds, fmt), warned),
        *_section("Per-fold results", _per_fold_blocks(metrics, fmt), warned),
        *_section("Per-class results (pooled)",
                  _per_class_blocks(metrics, label_names, fmt), warned),
        *_section("Confusion matrices", _figure_blocks(metrics, ["confusion"], written), warned),
        *_section("ROC and precision-recall curves",
                  _figure_blocks(metrics, ["roc", "pr"], written), warned),
        *_section("Significance", _significance_blocks(comparisons, n_boot, fmt), warned),
        *_section("Interpretation", [Markdown(interpretation)], warned),
        Heading("Leakage audit"), *_audit_blocks(audit),
        Heading("Dropped utterances"), *_dropped_blocks(dropped),
        Heading("Configuration"), Code(config_yaml or "{}\n", "yaml"),
    ]


# ----------------------------------------------------------------------------- markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_md_cell(h) for h in block.header) + " |",
                 "|" + "---|" * len(block.header)]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, BulletList):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Image):
        return f"![{block.alt}]({block.path})"
    if isinstance(block, Code):
        return f"```{block.lang}\n{block.text.rstrip()}\n```"
    if isinstance(block, Banner):
        return "\n".join([f"> **{WARN_MARK.strip()} {block.title}**", ">",
                          *[f"> - {line}" for line in block.lines]])
    return block.text.rstrip()  # Para, Markdown


def render_markdown(blocks: Sequence[Block]) -> str:
    """Markdown document; images link to ``plots/`` relative to the run folder."""
    return "\n\n".join(_md_block(b) for b in blocks) + "\n"


# ----------------------------------------------------------------------------- html

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0} tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;margin:.4em 0;display:block}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto}
code{background:#f3f3f3;padding:0 .2em}
.warning{background:#b00020;color:#fff;padding:1em 1.4em;border:4px solid #600;margin:1em 0;
font-size:1.15em}
.warning h2{margin-top:0;color:#fff}
body.warned table{border:3px solid #b00020}
"""


def _inline(text: str) -> str:
    """Escape HTML, then render ``**bold**``, ``*emphasis*`` and backtick code spans."""
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def markdown_to_html(text: str) -> str:
    """HTML for the markdown subset of ``Markdown`` blocks (headings, bullets, paragraphs)."""
    parts: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []

    def flush_paragraph() -> None:
        if paragraph:
            parts.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    def flush_items() -> None:
        if items:
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if stripped.startswith("- "):
            flush_paragraph()
            items.append(stripped[2:])
            continue
        flush_items()
        if heading or not stripped:
            flush_paragraph()
        if heading:
            level = len(heading.group(1))
            parts.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif stripped:
            paragraph.append(stripped)
    flush_paragraph()
    flush_items()
    return "\n".join(parts)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_block(block: Block, run_dir: Path) -> str:
    esc = html.escape
    if isinstance(block, Heading):
        return f"<h{block.level}>{esc(block.text)}</h{block.level}>"
    if isinstance(block, Para):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Table):
        head = "".join(f"<th>{esc(h)}</th>" for h in block.header)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                       for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, BulletList):
        return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Image):
        path = run_dir / block.path
        if not path.is_file():
            return f"<p>(figure {esc(block.path)} missing)</p>"
        return f'<img src="{_data_uri(path)}" alt="{esc(block.alt)}">'
    if isinstance(block, Code):
        return f"<pre><code>{esc(block.text)}</code></pre>"
    if isinstance(block, Banner):
        lines = "".join(f"<li>{esc(line)}</li>" for line in block.lines)
        return f'<div class="warning"><h2>⚠ {esc(block.title)}</h2><ul>{lines}</ul></div>'
    return markdown_to_html(block.text)


def render_html(blocks: Sequence[Block], run_dir: Path, title: str, warned: bool) -> str:
    """Self-contained HTML: inline CSS, PNGs as base64 data URIs, no external resources."""
    body = "\n".join(_html_block(b, run_dir) for b in blocks)
    page_title = html.escape(("⚠ UNRELIABLE: " if warned else "") + title)
    body_class = ' class="warned"' if warned else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{page_title}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body{body_class}>\n{body}\n</body>\n</html>\n")


# ----------------------------------------------------------------------------- entry point


def write_report(
    run_dir: Path,
    predictions: pd.DataFrame,
    label_names: Sequence[str],
    system_kinds: Mapping[str, str],
    *,
    config: dict,
    audit: dict,
    dropped: list[dict],
    warnings: list[str],
    comparisons_pairs: list[tuple[str, str]] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    title: str = "emofusion run",
    jobs: int = 1,
    provenance: dict | None = None,
) -> dict:
    """Write ``metrics.json``, ``plots/*.png``, ``report.md`` and ``report.html`` to run_dir.

    Args:
        run_dir: output folder (created if needed).
        predictions: the predictions table, one row per (system, utterance) with
            ``utterance_id, speaker, session, fold, system, true, predicted, proba_<label>``.
        label_names: the ordered class names.
        system_kinds: system -> "unimodal" | "fusion".
        config: the run configuration (rendered as YAML).
        audit: the leakage audit (``folds``, ``fitted_steps``, optional ``notes``,
            ``transcript_overlap``, ...); any keys are rendered generically.
        dropped: dropped utterances, each ``{utterance_id, path, reason, fix}``.
        warnings: problems that invalidate the numbers; non-empty → loud banner and marks.
        comparisons_pairs: ``(system_a, system_b)`` pairs to test, fixed before the run; None →
            every pair of systems. McNemar p-values are Holm-adjusted over the pairs tested.
        n_boot, seed: speaker-bootstrap settings (pair differences and each system's
            ``speaker_bootstrap`` 95% intervals of pooled UA and F1-micro).
        title: the report title.
        jobs: local processes drawing the figures.
        provenance: what produced the run (versions, git commit, data hash), stored as is.

    Returns:
        the metrics dict as written to metrics.json: ``label_names``, ``systems``,
        ``comparisons``, ``dropped``, ``warnings``, ``audit``, and ``provenance`` when given.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(predictions, label_names)
    for system, intervals in system_intervals(predictions, n_boot, seed).items():
        metrics["systems"][system]["speaker_bootstrap"] = intervals
    pairs = all_pairs(list(metrics["systems"])) if comparisons_pairs is None else comparisons_pairs
    comparisons = run_comparisons(predictions, label_names, pairs, n_boot, seed)
    written = write_plots(metrics, predictions, label_names, run_dir / PLOTS_DIR, system_kinds,
                          jobs)
    dropped_records = [to_jsonable(d) for d in dropped]
    result = to_jsonable({"protocol": config.get("protocol", "speaker_independent"), **metrics,
                          "comparisons": comparisons, "dropped": dropped_records,
                          "warnings": list(warnings), "audit": audit,
                          **({"provenance": provenance} if provenance else {})})
    with open(run_dir / "metrics.json", "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2, ensure_ascii=False, allow_nan=False)
    blocks = build_blocks(
        title=title, metrics=metrics, label_names=label_names, system_kinds=system_kinds,
        comparisons=comparisons,
        interpretation=interpret(metrics, predictions, label_names, system_kinds, comparisons),
        written=set(written), config=config, audit=result["audit"], dropped=dropped_records,
        warnings=warnings, n_boot=n_boot,
    )
    (run_dir / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
    html_text = render_html(blocks, run_dir, title, bool(warnings))
    (run_dir / "report.html").write_text(html_text, encoding="utf-8")
    return result
