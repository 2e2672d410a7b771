"""The package's layers: each imports only those below it, and no entry point imports another.

    train.py, evaluate.py, ablate.py, predict.py  ->  runner  ->  envs, agents, baselines
        ->  models, data, evaluation  ->  common

Read from the source (ast), so an upward import anywhere, even inside a function, fails here."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"common": 0, "models": 1, "data": 1, "evaluation": 1, "envs": 2, "agents": 2, "baselines": 2,
          "runner": 3, "train": 4, "evaluate": 4, "ablate": 4, "predict": 4}
ENTRY_POINTS = {"train", "evaluate", "ablate", "predict"}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of the project's own packages that a file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(LAYERS)


def project_files() -> list[tuple[str, Path]]:
    files = [(p.stem, p) for p in ROOT.glob("*.py") if p.stem in LAYERS]
    for package in (k for k in LAYERS if (ROOT / k).is_dir()):
        files += [(package, p) for p in sorted((ROOT / package).rglob("*.py"))]
    return files


def test_every_layer_is_known() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests"}
    assert packages <= set(LAYERS), f"packages without a layer: {packages - set(LAYERS)}"


@pytest.mark.parametrize("owner,path", project_files(), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else "")
def test_no_upward_import(owner: str, path: Path) -> None:
    above = {name for name in imported_packages(path) if LAYERS[name] > LAYERS[owner]}
    assert not above, f"{path.relative_to(ROOT)} ({owner}, layer {LAYERS[owner]}) imports {sorted(above)} from above"
    if owner in ENTRY_POINTS:
        others = imported_packages(path) & (ENTRY_POINTS - {owner})
        assert not others, f"{path.name} imports the entry point(s) {sorted(others)}: move shared code to runner/"
