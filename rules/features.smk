rule extract_features:
    input:
        unpack(inputs_of("features")),
    output:
        features=pattern("features", "features"),
    log:
        log_pattern("features"),
    benchmark:
        benchmark_pattern("features")
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=get_feature_gpus,
    params:
        job=params_of("features", "job"),
        init=params_of("features", "init"),
        settings_key=settings_key("features"),
        code_version=code_version("extract_features"),
    script:
        "../scripts/extract_features.py"
