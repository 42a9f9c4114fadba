"""Rule `finetune`: adapt one model to one training subset; write its history and its class
probabilities on the test split (computed here, while the model is in memory)."""

from pathlib import Path

from ptmeval.evaluation import probs_table
from ptmeval.findings import run_as_finding
from ptmeval.io import read_table, write_table
from ptmeval.jobs import FinetuneJob
from ptmeval.logs import log_to
from ptmeval.training import finetune
from ptmeval.training.tune import apply_choice

log_to(snakemake.log[0])


def run() -> None:
    job = FinetuneJob.model_validate(snakemake.params.job)
    job = apply_choice(job, read_table(snakemake.input.hparams))
    inputs = snakemake.input
    data = read_table(inputs.data)
    subset = read_table(inputs.subset)
    history, probs = finetune(
        job,
        data=data,
        subset=subset,
        out_dir=snakemake.output.model,
        snapshot=Path(inputs.snapshot) if "snapshot" in inputs.keys() else None,
        features=read_table(inputs.features) if "features" in inputs.keys() else None,
        threads=snakemake.threads,
        checkpoint_dir=snakemake.params.checkpoint_dir,
        # the weights a later stage reads (tracked), or all of them when the config asks
        # (untracked: keeping them changes no result)
        keep_weights=snakemake.params.keep_weights or bool(snakemake.config.get("keep_weights")),
    )
    write_table(history, snakemake.output.history, params=snakemake.params.job)
    write_table(
        probs_table(job, data, probs, len(subset)),
        snakemake.output.probs,
        params=snakemake.params.job,
    )


run_as_finding(snakemake, "finetune", snakemake.wildcards.model, run)
