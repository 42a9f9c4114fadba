rule estimate_cost:
    output:
        estimate="results/estimate/{run}.parquet",
    log:
        "logs/estimate_cost/{run}.log",
    priority: 100
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        config=get_estimate_params,
        code_version=code_version("estimate_cost"),
    script:
        "../scripts/estimate_cost.py"
