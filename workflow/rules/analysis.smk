# Analyses of the checkpoint series (SPEC section 4), for every analysed (method, seed):
# the weight analyses in one streaming pass, then the accuracy interventions (scaling,
# modules, rank-k), scoring checkpoints built from theta_0 and the update in ONE process
# (built checkpoints are deleted once scored; scores are cached under artifacts/, so a
# rerun resumes). Then the
# tables and figures (analysis_report.smk). Helpers: analysis_helpers.smk.


# Update norms, module allocation, spectra, subspace alignment with the final update,
# and the embedding shift over the tokens the final checkpoint generated.
rule analyze_run:
    input:
        index=f"{RESULTS}/train/{{method}}/seed{{seed}}/checkpoints.csv",
        base=f"{ARTIFACTS}/models/student",
        scores=f"{RESULTS}/eval/runs/{{method}}/seed{{seed}}/{ANALYSIS_BENCHMARK}.csv",
    output:
        norms=f"{ANALYSIS_RUNS}/{{method}}/seed{{seed}}/update_norms.csv",
        allocation=f"{ANALYSIS_RUNS}/{{method}}/seed{{seed}}/module_allocation.csv",
        spectra=f"{ANALYSIS_RUNS}/{{method}}/seed{{seed}}/spectra.csv",
        alignment=f"{ANALYSIS_RUNS}/{{method}}/seed{{seed}}/alignment.csv",
        cosine=f"{ANALYSIS_RUNS}/{{method}}/seed{{seed}}/embedding_cosine.csv",
        projection=f"{ANALYSIS_RUNS}/{{method}}/seed{{seed}}/embedding_projection.csv",
    params:
        samples=f"{ARTIFACTS}/eval/runs/{{method}}/seed{{seed}}/{ANALYSIS_BENCHMARK}",
        out_dir=output_dir,
        ks=numbers(ANALYSIS["spectra_ks"]),
        alignment_ks=numbers(ANALYSIS["alignment_ks"]),
        svd_method=ANALYSIS["svd_method"],
        device=ANALYSIS["device"],
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpus"],
        mem_mb=config["resources"]["mem_mb"],
    log:
        f"{LOGS}/analyze_run/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARK_DIR}/analyze_run/{{method}}/seed{{seed}}.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd analyze --base {input.base} --index {input.index} "
        "--samples {params.samples} --out-dir {params.out_dir} --ks {params.ks} "
        "--alignment-ks {params.alignment_ks} --svd-method {params.svd_method} "
        "--device {params.device} --threads {threads} > {log} 2>&1"


# The accuracy interventions of one run, in one process (one start-up and one load of
# the series for all of them; each keeps its work directory under the run's, so a rerun
# resumes from its score cache):
# - scaling: theta_0 + alpha * Delta for the final and the early checkpoint; the early
#   checkpoint is also scored on the selection (validation) benchmark, where its best
#   alpha is chosen;
# - modules: theta_0 plus one part of the final update: sliding layer windows
#   (analysis.window_size layers, stride analysis.window_stride), MLP, attention,
#   embeddings;
# - rank_k: the rank-k truncated final update, rescaled to the full norm, per k.
rule evaluate_interventions:
    input:
        index=f"{RESULTS}/train/{{method}}/seed{{seed}}/checkpoints.csv",
        base=f"{ARTIFACTS}/models/student",
        benchmark=f"{ARTIFACTS}/benchmarks/{ANALYSIS_BENCHMARK}.jsonl",
        selection=f"{ARTIFACTS}/benchmarks/{SELECTION_BENCHMARK}.jsonl",
    output:
        scaling=f"{ANALYSIS_RUNS}/{{method}}/seed{{seed}}/scaling.csv",
        modules=f"{ANALYSIS_RUNS}/{{method}}/seed{{seed}}/modules.csv",
        rank_k=f"{ANALYSIS_RUNS}/{{method}}/seed{{seed}}/rank_k.csv",
    params:
        **scoring_params(config_json("prompt"), ANALYSIS_GENERATION),
        limit=ANALYSIS["eval_limit"] or "all",
        n=ANALYSIS["eval_n"],
        min_cast_survival=ANALYSIS["min_cast_survival"],
        alphas=numbers(ANALYSIS["scaling_alphas"]),
        early_alphas=(
            f"--early-alphas {numbers(ANALYSIS['early_alphas'])}"
            if ANALYSIS["early_alphas"]
            else ""
        ),
        early_fraction=ANALYSIS["early_fraction"],
        window_size=ANALYSIS["window_size"],
        window_stride=ANALYSIS["window_stride"],
        ks=numbers(ANALYSIS["rank_ks"]),
        svd_method=ANALYSIS["svd_method"],
        device=ANALYSIS["device"],
        work_dir=f"{ANALYSIS_WORK}/{{method}}/seed{{seed}}",
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpus"],
        mem_mb=config["resources"]["mem_mb"],
    log:
        f"{LOGS}/evaluate_interventions/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARK_DIR}/evaluate_interventions/{{method}}/seed{{seed}}.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd evaluate-interventions --base {input.base} --index {input.index} "
        "--benchmark {input.benchmark} --prompt {params.prompt:q} "
        "--generation {params.generation:q} --grading {params.grading:q} "
        "--pass-k {params.pass_k} --limit {params.limit} --n {params.n} "
        "--min-cast-survival {params.min_cast_survival} "
        "--alphas {params.alphas} {params.early_alphas} "
        "--selection-benchmark {input.selection} --early-fraction {params.early_fraction} "
        "--window-size {params.window_size} --window-stride {params.window_stride} "
        "--ks {params.ks} --svd-method {params.svd_method} --work-dir {params.work_dir} "
        "--scaling-out {output.scaling} --modules-out {output.modules} "
        "--rank-k-out {output.rank_k} --device {params.device} --threads {threads} "
        "> {log} 2>&1"
