"""Rule `transfer_scores`: LogME, H-score, LEEP/NCE, k-NN on frozen features, before fine-tuning."""

from ptmeval.io import read_table, write_table
from ptmeval.logs import log_to
from ptmeval.transfer import score_task

log_to(snakemake.log[0])
scores = score_task(
    model=snakemake.wildcards.model,
    task=snakemake.wildcards.task,
    features=read_table(snakemake.input.features),
)
write_table(scores, snakemake.output.scores)
