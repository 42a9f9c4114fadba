rule measure_runtime:
    input:
        unpack(get_runtime_inputs),
    output:
        runtime="results/runtime/{model}.parquet",
    log:
        "logs/measure_runtime/{model}.log",
    benchmark:
        "results/benchmarks/measure_runtime/{model}.tsv"
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=12000,
        runtime=60,
    params:
        job=get_inference_job,
        settings=get_runtime_settings,
        code_version=code_version("measure_runtime"),
    script:
        "../scripts/measure_runtime.py"
