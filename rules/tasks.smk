rule prepare_task:
    input:
        get_task_files,
    output:
        data=pattern("tasks", "data"),
        summary=pattern("tasks", "summary"),
    log:
        log_pattern("tasks"),
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        task=params_of("tasks", "task"),
        split_seed=params_of("tasks", "split_seed"),
        settings_key=settings_key("tasks"),
        code_version=code_version("prepare_task"),
    script:
        "../scripts/prepare_task.py"
