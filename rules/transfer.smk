rule transfer_scores:
    input:
        features="results/features/{model}/{task}/pretrained.parquet",
        subsets=get_transfer_subsets,
    output:
        scores="results/transfer/{model}/{task}.parquet",
        frozen="results/transfer/{model}/{task}/frozen_probe.parquet",
    log:
        "logs/transfer_scores/{model}/{task}.log",
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code_version=code_version("transfer_scores"),
    script:
        "../scripts/transfer_scores.py"
