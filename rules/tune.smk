rule select_hparams:
    input:
        unpack(get_tune_inputs),
    output:
        table="results/tune/{model}/{task}/{init}.parquet",
    log:
        "logs/select_hparams/{model}/{task}/{init}.log",
    benchmark:
        "results/benchmarks/select_hparams/{model}/{task}/{init}.tsv"
    retries: 2
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=get_finetune_mem_mb,
        runtime=240,
        gpu=get_gpus,
    params:
        job=get_tune_job,
        code_version=code_version("select_hparams"),
    script:
        "../scripts/select_hparams.py"
