# Models: build the tiny teacher and student offline, or fetch Hub models at a
# pinned revision. Either way the result is a Hugging Face checkpoint directory
# with a manifest.json (origin and sha256 of every file).


# Build the tiny models' character-level tokenizer and chat template.
rule build_tokenizer:
    output:
        directory(f"{ARTIFACTS}/tokenizer"),
    params:
        prompt=config_json("prompt"),
    log:
        f"{LOGS}/build_tokenizer.log",
    benchmark:
        f"{BENCHMARK_DIR}/build_tokenizer.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd build-tokenizer --prompt {params.prompt:q} --out {output} > {log} 2>&1"


# Initialise a tiny Qwen3 model and fine-tune it on chain-of-thought solutions.
rule build_model:
    input:
        tokenizer=f"{ARTIFACTS}/tokenizer",
        train=f"{ARTIFACTS}/data/train.jsonl",
    output:
        model=directory(f"{ARTIFACTS}/models/{{built_role}}"),
        sft_log=f"{RESULTS}/train/sft_{{built_role}}.csv",
    params:
        spec=config_json("models/{built_role}"),
        prompt=config_json("prompt"),
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpus"],
        mem_mb=config["resources"]["mem_mb"],
    log:
        f"{LOGS}/build_model/{{built_role}}.log",
    benchmark:
        f"{BENCHMARK_DIR}/build_model/{{built_role}}.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd build-model --spec {params.spec:q} --prompt {params.prompt:q} "
        "--tokenizer {input.tokenizer} --train {input.train} --out {output.model} "
        "--log-csv {output.sft_log} --threads {threads} > {log} 2>&1"


# Download a Hub model at its pinned revision (or copy a local directory).
rule fetch_model:
    output:
        directory(f"{ARTIFACTS}/models/{{fetched_role}}"),
    params:
        spec=config_json("models/{fetched_role}"),
    log:
        f"{LOGS}/fetch_model/{{fetched_role}}.log",
    benchmark:
        f"{BENCHMARK_DIR}/fetch_model/{{fetched_role}}.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd fetch-model --spec {params.spec:q} --out {output} > {log} 2>&1"
