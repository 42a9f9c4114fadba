rule export_check:
    input:
        unpack(inputs_of("export")),
    output:
        export=pattern("export", "export"),
        variants=pattern("export", "variants"),
    log:
        log_pattern("export"),
    benchmark:
        benchmark_pattern("export")
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=12000,
        runtime=60,
    params:
        job=params_of("export", "job"),
        deployment=params_of("export", "deployment"),
        settings_key=settings_key("export"),
        code_version=code_version("export_check"),
    script:
        "../scripts/export_check.py"
