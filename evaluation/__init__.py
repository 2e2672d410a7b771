"""Evaluation: metrics (pure numpy), qualitative figures and result reports."""

from evaluation.metrics import (
    BinaryScores,
    aupro,
    auroc,
    best_f1_threshold,
    binary_scores,
    f1_max,
    image_scores_from_maps,
    precision_recall_curve,
    pro_curve,
)
from evaluation.report import format_console_table, format_markdown_table, write_report
from evaluation.visualize import save_overlay, save_side_by_side

__all__ = [
    "BinaryScores",
    "aupro",
    "auroc",
    "best_f1_threshold",
    "binary_scores",
    "f1_max",
    "format_console_table",
    "format_markdown_table",
    "image_scores_from_maps",
    "precision_recall_curve",
    "pro_curve",
    "save_overlay",
    "save_side_by_side",
    "write_report",
]
