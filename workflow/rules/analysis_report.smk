# Analysis tables and figures, made from the committed per-run analysis results
# only, so that reviewer mode (review: true) can redraw them without any checkpoint.


# Every analysis table over the analysed runs: CSV (mean, 95% CI over seeds) + Markdown.
rule tabulate_analysis:
    input:
        runs=analysis_run_files(),
        scores=analysis_eval_csvs(),
    output:
        [committed(path) for path in analysis_tables()],
    params:
        run_dirs=analysis_run_dirs(),
        out_dir=output_dir,
        early_fraction=ANALYSIS["early_fraction"],
        projection_max_tokens=ANALYSIS["projection_max_tokens"],
    log:
        f"{LOGS}/tabulate_analysis.log",
    benchmark:
        f"{BENCHMARK_DIR}/tabulate_analysis.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd tabulate-analysis --run-dirs {params.run_dirs} --eval-csvs {input.scores} "
        "--out-dir {params.out_dir} --early-fraction {params.early_fraction} "
        "--projection-max-tokens {params.projection_max_tokens} > {log} 2>&1"


# Every analysis figure (PNG + PDF), drawn from the analysis tables only.
rule plot_analysis:
    input:
        expand(f"{ANALYSIS_TABLES}/{{name}}.csv", name=ANALYSIS_TABLE_NAMES),
    output:
        [
            committed(
                report(path, caption=f"../report/{Path(path).stem}.rst", category="Analysis")
                if path.endswith(".png")
                else path
            )
            for path in analysis_figures()
        ],
    params:
        tables_dir=input_dir,
        out_dir=output_dir,
        benchmark=ANALYSIS_BENCHMARK,
        plot_k=ANALYSIS["plot_k"],
    log:
        f"{LOGS}/plot_analysis.log",
    benchmark:
        f"{BENCHMARK_DIR}/plot_analysis.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd plot-analysis --tables-dir {params.tables_dir} --out-dir {params.out_dir} "
        "--benchmark {params.benchmark} --plot-k {params.plot_k} > {log} 2>&1"


# The claims table: one row per metric of each claim of the paper, the value measured
# over seeds, a verdict against the configured minimum effect, and its power
# (effopd/reports/claims.py).
rule tabulate_claims:
    input:
        runs=analysis_run_files(),
        speedup=f"{RESULTS}/tables/effopd_speedup.csv",
        opd_evals=expand(
            f"{RESULTS}/eval/runs/{OPD}/seed{{seed}}/{SPEEDUP_BENCHMARK}.csv", seed=SEEDS
        ),
        opd_problems=expand(
            f"{RESULTS}/eval/runs/{OPD}/seed{{seed}}/{SPEEDUP_BENCHMARK}.problems.csv",
            seed=SEEDS,
        ),
        base_models=f"{RESULTS}/tables/base_models.csv",
    output:
        csv=committed(report(
            f"{RESULTS}/tables/claims.csv",
            caption="../report/claims.rst",
            category="Tables",
        )),
        md=committed(f"{RESULTS}/tables/claims.md"),
    params:
        run_dirs=analysis_run_dirs(),
        early_fraction=ANALYSIS["early_fraction"],
        claims=config_json("claims"),
        speedup=config_json("speedup"),
        benchmark=SPEEDUP_BENCHMARK,
        methods=methods_json(),
    log:
        f"{LOGS}/tabulate_claims.log",
    benchmark:
        f"{BENCHMARK_DIR}/tabulate_claims.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd tabulate-claims --run-dirs {params.run_dirs} "
        "--speedup {input.speedup} --opd-evals {input.opd_evals} --claims {params.claims:q} "
        "--speedup-settings {params.speedup:q} --early-fraction {params.early_fraction} "
        "--base-models {input.base_models} --benchmark {params.benchmark} "
        "--methods {params.methods:q} --out {output.csv} > {log} 2>&1"
