"""Rule `render_report`: render the HTML report from the aggregated tables only."""

from ptmeval.io import read_table
from ptmeval.logs import log_to
from ptmeval.report import render_report

log_to(snakemake.log[0])
names = [name for name in snakemake.input.keys() if name != "template"]
tables = {name: read_table(snakemake.input[name]) for name in names}
render_report(
    tables,
    snakemake.output.report,
    title=snakemake.params.title,
    config_hash=snakemake.params.config_hash,
    tables_dir=snakemake.output.tables,
    metric=snakemake.params.metric,
)
