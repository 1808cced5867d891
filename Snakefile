# effopd-repro: one DAG from base models to every table and figure of
# "Learning to Foresee" (arXiv 2605.11739). Read the README first.
#
#   snakemake --cores all                                  # tiny default, CPU, minutes
#   snakemake --cores all --configfile config/paper.yaml   # paper scale (GPUs)
#   snakemake --profile profiles/slurm --configfile config/paper.yaml
#   snakemake figures --cores 2 --forceall --config review=True  # reviewers: redraw
#                                                  # every table and figure, no training


from snakemake.utils import min_version

min_version("9.0")


# The tiny default applies only when no --configfile is given: a config file
# named on the command line replaces it rather than being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


report: "workflow/report/workflow.rst"



wildcard_constraints:
    role=alternation(ROLES),
    built_role=alternation(BUILT_ROLES),
    fetched_role=alternation(FETCHED_ROLES),
    benchmark=alternation(BENCHMARKS),
    split="train|val|test",
    method=alternation(list(DECLARED)),
    seed=r"\d+",


include: "workflow/rules/analysis_helpers.smk"


# Reviewer mode (review: true): only the rules that turn committed results into
# tables and figures exist, so committed results are read as source files and
# nothing upstream (models, training, evaluation) can ever be scheduled.
# A model-scale sweep (config key scales) has no rules of its own experiment: each
# scale is a module of this Snakefile (workflow/rules/scales.smk).
if not config["review"] and not SCALES:

    include: "workflow/rules/data.smk"
    include: "workflow/rules/models.smk"
    include: "workflow/rules/train.smk"
    include: "workflow/rules/evaluate.smk"
    include: "workflow/rules/analysis.smk"
    include: "workflow/rules/provenance.smk"


if SCALES:

    include: "workflow/rules/scales.smk"

else:

    include: "workflow/rules/tables.smk"
    include: "workflow/rules/figures.smk"
    include: "workflow/rules/analysis_report.smk"


# Reviewer mode never keeps an old table whose committed inputs are missing.
if config["review"]:
    refuse_missing_review_inputs()


onstart:
    print(f"effopd-repro: experiment '{config['experiment']}', outputs in {RESULTS}/")


onerror:
    print(f"effopd-repro: a job failed; its log is under {LOGS}/ (see the message above)")


rule all:
    default_target: True
    input:
        report_targets() if config["review"] else all_targets() + missing_results(),


# Every table and figure of the artifact (reviewers: with review=True).
rule figures:
    input:
        report_targets(),
