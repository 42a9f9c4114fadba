"""Rule `measure_runtime`: latency, throughput and peak memory, each in a fresh subprocess."""

from ptmeval.findings import run_as_finding
from ptmeval.io import write_table
from ptmeval.logs import log_to
from ptmeval.runtime import measure_runtime

log_to(snakemake.log[0])


def run() -> None:
    settings = dict(snakemake.params.settings)
    runtime = measure_runtime(
        job=snakemake.params.job,
        model_dir=snakemake.input.model,
        init=settings.pop("init"),
        threads=snakemake.threads,
        data=snakemake.input.get("data"),  # a classical model's task: the texts it predicts
        **settings,
    )
    write_table(runtime, snakemake.output.runtime, params=snakemake.params.settings)


run_as_finding(snakemake, "measure_runtime", snakemake.wildcards.model, run)
