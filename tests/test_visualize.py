"""Figures are readable PNGs of the documented size; report tables are formatted as documented."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from evaluation.report import format_console_table, format_markdown_table, write_report
from evaluation.visualize import save_overlay, save_side_by_side


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    gt = np.zeros((48, 64), dtype=bool)
    gt[10:20, 10:30] = True
    pred = np.zeros((48, 64), dtype=bool)
    pred[12:22, 14:34] = True
    prob = rng.random((48, 64))
    return image, gt, pred, prob


@pytest.mark.parametrize("with_prob, title, n_panels, extra_h", [
    (False, None, 3, 22),
    (True, None, 4, 22),
    (True, "bottle / 003", 4, 44),
])
def test_save_overlay_writes_png(tmp_path: Path, with_prob: bool, title: str | None,
                                 n_panels: int, extra_h: int) -> None:
    image, gt, pred, prob = _scene()
    path = tmp_path / "sub" / "overlay.png"
    save_overlay(path, image, gt, pred, prob=prob if with_prob else None, title=title)
    out = cv2.imread(str(path))
    assert out is not None
    assert out.shape == (48 + extra_h, n_panels * 64 + (n_panels - 1) * 4, 3)
    # the first panel is the image itself (RGB written as BGR)
    np.testing.assert_array_equal(out[extra_h:, :64, ::-1], image)


def test_overlay_colours_prediction_red() -> None:
    from evaluation.visualize import overlay_mask

    image = np.full((20, 20, 3), 100, np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    out = overlay_mask(image, mask, (230, 0, 0))
    assert out[10, 10, 0] > out[10, 10, 1]  # tinted red inside
    np.testing.assert_array_equal(out[0, 0], image[0, 0])  # untouched outside


def test_save_side_by_side(tmp_path: Path) -> None:
    image, gt, pred, _ = _scene()
    path = tmp_path / "cmp.png"
    save_side_by_side(path, image, gt, {"ours": pred, "U-Net": gt, "AE": ~gt})
    out = cv2.imread(str(path))
    assert out.shape == (48 + 22, 4 * 64 + 3 * 4, 3)


def test_overlay_shape_mismatch(tmp_path: Path) -> None:
    image, gt, pred, _ = _scene()
    with pytest.raises(ValueError, match="`pred_mask`"):
        save_overlay(tmp_path / "x.png", image, gt, pred[:10])


ROWS = [
    {"class": "bottle", "f1": 0.8, "auroc": 0.93456, "n": 5},
    {"class": "cable", "f1": float("nan"), "n": 12},
]


def test_markdown_table() -> None:
    table = format_markdown_table(ROWS, ["class", "f1", "auroc", "n"])
    assert table.splitlines() == [
        "| class | f1 | auroc | n |",
        "|---|---:|---:|---:|",
        "| bottle | 0.800 | 0.935 | 5 |",
        "| cable | - | - | 12 |",
    ]
    assert "0.93" in format_markdown_table(ROWS, ["auroc"], float_fmt="{:.2f}")


def test_console_table_is_aligned() -> None:
    lines = format_console_table(ROWS, ["class", "f1", "n"]).splitlines()
    assert lines == [
        "class      f1   n",
        "------  -----  --",
        "bottle  0.800   5",
        "cable       -  12",
    ]


def test_write_report(tmp_path: Path) -> None:
    path = tmp_path / "out" / "report.md"
    write_report(path, "Results", [("Pixel metrics", format_markdown_table(ROWS, ["class"])),
                                   ("Notes", "CRF on.\n")])
    text = path.read_text()
    assert text.startswith("# Results\n\n## Pixel metrics\n\n| class |")
    assert "## Notes\n\nCRF on.\n" in text
