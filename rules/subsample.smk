rule subsample:
    input:
        unpack(inputs_of("subsample")),
    output:
        subset=pattern("subsample", "subset"),
    log:
        log_pattern("subsample"),
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        fraction=params_of("subsample", "fraction"),
        seed=params_of("subsample", "seed"),
        settings_key=settings_key("subsample"),
        code_version=code_version("subsample"),
    script:
        "../scripts/subsample.py"
