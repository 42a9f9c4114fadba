"""Rule `evaluate`: test-set metrics and per-example predictions of one fine-tuned model."""

from pathlib import Path

from ptmeval.evaluation import evaluate
from ptmeval.io import read_table, write_table
from ptmeval.jobs import FinetuneJob
from ptmeval.logs import log_to

log_to(snakemake.log[0])
job = FinetuneJob.model_validate(snakemake.params.job)
inputs = snakemake.input
metrics, predictions = evaluate(
    job,
    data=read_table(inputs.data),
    subset_size=len(read_table(inputs.subset, columns=["row_id"])),
    model_dir=Path(inputs.model),
    snapshot=Path(inputs.snapshot) if "snapshot" in inputs.keys() else None,
    features=read_table(inputs.features) if "features" in inputs.keys() else None,
    threads=snakemake.threads,
)
write_table(metrics, snakemake.output.metrics, params=snakemake.params.job)
write_table(predictions, snakemake.output.predictions, params=snakemake.params.job)
