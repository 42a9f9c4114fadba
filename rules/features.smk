rule extract_features:
    input:
        snapshot="results/download/{model}/snapshot",
        data="results/tasks/{task}/data.parquet",
    output:
        features="results/features/{model}/{task}/{init}.parquet",
    log:
        "logs/extract_features/{model}/{task}/{init}.log",
    benchmark:
        "results/benchmarks/extract_features/{model}/{task}/{init}.tsv"
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=get_feature_gpus,
    params:
        job=get_features_job,
        init="{init}",
        code_version=code_version("extract_features"),
    script:
        "../scripts/extract_features.py"
