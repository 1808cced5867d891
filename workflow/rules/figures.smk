# Figures: seaborn, PNG + PDF under paper_figures/<experiment>/. Each figure is
# drawn from committed tables only, so reviewers can redraw every one quickly.


# Accuracy against training steps and wall time for OPD, EffOPD and RL.
rule plot_training_curves:
    input:
        f"{RESULTS}/tables/training_curves.csv",
    output:
        png=report(
            f"{FIGURES}/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
        pdf=f"{FIGURES}/training_curves.pdf",
    params:
        benchmark=SPEEDUP_BENCHMARK,
    log:
        f"{LOGS}/plot_training_curves.log",
    benchmark:
        f"{BENCHMARK_DIR}/plot_training_curves.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd plot-training --curves {input} --benchmark {params.benchmark} "
        "--out {output.png} > {log} 2>&1"
