"""Parsing Snakemake's own output: the job-stats table, with failed jobs' logs printed in it."""

from __future__ import annotations

from ptmeval.workflow import job_stats, without_shown_logs

SEP = "=" * 60
# What the node-side Snakemake of a SLURM job writes to the job's SLURM log.
NODE_LOG = """\
Building DAG of jobs...
Job stats:
job         count
--------  -------
finetune        1
total           1

Select jobs to execute...

localrule finetune:
    input: results/subsample/a.parquet
    jobid: 0
    wildcards: model=m, task=t
"""
MAIN = f"""\
Building DAG of jobs...
Job stats:
job          count
---------  -------
all              1
evaluate         2
finetune         2
total            5

rule finetune:
    jobid: 3
    wildcards: model=m, task=t
Error in rule finetune:
    message: SLURM-job '16' failed, SLURM status is: 'CANCELLED'
    jobid: 3
Logfile .snakemake/slurm_logs/rule_finetune/m_t/16.log:
{SEP}
{NODE_LOG}{SEP}
Trying to restart job 3.
rule finetune:
    jobid: 3
"""


def test_shown_logs_are_removed_and_the_rest_kept():
    text = without_shown_logs(MAIN)
    assert "localrule" not in text and "Logfile" not in text
    assert text.count("rule finetune:") == 3  # 2 blocks + the error header
    assert text.splitlines()[-1] == "    jobid: 3"


def test_job_stats_are_the_main_runs_not_a_shown_logs():
    assert job_stats(MAIN) == {"all": 1, "evaluate": 2, "finetune": 2}
    # without the separation, the node's table (printed last) would have been taken
    assert job_stats(NODE_LOG) == {"finetune": 1}


def test_a_header_without_its_closing_line_is_kept():
    cut = f"done\nLogfile x.log:\n{SEP}\nlocalrule finetune:\n"
    assert without_shown_logs(cut) == cut.rstrip("\n")
    empty = "Logfile x.log: empty file\nJob stats:\njob count\n---\na 1\ntotal 1\n"
    assert without_shown_logs(empty) == empty.rstrip("\n")
    assert job_stats(empty) == {"a": 1}
