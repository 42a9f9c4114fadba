rule profile_model:
    input:
        unpack(inputs_of("profile")),
    output:
        profile=pattern("profile", "profile"),
    log:
        log_pattern("profile"),
    benchmark:
        benchmark_pattern("profile")
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=30,
    params:
        job=params_of("profile", "job"),
        settings_key=settings_key("profile"),
        code_version=code_version("profile_model"),
    script:
        "../scripts/profile_model.py"
