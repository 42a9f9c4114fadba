rule download_model:
    input:
        get_model_source_files,
    output:
        snapshot=directory(pattern("download", "snapshot")),
        manifest=pattern("download", "manifest"),
    log:
        log_pattern("download"),
    benchmark:
        benchmark_pattern("download")
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        entry=params_of("download", "entry"),
        fingerprint=params_of("download", "fingerprint"),
        settings_key=settings_key("download"),
        code_version=code_version("download_model"),
    script:
        "../scripts/download_model.py"
