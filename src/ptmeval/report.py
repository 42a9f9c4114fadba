"""`render_report`: one self-contained HTML page from the aggregated tables (cache only)."""

from __future__ import annotations

import io
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ptmeval import __version__
from ptmeval.io import git_commit, hardware

TEMPLATE = Path(__file__).parent / "templates" / "report.html.j2"
PRIMARY_METRIC = "accuracy"


def _svg(fig: Any) -> Markup:
    """A matplotlib figure as inline SVG (text drawn as paths: no markup from data)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return Markup(text[text.index("<svg") :])


def learning_curve_figure(curve: pd.DataFrame, task: str, metric: str = PRIMARY_METRIC) -> Markup:
    """Score vs training examples (log x), one line per model × init, band = min–max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "path"
    import matplotlib.pyplot as plt

    data = curve[(curve["task"] == task) & (curve["metric"] == metric)]
    fig, ax = plt.subplots(figsize=(7, 4))
    for (model, init), group in data.groupby(["model", "init"]):
        group = group.sort_values("n_train")
        style = "-" if init == "pretrained" else "--"
        line = ax.plot(
            group["n_train"], group["mean"], style, marker="o", label=f"{model} ({init})"
        )
        ax.fill_between(
            group["n_train"], group["min"], group["max"], alpha=0.15, color=line[0].get_color()
        )
    ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"test {metric}")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"{task}: learning curves (mean over seeds; band = min–max)")
    ax.legend(fontsize=8, loc="lower right")
    return _svg(fig)


def results_table(curve: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and macro-F1 (mean ± std over seeds) per model × task × init × size."""
    if curve.empty:
        return curve
    keep = curve[curve["metric"].isin(["accuracy", "macro_f1", "ece"])].copy()
    keep["cell"] = keep.apply(lambda r: f"{r['mean']:.3f} ± {r['std']:.3f}", axis=1)
    wide = keep.pivot_table(
        index=["task", "model", "init", "method", "n_train", "n_seeds"],
        columns="metric",
        values="cell",
        aggfunc="first",
    ).reset_index()
    wide.columns.name = None
    return wide.sort_values(["task", "model", "init", "n_train"])


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "transformers", "snakemake", "pandas", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def render_report(
    tables: dict[str, pd.DataFrame],
    out_path: str | Path,
    title: str,
    config_hash: str,
    stage_times: pd.DataFrame | None = None,
) -> Path:
    """Render the HTML report to `out_path` from the aggregated tables."""
    curve = tables["learning_curve"]
    tasks = tables["tasks"]
    figures = (
        {t: learning_curve_figure(curve, t) for t in sorted(curve["task"].unique())}
        if len(curve)
        else {}
    )
    task_rows = (
        tasks.pivot_table(
            index=["task", "modality"], columns="split", values="count", aggfunc="sum"
        )
        .reset_index()
        .assign(classes=lambda d: d["task"].map(tasks.groupby("task")["label"].nunique()))
        if len(tasks)
        else pd.DataFrame()
    )
    env = Environment(
        loader=FileSystemLoader(TEMPLATE.parent),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template(TEMPLATE.name).render(
        title=title,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        models=sorted(set(tables["results"]["model"])) if len(tables["results"]) else [],
        tasks=task_rows.to_dict("records"),
        profile=tables["profile"].to_dict("records"),
        figures=figures,
        results=results_table(curve).to_dict("records"),
        cost=_cost_summary(tables["finetune_cost"]).to_dict("records"),
        provenance={
            "ptmeval": __version__,
            "git commit": git_commit() or "unknown",
            "config hash": config_hash,
            **_versions(),
            "python": platform.python_version(),
            "hardware": ", ".join(f"{k}={v}" for k, v in hardware().items()),
        },
        stage_times=(stage_times.to_dict("records") if stage_times is not None else []),
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def _cost_summary(cost: pd.DataFrame) -> pd.DataFrame:
    if cost.empty:
        return cost
    return (
        cost.groupby(["model", "task", "init", "method", "n_train"], as_index=False)
        .agg(
            wall_s=("wall_s", "mean"),
            samples_seen=("samples_seen", "mean"),
            diverged=("diverged", "sum"),
        )
        .sort_values(["task", "model", "init", "n_train"])
    )
