"""Rule `evaluate`: test-set metrics and per-example predictions of one fine-tuned model, from
the test probabilities its fine-tune wrote (no model is loaded: no torch in this job)."""

from ptmeval.evaluation import evaluate
from ptmeval.findings import run_as_finding
from ptmeval.io import read_table, write_table
from ptmeval.jobs import FinetuneJob
from ptmeval.logs import log_to

log_to(snakemake.log[0])


def run() -> None:
    job = FinetuneJob.model_validate(snakemake.params.job)
    metrics, predictions = evaluate(job, read_table(snakemake.input.probs))
    write_table(metrics, snakemake.output.metrics, params=snakemake.params.job)
    write_table(predictions, snakemake.output.predictions, params=snakemake.params.job)


run_as_finding(snakemake, "evaluate", snakemake.wildcards.model, run)
