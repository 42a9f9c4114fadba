"""Rule `transfer_scores`: LogME, H-score, LEEP/NCE, k-NN on frozen features, before fine-tuning,
and the frozen-feature probe's test score on every training subset (the protocol check's
reference)."""

from ptmeval.findings import run_as_finding
from ptmeval.io import read_table, write_table
from ptmeval.logs import log_to
from ptmeval.transfer import frozen_probe_scores, read_subsets, score_task

log_to(snakemake.log[0])


def run() -> None:
    model, task = snakemake.wildcards.model, snakemake.wildcards.task
    features = read_table(snakemake.input.features)
    write_table(score_task(model=model, task=task, features=features), snakemake.output.scores)
    frozen = frozen_probe_scores(model, task, features, read_subsets(snakemake.input.subsets))
    write_table(frozen, snakemake.output.frozen)


run_as_finding(snakemake, "transfer_scores", snakemake.wildcards.model, run)
