rule prepare_task:
    input:
        get_task_files,
    output:
        data="results/tasks/{task}/data.parquet",
        summary="results/tasks/{task}/summary.parquet",
    log:
        "logs/prepare_task/{task}.log",
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        task=get_task_entry,
        split_seed=CFG.split_seed,
        code_version=code_version("prepare_task"),
    script:
        "../scripts/prepare_task.py"
