"""Segment new images with a trained run: the deployable side of the method.

    python predict.py runs/<run> path/to/images/ --out predictions/
    python predict.py runs/<run>/bundle.pt part_0042.png --out predictions/

The first argument is a run folder (its bundle.pt, written by train.py) or a bundle file; then
image files or folders (PNG, JPEG, BMP or TIFF, any size, grey or RGBA too; folders are searched
recursively). Per image it writes, under --out:
  <name>_prob.png     the anomaly probability map (0-255 = 0-1), at the image's resolution
  <name>_mask.png     the binary defect mask (255 = defect): threshold, then the dense CRF
  <name>_overlay.png  the image with the mask tinted red
and one predictions.csv: name, score (max probability), decision, defect_area (fraction of the
image), defect_pixels, error. An unreadable image (a broken link, a pixel type other than 8 or 16
bits) gets its error in the CSV and on the console, and the others are still segmented. --out may
not be or lie in an input folder, and predict.py never writes over a file there that it did not
write (the outputs an earlier predictions.csv lists). Uses CUDA when present.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.device import check_device
from common.errors import run_main
from common.files import RunFileError, UnsafeFileError, make_writable_folder
from models.segmenter import Segmenter
from runner.folder import RunFolder
from runner.prediction import CSV_NAME, check_outputs, find_images, predict_files, write_csv

def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", help="a run folder (with bundle.pt) or a bundle file")
    p.add_argument("images", nargs="+", help="image files and/or folders")
    p.add_argument("--out", required=True, help="folder for the maps, masks, overlays and predictions.csv (outside the "
                   "input folders)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--batch", type=int, default=8, help="images per forward pass")
    args = p.parse_args(argv)
    if args.batch < 1:
        raise SystemExit(f"--batch must be >= 1, got {args.batch}")
    check_device(args.device)
    model = Path(args.model)
    RunFolder(model if model.is_dir() else model.parent).refuse_if_training("predict.py")
    try:
        segmenter = Segmenter.load(args.model, args.device)
    except FileNotFoundError as e:
        raise SystemExit(f"{args.model}: no bundle found ({e.filename or e}); train.py writes <run>/bundle.pt "
                         "at the end of training") from None
    except (UnsafeFileError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"{args.model}: not a usable model bundle ({e})") from None
    files = find_images(args.images)
    check_outputs(Path(args.out), args.images, files)  # never overwrite a file predict.py did not write
    try:
        out = make_writable_folder(args.out, "--out")
    except RunFileError as e:
        raise SystemExit(e.strerror) from None
    rows = predict_files(segmenter, files, out, args.batch)
    write_csv(out / CSV_NAME, rows)
    failed = sum(bool(r.get("error")) for r in rows)
    defective = sum(r.get("decision") == "defective" for r in rows)
    print(f"{len(rows) - failed} images segmented ({defective} defective), {failed} unreadable; "
          f"results in {out} (predictions.csv)")
    return rows


if __name__ == "__main__":
    run_main(main)  # a full disk, a read-only folder: one line naming it, not a traceback; Ctrl-C: 130
