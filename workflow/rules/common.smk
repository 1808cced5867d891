# Helpers shared by the rule files (config validation, paths, lists of targets).
# Rules read their knobs from the validated config through these helpers.

import json
import os
import re
from pathlib import Path

from snakemake.io import is_flagged

from effopd.config import read_yaml, validate_config
from effopd.errors import InputError
from effopd.methods import (
    ANALYSABLE_ROLES,
    EFFOPD,
    OPD,
    RL,
    declared_methods,
    methods_as_json,
)
from effopd.training.schedule import grid_steps

# The one validation pass (schema, then every cross-key rule) before any job starts;
# each config file is also read strictly (a key given twice is refused).
for _configfile in workflow.configfiles:
    read_yaml(_configfile)
validate_config(config, source=" + ".join(map(str, workflow.configfiles)) or "snakemake config")

# Every job inherits the pinned CPU kernels (set before any job imports torch):
# the same CPU results on any Intel CPU with AVX2 (avx2) or any x86-64 CPU (portable);
# effopd/cpu_kernels.py.
from effopd.cpu_kernels import pin_cpu_kernels

pin_cpu_kernels(config["resources"]["cpu_kernels"])

EXPERIMENT = config["experiment"]
ARTIFACTS = f"artifacts/{EXPERIMENT}"  # large, git-ignored: data, models, generations
RESULTS = f"results/{EXPERIMENT}"  # small, committed: metrics, tables, logs of curves
FIGURES = f"paper_figures/{EXPERIMENT}"  # committed figures
LOGS = f"logs/{EXPERIMENT}"  # rule logs, git-ignored
# Every job's wall, CPU and peak memory (Snakemake's benchmark: directive), committed
# with the results (benchmarks/stage_table.py turns them into the stage table); in
# reviewer mode under logs/, so that redrawing keeps the committed timings of the run.
BENCHMARK_DIR = f"{LOGS if config['review'] else RESULTS}/benchmarks"

ROLES = list(config["models"])
BUILT_ROLES = [r for r in ROLES if config["models"][r]["source"] == "build"]
FETCHED_ROLES = [r for r in ROLES if config["models"][r]["source"] != "build"]
BENCHMARKS = list(config["benchmarks"])
BASE_BENCHMARKS = config["evaluation"]["base_benchmarks"] or BENCHMARKS
TRAINING = config["training"]
# Every method the config declares, by name (effopd/methods.py): training.methods, then
# OPD's learning-rate baselines (opd-lr<m>x), then EffOPD's ablation variants (effopd-<name>).
DECLARED = declared_methods(TRAINING, config["ablation"])


def declared_names(role):
    """The declared methods of one role (main, lr_baseline, variant), in config order."""
    return [name for name, method in DECLARED.items() if method.role == role]


METHODS = declared_names("main")
SEEDS = config["seeds"]
SERIES_BENCHMARKS = config["evaluation"]["series_benchmarks"] or BASE_BENCHMARKS
VALIDATION_BENCHMARK = TRAINING["effopd"]["validation_benchmark"]
SPEEDUP_BENCHMARK = SERIES_BENCHMARKS[0]  # the benchmark of the speed-up and curves
# EffOPD's step-size ablation: each variant is trained as method effopd-<name>.
ABLATION = config["ablation"]
VARIANTS = declared_names("variant")
ABLATION_SEEDS = ABLATION["seeds"] or SEEDS
ABLATION_METHODS = [OPD, EFFOPD, *VARIANTS]  # the ablation table's runs
# OPD's learning-rate baselines (training.lr_baselines): method opd-lr<m>x, every seed.
LR_BASELINES = declared_names("lr_baseline")
TRAINED_METHODS = [*METHODS, *LR_BASELINES]  # every method of the main runs
# The model-scale sweep: one experiment <experiment>/<scale> per entry (scales.smk).
SCALES = config["scales"]
# The line scan (config key line_scan): the listed OPD methods' runs of one seed.
LINE_SCAN = config["line_scan"]
LINE_SCAN_SEED = SEEDS[0] if LINE_SCAN["seed"] is None else LINE_SCAN["seed"]


def alternation(names):
    """A wildcard constraint matching exactly one of ``names`` (never empty)."""
    return "|".join(map(re.escape, names)) if names else "(?!)"


def config_json(dpath):
    """A params function: the config block at ``dpath`` ("a/b", may hold wildcards) as JSON."""

    def block(wildcards):
        return json.dumps(
            lookup(dpath=dpath.format(**wildcards), within=config), sort_keys=True
        )

    return block


def benchmark_prompt(wildcards):
    """A params function: the prompt block as JSON, with the benchmark's own
    ``instruction`` (a code benchmark's) in place of the block's when it has one."""
    spec = config["benchmarks"][wildcards.benchmark]
    prompt = dict(config["prompt"])
    if "instruction" in spec:
        prompt["instruction"] = spec["instruction"]
    return json.dumps(prompt, sort_keys=True)


def numbers(values):
    """A list of numbers as one space-separated command-line argument string."""
    return " ".join(str(v) for v in values)


