"""Rule `finetune`: adapt one model to one training subset; write its history."""

from pathlib import Path

from ptmeval.io import read_table, write_table
from ptmeval.jobs import FinetuneJob
from ptmeval.logs import log_to
from ptmeval.training import finetune
from ptmeval.training.tune import apply_choice

log_to(snakemake.log[0])
job = FinetuneJob.model_validate(snakemake.params.job)
job = apply_choice(job, read_table(snakemake.input.hparams))
inputs = snakemake.input
history = finetune(
    job,
    data=read_table(inputs.data),
    subset=read_table(inputs.subset),
    out_dir=snakemake.output.model,
    snapshot=Path(inputs.snapshot) if "snapshot" in inputs.keys() else None,
    features=read_table(inputs.features) if "features" in inputs.keys() else None,
    threads=snakemake.threads,
    checkpoint_dir=snakemake.params.checkpoint_dir,
)
write_table(history, snakemake.output.history, params=snakemake.params.job)
