"""Plain-text and Markdown result tables, so evaluation runs leave a readable report behind."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

from models.serialization import write_text_atomic

__all__ = ["COLUMNS", "CHOSEN_SUFFIX", "CRF_SUFFIX", "HEADLINE_METHOD", "NBS_NAME", "IMAGE_COLUMNS", "METRIC_COLUMNS", "PUBLISHED_COLUMNS",
           "PROFILES_METHOD", "format_markdown_table", "format_console_table", "write_report"]

#: The pixel metrics of every method row of evaluate.py's table (metrics.json "rows").
METRIC_COLUMNS = ["precision", "recall", "F1", "F1-max", "pixel AUROC", "AUPRO", "image AUROC"]
#: The papers' numbers, beside ours (evaluation.published).
PUBLISHED_COLUMNS = ["published F1", "published F1-max"]
COLUMNS = ["method", *METRIC_COLUMNS, *PUBLISHED_COLUMNS]
#: The method's name in every table, the suffix of a method's row after the dense CRF, and of its
#: row whose CRF was kept or dropped on held-out labeled maps (evaluation.decisions.choose_crf).
NBS_NAME, CRF_SUFFIX, CHOSEN_SUFFIX = "NBS", " + CRF", ", CRF chosen on D_l"
#: The headline row: the method's decision as it ships (the CRF kept or dropped on D_l; kept when
#: the run has no held-out D_l maps), first in the table; sweeps read it.
HEADLINE_METHOD = NBS_NAME + CHOSEN_SUFFIX
#: The run's own loss profiles without the predictor (their mean, thresholded on D_l): what the
#: sampler's batches gave the AE, and the level a predictor must at least reach.
PROFILES_METHOD = "Recon. error of the loss profiles"
#: Columns of the residual classifier's image-level table.
IMAGE_COLUMNS = ["method", "accuracy", "precision", "recall", "F1", "AUROC"]


def _cell(value: Any, float_fmt: str) -> str:
    """Format one value: floats with ``float_fmt`` (NaN/None as '-'), everything else with str."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        return "-" if math.isnan(value) else float_fmt.format(value)
    return str(value)


def _cells(rows: list[dict], columns: list[str], float_fmt: str) -> list[list[str]]:
    if not columns:
        raise ValueError("`columns` is empty; a table needs at least one column.")
    return [[_cell(row.get(col), float_fmt) for col in columns] for row in rows]


def format_markdown_table(rows: list[dict], columns: list[str], float_fmt: str = "{:.3f}") -> str:
    """GitHub-flavoured Markdown table of ``rows`` restricted to ``columns``, in that order.

    Missing keys and NaN are shown as '-', so partially filled rows (e.g. a baseline without
    AUPRO) still render. Numeric columns are right-aligned. ``|`` in text is escaped.
    """
    body = _cells(rows, columns, float_fmt)
    numeric = [
        all(isinstance(row.get(c), numbers.Real) or row.get(c) is None for row in rows) and bool(rows)
        for c in columns
    ]
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = [
        "| " + " | ".join(esc(c) for c in columns) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in body]
    return "\n".join(lines)


def format_console_table(rows: list[dict], columns: list[str], float_fmt: str = "{:.3f}") -> str:
    """Aligned plain-text table for terminal output: header, dashed rule, one line per row.

    Numbers are right-aligned and text left-aligned, so columns of scores line up on the decimal.
    """
    body = _cells(rows, columns, float_fmt)
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    numeric = [
        bool(rows) and all(isinstance(row.get(c), numbers.Real) or row.get(c) is None for row in rows)
        for c in columns
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(w) if n else cell.ljust(w) for cell, w, n in zip(cells, widths, numeric)
        ).rstrip()

    out = [line(list(columns)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in body]
    return "\n".join(out)


def write_report(path: str | Path, title: str, sections: list[tuple[str, str]]) -> None:
    """Write a Markdown report: ``# title`` then one ``## heading`` + body per section.

    Parent folders are created, so a run can point at a fresh output directory.
    """
    parts = [f"# {title}", ""]
    for heading, body in sections:
        parts += [f"## {heading}", "", body.rstrip(), ""]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "\n".join(parts))
