rule export_check:
    input:
        unpack(get_export_inputs),
    output:
        export="results/export/{model}/{task}.parquet",
        variants="results/export/{model}/{task}.variants.parquet",
    log:
        "logs/export_check/{model}/{task}.log",
    benchmark:
        "results/benchmarks/export_check/{model}/{task}.tsv"
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=12000,
        runtime=60,
    params:
        job=get_export_job,
        deployment=CFG.deployment.model_dump(mode="json"),
        code_version=code_version("export_check"),
    script:
        "../scripts/export_check.py"
