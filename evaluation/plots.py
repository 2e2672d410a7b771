"""Charts of sweeps and training runs (matplotlib, headless Agg backend)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_sweep_bars", "plot_training_curves", "smooth"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display needed: figures go to files
    import matplotlib.pyplot as plt

    return plt


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
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    fig.savefig(path, dpi=110)
    plt.close(fig)
