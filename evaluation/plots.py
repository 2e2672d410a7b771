"""Charts of sweeps and training runs (matplotlib, headless Agg backend)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from common.files import write_atomic

__all__ = ["plot_run_diagnostics", "plot_sweep_bars", "plot_training_curves", "smooth"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display needed: figures go to files
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: str | Path, dpi: int) -> None:
    """fig as a PNG at `path`, atomically (a full disk leaves the previous chart, and ends in a
    RunFileError naming the file), and the figure closed either way."""
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average that ignores nan (nan where the whole window is nan)."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(values) == 0:
        return values
    ok = np.isfinite(values)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, values, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    count = ccnt[idx] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[idx] - csum[lo]) / np.maximum(count, 1), np.nan)


def plot_sweep_bars(rows: list[dict[str, Any]], metrics: list[str], path: str | Path, title: str = "") -> None:
    """One panel per metric; per category a group of bars (one per agent), mean with ±std whiskers.

    `rows` are evaluation.sweep.summarize() rows ('<metric> mean' / '<metric> std' keys)."""
    plt = _pyplot()
    groups = list(dict.fromkeys(f"{r['category']}/{r['preset']}" for r in rows))
    agents = list(dict.fromkeys(r["agent"] for r in rows))
    width = 0.8 / max(1, len(agents))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics) + 1, 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for j, agent in enumerate(agents):
            means, stds = [], []
            for g in groups:
                r = next((r for r in rows if f"{r['category']}/{r['preset']}" == g and r["agent"] == agent), None)
                means.append(np.nan if r is None else r[f"{metric} mean"])
                stds.append(0.0 if r is None else r[f"{metric} std"])
            x = np.arange(len(groups)) + (j - (len(agents) - 1) / 2) * width
            ax.bar(x, means, width, yerr=stds, capsize=3, label=agent)
        ax.set_xticks(np.arange(len(groups)), groups)
        ax.set_title(metric)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(plt, fig, path, dpi=110)


def plot_training_curves(curves: dict[str, list[dict[str, np.ndarray]]], path: str | Path,
                         columns: tuple[str, ...] = ("return", "l_pred", "ae_loss"), title: str = "") -> None:
    """Training curves of several agents on one figure: one panel per log column, per agent the
    mean over its runs (seeds) of a moving average, shaded ± std across runs.

    `curves` maps an agent name to the logs (evaluation.sweep.read_log) of its runs."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 3.6), squeeze=False)
    for agent, logs in curves.items():
        logs = [log for log in logs if log]
        if not logs:
            continue
        n = min(len(log["episode"]) for log in logs)
        episode = logs[0]["episode"][:n]
        window = max(1, n // 30)
        for ax, col in zip(axes[0], columns):
            runs = np.stack([smooth(log[col][:n], window) for log in logs])
            with warnings.catch_warnings():  # all-nan columns (l_pred before the predictor trains)
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(runs, axis=0), np.nanstd(runs, axis=0)
            line, = ax.plot(episode, mean, label=f"{agent} ({len(logs)})", lw=1.2)
            ax.fill_between(episode, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    for ax, col in zip(axes[0], columns):
        ax.set_xlabel("episode (= AE update)")
        ax.set_title(col)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(plt, fig, path, dpi=110)


def plot_run_diagnostics(log: dict[str, np.ndarray], labeled_profiles: np.ndarray, labeled_masks: np.ndarray,
                         path: str | Path, title: str = "") -> None:
    """What a user checks first on new data, from one run (evaluation.sweep.read_log of its
    log.csv and its best D_l profiles):

    1. pixel AUROC per AE update of the current D_l loss maps, of the mean D_l profile and (with
       held-out predictors) of the predictor on D_l images it never trained on: 0.5 is chance;
    2. the AE's loss over that of each image's mean colour, and its output's spread over the
       images' (collapsed AE: ratio >= 1 with a spread near 0);
    3. the sampler's action mix per update (jump rate and each move);
    4. the loss profile (raw loss over the last T AE updates) of defect pixels beside normal ones
       of D_l, median and quartiles: where they do not separate, no predictor will.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(19, 3.8))
    episode = log["episode"]
    window = max(1, len(episode) // 30)
    ax = axes[0]
    for col, label in (("dl_loss_auroc", "current D_l loss map"), ("dl_profile_auroc", "mean D_l profile"),
                       ("dl_heldout_auroc", "predictor, held-out D_l")):
        values = log.get(col)
        if values is not None and np.isfinite(values).any():
            ax.plot(episode, smooth(values, window), label=label, lw=1.2)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_title("pixel AUROC on D_l")
    ax.legend(fontsize=8)
    ax = axes[1]
    for col, label in (("ae_vs_mean_colour", "loss / image mean-colour loss"),
                       ("ae_output_spread", "output spread / image spread")):
        if col in log:
            ax.plot(episode, smooth(log[col], window), lw=1.2, label=label)
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_title("AE vs. a flat colour (collapse: ratio >= 1, spread ~ 0)", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[2]
    actions = [log[f"action_{a}"] for a in range(9) if f"action_{a}" in log]
    if len(actions) == 9:
        moves = smooth(np.sum(actions[:8], axis=0), window)
        ax.stackplot(episode, smooth(actions[8], window), moves, labels=["jump", "moves (0-7)"], alpha=0.7)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, loc="lower left")
    ax.set_title("actions per update")
    ax = axes[3]
    masks = labeled_masks.astype(bool)
    t = np.arange(labeled_profiles.shape[1])
    pixels = labeled_profiles.transpose(1, 0, 2, 3).reshape(len(t), -1)  # (T, all D_l pixels)
    flat = masks.reshape(-1)
    for sel, label in ((~flat, "normal pixels"), (flat, "defect pixels")):
        if sel.any():
            q1, med, q3 = np.percentile(pixels[:, sel], [25, 50, 75], axis=1)
            line, = ax.plot(t, med, label=label, lw=1.4)
            ax.fill_between(t, q1, q3, color=line.get_color(), alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("profile step (oldest -> newest)")
    ax.set_title("best D_l loss profiles")
    ax.legend(fontsize=8)
    for ax in axes[:3]:
        ax.set_xlabel("episode (= AE update)")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(plt, fig, path, dpi=100)
