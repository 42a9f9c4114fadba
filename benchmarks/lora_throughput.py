"""LoRA training throughput: ptmeval's LoRA fine-tune (PEFT adapters + the task head on its own
loop) against its full fine-tune of the same model, and against PEFT with the Hugging Face
Trainer doing the same LoRA job (MiniLM-L6 from its package, BBC News, the same examples, batch
size, sequence length, epochs and threads; the same LoRA config: r, alpha, dropout, target
modules), side by side in one process, interleaved.

    .venv/bin/python benchmarks/lora_throughput.py [--examples 160] [--max-length 48]
        [--repeats 2] [--r 8]

As in finetune_throughput.py, the protocol's extras are off for the comparison (one validation
point after the last step, not timed; no early stopping; no step minimum), so the three loops
take the same optimizer steps; LoRA's learning rate is full fine-tuning's × 10 (lora.lr_scale).
Also printed: the trainable parameters and what one more task stores (the adapter against the
whole model), from the ptmeval runs' histories.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from finetune_throughput import hf_trainer_seconds
from minilm_bbc import (
    SNAPSHOT,
    comparison_settings,
    job_arguments,
    minilm_bbc_config,
    minilm_bbc_job,
)

from ptmeval.config import LoraSettings
from ptmeval.training import finetune, set_threads


def main() -> None:
    parser = job_arguments(repeats=2)
    parser.add_argument("--r", type=int, default=8)
    args = parser.parse_args()
    set_threads(args.threads)
    cfg = minilm_bbc_config(args.examples, 16, 16)
    full, data, subset = minilm_bbc_job(cfg, comparison_settings(args, 1e-4, "fp32"))
    lora_settings = LoraSettings(r=args.r, alpha=2 * args.r)
    lora = full.model_copy(
        update={
            "method": "lora",
            "lora": lora_settings,
            "finetune": comparison_settings(args, 1e-3, "fp32"),
        }
    )
    train = data.set_index("row_id").loc[subset["row_id"]]
    texts, labels = train["text"].tolist(), train["label"].to_numpy()
    out = Path("benchmarks/out/lora")
    seconds: dict[str, list[float]] = {"full": [], "lora": [], "peft+trainer": []}
    stored: dict[str, tuple[int, int]] = {}
    loops = list(seconds)
    for rep in range(args.repeats):  # rotated order, so that load drifts hit all alike
        for which in loops[rep % 3 :] + loops[: rep % 3]:
            if which == "peft+trainer":
                seconds[which].append(hf_trainer_seconds(lora, texts, labels, out / "hf", "fp32"))
                continue
            job = full if which == "full" else lora
            history, _ = finetune(
                job,
                data,
                subset,
                out / which,
                snapshot=SNAPSHOT,
                threads=args.threads,
                predict_test=False,
            )
            last = history.iloc[-1]
            seconds[which].append(float(last["wall_s"]))  # training only, validation excluded
            stored[which] = (int(last["trainable_params"]), int(last["task_bytes"]))
    n = args.examples * args.epochs
    rate = {k: n / float(np.median(v)) for k, v in seconds.items()}
    print(f"examples × epochs   {n}  ({args.repeats} rotated repeats, medians), LoRA r={args.r}")
    for which, values in seconds.items():
        print(
            f"{which:18s}  {np.median(values):6.1f} s  {rate[which]:6.1f} examples/s  "
            f"{[round(v, 2) for v in values]}"
        )
    print(f"LoRA / full (ptmeval)          {rate['lora'] / rate['full']:5.2f}")
    print(f"ptmeval LoRA / PEFT + Trainer  {rate['lora'] / rate['peft+trainer']:5.2f}  goal >= 1.0")
    for which, (params, size) in stored.items():
        print(f"{which:5s} trains {params:,} parameters, stores {size / 1e6:.3f} MB per extra task")


if __name__ == "__main__":
    main()
