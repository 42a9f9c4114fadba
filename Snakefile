"""ptmeval: which pretrained model should I build on, and what will it cost?

snakemake --cores all                          # the embedded default config
snakemake --cores all --configfile my.yaml     # your own models and tasks
"""


configfile: workflow.source_path("config/config.yaml")


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/tasks.smk"
include: "rules/subsample.smk"
include: "rules/profile.smk"
include: "rules/features.smk"
include: "rules/tune.smk"
include: "rules/finetune.smk"
include: "rules/evaluate.smk"
include: "rules/runtime.smk"
include: "rules/export.smk"
include: "rules/transfer.smk"
include: "rules/estimate.smk"
include: "rules/aggregate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        REPORT,
        RECOMPUTE,
        RETRY,
