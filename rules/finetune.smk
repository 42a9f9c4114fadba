rule finetune:
    input:
        unpack(get_finetune_inputs),
    output:
        history="results/finetune/{model}/{task}/{fraction}/{seed}/{init}/history.parquet",
        probs="results/finetune/{model}/{task}/{fraction}/{seed}/{init}/test_probs.parquet",
        model=directory(
            "results/finetune/{model}/{task}/{fraction}/{seed}/{init}/model"
        ),
    log:
        "logs/finetune/{model}/{task}/{fraction}/{seed}/{init}.log",
    benchmark:
        "results/benchmarks/finetune/{model}/{task}/{fraction}/{seed}/{init}.tsv"
    retries: 2
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=get_finetune_mem_mb,
        runtime=120,
        gpu=get_gpus,
    params:
        job=get_finetune_job,
        keep_weights=keeps_weights,
        checkpoint_dir="results/checkpoints/{model}/{task}/{fraction}/{seed}/{init}",
        code_version=code_version("finetune"),
    script:
        "../scripts/finetune.py"
