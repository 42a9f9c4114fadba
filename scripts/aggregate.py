"""Rule `aggregate`: gather the per-job tables into the report's tables and statistics."""

from ptmeval.aggregate import aggregate
from ptmeval.io import write_table
from ptmeval.logs import log_to

log_to(snakemake.log[0])
inputs = snakemake.input
tables = aggregate(
    metrics=inputs.metrics,
    histories=inputs.histories,
    profiles=inputs.profiles,
    manifests=inputs.manifests,
    task_summaries=inputs.tasks,
    predictions=inputs.predictions,
    runtimes=inputs.runtimes,
    exports=inputs.exports,
    deployments=inputs.deployments,
    transfers=inputs.transfers,
    frozen=inputs.frozen,
    benchmarks=inputs.benchmarks,
    estimate=inputs.estimate,
    tuning=inputs.tuning,
    settings=snakemake.params.settings,
)
for name in snakemake.output.keys():
    write_table(tables[name], snakemake.output[name], params=snakemake.params.settings)
