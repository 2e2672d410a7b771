"""Plain-text and Markdown result tables, so evaluation runs leave a readable report behind."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

from common.files import write_text_atomic

__all__ = ["COLUMNS", "CHOSEN_SUFFIX", "CRF_SUFFIX", "HEADLINE_METHOD", "NBS_NAME", "IMAGE_COLUMNS", "METRIC_COLUMNS",
           "PUBLISHED_COLUMNS", "PROFILES_METHOD", "format_markdown_table", "format_console_table", "write_report",
           "run_report_sections"]

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


#: What the numbers of evaluate.py's table mean (report.md's "Definitions").
DEFINITIONS = (
    "Pixel metrics pooled over all pixels of the scored D_u images. Precision/recall/F1: binary masks (CRF "
    "labels; or p > 0.5 (U-Net); or score >= a threshold t chosen with D_l: best F1 on the D_l maps (AE "
    "baselines, profiles; NBS on its held-out D_l maps), or, for NBS without held-out maps, the score above "
    "which D_l's defect fraction of the D_u pixels lies). The CRF of a thresholded method gets the unary "
    "sigmoid((score - t) / std of its scores), which is 0.5 at its threshold (NBS, whose scores are "
    f"probabilities: sigmoid(logit p - logit t)). '{HEADLINE_METHOD}': the method's shipped decision, chosen "
    "when training ended (recorded in predictor.pt), one of its two rows: the CRF is dropped when it lowers the "
    "F1 of held-out D_l maps (the final predictor's leave-one-out fits, or the held-out predictors'), and kept "
    "when the run has none, except that a final predictor (ours) decides at p > 0.5 without the CRF unless its "
    "leave-one-out maps show the CRF helps. F1-max, pixel AUROC, AUPRO and image AUROC are of the probability "
    "(score) maps, so they do not change with the CRF. F1-max: best F1 over all thresholds. AUPRO: per-region "
    "overlap integrated to FPR 0.3, / 0.3. Image AUROC: max of each map. Published: chu2020 Table 1 pixel F1 "
    "(after CRF for their method) and noghredeh2025 F1-max, measured at 256 px on the papers' own splits.")


#: The caption of report.md's frames of the sampler at work.
SAMPLER_FRAMES = ("One episode (the patches of one AE update) at the start, the middle and the end of training. "
                  "Each frame: the image the sampler is on, its current patch outlined in green | the AE's loss map "
                  "of that image (bright: reconstructed worst) | the patches of this episode on that image so far.")


def run_report_sections(run: str, setup: dict[str, Any], rows: list[dict], diagnostics: dict[str, float],
                        thresholds: str, probe: str, warnings: list[str], overlays: list[str],
                        choices: list[str] | None = None,
                        frames: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """The sections of a run's report.md: setup, the method x metric table, the training
    diagnostics, what the sampler did (`frames`: (phase, file) strips of one episode per phase of
    training, when the run has them), the definitions and the overlays. `setup`: category,
    image_size, data_root, seed, labeled, n_unlabeled, per_type, n_extra, best_update, best_l_pred,
    ae_updates, wall_s, device."""
    s = setup
    meta = (f"- run: `{run}`\n- category: **{s['category']}**, image size {s['image_size']}, "
            f"data root: `{s['data_root'] or 'built-in synthetic dataset'}`\n"
            f"- seed: {s['seed']}; D_l ({len(s['labeled'])}): {', '.join(s['labeled'])}\n"
            f"- D_u scored: {s['n_unlabeled']} images {s['per_type']}; extra unlabeled (not scored): {s['n_extra']}\n"
            f"- best D_u profiles from AE update {s['best_update']} (l_pred {s['best_l_pred']:.3g}); "
            f"training: {s['ae_updates']} AE updates, {s['wall_s']} s on {s['device']}")
    not_applicable = [f"{r['method']}: {r['note']}" for r in rows if "F1-max" not in r]
    notes = (DEFINITIONS + (f" Thresholds t chosen on D_l: {thresholds}." if thresholds else "")
             + "".join(f"\n- {n}" for n in not_applicable))
    d = diagnostics
    diag = (f"Pixel AUROC on D_l at the end of training: current loss maps {d['dl_loss_auroc']:.3f}, "
            f"mean profile {d['dl_profile_auroc']:.3f}, predictor on held-out D_l {d['dl_heldout_auroc']:.3f} "
            f"(nan: no held-out predictors); AE loss / image mean-colour loss {d['ae_vs_mean_colour']:.3f} and AE "
            f"output spread / image spread {d['ae_output_spread']:.3f} (>= 1 with a spread near 0: collapsed AE). "
            f"Means of the last 10 % of updates.{probe}" + "".join(f"\n\n**Warning:** {w}" for w in warnings)
            + "\n\n![training diagnostics](training.png)")
    chosen = [("What this run chose on D_l", "\n".join(f"- {c}" for c in choices))] if choices else []
    sampler = [("What the sampler did", SAMPLER_FRAMES + "\n\n" + "\n\n".join(
        f"{phase}:\n\n![{phase}]({name})" for phase, name in frames))] if frames else []
    return [("Setup", meta), ("Results", format_markdown_table(rows, COLUMNS)), *chosen, ("Training diagnostics", diag),
            *sampler, ("Definitions", notes), ("Overlays", "\n".join(f"![{n}](overlays/{n})" for n in overlays) or "none")]

