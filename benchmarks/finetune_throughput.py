"""Fine-tune throughput: ptmeval's training loop against the Hugging Face Trainer doing the same
job (MiniLM-L6 from its package, BBC News, same examples, batch size, sequence length, epochs,
learning rate and threads), side by side in one process; and the model FLOPs utilisation of
ptmeval's loop: achieved training FLOP/s (the profile's forward+backward FLOPs per example ×
examples/s) over this machine's matmul rate at the same precision, measured in the same run.

    .venv/bin/python benchmarks/finetune_throughput.py [--examples 160] [--max-length 48]
        [--precision fp32 bf16]

Each precision runs both loops at that precision (ptmeval: `finetune.precision`, autocast with
fp32 weights; the Trainer: `bf16=True`). The protocol's extras are switched off for the
comparison (one validation point, after the last step, not timed; no early stopping; no
step minimum): the same number of optimizer steps as the Trainer. bf16 is skipped, with the
matmul rates that say why, on a CPU without native bf16 (AVX512-BF16 or AMX), where it is
emulated and hundreds of times slower.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from minilm_bbc import (
    SNAPSHOT,
    comparison_settings,
    job_arguments,
    minilm_bbc_config,
    minilm_bbc_job,
)

from ptmeval.compute import cpu_has_bf16
from ptmeval.estimate import matmul_peak_flops
from ptmeval.jobs import FinetuneJob
from ptmeval.profiling import train_step_flops
from ptmeval.training import finetune, load_for_task, set_threads


def hf_trainer_seconds(
    job: FinetuneJob, texts: list[str], labels: np.ndarray, out: Path, precision: str
) -> float:
    """Wall time of `Trainer.train()` on the same data (tokenised up front, dynamic padding);
    a `method: lora` job's model gets the same LoRA adapters through PEFT first."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    s = job.finetune
    tokenizer = AutoTokenizer.from_pretrained(SNAPSHOT)
    model = AutoModelForSequenceClassification.from_pretrained(
        SNAPSHOT, num_labels=int(labels.max()) + 1
    )
    if job.method == "lora":
        from peft import get_peft_model

        from ptmeval.training.lora import lora_config

        model = get_peft_model(model, lora_config(job, model))
    enc = tokenizer(texts, truncation=True, max_length=s.max_length)
    data = [
        {"input_ids": i, "attention_mask": m, "labels": int(y)}
        for i, m, y in zip(enc["input_ids"], enc["attention_mask"], labels, strict=True)
    ]
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=s.batch_size,
        num_train_epochs=s.epochs,
        learning_rate=s.lr,
        weight_decay=s.weight_decay,
        warmup_steps=int(s.warmup_ratio * -(-len(texts) // s.batch_size) * s.epochs),
        max_grad_norm=1.0,
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        use_cpu=True,
        bf16=precision == "bf16",
        seed=job.seed,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer)
    )
    torch.manual_seed(job.seed)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def main() -> None:
    parser = job_arguments(repeats=4)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    set_threads(args.threads)
    fp32_peak = matmul_peak_flops(args.threads, seconds=1.0)
    bf16_peak = matmul_peak_flops(args.threads, seconds=1.0, dtype="bfloat16")
    print(f"matmul fp32 {fp32_peak / 1e9:.1f} GFLOP/s, bf16 {bf16_peak / 1e9:.2f} GFLOP/s")
    for precision in args.precision:
        if precision == "bf16" and not cpu_has_bf16():
            print(
                "bf16 skipped: this CPU has no AVX512-BF16 or AMX, bf16 is emulated "
                f"({bf16_peak / 1e9:.2f} GFLOP/s against {fp32_peak / 1e9:.1f} in fp32); "
                "precision 'auto' picks fp32 here"
            )
            continue
        run(args, precision)


def run(args: argparse.Namespace, precision: str) -> None:
    print(f"\n## {precision}")
    cfg = minilm_bbc_config(args.examples, 16, 16)
    job, data, subset = minilm_bbc_job(cfg, comparison_settings(args, 1e-4, precision))
    train = data.set_index("row_id").loc[subset["row_id"]]
    out = Path("benchmarks/out/finetune")
    n = args.examples * args.epochs
    ours, theirs, peaks = [], [], []
    for rep in range(args.repeats):  # interleaved (ABBA…) so that load drifts hit both alike
        order = ("ptmeval", "trainer") if rep % 2 == 0 else ("trainer", "ptmeval")
        peaks.append(
            matmul_peak_flops(
                args.threads, seconds=1.0, dtype="bfloat16" if precision == "bf16" else "float32"
            )
        )
        for which in order:
            if which == "ptmeval":
                history, _ = finetune(
                    job,
                    data,
                    subset,
                    out / "ptmeval",
                    snapshot=SNAPSHOT,
                    threads=args.threads,
                    predict_test=False,
                )
                ours.append(float(history["wall_s"].iloc[-1]))  # training only, validation excluded
            else:
                texts, labels = train["text"].tolist(), train["label"].to_numpy()
                theirs.append(hf_trainer_seconds(job, texts, labels, out / "hf", precision))
    loaded = load_for_task(job, SNAPSHOT, 5, "pretrained")
    per_example, _ = train_step_flops(loaded, batch_size=1)
    ours_rate, theirs_rate = n / float(np.median(ours)), n / float(np.median(theirs))
    peak = float(np.median(peaks))
    print(f"examples × epochs          {n}  ({args.repeats} interleaved repeats, medians)")
    print(
        f"ptmeval loop               {np.median(ours):7.1f} s  {ours_rate:6.1f} examples/s  {ours}"
    )
    print(
        f"transformers Trainer       {np.median(theirs):7.1f} s  {theirs_rate:6.1f} examples/s  {theirs}"
    )
    print(f"ratio (ptmeval / Trainer)  {ours_rate / theirs_rate:7.2f}   goal >= 1.0")
    print(f"train FLOPs per example    {per_example / 1e9:7.3f} GFLOP at {args.max_length} tokens")
    print(f"matmul peak ({precision})         {peak / 1e9:7.1f} GFLOP/s ({args.threads} threads)")
    print(f"MFU                        {per_example * ours_rate / peak:7.1%}   goal >= 40%")


if __name__ == "__main__":
    main()
