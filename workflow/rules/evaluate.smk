# Evaluation: sample, grade with math-verify, and score a model on a benchmark.


# Evaluate one base model (teacher or student) on one benchmark.
rule evaluate_model:
    input:
        model=f"{ARTIFACTS}/models/{{role}}",
        benchmark=f"{ARTIFACTS}/benchmarks/{{benchmark}}.jsonl",
    output:
        samples=f"{ARTIFACTS}/eval/{{role}}/{{benchmark}}.samples.jsonl",
        metrics=f"{RESULTS}/eval/{{role}}/{{benchmark}}.json",
    params:
        prompt=config_json("prompt"),
        generation=config_json("generation"),
        grading=config_json("grading"),
        pass_k=" ".join(str(k) for k in config["evaluation"]["pass_k"]),
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpus"],
        mem_mb=config["resources"]["mem_mb"],
    log:
        f"{LOGS}/evaluate_model/{{role}}/{{benchmark}}.log",
    conda:
        "../../environment.yml"
    shell:
        "effopd evaluate --model {input.model} --benchmark {input.benchmark} "
        "--label {wildcards.role} --prompt {params.prompt:q} "
        "--generation {params.generation:q} --grading {params.grading:q} "
        "--pass-k {params.pass_k} --samples {output.samples} "
        "--metrics {output.metrics} --threads {threads} > {log} 2>&1"
