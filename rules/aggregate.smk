rule aggregate:
    input:
        unpack(get_aggregate_inputs),
    output:
        **{
            name: f"results/aggregate/{CFG.run_name}/{name}.parquet"
            for name in AGGREGATES
        },
    log:
        f"logs/aggregate/{CFG.run_name}.log",
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=30,
    params:
        settings=get_analysis_settings,
        code_version=code_version("aggregate"),
    script:
        "../scripts/aggregate.py"
