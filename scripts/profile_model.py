"""Rule `profile_model`: parameters, bytes on disk and FLOPs per example of one model."""

from pathlib import Path

from ptmeval.findings import run_as_finding
from ptmeval.io import read_table, write_table
from ptmeval.jobs import ModelJob
from ptmeval.logs import log_to
from ptmeval.profiling import profile_model

log_to(snakemake.log[0])


def run() -> None:
    job = ModelJob.model_validate(snakemake.params.job)
    profile = profile_model(
        job, Path(snakemake.input.snapshot), read_table(snakemake.input.manifest), snakemake.threads
    )
    write_table(profile, snakemake.output.profile, params=snakemake.params.job)


run_as_finding(snakemake, "profile_model", snakemake.wildcards.model, run)
