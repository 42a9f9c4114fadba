rule profile_model:
    input:
        snapshot="results/download/{model}/snapshot",
        manifest="results/download/{model}/manifest.parquet",
    output:
        profile="results/profile/{model}.parquet",
    log:
        "logs/profile_model/{model}.log",
    benchmark:
        "results/benchmarks/profile_model/{model}.tsv"
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=30,
    params:
        job=get_inference_job,
        code_version=code_version("profile_model"),
    script:
        "../scripts/profile_model.py"
