"""Rule `prepare_task`: load a labelled dataset and fix its train/validation/test split."""

from ptmeval.config import TaskEntry
from ptmeval.io import write_table
from ptmeval.logs import log_to
from ptmeval.tasks import prepare_task

log_to(snakemake.log[0])
task = TaskEntry.model_validate(snakemake.params.task)
data, summary = prepare_task(task, seed=snakemake.params.split_seed)
params = {"task": snakemake.params.task, "split_seed": snakemake.params.split_seed}
write_table(data, snakemake.output.data, params=params)
write_table(summary, snakemake.output.summary, params=params)
