"""Rule `subsample`: a stratified, nested training subset of one task."""

from ptmeval.io import read_table, write_table
from ptmeval.logs import log_to
from ptmeval.subsample import subsample

log_to(snakemake.log[0])
data = read_table(snakemake.input.data, columns=["row_id", "split", "label"])
subset = subsample(data, fraction=snakemake.params.fraction, seed=snakemake.params.seed)
params = {"fraction": snakemake.params.fraction, "seed": snakemake.params.seed}
write_table(subset, snakemake.output.subset, params=params)
