rule finetune:
    input:
        unpack(inputs_of("finetune")),
    output:
        history=pattern("finetune", "history"),
        probs=pattern("finetune", "probs"),
        model=directory(pattern("finetune", "model")),
    log:
        log_pattern("finetune"),
    benchmark:
        benchmark_pattern("finetune")
    retries: 2
    conda:
        "../envs/ptmeval.yaml"
    threads: get_threads
    resources:
        mem_mb=get_finetune_mem_mb,
        runtime=120,
        gpu=get_gpus,
    params:
        job=params_of("finetune", "job"),
        keep_weights=params_of("finetune", "keep_weights"),
        settings_key=settings_key("finetune"),
        checkpoint_dir=checkpoint_pattern(),
        code_version=code_version("finetune"),
    script:
        "../scripts/finetune.py"
