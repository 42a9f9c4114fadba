"""Rule `download_model`: resolve a model reference to a local snapshot and its manifest."""

from ptmeval.config import ModelEntry
from ptmeval.findings import run_as_finding
from ptmeval.io import write_table
from ptmeval.logs import log_to
from ptmeval.sources import download_model

log_to(snakemake.log[0])


def run() -> None:
    entry = ModelEntry.model_validate(snakemake.params.entry)
    manifest = download_model(entry, snakemake.output.snapshot)
    write_table(manifest, snakemake.output.manifest, params=snakemake.params.entry)


run_as_finding(snakemake, "download_model", snakemake.wildcards.model, run)
