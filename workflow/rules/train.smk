# Training: OPD, RL and EffOPD runs, one job per (method, seed). Checkpoints go
# to artifacts/<experiment>/runs/<method>/seed<seed>/checkpoints/, outside the
# declared outputs, so that Snakemake keeps them when a job is interrupted and
# the rerun resumes from the newest one; the declared outputs (logs and the
# checkpoint index) are written when the run ends.


# Train one method with one seed, starting from the student base model.
rule train:
    input:
        unpack(train_inputs),
    output:
        log=f"{RESULTS}/train/{{method}}/seed{{seed}}/log.csv",
        search=f"{RESULTS}/train/{{method}}/seed{{seed}}/effopd_search.csv",
        index=f"{RESULTS}/train/{{method}}/seed{{seed}}/checkpoints.csv",
    params:
        training=training_json,
        method=lambda wildcards: trainer_method(wildcards.method),
        grading=config_json("grading"),
        prompt=config_json("prompt"),
        run_dir=f"{ARTIFACTS}/runs/{{method}}/seed{{seed}}",
        teacher=lambda wildcards, input: (
            f"--teacher {input.teacher}" if "teacher" in input.keys() else ""
        ),
        val=lambda wildcards, input: (
            f"--val {input.val}" if "val" in input.keys() else ""
        ),
    threads: config["resources"]["threads"]
    resources:
        gpu=train_gpus,
        mem_mb=config["resources"]["mem_mb"],
    log:
        f"{LOGS}/train/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARK_DIR}/train/{{method}}/seed{{seed}}.tsv",
    conda:
        TRAIN_CONDA_ENV
    shell:
        "effopd train --method {params.method} --seed {wildcards.seed} "
        "--run-name {wildcards.method} "
        "--training {params.training:q} --grading {params.grading:q} "
        "--prompt {params.prompt:q} --student {input.student} {params.teacher} "
        "--train {input.train} {params.val} --run-dir {params.run_dir} "
        "--log-csv {output.log} --search-csv {output.search} "
        "--index-csv {output.index} --threads {threads} > {log} 2>&1"
