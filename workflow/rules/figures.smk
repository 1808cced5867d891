# Figures: seaborn, PNG + PDF under paper_figures/<experiment>/. Each figure is
# drawn from committed tables only, so reviewers can redraw every one quickly.


# Accuracy against optimizer steps, generated tokens and CPU time for OPD, EffOPD and RL.
rule plot_training_curves:
    input:
        curves=f"{RESULTS}/tables/training_curves.csv",
        base_models=f"{RESULTS}/tables/base_models.csv",
    output:
        png=committed(report(
            f"{FIGURES}/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        )),
        pdf=committed(f"{FIGURES}/training_curves.pdf"),
    params:
        benchmark=SPEEDUP_BENCHMARK,
        methods=methods_json(),
    log:
        f"{LOGS}/plot_training_curves.log",
    benchmark:
        f"{BENCHMARK_DIR}/plot_training_curves.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd plot-training --curves {input.curves} --benchmark {params.benchmark} "
        "--base-models {input.base_models} --methods {params.methods:q} "
        "--out {output.png} > {log} 2>&1"


# The speed-up estimator on every seed pair: accuracy on the common grid, isotonic fits,
# OPD's plateau target and each run's time to it.
rule plot_speedup:
    input:
        curves=f"{RESULTS}/tables/training_curves.csv",
        speedup=f"{RESULTS}/tables/effopd_speedup.csv",
    output:
        png=committed(report(
            f"{FIGURES}/speedup_fits.png",
            caption="../report/speedup_fits.rst",
            category="Training",
        )),
        pdf=committed(f"{FIGURES}/speedup_fits.pdf"),
    params:
        benchmark=SPEEDUP_BENCHMARK,
    log:
        f"{LOGS}/plot_speedup.log",
    conda:
        "../../environment.yml"
    shell:
        "effopd plot-speedup --curves {input.curves} --speedup {input.speedup} "
        "--benchmark {params.benchmark} --out {output.png} > {log} 2>&1"


# The step-size map: accuracy per (algorithm, lr) cell and EffOPD's speed-up against lr.
rule plot_stepsize_map:
    input:
        table=f"{RESULTS}/tables/stepsize_map.csv",
        curves=f"{RESULTS}/tables/training_curves.csv",
    output:
        png=committed(f"{FIGURES}/stepsize_map.png"),
        pdf=committed(f"{FIGURES}/stepsize_map.pdf"),
    params:
        benchmark=SPEEDUP_BENCHMARK,
    log:
        f"{LOGS}/plot_stepsize_map.log",
    benchmark:
        f"{BENCHMARK_DIR}/plot_stepsize_map.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd plot-stepsize-map --table {input.table} --curves {input.curves} "
        "--benchmark {params.benchmark} --out {output.png} > {log} 2>&1"


# Where the best multiplier of EffOPD's line lies as training goes on, per learning rate.
rule plot_line_scan:
    input:
        table=f"{RESULTS}/tables/line_scan.csv",
    output:
        png=committed(f"{FIGURES}/line_scan.png"),
        pdf=committed(f"{FIGURES}/line_scan.pdf"),
    log:
        f"{LOGS}/plot_line_scan.log",
    benchmark:
        f"{BENCHMARK_DIR}/plot_line_scan.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd plot-line-scan --table {input.table} --out {output.png} > {log} 2>&1"
