rule evaluate:
    input:
        probs="results/finetune/{model}/{task}/{fraction}/{seed}/{init}/test_probs.parquet",
    output:
        metrics="results/evaluate/{model}/{task}/{fraction}/{seed}/{init}/metrics.parquet",
        predictions="results/evaluate/{model}/{task}/{fraction}/{seed}/{init}/predictions.parquet",
    log:
        "logs/evaluate/{model}/{task}/{fraction}/{seed}/{init}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{task}/{fraction}/{seed}/{init}.tsv"
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        job=get_finetune_job,
        code_version=code_version("evaluate"),
    script:
        "../scripts/evaluate.py"
