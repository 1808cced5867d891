# Data: the tiny task's splits, and every benchmark as one prepared JSONL.


# Write the tiny task's fixed-seed train / val / test splits.
rule make_task_data:
    output:
        expand(f"{ARTIFACTS}/data/{{split}}.jsonl", split=["train", "val", "test"]),
    params:
        spec=config_json("task"),
        out_dir=output_dir,
    log:
        f"{LOGS}/make_task_data.log",
    benchmark:
        f"{BENCHMARK_DIR}/make_task_data.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd make-task --spec {params.spec:q} --out-dir {params.out_dir} > {log} 2>&1"


# Prepare one benchmark (task split, Hub dataset at a pinned revision, or local
# JSONL) as lines {id, problem, answer} with a manifest of its origin and hash.
rule prepare_benchmark:
    input:
        task_file=benchmark_task_file,
    output:
        problems=f"{ARTIFACTS}/benchmarks/{{benchmark}}.jsonl",
        manifest=f"{ARTIFACTS}/benchmarks/{{benchmark}}.manifest.json",
    params:
        spec=config_json("benchmarks/{benchmark}"),
        task_file=lambda wildcards, input: (
            f"--task-file {input.task_file}" if input.task_file else ""
        ),
    log:
        f"{LOGS}/prepare_benchmark/{{benchmark}}.log",
    benchmark:
        f"{BENCHMARK_DIR}/prepare_benchmark/{{benchmark}}.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd prepare-benchmark --spec {params.spec:q} {params.task_file} "
        "--out {output.problems} > {log} 2>&1"


# Prepare the training prompts from a Hub dataset or JSONL (paper: DeepMath-103K,
# difficulty >= 6). The tiny task's train split needs no preparation.
rule prepare_train_data:
    output:
        problems=f"{ARTIFACTS}/data/train_prompts.jsonl",
        manifest=f"{ARTIFACTS}/data/train_prompts.manifest.json",
    params:
        spec=config_json("training/data"),
    log:
        f"{LOGS}/prepare_train_data.log",
    benchmark:
        f"{BENCHMARK_DIR}/prepare_train_data.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd prepare-train-data --spec {params.spec:q} --out {output.problems} "
        "> {log} 2>&1"
