rule render_report:
    input:
        **{
            name: f"results/aggregate/{CFG.run_name}/{name}.parquet"
            for name in AGGREGATES
        },
        template=TEMPLATE,
    output:
        report=report(
            REPORT, category="ptmeval report", caption="../config/report_caption.rst"
        ),
        tables=directory(f"reports/{CFG.run_name}/tables"),
    log:
        f"logs/render_report/{CFG.run_name}.log",
    conda:
        "../envs/ptmeval.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        title=CFG.title,
        metric=CFG.analysis.metric,
        config_hash=CONFIG_HASH,
        code_version=code_version("render_report"),
    script:
        "../scripts/render_report.py"
