# Tables: CSV plus a Markdown rendering under results/<experiment>/tables/.


# Teacher and student-base accuracy on the base benchmarks.
rule tabulate_base_models:
    input:
        base_model_metrics(),
    output:
        csv=f"{RESULTS}/tables/base_models.csv",
        md=f"{RESULTS}/tables/base_models.md",
    log:
        f"{LOGS}/tabulate_base_models.log",
    conda:
        "../../environment.yml"
    shell:
        "effopd tabulate-base-models --metrics {input} --out {output.csv} > {log} 2>&1"
