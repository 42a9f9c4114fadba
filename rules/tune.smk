rule select_hparams:
    input:
        unpack(inputs_of("tune")),
    output:
        table=pattern("tune", "table"),
    log:
        log_pattern("tune"),
    benchmark:
        benchmark_pattern("tune")
    retries: 2
    conda:
        "../envs/ptmeval.yaml"
    threads: get_threads
    resources:
        mem_mb=get_finetune_mem_mb,
        runtime=240,
        gpu=get_gpus,
    params:
        job=params_of("tune", "job"),
        settings_key=settings_key("tune"),
        code_version=code_version("select_hparams"),
    script:
        "../scripts/select_hparams.py"
