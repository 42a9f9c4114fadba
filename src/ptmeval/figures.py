"""Figures as inline SVG (matplotlib, text drawn as paths so no string from data becomes markup)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
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
            # clipped at 0: the mean of equal seeds can exceed them by a rounding error
            yerr=np.clip([group["mean"] - group["min"], group["max"] - group["mean"]], 0, None),
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
        if len(fit) and fit["score"].notna().any():
            fit = fit.sort_values("n")
            trusted = bool(fit["trustworthy"].iloc[0])
            inside = fit[~fit["extrapolated"].astype(bool)]
            beyond = fit[fit["extrapolated"].astype(bool)]
            ax.plot(inside["n"], inside["score"], "-" if trusted else ":", color=color, lw=1.2)
            if len(beyond):  # the extrapolation, dashed, joined to the last observed size
                joined = pd.concat([inside.tail(1), beyond])
                ax.plot(joined["n"], joined["score"], "--" if trusted else ":", color=color, lw=1)
            ax.fill_between(fit["n"], fit["score_lo"], fit["score_hi"], color=color, alpha=0.12)
        else:
            ax.plot(group["n_train"], group["mean"], "-", color=color, lw=0.8, alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"test {metric}")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(
        f"{task}: points = mean (bars: min–max over seeds); line = power-law fit, "
        "dashed = extrapolation, dotted = untrustworthy fit",
        fontsize=8,
    )
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


def prediction_scatter(points: pd.DataFrame, predictor: str) -> Markup | None:
    """Transferability score (x) against the fine-tuned test score (y), one panel per task."""
    data = points.dropna(subset=[predictor, "score"]) if len(points) else points
    if data.empty:
        return None
    plt = _plt()
    tasks = sorted(data["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = data[data["task"] == task]
        ax.scatter(sub[predictor], sub["score"])
        for _, row in sub.iterrows():
            ax.annotate(str(row["model"]), (row[predictor], row["score"]), fontsize=7)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel(predictor)
        ax.set_ylabel("fine-tuned test score")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return svg(fig)


def similarity_heatmap(similarity: pd.DataFrame) -> Markup | None:
    """Task × task Fréchet distance of frozen features, one panel per model."""
    if similarity.empty:
        return None
    plt = _plt()
    models = sorted(similarity["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.2), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        sub = similarity[similarity["model"] == model]
        tasks = sorted(set(sub["task_a"]) | set(sub["task_b"]))
        index = {t: i for i, t in enumerate(tasks)}
        grid = [[0.0] * len(tasks) for _ in tasks]
        for _, row in sub.iterrows():
            i, j = index[row["task_a"]], index[row["task_b"]]
            grid[i][j] = grid[j][i] = float(row["frechet_distance"])
        image = ax.imshow(grid, cmap="viridis")
        ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(tasks)), tasks, fontsize=7)
        ax.set_title(model, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return svg(fig)


def pareto_front(cost: list[float], score: list[float]) -> list[int]:
    """Indices of the points no other point beats on both lower cost and higher score,
    sorted by cost."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -score[i]))
    front, best = [], float("-inf")
    for i in order:
        if score[i] > best:
            front.append(i)
            best = score[i]
    return front


PARETO_COSTS = [
    ("latency_b1", "CPU latency at batch 1 (ms)"),
    ("inference_memory", "peak memory, inference (MB)"),
    ("flops", "forward FLOPs per example"),
    ("finetune_time", "fine-tune time, largest size (s)"),
]


def pareto_figure(points: pd.DataFrame, task: str) -> Markup | None:
    """Task score (with its 95% interval) against each cost, one point per model, the Pareto
    front drawn as a step line."""
    data = points[points["task"] == task]
    if data.empty:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(PARETO_COSTS), figsize=(13, 3.2))
    for ax, (col, label) in zip(axes, PARETO_COSTS, strict=True):
        sub = data.dropna(subset=[col, "score"])
        if sub.empty:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel(label, fontsize=8)
            continue
        yerr = [
            sub["score"] - sub["score_lo"].fillna(sub["score"]),
            sub["score_hi"].fillna(sub["score"]) - sub["score"],
        ]
        ax.errorbar(sub[col], sub["score"], yerr=yerr, fmt="o", capsize=3)
        for _, r in sub.iterrows():
            ax.annotate(str(r["model"]), (r[col], r["score"]), fontsize=7)
        front = pareto_front(list(sub[col]), list(sub["score"]))
        fx = [sub[col].iloc[i] for i in front]
        fy = [sub["score"].iloc[i] for i in front]
        ax.step(fx, fy, where="post", color="tab:red", lw=1, alpha=0.7)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    metric = str(data["metric"].iloc[0]) if "metric" in data else "score"
    axes[0].set_ylabel(f"{task}: test {metric}")
    fig.tight_layout()
    return svg(fig)
