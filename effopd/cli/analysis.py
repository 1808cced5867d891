"""Subcommands of ``effopd`` for the checkpoint-series analyses (``effopd analyze`` etc.).

- ``analyze``           weight analyses of a series: update norms, module allocation,
                        spectra, alignment (and the embedding shift, given generations)
- ``evaluate-scaling``  accuracy of theta_0 + alpha * Delta, final and early checkpoint
- ``evaluate-modules``  accuracy with one part of the final update injected into theta_0
- ``evaluate-rank-k``   accuracy of the rank-k rescaled final update
- ``evaluate-interventions``  the three above in one process (the DAG's rule: one
                        start-up, one load of the series, for all of a run's interventions)
- ``tabulate-analysis`` the analysis tables of every run (mean and 95% CI over seeds)
- ``plot-analysis``     the analysis figures, from those tables

A series is either a training run's ``--index checkpoints.csv`` or
``--checkpoints DIR [DIR ...]`` (steps parsed from the paths, or ``--steps``).
Every table written carries the run's identity (method, seed) in its first
columns: from the index, or from ``--run METHOD SEED``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from effopd.analysis import settings
from effopd.cli.args import METHODS_HELP, AddCommand, json_arg, limit_arg, methods_arg, set_threads

if TYPE_CHECKING:
    from effopd.analysis.scoring import EvalSettings
    from effopd.analysis.series import Series


def _series(args: argparse.Namespace) -> Series:
    from effopd.analysis.series import series_from_dirs, series_from_index, verify_series

    if args.index:
        if args.checkpoints:
            raise ValueError("give either --index or --checkpoints, not both")
        series = series_from_index(args.index, args.base)
        if args.final:
            raise ValueError("--final goes with --checkpoints; an index's final is its last step")
        if args.run:
            raise ValueError("--run goes with --checkpoints; an index names its run")
    elif not args.checkpoints:
        raise ValueError("give the checkpoints: --index CSV or --checkpoints DIR [DIR ...]")
    else:
        from dataclasses import replace

        series = series_from_dirs(args.base, args.checkpoints, args.labels, args.steps,
                                  args.final)
        if args.run:
            method, seed = args.run
            if not seed.isdigit():
                raise ValueError(f"--run {method} {seed}: the seed is a whole number >= 0")
            series = replace(series, run={"method": method, "seed": int(seed)})
    verify_series(series, sha256=args.verify_sha256)
    return series


def _settings(args: argparse.Namespace) -> EvalSettings:
    from pathlib import Path

    from effopd.analysis import scoring

    return scoring.EvalSettings(benchmark=Path(args.benchmark), prompt=args.prompt,
                                generation=args.generation, grading=args.grading,
                                pass_k=tuple(args.pass_k), limit=args.limit,
                                n=args.n, device=args.device,
                                min_cast_survival=args.min_cast_survival)


def cmd_analyze(args: argparse.Namespace) -> None:
    from effopd.analysis import weight_pass

    set_threads(args.threads)
    series = _series(args)
    written = weight_pass.analyze_series(series, args.out_dir, ks=args.ks,
                                         alignment_ks=args.alignment_ks,
                                         method=args.svd_method, samples=args.samples,
                                         device=args.device, progress=args.progress)
    weight_pass.log.info("wrote %s", ", ".join(str(p) for p in written.values()))


def _run_scaling(args: argparse.Namespace, series: Series, work_dir: str, out: str) -> None:
    from effopd.analysis import recipes

    selection = None
    if args.selection_benchmark:
        from dataclasses import replace
        from pathlib import Path

        selection = replace(_settings(args), benchmark=Path(args.selection_benchmark),
                            limit=None)
    recipes.run_scaling(series, _settings(args), work_dir, out,
                        alphas=args.alphas, early_fraction=args.early_fraction,
                        keep_checkpoints=args.keep_checkpoints,
                        early_alphas=args.early_alphas, selection=selection)


def _run_modules(args: argparse.Namespace, series: Series, work_dir: str, out: str) -> None:
    from effopd.analysis import recipes

    recipes.run_modules(series, _settings(args), work_dir, out,
                        window_size=args.window_size, window_stride=args.window_stride,
                        keep_checkpoints=args.keep_checkpoints)


def _run_rank_k(args: argparse.Namespace, series: Series, work_dir: str, out: str) -> None:
    from effopd.analysis import recipes

    recipes.run_rank_k(series, _settings(args), work_dir, out, ks=args.ks,
                       alpha=args.alpha, method=args.svd_method,
                       keep_checkpoints=args.keep_checkpoints)


def cmd_evaluate_scaling(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    _run_scaling(args, _series(args), args.work_dir, args.out)


def cmd_evaluate_modules(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    _run_modules(args, _series(args), args.work_dir, args.out)


def cmd_evaluate_rank_k(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    _run_rank_k(args, _series(args), args.work_dir, args.out)


def cmd_evaluate_interventions(args: argparse.Namespace) -> None:
    """Scaling, module and rank-k interventions of one series, in one process: each
    writes its own CSV and keeps its own work directory (``WORK_DIR/<analysis>``),
    exactly as the three separate commands would."""
    from pathlib import Path

    set_threads(args.threads)
    series = _series(args)
    work = Path(args.work_dir)
    _run_scaling(args, series, str(work / "scaling"), args.scaling_out)
    _run_modules(args, series, str(work / "modules"), args.modules_out)
    _run_rank_k(args, series, str(work / "rank_k"), args.rank_k_out)


def cmd_tabulate_analysis(args: argparse.Namespace) -> None:
    from effopd.reports.analysis import write_analysis_tables

    write_analysis_tables(args.run_dirs, args.eval_csvs, args.out_dir,
                          early_fraction=args.early_fraction,
                          projection_max_tokens=args.projection_max_tokens)


def cmd_tabulate_claims(args: argparse.Namespace) -> None:
    from effopd.config import block_defaults
    from effopd.reports.claims import write_claims
    from effopd.reports.training import teacher_accuracy

    speedup = block_defaults("speedup", args.speedup_settings)
    write_claims(args.run_dirs, args.speedup, args.out, args.claims["k"], args.early_fraction,
                 args.claims, speedup["non_inferiority_margin"], args.opd_evals,
                 speedup["plateau_fraction"], teacher_accuracy(args.base_models, args.benchmark),
                 args.methods)


def cmd_plot_analysis(args: argparse.Namespace) -> None:
    from effopd.plots.analysis import plot_analysis_figures

    plot_analysis_figures(args.tables_dir, args.out_dir, benchmark=args.benchmark,
                          plot_k=args.plot_k)


def _series_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--base", required=True, help="base (initial) model directory, theta_0")
    command.add_argument("--index", default=None,
                         help="a training run's checkpoints.csv (columns method, seed, step, "
                              "path)")
    command.add_argument("--checkpoints", nargs="+", default=None, metavar="DIR",
                         help="Hugging Face checkpoint directories (instead of --index)")
    command.add_argument("--labels", nargs="+", default=None,
                         help="names of the checkpoints (default: directory names)")
    command.add_argument("--steps", nargs="+", type=int, default=None,
                         help="training steps of the checkpoints (default: parsed from paths, "
                              "e.g. step_000050, global_step_50, checkpoint-50)")
    command.add_argument("--final", default=None,
                         help="the final checkpoint (default: the last by step)")
    command.add_argument("--run", nargs=2, default=None, metavar=("METHOD", "SEED"),
                         help="the training run the checkpoints belong to, written as the "
                              "method and seed columns of every table (with --checkpoints; "
                              "an --index names its run; the reports need it)")
    command.add_argument("--device", default="auto",
                         help="torch device of the arithmetic (auto: cuda if present)")
    command.add_argument("--threads", type=int, default=None)
    command.add_argument("--verify-sha256", action=argparse.BooleanOptionalAction,
                         default=True,
                         help="check every file's sha256 against its manifest before reading "
                              "(default, as in the DAG; --no-verify-sha256 skips it for speed: "
                              "sizes and safetensors headers are always checked)")


def _evaluation_arguments(command: argparse.ArgumentParser, one_output: bool = True) -> None:
    command.add_argument("--benchmark", required=True, help="prepared benchmark JSONL")
    command.add_argument("--prompt", type=json_arg, default={}, help="the config's prompt block")
    command.add_argument("--generation", type=json_arg, default={},
                         help="the config's generation block (its n is replaced by --n)")
    command.add_argument("--grading", type=json_arg, default={}, help="the config's grading block")
    command.add_argument("--pass-k", type=int, nargs="+", default=[1])
    command.add_argument("--limit", type=limit_arg, default=settings.EVAL_LIMIT,
                         help="score the first LIMIT problems ('all': every problem)")
    command.add_argument("--n", type=int, default=settings.EVAL_N, help="samples per problem")
    command.add_argument("--min-cast-survival", type=float, default=0.0,
                         help="refuse a built intervention when fewer of its changed elements "
                              "survive the cast to the evaluation dtype (0: never)")
    command.add_argument("--work-dir", required=True,
                         help="built checkpoints (deleted once scored), samples, score cache")
    if one_output:
        command.add_argument("--out", required=True, help="one row per scored model (CSV)")
    command.add_argument("--keep-checkpoints", action="store_true",
                         help="keep the built checkpoints under WORK_DIR/checkpoints")


def _scaling_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--alphas", type=float, nargs="+", default=list(settings.SCALING_ALPHAS))
    c.add_argument("--early-alphas", type=float, nargs="+", default=None,
                   help="alphas of the early checkpoint (default 0, 0.5, 1, 2, ..., "
                        "ceil(1 / early fraction))")
    c.add_argument("--selection-benchmark", default=None,
                   help="validation benchmark on which the early checkpoint's best alpha "
                        "is chosen (all its problems)")
    c.add_argument("--early-fraction", type=float, default=settings.EARLY_FRACTION,
                   help="the early checkpoint is the one closest to this fraction of training")


def _module_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--window-size", type=int, default=settings.WINDOW_SIZE,
                   help="layers per window (clipped to the number of layers)")
    c.add_argument("--window-stride", type=int, default=settings.WINDOW_STRIDE)


def _rank_k_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--ks", type=int, nargs="+", default=list(settings.RANK_KS))
    c.add_argument("--alpha", type=float, default=1.0)
    c.add_argument("--svd-method", default="gram", choices=["gram", "svd"])


def _run_results_arguments(command: argparse.ArgumentParser, eval_csvs: bool = True) -> None:
    """The committed per-run results that the table commands read (``eval_csvs``: the
    command reads the runs' checkpoint scores; else ``--eval-csvs`` is accepted, unread)."""
    command.add_argument("--run-dirs", nargs="+", required=True,
                         help="per-run analysis directories (.../<method>/seed<seed>)")
    if eval_csvs:
        command.add_argument("--eval-csvs", nargs="+", required=True,
                             help="the runs' checkpoint scores "
                                  "(.../<method>/seed<seed>/<bench>.csv)")
    else:
        command.add_argument("--eval-csvs", nargs="+", default=None,
                             help="not read (the claims take the scores they need from "
                                  "--opd-evals); accepted so older command lines still run")
    command.add_argument("--early-fraction", type=float, default=settings.EARLY_FRACTION,
                         help="training fraction of the early checkpoint")


def register_analysis_commands(add: AddCommand) -> None:
    """Register the analysis subcommands with the main parser's ``add`` helper."""
    c = add("analyze", cmd_analyze,
            "update norms, module allocation, spectra, subspace alignment (and embedding "
            "shift) of a checkpoint series, streamed in float32")
    _series_arguments(c)
    c.add_argument("--out-dir", required=True, help="where the CSV tables go")
    c.add_argument("--ks", type=int, nargs="+", default=list(settings.SPECTRA_KS),
                   help="k of the top-k energy shares and rank-k norm ratios")
    c.add_argument("--alignment-ks", type=int, nargs="+", default=list(settings.ALIGNMENT_KS),
                   help="k of the subspace overlaps with the final update")
    c.add_argument("--svd-method", default="gram", choices=["gram", "svd"])
    c.add_argument("--samples", default=None,
                   help="generations of the final checkpoint (JSONL with 'response', or a "
                        "directory of step_XXXXXX.jsonl): adds the embedding shift")
    c.add_argument("--progress", action="store_true", help="progress bars")

    c = add("evaluate-scaling", cmd_evaluate_scaling,
            "accuracy of theta_0 + alpha * Delta for the final and an early checkpoint")
    _series_arguments(c)
    _evaluation_arguments(c)
    _scaling_arguments(c)

    c = add("evaluate-modules", cmd_evaluate_modules,
            "accuracy of theta_0 plus one part of the final update (layer windows, MLP, "
            "attention, embeddings)")
    _series_arguments(c)
    _evaluation_arguments(c)
    _module_arguments(c)

    c = add("evaluate-rank-k", cmd_evaluate_rank_k,
            "accuracy of theta_0 + alpha (|Delta|/|Delta_k|) Delta_k of the final update")
    _series_arguments(c)
    _evaluation_arguments(c)
    _rank_k_arguments(c)

    c = add("evaluate-interventions", cmd_evaluate_interventions,
            "evaluate-scaling, evaluate-modules and evaluate-rank-k of one series in one "
            "process")
    _series_arguments(c)
    _evaluation_arguments(c, one_output=False)
    _scaling_arguments(c)
    _module_arguments(c)
    _rank_k_arguments(c)
    c.add_argument("--scaling-out", required=True, help="scaling.csv")
    c.add_argument("--modules-out", required=True, help="modules.csv")
    c.add_argument("--rank-k-out", required=True, help="rank_k.csv")

    c = add("tabulate-analysis", cmd_tabulate_analysis,
            "analysis tables of every run: mean and 95%% CI over seeds (CSV + Markdown)")
    _run_results_arguments(c)
    c.add_argument("--out-dir", required=True)
    c.add_argument("--projection-max-tokens", type=int, default=settings.PROJECTION_MAX_TOKENS,
                   help="tokens per method kept for the embedding picture")

    c = add("tabulate-claims", cmd_tabulate_claims,
            "the claims table: metric, measured value and verdict for each claim")
    _run_results_arguments(c, eval_csvs=False)
    c.add_argument("--speedup", required=True, help="effopd_speedup.csv")
    c.add_argument("--opd-evals", nargs="+", default=None, metavar="CSV",
                   help="OPD runs' evaluate-series CSVs (per-problem files beside them): adds "
                        "the preconditions (OPD learns, ends on a plateau)")
    c.add_argument("--claims", type=json_arg, required=True,
                   help="the config's claims block (JSON, defaults filled)")
    c.add_argument("--speedup-settings", type=json_arg, default={},
                   help="the config's speedup block (JSON)")
    c.add_argument("--base-models", default=None, metavar="CSV",
                   help="base_models.csv: row 0a states the share of the teacher-student gap "
                        "OPD closed (needs --benchmark)")
    c.add_argument("--benchmark", default=None, help="the benchmark of --opd-evals")
    c.add_argument("--methods", type=methods_arg, default=None, help=METHODS_HELP)
    c.add_argument("--out", required=True, help="claims.csv; claims.md goes beside it")

    c = add("plot-analysis", cmd_plot_analysis, "analysis figures (PNG + PDF) from the tables")
    c.add_argument("--tables-dir", required=True, help="the tabulate-analysis output directory")
    c.add_argument("--out-dir", required=True)
    c.add_argument("--benchmark", default="", help="benchmark name for the accuracy axes")
    c.add_argument("--plot-k", type=int, default=settings.PLOT_K,
                   help="k of the subspace overlaps drawn against training fraction")
