rule download_model:
    input:
        get_model_source_files,
    output:
        snapshot=directory("results/download/{model}/snapshot"),
        manifest="results/download/{model}/manifest.parquet",
    log:
        "logs/download_model/{model}.log",
    benchmark:
        "results/benchmarks/download_model/{model}.tsv"
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        entry=get_model_entry,
        fingerprint=get_source_fingerprint,
        code_version=code_version("download_model"),
    script:
        "../scripts/download_model.py"
