rule evaluate:
    input:
        unpack(get_evaluate_inputs),
    output:
        metrics="results/evaluate/{model}/{task}/{fraction}/{seed}/{init}/metrics.parquet",
        predictions="results/evaluate/{model}/{task}/{fraction}/{seed}/{init}/predictions.parquet",
    log:
        "logs/evaluate/{model}/{task}/{fraction}/{seed}/{init}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{task}/{fraction}/{seed}/{init}.tsv"
    conda:
        "../envs/ptmeval.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        job=get_finetune_job,
        code_version=code_version("evaluate"),
    script:
        "../scripts/evaluate.py"
