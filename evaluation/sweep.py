"""Tables of an ablation sweep: the evaluated runs of a grid, reduced to mean ± std per
(category, preset, agent) over seeds. Built only from what train.py and evaluate.py wrote (the
run layer reads the folders and hands their config, summary and metrics here), so the numbers of a
table are always those of its runs.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.report import HEADLINE_METHOD, METRIC_COLUMNS, PROFILES_METHOD, format_markdown_table
from common.files import write_atomic

#: Metrics reduced over seeds, as named in evaluate.py's headline row (F1 is of the method's decision,
#: the CRF kept or dropped on D_l; F1-max and pixel AUROC are of the predictor's probability maps).
SWEEP_METRICS = ["F1", "F1-max", "pixel AUROC"]
#: What the sampler did and what it gave, per run: the pixel AUROC of the mean of the run's own best
#: D_u profiles (no predictor: what the batches gave the AE), the mean episode return, the mean
#: prediction term of it per episode ((1 - beta) * r_pred, the only part that rewards batches for
#: making the profiles better), and the jump rate and entropy (nats; ln 9 = 2.197 is uniform over
#: the 9 actions) of the actions taken over the last SAMPLER_WINDOW updates. A sampler is only
#: worth learning if it beats the non-learning ones on the first of these; the others say why not.
SAMPLER_METRICS = ["profiles' pixel AUROC", "return", "prediction term", "jump rate", "action entropy"]
SAMPLER_WINDOW = 100
GROUP_KEYS = ["category", "preset", "agent"]


def sampler_metrics(log: dict[str, np.ndarray], metrics: dict[str, Any], jump_action: int | None) -> dict[str, float]:
    """SAMPLER_METRICS of one run from its log.csv columns (runner.folder.RunFolder.read_log:
    action_<k> is the fraction of action k in an update's episode) and metrics.json; `jump_action`
    is the env's jump action (envs.actions.JUMP). nan where the log lacks a column (a run from
    before it was logged)."""
    def mean(x: np.ndarray | None) -> float:
        return math.nan if x is None or np.isnan(x).all() else float(np.nanmean(x))

    profiles = next((r for r in metrics["rows"] if r["method"].startswith(PROFILES_METHOD)), None)
    out = {"profiles' pixel AUROC": float(profiles["pixel AUROC"]) if profiles else math.nan,
           "return": mean(log.get("return")),
           "prediction term": mean((1.0 - log["beta"]) * log["r_pred"]) if {"beta", "r_pred"} <= log.keys() else math.nan,
           "jump rate": math.nan, "action entropy": math.nan}
    actions = {int(k[len("action_"):]): v for k, v in log.items() if k.startswith("action_") and k[len("action_"):].isdigit()}
    counts = {a: float(np.nansum(v[-SAMPLER_WINDOW:])) for a, v in actions.items()}
    total = sum(counts.values())
    if total > 0 and jump_action in counts:
        p = np.array(list(counts.values())) / total
        out["jump rate"] = counts[jump_action] / total
        out["action entropy"] = float(-(p[p > 0] * np.log(p[p > 0])).sum())
    return out


def cell_row(config: dict[str, Any], summary: dict[str, Any], metrics: dict[str, Any], run: str,
             log: dict[str, np.ndarray] | None = None, jump_action: int | None = None) -> dict[str, Any]:
    """One evaluated run (its config.json, summary.json and metrics.json, and its log.csv columns
    when given) as a flat row: its grid coordinates, the headline metrics, the wall time, and with
    the log what the sampler did (SAMPLER_METRICS; `jump_action` as for sampler_metrics)."""
    row = next((r for r in metrics["rows"] if r["method"] == HEADLINE_METHOD), None)
    if row is None:
        raise ValueError(f"{run}: metrics.json has no {HEADLINE_METHOD!r} row")
    args = config["args"]
    out = {"category": args["category"], "preset": args["preset"], "agent": args["agent"],
           "seed": int(args["seed"]), "episodes": int(summary["episodes"]),
           "train_wall_s": float(summary["wall_s"]), "device": summary.get("device", "?"), "run": run}
    out.update({m: float(row[m]) for m in SWEEP_METRICS})
    out["image AUROC"] = float(row["image AUROC"]) if row.get("image AUROC") is not None else math.nan
    if log is not None:
        out.update(sampler_metrics(log, metrics, jump_action))
    return out


def summarize(cells: list[dict[str, Any]], order: list[str] | None = None) -> list[dict[str, Any]]:
    """mean, sample std (ddof=1; 0 for one seed) and n over seeds per (category, preset, agent).

    Groups keep the order of first appearance; `order` (agent names) sorts agents within a class."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault(tuple(c[k] for k in GROUP_KEYS), []).append(c)
    rank = {a: i for i, a in enumerate(order or [])}
    keys = sorted(groups, key=lambda k: (k[0], k[1], rank.get(k[2], len(rank))))
    rows = []
    for key in keys:
        members = groups[key]
        row: dict[str, Any] = dict(zip(GROUP_KEYS, key))
        row["n"] = len(members)
        row["seeds"] = " ".join(str(m["seed"]) for m in sorted(members, key=lambda m: m["seed"]))
        for metric in SWEEP_METRICS + ["image AUROC", *SAMPLER_METRICS, "train_wall_s"]:
            if any(metric not in m for m in members):
                continue
            values = np.array([m[metric] for m in members], dtype=np.float64)
            row[f"{metric} mean"] = float(values.mean())
            row[f"{metric} std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def _pm(mean: float, std: float, fmt: str = "{:.3f}") -> str:
    return "-" if math.isnan(mean) else f"{fmt.format(mean)} ± {fmt.format(std).lstrip('+')}"


def markdown_summary(rows: list[dict[str, Any]]) -> str:
    """Markdown table: one line per (category, preset, agent), mean ± std per metric."""
    cols = GROUP_KEYS + ["n"] + SWEEP_METRICS + ["train wall (s)"]
    table = []
    for r in rows:
        t = {k: r[k] for k in GROUP_KEYS + ["n"]}
        t.update({m: _pm(r[f"{m} mean"], r[f"{m} std"]) for m in SWEEP_METRICS})
        t["train wall (s)"] = f"{r['train_wall_s mean']:.1f}"
        table.append(t)
    return format_markdown_table(table, cols)


def markdown_sampler_summary(rows: list[dict[str, Any]]) -> str:
    """Markdown table: one line per (category, preset, agent), mean ± std of the NBS image AUROC
    and of SAMPLER_METRICS (summarize() rows of cells with their logs); '' when none has them."""
    metrics = ["image AUROC", *SAMPLER_METRICS]
    rows = [r for r in rows if all(f"{m} mean" in r for m in metrics)]
    if not rows:
        return ""
    fmt = {"return": "{:.2f}", "prediction term": "{:+.5f}"}
    table = []
    for r in rows:
        t = {k: r[k] for k in GROUP_KEYS + ["n"]}
        t.update({m: _pm(r[f"{m} mean"], r[f"{m} std"], fmt.get(m, "{:.3f}")) for m in metrics})
        table.append(t)
    return format_markdown_table(table, GROUP_KEYS + ["n"] + metrics)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """CSV with the union of the rows' keys as header, in first-seen order."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)

    write_atomic(path, write)


#: Columns of the method x metric table (evaluate.py's row metrics).
METHOD_METRICS = METRIC_COLUMNS
#: Row families trained independently of the sampler (same split, same seed -> same numbers in
#: every cell), so each counts once per seed however many presets and agents the sweep has.
SHARED_FAMILIES = ("unet", "ae")


def labelled_method_rows(config: dict[str, Any], metrics: dict[str, Any], run: str) -> list[dict[str, Any]]:
    """Every row of one evaluated run's table, labelled with its grid coordinates.

    Rows of the sampler-dependent methods (NBS, the profiles' reconstruction error) are named
    '<method> [<preset>, <agent>]'; the baselines keep their name."""
    args = config["args"]
    out = []
    for r in metrics["rows"]:
        shared = r.get("family") in SHARED_FAMILIES or "F1-max" not in r
        name = r["method"] if shared else f"{r['method']} [{args['preset']}, {args['agent']}]"
        out.append({**r, "method": name, "shared": shared, "category": args["category"],
                    "seed": int(args["seed"]), "run": run})
    return out


def summarize_methods(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """mean, sample std and n over seeds per (category, method); a shared baseline row counts once
    per seed. Rows without metrics (a method not applicable to the data) keep their note."""
    groups: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["category"], r["method"]), {}).setdefault(r["seed"], r)
    out = []
    for (category, method), by_seed in groups.items():
        members = [by_seed[s] for s in sorted(by_seed)]
        first = members[0]
        row: dict[str, Any] = {"category": category, "method": method, "n": len(members),
                               "note": first.get("note", "")}
        for k in ("published F1", "published F1-max"):
            row[k] = first.get(k, math.nan)
        for m in METHOD_METRICS:
            values = np.array([float(x[m]) if x.get(m) is not None else math.nan for x in members])
            row[f"{m} mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{m} std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(row)
    return out


def markdown_methods(rows: list[dict[str, Any]]) -> str:
    """Markdown method x metric table (mean ± std over seeds) with the published columns."""
    cols = ["category", "method", "n", *METHOD_METRICS, "published F1", "published F1-max"]
    table = []
    for r in rows:
        t: dict[str, Any] = {k: r[k] for k in ("category", "method", "n", "published F1", "published F1-max")}
        if all(math.isnan(r[f"{m} mean"]) for m in METHOD_METRICS):
            t.update({m: "n/a" for m in METHOD_METRICS})
            t["method"] = f"{r['method']} ({r['note']})" if r["note"] else r["method"]
        else:
            t.update({m: _pm(r[f"{m} mean"], r[f"{m} std"]) for m in METHOD_METRICS})
        table.append(t)
    return format_markdown_table(table, cols)


#: Metrics of the paired table (PAIRED_REFERENCES): what a sampler gave the AE, and what shipped.
PAIRED_METRICS = ["profiles' pixel AUROC", "pixel AUROC", "F1", "image AUROC"]
#: The samplers every other is paired with, per seed, when a sweep has them: the uniform sampler
#: (the floor a learned sampler must beat) and the oracle-normal diagnostic (the headroom).
PAIRED_REFERENCES = ("uniform", "oracle-normal")


def paired_differences(cells: list[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """Per (category, preset, agent other than `reference`): over the seeds both ran, the mean and
    sample std of (agent - reference) per PAIRED_METRICS, and on how many seeds the agent was
    higher. [] when the sweep has no `reference` cells."""
    ref = {(c["category"], c["preset"], c["seed"]): c for c in cells if c["agent"] == reference}
    groups: dict[tuple[str, str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for c in cells:
        partner = ref.get((c["category"], c["preset"], c["seed"]))
        if c["agent"] != reference and partner is not None:
            groups.setdefault((c["category"], c["preset"], c["agent"]), []).append((c, partner))
    rows = []
    for (category, preset, agent), pairs in groups.items():
        row: dict[str, Any] = {"category": category, "preset": preset, "agent": agent, "reference": reference,
                               "n": len(pairs)}
        for m in PAIRED_METRICS:
            d = np.array([a.get(m, math.nan) - b.get(m, math.nan) for a, b in pairs], dtype=np.float64)
            d = d[~np.isnan(d)]
            row[f"{m} diff mean"] = float(d.mean()) if len(d) else math.nan
            row[f"{m} diff std"] = float(d.std(ddof=1)) if len(d) > 1 else 0.0
            row[f"{m} wins"] = f"{int((d > 0).sum())}/{len(d)}"
        rows.append(row)
    return rows


def markdown_paired(rows: list[dict[str, Any]]) -> str:
    """Markdown table of paired_differences rows: mean ± std of the difference and the seeds won."""
    table = []
    for r in rows:
        t = {k: r[k] for k in ("category", "preset", "agent", "reference", "n")}
        t.update({m: f"{_pm(r[f'{m} diff mean'], r[f'{m} diff std'], '{:+.3f}')} ({r[f'{m} wins']})"
                  for m in PAIRED_METRICS})
        table.append(t)
    return format_markdown_table(table, ["category", "preset", "agent", "reference", "n", *PAIRED_METRICS])
