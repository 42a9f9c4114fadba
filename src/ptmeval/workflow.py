"""Helpers behind rules/common.smk: job enumeration, per-rule settings, code versions.

Imported while the Snakefile is parsed: keep it free of torch/transformers/pandas imports.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
from pathlib import Path
from typing import Any

from ptmeval.adapters import get_spec
from ptmeval.compute import gpu_requested
from ptmeval.config import Config, FinetuneSettings, LoraSettings, fraction_slug
from ptmeval.jobs import FinetuneJob, ModelJob

PACKAGE_DIR = Path(__file__).resolve().parent

# Files a stage depends on that no import names (read as data at run time).
STAGE_DATA: dict[str, tuple[str, ...]] = {"render_report": ("templates",)}
SCRIPTS_DIR = PACKAGE_DIR.parents[1] / "scripts"  # the rules' scripts (repository layout)
_MODULE = re.compile(r"^ptmeval(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _module_files(name: str, package_dir: Path) -> list[Path]:
    """The files importing `name` (ptmeval.a.b) executes: the module and its packages'
    __init__.py; [] when it is not a module of the package (e.g. a function's name)."""
    parts = name.split(".")[1:]
    files = []
    for depth in range(len(parts) + 1):
        base = package_dir.joinpath(*parts[:depth])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif depth and base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
        elif depth:
            break
    return files


@functools.cache
def _imported(path: Path, package_dir: Path) -> frozenset[Path]:
    """The package's files that `path` imports anywhere (lazy imports inside functions too),
    or names as a module string (a registry entry, `python -m ptmeval.x`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the importing file's package
                rel = path.parent.relative_to(package_dir).parts
                base = ["ptmeval", *rel[: len(rel) - (node.level - 1)]]
                module = ".".join([*base, *([module] if module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE.match(node.value):
                names.add(node.value)
    files: set[Path] = set()
    for name in names:
        if name == "ptmeval" or name.startswith("ptmeval."):
            files.update(_module_files(name, package_dir))
    return frozenset(files)


def import_closure(script: Path, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The package's files a script depends on: what it imports, what those import, and so on."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        current = todo.pop()
        for found in _imported(current, package_dir):
            if found not in seen:
                seen.add(found)
                todo.append(found)
    return sorted(seen)


@functools.cache
def code_version(
    stage: str, scripts_dir: Path = SCRIPTS_DIR, package_dir: Path = PACKAGE_DIR
) -> str:
    """Hash of the code a stage's results depend on: its script, the closure of the library
    modules the script imports (computed from the sources, never a hand-kept list), and the
    data files the stage reads (templates). Snakemake does not see inside imports."""
    script = scripts_dir / f"{stage}.py"
    files = [script, *import_closure(script, package_dir)]
    for entry in STAGE_DATA.get(stage, ()):
        files += sorted(p for p in (package_dir / entry).rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        name = file.name if file == script else str(file.relative_to(package_dir))
        digest.update(name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


HEAVY_THREADS = 2  # CPU threads of the jobs that run a network (rules/*.smk: `threads`)

# Settings that only inference-time stages (profile, features) depend on.
INFERENCE_FIELDS = ("max_length", "image_size", "eval_batch_size")
PLACEMENT_FIELDS = ("device", "precision")  # where feature extraction runs (ptmeval.compute)
PROBE_FIELDS = ("probe_c", "c_grid", "probe_max_iter")  # a logistic-regression head's fit
SIZE_FIELD = {"text": "max_length", "image": "image_size"}


def relevant_fields(cfg: Config, model: str) -> tuple[str, ...]:
    """The `finetune` settings a model's jobs depend on; the others stay at their defaults in
    the jobs' params, so that changing them reruns nothing of this model: a text model never
    sees `image_size`, an image model never `max_length`; a classical baseline only its C; a
    linear probe its inference settings and its C, not the training loop's."""
    entry = cfg.model(model)
    spec = get_spec(entry.adapter)
    if not spec.neural:
        return ("probe_c", "c_grid")
    inference = (SIZE_FIELD[spec.modality], "eval_batch_size", *PLACEMENT_FIELDS)
    if entry.method == "linear_probe":
        return inference + PROBE_FIELDS
    other = {name for mod, name in SIZE_FIELD.items() if mod != spec.modality}
    return tuple(f for f in FinetuneSettings.model_fields if f not in {*PROBE_FIELDS, *other})


def finetune_targets(cfg: Config) -> list[dict[str, str]]:
    """Wildcards of every fine-tune job: model × task (same modality) × fraction × seed × init."""
    jobs = []
    for model, task in cfg.pairs():
        for fraction in cfg.subsample.fractions:
            for seed in cfg.subsample.seeds:
                for init in model.init_list:
                    jobs.append(
                        {
                            "model": model.slug,
                            "task": task.slug,
                            "fraction": fraction_slug(fraction),
                            "seed": str(seed),
                            "init": init,
                        }
                    )
    return jobs


def tune_targets(cfg: Config) -> list[dict[str, str]]:
    """Hyperparameter-selection jobs: one per model × task × init."""
    seen = {(j["model"], j["task"], j["init"]): None for j in finetune_targets(cfg)}
    return [{"model": m, "task": t, "init": i} for m, t, i in seen]


def tune_job_wildcards(cfg: Config, wildcards: Any) -> dict[str, str]:
    """The fine-tune a selection runs (per grid value): the largest size, the first seed."""
    return {
        "model": wildcards.model,
        "task": wildcards.task,
        "fraction": fraction_slug(max(cfg.subsample.fractions)),
        "seed": str(cfg.subsample.seeds[0]),
        "init": wildcards.init,
    }


def _files_under(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def source_files(cfg: Config, model: str) -> list[str]:
    """Every file of a model's local `path` source: the download's inputs, so that replacing
    one in place reruns it."""
    from ptmeval.config import PathSource

    src = cfg.model(model).source
    return [str(p) for p in _files_under(Path(src.path))] if isinstance(src, PathSource) else []


def source_fingerprint(cfg: Config, model: str) -> str:
    """Names and sizes of the files a packaged source ships (a package folder, the chunks of a
    split archive): a download param, so that another version of the package reruns the
    download while reinstalling the same one (new time stamps) does not. '' otherwise."""
    from ptmeval.config import PackagePartsSource, PackageSource, package_root

    src = cfg.model(model).source
    if isinstance(src, PackageSource):
        files = _files_under(package_root(src.package) / src.file)
    elif isinstance(src, PackagePartsSource):
        files = [package_root(p) / f"{src.file}.{i:03d}" for i, p in enumerate(src.packages, 1)]
    else:
        return ""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def neural_models(cfg: Config) -> list[str]:
    return [m.slug for m in cfg.models if get_spec(m.adapter).neural]


def has_pretrained(cfg: Config, model: str) -> bool:
    entry = cfg.model(model)
    return get_spec(entry.adapter).neural and "pretrained" in entry.init_list


def export_targets(cfg: Config) -> list[dict[str, str]]:
    """(model, task) pairs that get an export check: neural models, on the first task of their
    modality (or every task, with profile.export_tasks: all)."""
    out = []
    for model in cfg.models:
        if not get_spec(model.adapter).neural:
            continue
        tasks = [t for t in cfg.tasks if t.modality == model.modality]
        if cfg.profile.export_tasks == "first":
            tasks = tasks[:1]
        out += [{"model": model.slug, "task": t.slug} for t in tasks]
    return out


def export_job_wildcards(cfg: Config, model: str, task: str) -> dict[str, str]:
    """The fine-tune job an export check examines: largest size, first seed, pretrained if any."""
    entry = cfg.model(model)
    inits = entry.init_list
    return {
        "model": model,
        "task": task,
        "fraction": fraction_slug(max(cfg.subsample.fractions)),
        "seed": str(cfg.subsample.seeds[0]),
        "init": "pretrained" if "pretrained" in inits else inits[0],
    }


def is_export_job(cfg: Config, wildcards: Any) -> bool:
    """Whether a fine-tune job (its wildcards) is the one the export check reads: the only full
    fine-tune that writes its weights (`keep_weights: true`, read at run time because it
    changes no result, keeps them all)."""
    chosen = export_job_wildcards(cfg, wildcards.model, wildcards.task)
    return all(str(chosen[k]) == str(getattr(wildcards, k)) for k in chosen)


def transfer_targets(cfg: Config) -> list[dict[str, str]]:
    """(model, task) pairs with transferability scores: neural models with pretrained weights.
    A base model with several methods is scored once, under its first method with pretrained
    weights (the scores are of the frozen weights; that method's result is what they predict)."""
    scored = [m for m in cfg.models if has_pretrained(cfg, m.slug)]
    first = {m.base: m.slug for m in reversed(scored)}
    return [
        {"model": m.slug, "task": t.slug} for m, t in cfg.pairs() if first.get(m.base) == m.slug
    ]


def runtime_job_wildcards(cfg: Config, model: str) -> dict[str, str] | None:
    """The fine-tune job whose fitted state a classical model's runtime is measured on: on the
    model's first task, the one the export check would pick (largest size, first seed, its
    init); None for a neural model (measured on its snapshot)."""
    entry = cfg.model(model)
    if get_spec(entry.adapter).neural:
        return None
    task = next(t for m, t in cfg.pairs() if m.slug == model)
    return export_job_wildcards(cfg, model, task.slug)


def runtime_settings(cfg: Config, model: str) -> dict[str, Any]:
    """Profile settings of one model; linear probes and classical models get no
    training-step measurement (a classical model's fit is in its fine-tune cost)."""
    settings = cfg.profile.model_dump(mode="json")
    settings.pop("export_tasks")
    entry = cfg.model(model)
    if entry.method == "linear_probe" or not get_spec(entry.adapter).neural:
        # a probe's fit (a logistic regression on cached features) is in its fine-tune's
        # history, not measured here; a LoRA step (adapters and head) is, like a full one
        settings["train_batch_sizes"] = []
    if cfg.methods_of(entry.base)[0].slug != model:
        # one network at inference whatever the method (LoRA merged, a probe's head a linear
        # layer): measured once, under the base model's first method, and shared
        settings["inference_batch_sizes"] = []
    settings["init"] = "pretrained" if has_pretrained(cfg, model) else "scratch"
    return settings


def runtime_models(cfg: Config) -> list[str]:
    """The models with a runtime job: every one, but a method with nothing of its own to
    measure (a probe beside another method of its model: no training step, shared inference)."""
    out = []
    for entry in cfg.models:
        settings = runtime_settings(cfg, entry.slug)
        if settings["inference_batch_sizes"] or settings["train_batch_sizes"]:
            out.append(entry.slug)
    return out


def model_job(
    cfg: Config, model: str, inference_only: bool = False, placed: bool = False
) -> dict[str, Any]:
    """Params of a per-model job: the settings the model depends on (`relevant_fields`);
    `inference_only` keeps of those only what inference uses, so that a change of e.g. the
    learning rate does not rerun profiling or feature extraction (a classical model's inference
    uses none of them); `placed` keeps the device and precision too (feature extraction runs
    there)."""
    entry = cfg.model(model)
    settings = cfg.finetune_settings(model)
    fields = relevant_fields(cfg, model)
    if inference_only:
        wanted = INFERENCE_FIELDS + (PLACEMENT_FIELDS if placed else ())
        fields = tuple(f for f in fields if f in wanted)
    settings = FinetuneSettings(**{f: getattr(settings, f) for f in fields})
    job = ModelJob(
        model=model,
        adapter=entry.adapter,
        method=entry.method,
        options=entry.options,
        trust_remote_code=entry.trust_remote_code,
        finetune=settings,
        lora=(entry.lora or LoraSettings()) if entry.method == "lora" else None,
    )
    return job.model_dump(mode="json")


def finetune_job(cfg: Config, wildcards: Any) -> dict[str, Any]:
    """Params of one fine-tune/evaluate job."""
    base = model_job(cfg, wildcards.model)
    job = FinetuneJob(
        **base,
        task=wildcards.task,
        fraction=float(wildcards.fraction),
        seed=int(wildcards.seed),
        init=wildcards.init,
        metric=cfg.analysis.metric,
    )
    return job.model_dump(mode="json")


COST_FIELDS = (
    "epochs",
    "min_steps",
    "eval_points",
    "lr",
    "lr_grid",
    "probe_c",
    "c_grid",
    "batch_size",
    "eval_batch_size",
    "max_length",
    "image_size",
)


def estimate_params(cfg: Config) -> dict[str, Any]:
    """The part of the config the cost estimate depends on (so that e.g. a learning-rate change
    does not rerun it)."""
    data = cfg.model_dump(
        mode="json", include={"run_name", "models", "tasks", "subsample", "finetune", "profile"}
    )
    data["finetune"] = {k: v for k, v in data["finetune"].items() if k in COST_FIELDS}
    for model in data["models"]:
        model["finetune"] = {k: v for k, v in model["finetune"].items() if k in COST_FIELDS}
        model.pop("license", None)
    return data


def feature_targets(cfg: Config) -> list[dict[str, str]]:
    """Feature-extraction jobs: every init of a linear-probe model, and the pretrained init of
    every model with transfer scores."""
    out = {
        (m.base, t.slug, init)
        for m, t in cfg.pairs()
        if get_spec(m.adapter).neural and m.method == "linear_probe"
        for init in m.init_list
    }
    out |= {(cfg.model(t["model"]).base, t["task"], "pretrained") for t in transfer_targets(cfg)}
    return [{"model": m, "task": t, "init": i} for m, t, i in sorted(out)]


def snapshot_mb(folder: str | Path) -> float:
    """Size of a downloaded snapshot in MB (0 before the download)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0.0
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def finetune_mem_mb(
    cfg: Config, model: str, attempt: int = 1, snapshot: str | Path | None = None
) -> int:
    """Memory a fine-tune job asks the scheduler for: the Python/torch baseline plus weights,
    gradients and AdamW's two moments (4× the fp32 weights) plus activations, scaled by the
    attempt number so that a job killed for memory is retried with more. `snapshot` is the
    model's downloaded snapshot (500 MB assumed before it exists). A model without neural
    weights (TF-IDF) asks for the baseline only."""
    entry = cfg.model(model)
    if not get_spec(entry.adapter).neural:
        return 2000 * max(1, attempt)
    weights = (snapshot_mb(snapshot) if snapshot is not None else 0.0) or 500.0
    # full: weights, gradients, AdamW's moments; LoRA: the frozen weights, activations for the
    # backward pass, the adapters' few states; a probe: inference
    factor = {"full": 5.0, "lora": 2.5}.get(entry.method, 1.5)
    return int((2000 + factor * weights) * max(1, attempt))


def light_fit(cfg: Config, model: str) -> bool:
    """Whether a model's fine-tunes and selection runs are a small scikit-learn fit — a classical
    model, or a linear probe on cached features — rather than training a network."""
    entry = cfg.model(model)
    return not get_spec(entry.adapter).neural or entry.method == "linear_probe"


def threads_for(cfg: Config, model: str) -> int:
    """CPU threads a fine-tune or selection job asks for: HEAVY_THREADS to train a network, one
    for a light fit, whose few seconds are mostly a single-threaded start-up (imports, reading
    tables) — two of them run side by side where one network's training would."""
    return 1 if light_fit(cfg, model) else HEAVY_THREADS


def gpus_for(cfg: Config, model: str, stage: str = "finetune") -> int:
    """GPUs a job asks the scheduler for. `finetune` (and the selection runs): a plain full
    fine-tune asks for one when its `device` will be a GPU (ptmeval.compute.gpu_requested), a
    DeepSpeed one for `gpus_per_job` with `use_gpus`; a linear probe (scikit-learn on cached
    features) for none. `features`: one when the device will be a GPU."""
    entry = cfg.model(model)
    settings = cfg.finetune_settings(model)
    if not get_spec(entry.adapter).neural:
        return 0
    if stage == "finetune":
        if light_fit(cfg, model):
            return 0
        if settings.engine == "deepspeed":
            return settings.gpus_per_job if settings.use_gpus else 0
    return 1 if gpu_requested(settings.device) else 0


def without_shown_logs(output: str) -> str:
    """Snakemake's output less the log files it prints for failed jobs (`show-failed-logs`).

    Each is printed as 'Logfile <path>:', a line of '=', the file, and the same line of '='.
    A SLURM job's log holds the output of the Snakemake that ran the job on the node, with its
    own 'localrule <rule>:' block and 'Job stats' table, which are not the main run's.
    A header without its closing line is kept as it is.
    """
    lines = output.splitlines()
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        rule = lines[i + 1] if i + 1 < len(lines) else ""
        if line.startswith("Logfile ") and line.endswith(":") and rule and set(rule) == {"="}:
            end = next((j for j in range(i + 2, len(lines)) if lines[j] == rule), None)
            if end is not None:
                i = end + 1
                continue
        kept.append(line)
        i += 1
    return "\n".join(kept)


def job_stats(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of Snakemake's output into {rule: count}, without the
    total (empty when nothing ran), ignoring failed jobs' logs that Snakemake printed. Used by
    the tests and the workflow benchmarks."""
    stats: dict[str, int] = {}
    output = without_shown_logs(output)
    block = output.split("Job stats:")[-1] if "Job stats:" in output else ""
    for line in block.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            stats[match.group(1)] = int(match.group(2))
        elif stats and not line.strip():
            break
    return stats
