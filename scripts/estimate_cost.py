"""Rule `estimate_cost`: the cost estimate made before any fine-tuning (shown against actuals)."""

from ptmeval.config import parse_config
from ptmeval.estimate import estimate, format_estimate
from ptmeval.io import write_table
from ptmeval.logs import log_to

log = log_to(snakemake.log[0])
table = estimate(parse_config(snakemake.params.config), cache=None)
log.info("estimate before running:\n%s", format_estimate(table))
write_table(table, snakemake.output.estimate, params=snakemake.params.config)
