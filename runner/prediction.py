"""Segmenting new images with a trained run's bundle: find the images, segment them in batches,
write their maps, masks and overlays, and the predictions.csv (predict.py is the command line)."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from common.files import write_atomic
from data.mvtec import DatasetError, read_rgb
from evaluation.visualize import overlay_mask
from models.segmenter import Segmenter

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
CSV_COLUMNS = ["name", "score", "decision", "defect_area", "defect_pixels", "error"]


def find_images(paths: list[str]) -> list[tuple[str, Path]]:
    """(output name, file) of every image given: files as named, folders searched recursively in
    sorted order. Output names keep the path below the folder (a/b.png -> a__b), so files of the
    same name in different subfolders do not overwrite each other; files that differ only in their
    suffix keep it (a.png, a.jpg -> a_png, a_jpg). SystemExit when there is none."""
    found: list[tuple[str, Path]] = []
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            # Broken and looping symbolic links are kept: they get an error row like any unreadable file.
            files = sorted(f for f in p.rglob("*") if (f.is_file() or f.is_symlink() and not f.is_dir())
                           and f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise SystemExit(f"{p}: no image files in this folder (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            found += [("__".join(f.relative_to(p).with_suffix("").parts), f) for f in files]
        elif p.is_file() or p.is_symlink():
            found.append((p.stem, p))
        else:
            raise SystemExit(f"{p}: no such file or folder")
    names = [n for n, _ in found]
    clash = {n for n in names if names.count(n) > 1}
    if clash:  # a.png beside a.jpg: keep the suffix in the name (a_png, a_jpg)
        found = [(f"{n}_{f.suffix[1:].lower()}" if n in clash else n, f) for n, f in found]
        names = [n for n, _ in found]
    if len(set(names)) != len(names):
        dupes = sorted(str(f) for n, f in found if names.count(n) > 1)
        raise SystemExit(f"inputs would write the same outputs ({', '.join(dupes[:5])}): give them in one folder")
    return found


OUTPUT_SUFFIXES = ("_prob.png", "_mask.png", "_overlay.png")
CSV_NAME = "predictions.csv"


def output_paths(out: Path, names: list[str]) -> list[Path]:
    """Every file predict.py writes under `out` for images of these output names."""
    return [out / f"{n}{suffix}" for n in names for suffix in OUTPUT_SUFFIXES] + [out / CSV_NAME]


def earlier_outputs(out: Path) -> set[Path]:
    """The files an earlier predict.py run wrote in `out`, as its predictions.csv lists them
    (empty when there is none, or the file there is not one predict.py wrote)."""
    path = out / CSV_NAME
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != CSV_COLUMNS:
                return set()
            names = [row["name"] for row in reader if row.get("name")]
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()
    return set(output_paths(out, names))


def check_outputs(out: Path, inputs: list[str], files: list[tuple[str, Path]]) -> None:
    """Refuse, before anything is segmented, an --out that would lose or feed back files: one
    that is or lies inside an input folder (its outputs would be segmented by the next run, and
    their names can be the user's own files), an output path that is an input image, and an
    existing file at an output path that no earlier predict.py run in that folder wrote."""
    target = out.resolve()
    for arg in inputs:
        folder = Path(arg).resolve()
        if Path(arg).is_dir() and (target == folder or folder in target.parents):
            raise SystemExit(f"--out {out}: it {'is' if target == folder else 'lies inside'} the input folder {arg}: "
                             "the outputs could replace images there, and the next run would segment them. "
                             "Choose an --out outside the inputs")
    planned = output_paths(out, [n for n, _ in files])
    sources = {f.resolve() for _, f in files if f.exists()}
    clash = [p for p in planned if p.resolve() in sources]
    if clash:
        raise SystemExit(f"--out {out}: {clash[0]} would be written over an input image; choose another --out")
    ours = {p.resolve() for p in earlier_outputs(out)} if out.is_dir() else set()
    foreign = [p for p in planned if (p.exists() or p.is_symlink()) and p.resolve() not in ours]
    if foreign:
        shown = ", ".join(str(p) for p in foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise SystemExit(f"--out {out}: would overwrite {shown}, which predict.py did not write (it replaces only "
                         f"the outputs its {CSV_NAME} there lists). Move them, or choose another --out")


def write_png(path: Path, image: np.ndarray) -> None:
    """cv2.imwrite, atomically, failing loudly (cv2 only returns False)."""
    def write(tmp: Path) -> None:
        ok, buf = cv2.imencode(".png", image)
        if not ok:
            raise OSError(f"could not encode {path.name}")
        tmp.write_bytes(buf.tobytes())
    write_atomic(path, write)


def predict_files(segmenter: Segmenter, files: list[tuple[str, Path]], out: Path, batch: int = 8) -> list[dict]:
    """Segment every file, write its three PNGs, and return one CSV row per file."""
    rows: list[dict] = []
    with tqdm(total=len(files), desc="images", dynamic_ncols=True, disable=None) as bar:
        for start in range(0, len(files), batch):
            chunk, images = [], []
            for name, path in files[start:start + batch]:
                try:
                    images.append(read_rgb(path))
                    chunk.append(name)
                except DatasetError as e:
                    tqdm.write(f"error: {e}")
                    rows.append({"name": name, "error": str(e)})
            if images:
                result = segmenter.predict(images, batch=batch)
                for k, (name, image) in enumerate(zip(chunk, images)):
                    mask = result.masks[k]
                    write_png(out / f"{name}_prob.png", np.round(result.probabilities[k] * 255).astype(np.uint8))
                    write_png(out / f"{name}_mask.png", mask.astype(np.uint8) * 255)
                    write_png(out / f"{name}_overlay.png",
                              cv2.cvtColor(overlay_mask(image, mask, (255, 0, 0)), cv2.COLOR_RGB2BGR))
                    rows.append({"name": name, "score": round(float(result.scores[k]), 6),
                                 "decision": "defective" if result.decisions[k] else "good",
                                 "defect_area": round(float(mask.mean()), 6), "defect_pixels": int(mask.sum()),
                                 "error": ""})
            bar.update(len(files[start:start + batch]))
    order = {name: i for i, (name, _) in enumerate(files)}
    return sorted(rows, key=lambda r: order[r["name"]])


def write_csv(path: Path, rows: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, CSV_COLUMNS)
            w.writeheader()
            w.writerows({c: r.get(c, "") for c in CSV_COLUMNS} for r in rows)
    write_atomic(path, write)
