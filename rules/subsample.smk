rule subsample:
    input:
        data="results/tasks/{task}/data.parquet",
    output:
        subset="results/subsample/{task}/{fraction}/{seed}/train.parquet",
    log:
        "logs/subsample/{task}/{fraction}/{seed}.log",
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        fraction=get_fraction,
        seed=get_seed,
        code_version=code_version("subsample"),
    script:
        "../scripts/subsample.py"
