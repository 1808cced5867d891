"""The ``effopd`` command line: one subcommand per workflow step.

Every Snakemake rule calls exactly one of these subcommands. Knobs arrive as
JSON blocks taken verbatim from the validated config (``--spec``), file paths
as flags, so the same commands run outside the workflow.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable

from effopd.cli.args import METHODS_HELP, json_arg, methods_arg, set_threads

log = logging.getLogger("effopd")


def cmd_make_task(args: argparse.Namespace) -> None:
    from effopd.data.tasks import write_task_splits

    counts = write_task_splits(args.spec, args.out_dir)
    log.info("wrote %s to %s", counts, args.out_dir)


def cmd_build_tokenizer(args: argparse.Namespace) -> None:
    from effopd.models.tokenizer import save_char_tokenizer

    tokenizer = save_char_tokenizer(args.out, phrases=[args.prompt["instruction"]])
    log.info("tokenizer with %d tokens written to %s", len(tokenizer), args.out)


def cmd_build_model(args: argparse.Namespace) -> None:
    from effopd.models.build import build_model

    set_threads(args.threads)
    build_model(args.spec, args.prompt, args.tokenizer, args.train, args.out, args.log_csv)


def cmd_fetch_model(args: argparse.Namespace) -> None:
    from effopd.models.fetch import fetch_model

    fetch_model(args.spec, args.out)


def cmd_prepare_train_data(args: argparse.Namespace) -> None:
    from effopd.data.train_data import prepare_train_data

    prepare_train_data(args.spec, args.out)


def cmd_prepare_benchmark(args: argparse.Namespace) -> None:
    from effopd.evaluation import prepare_benchmark

    prepare_benchmark(args.spec, args.out, task_file=args.task_file)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from effopd.evaluation import evaluate_model

    set_threads(args.threads)
    evaluate_model(model_dir=args.model, benchmark_file=args.benchmark, label=args.label,
                   prompt=args.prompt, generation=args.generation, grading=args.grading,
                   pass_k=args.pass_k, samples_out=args.samples, metrics_out=args.metrics,
                   device=args.device)


def cmd_evaluate_series(args: argparse.Namespace) -> None:
    from effopd.evaluation import evaluate_series

    set_threads(args.threads)
    evaluate_series(index_csv=args.index, base_model=args.base_model,
                    benchmark_file=args.benchmark, label=args.label, prompt=args.prompt,
                    generation=args.generation, grading=args.grading, pass_k=args.pass_k,
                    out_csv=args.out, samples_dir=args.samples_dir, device=args.device,
                    base_scores=args.base_scores, steps=args.steps)


# The training engines (config key training.engine): each module's train(run) takes a
# RunRequest (effopd.training.contract) and writes the contract's three files.
ENGINES = {"local": "effopd.training.trainer", "trl": "effopd.integrations.trl_engine",
           "verl": "effopd.integrations.verl_engine"}


def cmd_train(args: argparse.Namespace) -> None:
    import importlib

    from effopd.training.contract import RunRequest

    engine = args.training.get("engine", "local")
    if engine not in ENGINES:
        raise ValueError(f"training.engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine != "verl":  # verl's workers size their own thread pools
        set_threads(args.threads)
    run = RunRequest(
        algorithm=args.method, seed=args.seed, training=args.training, grading=args.grading,
        prompt=args.prompt, student=args.student, teacher=args.teacher, train=args.train,
        val=args.val, run_dir=args.run_dir, log_csv=args.log_csv, search_csv=args.search_csv,
        index_csv=args.index_csv, run_name=args.run_name or args.method,
        stop_after=args.stop_after, fresh=args.fresh, device=args.device)
    importlib.import_module(ENGINES[engine]).train(run)


def cmd_line_scan(args: argparse.Namespace) -> None:
    import tempfile

    from effopd.io import write_rows
    from effopd.tables import CHECKPOINT_INDEX, read_table, run_identity
    from effopd.training.line_scan import COLUMNS, line_scan
    from effopd.training.trainer import Trainer, TrainSpec

    set_threads(args.threads)
    index = read_table(args.index, CHECKPOINT_INDEX)
    method, seed = run_identity(index, args.index)
    spec = TrainSpec.from_config(args.training, args.algorithm, args.grading)
    with tempfile.TemporaryDirectory() as scratch:  # the scan writes no checkpoint
        trainer = Trainer(spec, seed, args.student, args.teacher, args.train, args.val,
                          args.prompt, scratch, device=args.device)
        rows = line_scan(trainer, args.student, dict(zip(index["step"].astype(int),
                                                         index["path"], strict=True)),
                         args.multipliers, (method, seed))
    write_rows(args.out, COLUMNS, rows)


def cmd_export_fsdp(args: argparse.Namespace) -> None:
    from effopd.integrations.fsdp_export import export_fsdp_checkpoint

    manifest = export_fsdp_checkpoint(args.actor_dir, args.out,
                                      max_shard_bytes=int(args.max_shard_gb * 1024 ** 3))
    log.info("exported %s (world size %d, %s) to %s as float32", args.actor_dir,
             manifest["world_size"], manifest["source_dtypes"], args.out)


def cmd_grade(args: argparse.Namespace) -> None:
    from effopd.grading import grade_file

    counts = grade_file(args.input, args.output, timeout_s=args.timeout, workers=args.workers)
    log.info("graded %s: %s", args.input, counts)


def cmd_tabulate_base_models(args: argparse.Namespace) -> None:
    from effopd.evaluation import tabulate_metrics

    tabulate_metrics(args.metrics, args.out)


def cmd_tabulate_training(args: argparse.Namespace) -> None:
    from effopd.reports.training import write_training_tables

    write_training_tables(args.eval_csvs, args.log_csvs, args.benchmark, args.curves,
                          args.speedup, args.compute, args.speedup_settings, args.methods)


def cmd_tabulate_ablation(args: argparse.Namespace) -> None:
    from effopd.reports.ablation import write_ablation_table

    write_ablation_table(args.eval_csvs, args.log_csvs, args.effopd, args.variants, args.out,
                         args.speedup_settings)


def cmd_tabulate_stepsize_map(args: argparse.Namespace) -> None:
    from effopd.reports.stepsize import write_stepsize_map

    write_stepsize_map(args.eval_csvs, args.log_csvs, args.search_csvs, args.methods, args.out,
                       args.speedup_settings)


def cmd_plot_stepsize_map(args: argparse.Namespace) -> None:
    from effopd.plots.stepsize import plot_stepsize_map
    from effopd.reports.stepsize import read_stepsize_map
    from effopd.tables import read_table

    plot_stepsize_map(read_stepsize_map(args.table), read_table(args.curves), args.benchmark,
                      args.out)


def cmd_tabulate_line_scan(args: argparse.Namespace) -> None:
    from effopd.reports.line_scan import write_line_scan

    write_line_scan(args.scans, args.out)


def cmd_plot_line_scan(args: argparse.Namespace) -> None:
    from effopd.plots.line_scan import plot_line_scan
    from effopd.tables import read_table

    plot_line_scan(read_table(args.table), args.out)


def cmd_plot_speedup(args: argparse.Namespace) -> None:
    from effopd.plots.training import plot_speedup_fits
    from effopd.tables import read_table

    plot_speedup_fits(read_table(args.curves), read_table(args.speedup), args.benchmark,
                      args.out)


def cmd_plot_training(args: argparse.Namespace) -> None:
    from effopd.plots.training import plot_training_curves
    from effopd.reports.training import teacher_accuracy
    from effopd.tables import read_table

    plot_training_curves(read_table(args.curves), args.benchmark, args.out,
                         teacher_accuracy(args.base_models, args.benchmark), args.methods)


def cmd_tabulate_cross_scale(args: argparse.Namespace) -> None:
    from effopd.reports.scales import write_cross_scale

    write_cross_scale(args.scales, args.base_models, args.curves, args.claims, args.speedup,
                      args.embedding, args.provenance, args.benchmark, args.out)


def cmd_plot_cross_scale(args: argparse.Namespace) -> None:
    from effopd.plots.scales import plot_cross_scale
    from effopd.tables import read_table

    plot_cross_scale(read_table(args.table), args.out)


def cmd_record_provenance(args: argparse.Namespace) -> None:
    from effopd.provenance import write_provenance

    write_provenance(args.config, args.models, args.data_manifests, args.data_files,
                     args.outputs, args.out)


def cmd_validate_config(args: argparse.Namespace) -> None:
    from effopd.config import load_config

    config = load_config(args.configfile)
    print(json.dumps(config, indent=2) if args.show else f"{args.configfile}: valid")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="effopd", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], None], help_text: str):
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(func=func)
        return command

    c = add("make-task", cmd_make_task, "write the tiny task's train/val/test JSONL splits")
    c.add_argument("--spec", type=json_arg, default={}, help="the config's task block (JSON)")
    c.add_argument("--out-dir", required=True)

    c = add("build-tokenizer", cmd_build_tokenizer, "build the tiny models' tokenizer")
    c.add_argument("--prompt", type=json_arg, required=True, help="the config's prompt block")
    c.add_argument("--out", required=True)

    c = add("build-model", cmd_build_model, "initialise and SFT a tiny Qwen3 model offline")
    c.add_argument("--spec", type=json_arg, required=True, help="the config's models.<role> block")
    c.add_argument("--prompt", type=json_arg, required=True, help="the config's prompt block")
    c.add_argument("--tokenizer", required=True)
    c.add_argument("--train", required=True, help="train split JSONL")
    c.add_argument("--out", required=True, help="output checkpoint directory")
    c.add_argument("--log-csv", required=True, help="SFT training log (CSV)")
    c.add_argument("--threads", type=int, default=None)

    c = add("fetch-model", cmd_fetch_model,
            "download a Hub model at a pinned revision (or copy a local one) with a manifest")
    c.add_argument("--spec", type=json_arg, required=True, help="the config's models.<role> block")
    c.add_argument("--out", required=True)

    c = add("prepare-train-data", cmd_prepare_train_data,
            "write the training prompts (e.g. DeepMath-103K, difficulty >= 6) as JSONL")
    c.add_argument("--spec", type=json_arg, required=True, help="the config's training.data")
    c.add_argument("--out", required=True)

    c = add("prepare-benchmark", cmd_prepare_benchmark,
            "write a benchmark as JSONL (id, problem, answer) with a manifest")
    c.add_argument("--spec", type=json_arg, required=True, help="the config's benchmarks.<name>")
    c.add_argument("--task-file", default=None, help="the task split, for source: task")
    c.add_argument("--out", required=True)

    c = add("evaluate", cmd_evaluate, "sample, grade and score one model on one benchmark")
    c.add_argument("--model", required=True, help="Hugging Face checkpoint directory")
    c.add_argument("--benchmark", required=True, help="prepared benchmark JSONL")
    c.add_argument("--label", required=True, help="model name recorded in the metrics")
    c.add_argument("--prompt", type=json_arg, default={})
    c.add_argument("--generation", type=json_arg, default={})
    c.add_argument("--grading", type=json_arg, default={})
    c.add_argument("--pass-k", type=int, nargs="+", default=[1])
    c.add_argument("--samples", required=True, help="per-sample grades (JSONL)")
    c.add_argument("--metrics", required=True, help="one metrics row (JSON)")
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--device", default=None, help="torch device (default: cuda if present)")

    c = add("evaluate-series", cmd_evaluate_series,
            "score the base model and every checkpoint of a training run on one benchmark")
    c.add_argument("--index", required=True,
                   help="the run's checkpoints.csv (its method and seed go into every row)")
    c.add_argument("--base-model", required=True, help="step-0 model directory")
    c.add_argument("--benchmark", required=True)
    c.add_argument("--label", required=True)
    c.add_argument("--prompt", type=json_arg, default={})
    c.add_argument("--generation", type=json_arg, default={})
    c.add_argument("--grading", type=json_arg, default={})
    c.add_argument("--pass-k", type=int, nargs="+", default=[1])
    c.add_argument("--out", required=True, help="one metrics row per step (CSV)")
    c.add_argument("--samples-dir", required=True)
    c.add_argument("--base-scores", nargs=2, default=None, metavar=("SAMPLES", "METRICS"),
                   help="the base model's grades (JSONL) and metrics (JSON) on this benchmark "
                        "with these sampling settings (effopd evaluate): reused as step 0")
    c.add_argument("--steps", type=int, nargs="+", default=None,
                   help="score only these checkpoint steps (the grid every method shares)")
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--device", default=None)

    from effopd.methods import ALGORITHMS

    c = add("train", cmd_train, "train one run (one algorithm, one seed), resumable")
    c.add_argument("--method", required=True, choices=list(ALGORITHMS),
                   help="the algorithm (effopd/methods.py)")
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--run-name", default=None,
                   help="the run's name, written as the method column of its log, search "
                        "log and checkpoint index (default: --method; the DAG passes its "
                        "method, e.g. opd-lr2x or effopd-fixed)")
    c.add_argument("--training", type=json_arg, required=True, help="the config's training block")
    c.add_argument("--grading", type=json_arg, required=True)
    c.add_argument("--prompt", type=json_arg, required=True)
    c.add_argument("--student", required=True, help="initial student checkpoint")
    c.add_argument("--teacher", default=None, help="teacher checkpoint (opd, effopd)")
    c.add_argument("--train", required=True, help="training problems (JSONL)")
    c.add_argument("--val", default=None, help="prepared validation benchmark (effopd)")
    c.add_argument("--run-dir", required=True, help="checkpoints go to RUN_DIR/checkpoints")
    c.add_argument("--log-csv", required=True)
    c.add_argument("--search-csv", required=True)
    c.add_argument("--index-csv", required=True)
    c.add_argument("--stop-after", type=int, default=None,
                   help="stop after this step (engines local and trl; verl refuses it)")
    c.add_argument("--fresh", action="store_true",
                   help="discard RUN_DIR's checkpoints if another run made them (default: "
                        "refuse, naming the differing keys; config: training.on_stale); "
                        "engine local only, the others refuse it")
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--device", default=None)

    c = add("line-scan", cmd_line_scan,
            "EffOPD's line, scanned: validation accuracy and batch reverse KL at theta_a + m d "
            "at every search step of one OPD run (effopd/training/line_scan.py)")
    c.add_argument("--index", required=True, help="the run's checkpoints.csv (its identity)")
    c.add_argument("--algorithm", default="opd", choices=list(ALGORITHMS),
                   help="the algorithm of the run's training block (default opd)")
    c.add_argument("--training", type=json_arg, required=True,
                   help="the run's training block (JSON)")
    c.add_argument("--grading", type=json_arg, required=True)
    c.add_argument("--prompt", type=json_arg, required=True)
    c.add_argument("--student", required=True, help="the base student (the anchor of step 1)")
    c.add_argument("--teacher", required=True)
    c.add_argument("--train", required=True, help="training problems (JSONL)")
    c.add_argument("--val", required=True, help="the line search's validation benchmark")
    c.add_argument("--multipliers", type=float, nargs="+", required=True)
    c.add_argument("--out", required=True, help="one row per (step, multiplier), CSV")
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--device", default=None)

    c = add("export-fsdp", cmd_export_fsdp,
            "verl FSDP shards (global_step_N/actor) -> float32 HF safetensors checkpoint")
    c.add_argument("--actor-dir", required=True,
                   help="verl's global_step_N/actor (model_world_size_W_rank_R.pt, huggingface/)")
    c.add_argument("--out", required=True, help="output checkpoint directory")
    c.add_argument("--max-shard-gb", type=float, default=4.0, help="largest safetensors file")

    c = add("grade", cmd_grade, "grade JSONL lines carrying gold and response with math-verify")
    c.add_argument("--input", required=True)
    c.add_argument("--output", required=True)
    c.add_argument("--timeout", type=float, default=5.0, help="hard per-item timeout (s)")
    c.add_argument("--workers", type=int, default=2)

    c = add("tabulate-base-models", cmd_tabulate_base_models,
            "collect metrics rows into a CSV table and its Markdown rendering")
    c.add_argument("--metrics", nargs="+", required=True)
    c.add_argument("--out", required=True, help="CSV path; the .md goes beside it")

    c = add("tabulate-training", cmd_tabulate_training,
            "training curves, EffOPD speed-up and compute tables from the runs")
    c.add_argument("--eval-csvs", nargs="+", required=True,
                   help="per-run checkpoint scores (.../<method>/seed<seed>/<benchmark>.csv)")
    c.add_argument("--log-csvs", nargs="+", required=True, help="the runs' log.csv, same order")
    c.add_argument("--benchmark", required=True)
    c.add_argument("--curves", required=True)
    c.add_argument("--speedup", required=True)
    c.add_argument("--compute", required=True)
    c.add_argument("--speedup-settings", type=json_arg, default={},
                   help="the config's speedup block (JSON)")
    c.add_argument("--methods", type=methods_arg, default=None, help=METHODS_HELP)

    c = add("tabulate-ablation", cmd_tabulate_ablation,
            "EffOPD's step-size ablation: speed-up over OPD and final accuracy per variant")
    c.add_argument("--eval-csvs", nargs="+", required=True,
                   help="per-run checkpoint scores of OPD, EffOPD and every variant")
    c.add_argument("--log-csvs", nargs="+", required=True, help="the runs' log.csv, same order")
    c.add_argument("--effopd", type=json_arg, required=True,
                   help="the config's training.effopd block (JSON)")
    c.add_argument("--variants", type=json_arg, required=True,
                   help="the config's ablation.variants block (JSON)")
    c.add_argument("--out", required=True, help="effopd_ablation.csv; .md goes beside it")
    c.add_argument("--speedup-settings", type=json_arg, default={},
                   help="the config's speedup block (JSON)")

    c = add("tabulate-stepsize-map", cmd_tabulate_stepsize_map,
            "the step-size map: per (algorithm, lr) final accuracy, searches accepted, "
            "EffOPD's speed-up against OPD at the same and at the best learning rate")
    c.add_argument("--eval-csvs", nargs="+", required=True,
                   help="every cell's checkpoint scores (per-problem files beside them)")
    c.add_argument("--log-csvs", nargs="+", required=True, help="the runs' log.csv (any order)")
    c.add_argument("--search-csvs", nargs="+", required=True,
                   help="the EffOPD runs' effopd_search.csv")
    c.add_argument("--methods", type=methods_arg, required=True, help=METHODS_HELP)
    c.add_argument("--speedup-settings", type=json_arg, default={},
                   help="the config's speedup block (JSON)")
    c.add_argument("--out", required=True, help="stepsize_map.csv; the .md goes beside it")

    c = add("plot-stepsize-map", cmd_plot_stepsize_map,
            "figure: accuracy per cell and EffOPD's speed-up against the learning rate")
    c.add_argument("--table", required=True, help="stepsize_map.csv")
    c.add_argument("--curves", required=True, help="training_curves.csv")
    c.add_argument("--benchmark", required=True)
    c.add_argument("--out", required=True, help="PNG path; the PDF goes beside it")

    c = add("tabulate-line-scan", cmd_tabulate_line_scan,
            "the line scans of every scanned run in one table, and the best multipliers")
    c.add_argument("--scans", nargs="+", required=True, help="effopd line-scan outputs")
    c.add_argument("--out", required=True, help="line_scan.csv; the .md goes beside it")

    c = add("plot-line-scan", cmd_plot_line_scan,
            "figure: the best multiplier by validation accuracy and by reverse KL per step")
    c.add_argument("--table", required=True, help="line_scan.csv")
    c.add_argument("--out", required=True, help="PNG path; the PDF goes beside it")

    c = add("plot-training", cmd_plot_training,
            "figure: accuracy vs optimizer steps, generated tokens and CPU time")
    c.add_argument("--curves", required=True, help="training_curves.csv")
    c.add_argument("--benchmark", required=True)
    c.add_argument("--base-models", default=None, metavar="CSV",
                   help="base_models.csv: draw the teacher's accuracy as a reference line")
    c.add_argument("--methods", type=methods_arg, default=None, help=METHODS_HELP)
    c.add_argument("--out", required=True, help="PNG path; the PDF goes beside it")

    c = add("plot-speedup", cmd_plot_speedup,
            "figure: the speed-up estimator on every seed pair (fits, target, times)")
    c.add_argument("--curves", required=True, help="training_curves.csv")
    c.add_argument("--speedup", required=True, help="effopd_speedup.csv")
    c.add_argument("--benchmark", required=True)
    c.add_argument("--out", required=True, help="PNG path; the PDF goes beside it")

    c = add("tabulate-cross-scale", cmd_tabulate_cross_scale,
            "the model-scale sweep's cross-scale table from every scale's tables")
    c.add_argument("--scales", nargs="+", required=True, help="the scales, in order")
    for flag, what in (("--base-models", "base_models.csv"),
                       ("--curves", "training_curves.csv"), ("--claims", "claims.csv"),
                       ("--speedup", "effopd_speedup.csv"),
                       ("--embedding", "analysis/embedding_shift.csv"),
                       ("--provenance", "provenance.json")):
        c.add_argument(flag, nargs="+", required=True, help=f"each scale's {what}, same order")
    c.add_argument("--benchmark", required=True)
    c.add_argument("--out", required=True, help="cross_scale.csv; the .md goes beside it")

    c = add("plot-cross-scale", cmd_plot_cross_scale,
            "figure: OPD's gain, embedding shift and EffOPD's speed-up per student size")
    c.add_argument("--table", required=True, help="cross_scale.csv")
    c.add_argument("--out", required=True, help="PNG path; the PDF goes beside it")

    c = add("record-provenance", cmd_record_provenance,
            "sidecar JSON tying tables and figures to config, code, models and data")
    c.add_argument("--config", type=json_arg, required=True, help="the validated config")
    c.add_argument("--models", nargs="+", required=True, help="model dirs (with manifest)")
    c.add_argument("--data-manifests", nargs="*", default=[])
    c.add_argument("--data-files", nargs="*", default=[])
    c.add_argument("--outputs", nargs="+", required=True, help="tables and figures covered")
    c.add_argument("--out", required=True)

    from effopd.cli.analysis import register_analysis_commands

    register_analysis_commands(add)

    c = add("validate-config", cmd_validate_config, "validate a config file against the schema")
    c.add_argument("configfile")
    c.add_argument("--show", action="store_true", help="print the config with defaults filled")
    return parser


def main(argv: list[str] | None = None) -> int:
    from effopd.cpu_kernels import ENV_KEY, pin_cpu_kernels

    # The DAG passes its level (resources.cpu_kernels) in the environment; run by hand,
    # a command pins the default (avx2) too, so its CPU numbers equal the DAG's.
    pin_cpu_kernels(os.environ.get(ENV_KEY, "avx2"))
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        args.func(args)
    except Exception as err:  # one line naming the file and the fault, never a traceback
        message = error_line(err)
        if message is None:
            raise
        log.error("%s", message)
        return 1
    return 0


def error_line(err: BaseException) -> str | None:
    """The one-line message for a fault the user must fix; None for a bug (re-raised).

    Project errors (:class:`effopd.errors.EffopdError`), bad values and missing or
    unreadable files (``ValueError``, ``KeyError``, ``OSError``: the message names the
    file) and unreadable safetensors files.
    """
    from safetensors import SafetensorError

    from effopd.errors import EffopdError

    if isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
    elif isinstance(err, (EffopdError, ValueError, KeyError, OSError)):
        text = str(err)
    elif isinstance(err, SafetensorError):
        text = f"unreadable safetensors file: {err}"
    else:
        return None
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
