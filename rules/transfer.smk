rule transfer_scores:
    input:
        unpack(inputs_of("transfer")),
    output:
        scores=pattern("transfer", "scores"),
        frozen=pattern("transfer", "frozen"),
    log:
        log_pattern("transfer"),
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings_key=settings_key("transfer"),
        code_version=code_version("transfer_scores"),
    script:
        "../scripts/transfer_scores.py"
