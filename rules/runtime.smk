rule measure_runtime:
    input:
        unpack(inputs_of("runtime")),
    output:
        runtime=pattern("runtime", "runtime"),
    log:
        log_pattern("runtime"),
    benchmark:
        benchmark_pattern("runtime")
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=12000,
        runtime=60,
    params:
        job=params_of("runtime", "job"),
        settings=params_of("runtime", "settings"),
        settings_key=settings_key("runtime"),
        code_version=code_version("measure_runtime"),
    script:
        "../scripts/measure_runtime.py"
