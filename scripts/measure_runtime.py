"""Rule `measure_runtime`: latency, throughput and peak memory, each in a fresh subprocess."""

from ptmeval.io import write_table
from ptmeval.logs import log_to
from ptmeval.runtime import measure_runtime

log_to(snakemake.log[0])
settings = dict(snakemake.params.settings)
runtime = measure_runtime(
    job=snakemake.params.job,
    snapshot=snakemake.input.snapshot,
    init=settings.pop("init"),
    threads=snakemake.threads,
    **settings,
)
write_table(runtime, snakemake.output.runtime, params=snakemake.params.settings)