def scoring_params(prompt=benchmark_prompt, generation=None):
    """The params shared by the sampling and grading steps, spread into a params block
    with ``**scoring_params()``. The prompt (default: the benchmark's), generation
    (default: the config's) and grading blocks as JSON, and evaluation.pass_k."""
    return {
        "prompt": prompt,
        "generation": generation or config_json("generation"),
        "grading": config_json("grading"),
        "pass_k": numbers(config["evaluation"]["pass_k"]),
    }


def run_tables(methods, seeds, searches=False):
    """The inputs of a table over training runs (``input: **run_tables(...)``): each run's
    evaluation series on the speed-up benchmark, its per-problem counts beside it and its
    training log, and with ``searches`` its line-search log."""
    files = {
        "evals": f"{RESULTS}/eval/runs/{{method}}/seed{{seed}}/{SPEEDUP_BENCHMARK}.csv",
        "logs": f"{RESULTS}/train/{{method}}/seed{{seed}}/log.csv",
        "problems": f"{RESULTS}/eval/runs/{{method}}/seed{{seed}}/{SPEEDUP_BENCHMARK}.problems.csv",
    }
    if searches:
        files["searches"] = f"{RESULTS}/train/{{method}}/seed{{seed}}/effopd_search.csv"
    return {key: expand(path, method=methods, seed=seeds) for key, path in files.items()}


def output_dir(wildcards, output):
    """A params function: the directory of the rule's first output."""
    return os.path.dirname(output[0])


def benchmark_task_file(wildcards):
    """The task split a ``source: task`` benchmark reads (nothing for other sources)."""
    spec = config["benchmarks"][wildcards.benchmark]
    if spec["source"] == "task":
        return f"{ARTIFACTS}/data/{spec['split']}.jsonl"
    return []


def train_prompts_file():
    """The training prompts: the tiny task's train split or the prepared data set."""
    if TRAINING["data"]["source"] == "task":
        return f"{ARTIFACTS}/data/train.jsonl"
    return f"{ARTIFACTS}/data/train_prompts.jsonl"


def trainer_method(method):
    """The algorithm a DAG method runs (its declaration's)."""
    return DECLARED[method].algorithm.name


def training_json(wildcards):
    """A params function: the training block the method trains with (its declaration's:
    its learning rate, warm-up and line-search overrides), as JSON."""
    return json.dumps(DECLARED[wildcards.method].training(TRAINING), sort_keys=True)


def methods_json():
    """Every declared method as JSON: the --methods of the report rules (labels, roles,
    learning rates)."""
    return json.dumps(methods_as_json(DECLARED, TRAINING), sort_keys=True)


def train_inputs(wildcards):
    """Inputs of one training run: the student, the training split, and for OPD
    and EffOPD the teacher, for EffOPD the line-search validation benchmark."""
    inputs = {
        "student": f"{ARTIFACTS}/models/student",
        "train": train_prompts_file(),
    }
    algorithm = DECLARED[wildcards.method].algorithm
    if algorithm.teacher:
        inputs["teacher"] = f"{ARTIFACTS}/models/teacher"
    if algorithm.searches:
        inputs["val"] = f"{ARTIFACTS}/benchmarks/{VALIDATION_BENCHMARK}.jsonl"
    return inputs


def train_gpus(wildcards):
    """GPUs one training job asks the scheduler for: with engine verl, the Ray pools
    that verl will ask for (trainer pool, plus the teacher pool for OPD and EffOPD);
    otherwise resources.gpus."""
    if TRAINING["engine"] != "verl":
        return config["resources"]["gpus"]
    from effopd.integrations.verl_resources import gpu_request

    return gpu_request(TRAINING, trainer_method(wildcards.method))


# The train rule's conda environment: engine verl needs the GPU stack (verl, vLLM,
# flash-attn; workflow/envs/verl-gpu.yaml and its post-deploy script), the others
# the project's environment. Paths are relative to workflow/rules/.
TRAIN_CONDA_ENV = (
    "../envs/verl-gpu.yaml" if TRAINING["engine"] == "verl" else "../../environment.yml"
)


def base_scores_inputs(wildcards):
    """The student's evaluate_model scores on this benchmark, which stand in for step 0
    of every run's evaluation (same model and sampling settings); none when the
    benchmark is not a base benchmark."""
    if wildcards.benchmark not in BASE_BENCHMARKS or "student" not in ROLES:
        return {}
    return {
        "base_samples": f"{ARTIFACTS}/eval/student/{wildcards.benchmark}.samples.jsonl",
        "base_metrics": f"{RESULTS}/eval/student/{wildcards.benchmark}.json",
    }


def run_evaluations():
    return expand(
        f"{RESULTS}/eval/runs/{{method}}/seed{{seed}}/{{benchmark}}.csv",
        method=TRAINED_METHODS,
        seed=SEEDS,
        benchmark=SERIES_BENCHMARKS,
    )


def base_model_metrics():
    return expand(
        f"{RESULTS}/eval/{{role}}/{{benchmark}}.json",
        role=ROLES,
        benchmark=BASE_BENCHMARKS,
    )


