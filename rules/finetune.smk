rule finetune:
    input:
        unpack(get_finetune_inputs),
    output:
        history="results/finetune/{model}/{task}/{fraction}/{seed}/{init}/history.parquet",
        model=directory(
            "results/finetune/{model}/{task}/{fraction}/{seed}/{init}/model"
        ),
    log:
        "logs/finetune/{model}/{task}/{fraction}/{seed}/{init}.log",
    benchmark:
        "results/benchmarks/finetune/{model}/{task}/{fraction}/{seed}/{init}.tsv"
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        job=get_finetune_job,
        code_version=code_version("finetune"),
    script:
        "../scripts/finetune.py"
