rule evaluate:
    input:
        unpack(inputs_of("evaluate")),
    output:
        metrics=pattern("evaluate", "metrics"),
        predictions=pattern("evaluate", "predictions"),
    log:
        log_pattern("evaluate"),
    benchmark:
        benchmark_pattern("evaluate")
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        job=params_of("evaluate", "job"),
        settings_key=settings_key("evaluate"),
        code_version=code_version("evaluate"),
    script:
        "../scripts/evaluate.py"
