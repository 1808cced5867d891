# Evaluation: sample, grade (math-verify, or programs run in the sandbox for code
# benchmarks), and score a model on a benchmark.


# Evaluate one base model (teacher or student) on one benchmark.
rule evaluate_model:
    input:
        model=f"{ARTIFACTS}/models/{{role}}",
        benchmark=f"{ARTIFACTS}/benchmarks/{{benchmark}}.jsonl",
    output:
        samples=f"{ARTIFACTS}/eval/{{role}}/{{benchmark}}.samples.jsonl",
        metrics=f"{RESULTS}/eval/{{role}}/{{benchmark}}.json",
    params:
        **scoring_params(),
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpus"],
        mem_mb=config["resources"]["mem_mb"],
    log:
        f"{LOGS}/evaluate_model/{{role}}/{{benchmark}}.log",
    benchmark:
        f"{BENCHMARK_DIR}/evaluate_model/{{role}}/{{benchmark}}.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd evaluate --model {input.model} --benchmark {input.benchmark} "
        "--label {wildcards.role} --prompt {params.prompt:q} "
        "--generation {params.generation:q} --grading {params.grading:q} "
        "--pass-k {params.pass_k} --samples {output.samples} "
        "--metrics {output.metrics} --threads {threads} > {log} 2>&1"


# Evaluate the base student (step 0) and every checkpoint of one training run; the
# per-problem counts feed the speed-up's bootstrap over problems. Step 0 reuses the
# student's evaluate_model scores when the benchmark is one of the base benchmarks
# (same model, same sampling settings and seed: the same samples).
rule evaluate_run:
    input:
        unpack(base_scores_inputs),
        index=f"{RESULTS}/train/{{method}}/seed{{seed}}/checkpoints.csv",
        base=f"{ARTIFACTS}/models/student",
        benchmark=f"{ARTIFACTS}/benchmarks/{{benchmark}}.jsonl",
    output:
        scores=f"{RESULTS}/eval/runs/{{method}}/seed{{seed}}/{{benchmark}}.csv",
        problems=f"{RESULTS}/eval/runs/{{method}}/seed{{seed}}/{{benchmark}}.problems.csv",
    params:
        **scoring_params(),
        samples_dir=f"{ARTIFACTS}/eval/runs/{{method}}/seed{{seed}}/{{benchmark}}",
        base_scores=lambda wildcards, input: (
            f"--base-scores {input.base_samples} {input.base_metrics}"
            if "base_metrics" in input.keys()
            else ""
        ),
        grid=(
            "--steps " + " ".join(str(s) for s in grid_steps(TRAINING))
            if config["evaluation"]["grid_only"]
            else ""
        ),
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpus"],
        mem_mb=config["resources"]["mem_mb"],
    log:
        f"{LOGS}/evaluate_run/{{method}}/seed{{seed}}/{{benchmark}}.log",
    benchmark:
        f"{BENCHMARK_DIR}/evaluate_run/{{method}}/seed{{seed}}/{{benchmark}}.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd evaluate-series --index {input.index} --base-model {input.base} "
        "--benchmark {input.benchmark} --label {wildcards.method}/seed{wildcards.seed} "
        "--prompt {params.prompt:q} --generation {params.generation:q} "
        "--grading {params.grading:q} --pass-k {params.pass_k} --out {output.scores} "
        "--samples-dir {params.samples_dir} {params.base_scores} {params.grid} "
        "--threads {threads} "
        "> {log} 2>&1"


# EffOPD's line, scanned (config: line_scan): at every search step of one OPD run, the
# validation accuracy and the batch reverse KL at theta_a + m d for each multiplier m.
rule line_scan:
    input:
        index=f"{RESULTS}/train/{{method}}/seed{{seed}}/checkpoints.csv",
        student=f"{ARTIFACTS}/models/student",
        teacher=f"{ARTIFACTS}/models/teacher",
        train=train_prompts_file(),
        val=f"{ARTIFACTS}/benchmarks/{VALIDATION_BENCHMARK}.jsonl",
    output:
        f"{RESULTS}/line_scan/{{method}}/seed{{seed}}.csv",
    params:
        training=training_json,
        grading=config_json("grading"),
        prompt=config_json("prompt"),
        multipliers=numbers(LINE_SCAN["multipliers"]),
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpus"],
        mem_mb=config["resources"]["mem_mb"],
    log:
        f"{LOGS}/line_scan/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARK_DIR}/line_scan/{{method}}/seed{{seed}}.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd line-scan --index {input.index} --training {params.training:q} "
        "--grading {params.grading:q} --prompt {params.prompt:q} --student {input.student} "
        "--teacher {input.teacher} --train {input.train} --val {input.val} "
        "--multipliers {params.multipliers} --out {output} --threads {threads} > {log} 2>&1"
