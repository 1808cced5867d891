# Provenance: one sidecar JSON per experiment that ties every table and figure
# to the config (and its hash), the git commit, the model manifests and the
# hashes of the data. Needs the models, so it runs in the full DAG only.


# Record what made the experiment's tables and figures.
rule record_provenance:
    input:
        models=expand(f"{ARTIFACTS}/models/{{role}}", role=ROLES),
        benchmarks=expand(
            f"{ARTIFACTS}/benchmarks/{{benchmark}}.manifest.json", benchmark=BENCHMARKS
        ),
        data=provenance_data_files(),
        outputs=report_targets(),
    output:
        f"{RESULTS}/provenance.json",
    params:
        config=lambda wildcards: json.dumps(config, sort_keys=True),
    log:
        f"{LOGS}/record_provenance.log",
    benchmark:
        f"{BENCHMARK_DIR}/record_provenance.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd record-provenance --config {params.config:q} --models {input.models} "
        "--data-manifests {input.benchmarks} --data-files {input.data} "
        "--outputs {input.outputs} --out {output} > {log} 2>&1"
