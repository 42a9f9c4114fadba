"""Rule `extract_features`: frozen-backbone features of every row of a task, cached once."""

from pathlib import Path

from ptmeval.findings import run_as_finding
from ptmeval.io import read_table, write_table
from ptmeval.jobs import ModelJob
from ptmeval.logs import log_to
from ptmeval.training import extract_features

log_to(snakemake.log[0])


def run() -> None:
    job = ModelJob.model_validate(snakemake.params.job)
    features = extract_features(
        job,
        Path(snakemake.input.snapshot),
        read_table(snakemake.input.data),
        init=snakemake.params.init,
        threads=snakemake.threads,
    )
    write_table(features, snakemake.output.features, params=snakemake.params.job)


run_as_finding(snakemake, "extract_features", snakemake.wildcards.model, run)
