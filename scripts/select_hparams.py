"""Rule `select_hparams`: choose a model's learning rate (or C) for one task on validation."""

from pathlib import Path

from ptmeval.findings import run_as_finding
from ptmeval.io import read_table, write_table
from ptmeval.jobs import FinetuneJob
from ptmeval.logs import log_to
from ptmeval.training.tune import select_hyperparameter

log_to(snakemake.log[0])


def run() -> None:
    job = FinetuneJob.model_validate(snakemake.params.job)
    inputs = snakemake.input
    table = select_hyperparameter(
        job,
        data=read_table(inputs.data),
        subset=read_table(inputs.subset),
        snapshot=Path(inputs.snapshot) if "snapshot" in inputs.keys() else None,
        features=read_table(inputs.features) if "features" in inputs.keys() else None,
        threads=snakemake.threads,
    )
    write_table(table, snakemake.output.table, params=snakemake.params.job)


run_as_finding(snakemake, "select_hparams", snakemake.wildcards.model, run)
