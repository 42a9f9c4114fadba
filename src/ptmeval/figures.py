"""Figures as inline SVG (matplotlib, text drawn as paths so no string from data becomes markup)."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
from markupsafe import Markup


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "path"
    matplotlib.rcParams["svg.hashsalt"] = "ptmeval"
    import matplotlib.pyplot as plt

    return plt


def svg(fig: Any) -> Markup:
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return Markup(text[text.index("<svg") :])


def learning_curve_figure(
    curve: pd.DataFrame, band: pd.DataFrame, task: str, metric: str = "accuracy"
) -> Markup:
    """Observed mean ± spread over seeds (points, error bars) and the fitted power law with its
    bootstrap band (lines), one colour per model × init; log x axis."""
    plt = _plt()
    data = curve[(curve["task"] == task) & (curve["metric"] == metric)]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for (model, init), group in data.groupby(["model", "init"]):
        group = group.sort_values("n_train")
        label = f"{model} ({init})"
        bars = ax.errorbar(
            group["n_train"],
            group["mean"],
            yerr=[group["mean"] - group["min"], group["max"] - group["mean"]],
            fmt="o" if init == "pretrained" else "s",
            capsize=3,
            label=label,
            mfc="none" if init == "scratch" else None,
        )
        color = bars[0].get_color()
        fit = (
            band[(band["task"] == task) & (band["model"] == model) & (band["init"] == init)]
            if len(band)
            else band
        )
        if len(fit):
            fit = fit.sort_values("n")
            style = "-" if bool(fit["trustworthy"].iloc[0]) else ":"
            ax.plot(fit["n"], fit["score"], style, color=color, lw=1.2)
            ax.fill_between(fit["n"], fit["score_lo"], fit["score_hi"], color=color, alpha=0.12)
        else:
            ax.plot(group["n_train"], group["mean"], "-", color=color, lw=0.8, alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"test {metric}")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"{task}: points = mean (bars: min–max over seeds); lines = power-law fit")
    ax.legend(fontsize=7, loc="lower right")
    return svg(fig)


def cost_figure(runtime: pd.DataFrame) -> Markup | None:
    """Latency (p50) and peak memory against batch size, one line per model and mode."""
    ok = runtime[runtime["status"] == "ok"] if len(runtime) else runtime
    if ok.empty:
        return None
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for (model, mode, device), group in ok.groupby(["model", "mode", "device_kind"]):
        group = group.sort_values("batch_size")
        style = "-o" if mode == "inference" else "--s"
        label = f"{model} {mode.replace('_', ' ')} ({device})"
        ax1.plot(group["batch_size"], group["latency_p50_ms"], style, label=label)
        mem = group["peak_rss_mb"] if device == "cpu" else group["gpu_peak_mb"]
        ax2.plot(group["batch_size"], mem / 1024, style, label=label)
    for ax, ylabel in ((ax1, "latency p50 (ms)"), (ax2, "peak memory (GB)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax1.set_yscale("log")
    ax2.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return svg(fig)