def report_targets():
    """Every table and figure, each made from committed results only."""
    if SCALES:  # every scale's and the cross-scale ones (scales.smk)
        return scale_rule_inputs("figures") + cross_scale_targets()
    return [
        f"{RESULTS}/tables/base_models.csv",
        f"{RESULTS}/tables/effopd_speedup.csv",
        f"{FIGURES}/training_curves.png",
        *speedup_figure_targets(),
        *analysis_targets(),
        *claims_targets(),
        *ablation_targets(),
        *stepsize_map_targets(),
        *line_scan_targets(),
    ]


def line_scan_files():
    """One scan per listed method (its run of seed line_scan.seed)."""
    return expand(
        f"{RESULTS}/line_scan/{{method}}/seed{LINE_SCAN_SEED}.csv", method=LINE_SCAN["methods"]
    )


def line_scan_targets():
    """The line scan's table and figure, when methods are listed (line_scan.methods)."""
    if LINE_SCAN["methods"]:
        return [f"{RESULTS}/tables/line_scan.csv", f"{FIGURES}/line_scan.png"]
    return []


def map_methods():
    """The step-size map's cells (effopd/reports/stepsize.py): the declared OPD and EffOPD
    methods other than ablation variants."""
    return [
        name
        for name, method in DECLARED.items()
        if method.algorithm.name in (OPD, EFFOPD) and method.role != "variant"
    ]


def stepsize_map_targets():
    """The step-size map's table and figure, when OPD runs at two or more learning rates
    and EffOPD at one or more."""
    algorithms = [DECLARED[name].algorithm.name for name in map_methods()]
    rates = {DECLARED[name].peak_lr(TRAINING) for name in map_methods()
             if DECLARED[name].algorithm.name == OPD}
    if len(rates) >= 2 and EFFOPD in algorithms:
        return [f"{RESULTS}/tables/stepsize_map.csv", f"{FIGURES}/stepsize_map.png"]
    return []


def ablation_targets():
    """The step-size ablation's table, when variants are configured."""
    if VARIANTS and {OPD, EFFOPD} <= set(METHODS):
        return [f"{RESULTS}/tables/effopd_ablation.csv"]
    return []


def speedup_figure_targets():
    """The speed-up estimator's figure, when OPD and EffOPD are trained."""
    if {OPD, EFFOPD} <= set(METHODS):
        return [f"{FIGURES}/speedup_fits.png"]
    return []


def claims_targets():
    """The claims table, when OPD, RL and EffOPD are trained and OPD and RL analysed."""
    analysed = set(ANALYSIS_METHODS) if ANALYSIS["enabled"] else set()
    if {OPD, RL} <= analysed and EFFOPD in METHODS:
        return [f"{RESULTS}/tables/claims.csv"]
    return []


def provenance_data_files():
    """The data files the models and runs were made from (hashed in provenance.json)."""
    files = [train_prompts_file()]
    if BUILT_ROLES or TRAINING["data"]["source"] == "task":
        files += [f"{ARTIFACTS}/data/{split}.jsonl" for split in ("val", "test")]
    return sorted(set(files))


def all_targets():
    """Everything the full DAG makes: the report and its provenance sidecar."""
    if SCALES:  # every scale's and the cross-scale ones (scales.smk)
        return scale_rule_inputs("all") + cross_scale_targets()
    return report_targets() + [f"{RESULTS}/provenance.json"]


def committed(path):
    """A committed table or figure (a rule's output): Snakemake leaves it in place while
    its job runs and restores it when the job fails (the update flag), so a failed
    table job never deletes committed outputs."""
    return update(path)


def refuse_missing_review_inputs():
    """Reviewer mode: every input that no rule makes (the committed results the tables
    are drawn from) must exist; otherwise Snakemake would keep the old tables made from
    them as source files and exit 0. One line naming the missing files."""
    made = {str(f) for r in workflow.rules for f in r.output}
    needed = {str(f) for r in workflow.rules for f in r.input if isinstance(f, str)}
    missing = sorted(f for f in needed - made if not os.path.exists(f))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise InputError(
            f"reviewer mode: {len(missing)} committed result(s) the tables are drawn from "
            f"are missing: {shown}; restore them (git checkout -- {RESULTS}) or run the "
            "full DAG (review: false)"
        )


def missing_results():
    """Full DAG: the results the tables are drawn from (inputs under results/ of the rules
    whose outputs are committed tables and figures) that do not exist. Snakemake (since
    7.7, by design: snakemake issue 1978) does not remake a deleted intermediate file
    while what was made from it is up to date; `rule all` names these as targets, so a
    deleted evaluation is made again and the tables drawn from it after. Only the rules
    that make a report target count: a rule the config does not ask for (the analyses'
    tables with analysis.enabled false) adds nothing."""
    targets = set(report_targets())
    needed = {
        str(f)
        for r in workflow.rules
        if any(is_flagged(o, "update") and str(o) in targets for o in r.output)
        for f in r.input
        if isinstance(f, str) and str(f).startswith(f"{RESULTS}/")
    }
    return sorted(f for f in needed if not os.path.exists(f))
