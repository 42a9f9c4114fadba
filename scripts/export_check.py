"""Rule `export_check`: torch.export, ONNX and onnxruntime parity of one fine-tuned model, and
its deployment variants behind the accuracy gate."""

from pathlib import Path

from ptmeval.export import export_check
from ptmeval.findings import run_as_finding
from ptmeval.io import read_table, write_table
from ptmeval.jobs import FinetuneJob
from ptmeval.logs import log_to

log_to(snakemake.log[0])


def run() -> None:
    job = FinetuneJob.model_validate(snakemake.params.job)
    findings, variants = export_check(
        job,
        data=read_table(snakemake.input.data),
        model_dir=Path(snakemake.input.model),
        snapshot=Path(snakemake.input.snapshot),
        threads=snakemake.threads,
        deployment=snakemake.params.deployment,
    )
    write_table(findings, snakemake.output.export, params=snakemake.params.job)
    write_table(
        variants,
        snakemake.output.variants,
        params={"job": snakemake.params.job, "deployment": snakemake.params.deployment},
    )


run_as_finding(snakemake, "export_check", snakemake.wildcards.model, run)
