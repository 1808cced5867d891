# The model-scale sweep (config key `scales`, config/scales.yaml): the whole DAG once per
# student size, as a Snakemake module of this very Snakefile with the scale's config
# (experiment <experiment>/<scale>), so every rule of a single experiment runs unchanged;
# then one table and one figure across the scales. The first scale builds the teacher;
# the other scales' fetch_model copies it (models.teacher: source local), so it is built
# once. Rules of scale <s> are named scale_<s>_<rule> (scale_2x_train, ...).

include: "scales_helpers.smk"


for scale_name, scale_config in SCALE_CONFIGS.items():
    scale_module = f"scale_{scale_name}"
    scale_rules = f"scale_{scale_name}_"
    scale_fetch_rule = f"scale_{scale_name}_fetch_model"

    module:
        name:
            scale_module
        snakefile:
            "../../Snakefile"
        config:
            scale_config

    use rule * from scale_module exclude fetch_model as scale_rules*

    # The copy of the shared teacher waits for the first scale to build it.
    use rule fetch_model from scale_module as scale_fetch_rule with:
        input:
            scale_teacher_input(scale_name),


# One row per scale: parameters, accuracies, OPD's gain, the embedding shift of OPD and
# RL and EffOPD's speed-up, each from the scale's committed tables
# (effopd/reports/scales.py states every column's formula).
rule tabulate_cross_scale:
    input:
        base_models=[scale_results(s, "tables/base_models.csv") for s in SCALE_NAMES],
        curves=[scale_results(s, "tables/training_curves.csv") for s in SCALE_NAMES],
        claims=[scale_results(s, "tables/claims.csv") for s in SCALE_NAMES],
        speedup=[scale_results(s, "tables/effopd_speedup.csv") for s in SCALE_NAMES],
        embedding=[
            scale_results(s, "tables/analysis/embedding_shift.csv") for s in SCALE_NAMES
        ],
        provenance=[scale_results(s, "provenance.json") for s in SCALE_NAMES],
    output:
        csv=committed(f"{RESULTS}/tables/cross_scale.csv"),
        md=committed(f"{RESULTS}/tables/cross_scale.md"),
    params:
        scales=SCALE_NAMES,
        benchmark=SPEEDUP_BENCHMARK,
    log:
        f"{LOGS}/tabulate_cross_scale.log",
    benchmark:
        f"{BENCHMARK_DIR}/tabulate_cross_scale.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd tabulate-cross-scale --scales {params.scales} "
        "--base-models {input.base_models} --curves {input.curves} "
        "--claims {input.claims} --speedup {input.speedup} "
        "--embedding {input.embedding} --provenance {input.provenance} "
        "--benchmark {params.benchmark} --out {output.csv} > {log} 2>&1"


# The cross-scale figure: OPD's gain, the embedding shift and EffOPD's speed-up against
# the student's parameters, one panel each.
rule plot_cross_scale:
    input:
        f"{RESULTS}/tables/cross_scale.csv",
    output:
        png=committed(f"{FIGURES}/cross_scale.png"),
        pdf=committed(f"{FIGURES}/cross_scale.pdf"),
    log:
        f"{LOGS}/plot_cross_scale.log",
    benchmark:
        f"{BENCHMARK_DIR}/plot_cross_scale.tsv",
    conda:
        "../../environment.yml"
    shell:
        "effopd plot-cross-scale --table {input} --out {output.png} > {log} 2>&1"
