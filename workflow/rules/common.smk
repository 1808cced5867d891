# Helpers shared by the rule files (config validation, paths, lists of targets).
# Rules read their knobs from the validated config through these helpers.

import json
import os

from effopd.config import validate_config

validate_config(config, source="snakemake config")

EXPERIMENT = config["experiment"]
ARTIFACTS = f"artifacts/{EXPERIMENT}"  # large, git-ignored: data, models, generations
RESULTS = f"results/{EXPERIMENT}"  # small, committed: metrics, tables, logs of curves
FIGURES = f"paper_figures/{EXPERIMENT}"  # committed figures
LOGS = f"logs/{EXPERIMENT}"  # rule logs, git-ignored

ROLES = list(config["models"])
BUILT_ROLES = [r for r in ROLES if config["models"][r]["source"] == "build"]
FETCHED_ROLES = [r for r in ROLES if config["models"][r]["source"] != "build"]
BENCHMARKS = list(config["benchmarks"])
BASE_BENCHMARKS = config["evaluation"]["base_benchmarks"] or BENCHMARKS
USES_TASK = bool(BUILT_ROLES) or any(
    b["source"] == "task" for b in config["benchmarks"].values()
)


def alternation(names):
    """A wildcard constraint matching exactly one of ``names`` (never empty)."""
    return "|".join(names) if names else "(?!)"


def config_json(dpath):
    """A params function: the config block at ``dpath`` ("a/b", may hold wildcards) as JSON."""

    def block(wildcards):
        return json.dumps(
            lookup(dpath=dpath.format(**wildcards), within=config), sort_keys=True
        )

    return block


def output_dir(wildcards, output):
    """A params function: the directory of the rule's first output."""
    return os.path.dirname(output[0])


def benchmark_task_file(wildcards):
    """The task split a ``source: task`` benchmark reads (nothing for other sources)."""
    spec = config["benchmarks"][wildcards.benchmark]
    if spec["source"] == "task":
        return f"{ARTIFACTS}/data/{spec['split']}.jsonl"
    return []


def base_model_metrics():
    return expand(
        f"{RESULTS}/eval/{{role}}/{{benchmark}}.json",
        role=ROLES,
        benchmark=BASE_BENCHMARKS,
    )


def all_targets():
    return [f"{RESULTS}/tables/base_models.csv"]
