# Tables: CSV plus a Markdown rendering under results/<experiment>/tables/.


# Teacher and student-base accuracy on the base benchmarks.
rule tabulate_base_models:
    input:
        base_model_metrics(),
    output:
        csv=committed(report(
            f"{RESULTS}/tables/base_models.csv",
            caption="../report/base_models.rst",
            category="Tables",
        )),
        md=committed(f"{RESULTS}/tables/base_models.md"),
    log:
        f"{LOGS}/tabulate_base_models.log",
    benchmark:
        f"{BENCHMARK_DIR}/tabulate_base_models.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd tabulate-base-models --metrics {input} --out {output.csv} > {log} 2>&1"


# Training curves, EffOPD's speed-up over OPD (per seed, mean, 95% CI) and the
# compute each method spent per step.
rule tabulate_training:
    input:
        **run_tables(TRAINED_METHODS, SEEDS),
    output:
        curves=committed(f"{RESULTS}/tables/training_curves.csv"),
        speedup=committed(report(
            f"{RESULTS}/tables/effopd_speedup.csv",
            caption="../report/effopd_speedup.rst",
            category="Tables",
        )),
        speedup_md=committed(f"{RESULTS}/tables/effopd_speedup.md"),
        compute=committed(f"{RESULTS}/tables/training_compute.csv"),
        compute_md=committed(f"{RESULTS}/tables/training_compute.md"),
    params:
        benchmark=SPEEDUP_BENCHMARK,
        speedup=config_json("speedup"),
        methods=methods_json(),
    log:
        f"{LOGS}/tabulate_training.log",
    benchmark:
        f"{BENCHMARK_DIR}/tabulate_training.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd tabulate-training --eval-csvs {input.evals} --log-csvs {input.logs} "
        "--benchmark {params.benchmark} --curves {output.curves} "
        "--speedup {output.speedup} --compute {output.compute} "
        "--speedup-settings {params.speedup:q} --methods {params.methods:q} > {log} 2>&1"


# EffOPD's step-size ablation: each variant's speed-up over OPD (steps, tokens, CPU s)
# and final-accuracy difference, with intervals (config: ablation).
rule tabulate_ablation:
    input:
        **run_tables(ABLATION_METHODS, ABLATION_SEEDS),
    output:
        csv=committed(f"{RESULTS}/tables/effopd_ablation.csv"),
        md=committed(f"{RESULTS}/tables/effopd_ablation.md"),
    params:
        effopd=config_json("training/effopd"),
        variants=config_json("ablation/variants"),
        speedup=config_json("speedup"),
    log:
        f"{LOGS}/tabulate_ablation.log",
    benchmark:
        f"{BENCHMARK_DIR}/tabulate_ablation.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd tabulate-ablation --eval-csvs {input.evals} --log-csvs {input.logs} "
        "--effopd {params.effopd:q} --variants {params.variants:q} --out {output.csv} "
        "--speedup-settings {params.speedup:q} > {log} 2>&1"


# The step-size map: per (algorithm, lr) cell the final accuracy, EffOPD's searches
# accepted, and EffOPD's time-scale speed-up against OPD at the same and at the best
# learning rate (effopd/reports/stepsize.py).
rule tabulate_stepsize_map:
    input:
        **run_tables(map_methods(), SEEDS, searches=True),
    output:
        csv=committed(f"{RESULTS}/tables/stepsize_map.csv"),
        md=committed(f"{RESULTS}/tables/stepsize_map.md"),
    params:
        methods=methods_json(),
        speedup=config_json("speedup"),
    log:
        f"{LOGS}/tabulate_stepsize_map.log",
    benchmark:
        f"{BENCHMARK_DIR}/tabulate_stepsize_map.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd tabulate-stepsize-map --eval-csvs {input.evals} --log-csvs {input.logs} "
        "--search-csvs {input.searches} --methods {params.methods:q} "
        "--speedup-settings {params.speedup:q} --out {output.csv} > {log} 2>&1"


# The line scans of every scanned run in one table, with the best multiplier per step.
rule tabulate_line_scan:
    input:
        line_scan_files(),
    output:
        csv=committed(f"{RESULTS}/tables/line_scan.csv"),
        md=committed(f"{RESULTS}/tables/line_scan.md"),
    log:
        f"{LOGS}/tabulate_line_scan.log",
    benchmark:
        f"{BENCHMARK_DIR}/tabulate_line_scan.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd tabulate-line-scan --scans {input} --out {output.csv} > {log} 2>&1"
