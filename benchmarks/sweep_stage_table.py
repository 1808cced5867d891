"""Stage table of a model-scale sweep (config key ``scales``): every scale's jobs and the
sweep's own, from their Snakemake benchmark files, as ``stage_table.py`` prints them.

A sweep's scale ``s`` writes its benchmark files under ``results/<sweep>/<s>/benchmarks``
and names its rules ``scale_<s>_<rule>`` (workflow/rules/scales.smk); the cross-scale
rules write under ``results/<sweep>/benchmarks``. This script reads them all with the
scale in each stage's name, so a Snakemake log of the sweep's run gives every job its
start and end::

    python benchmarks/sweep_stage_table.py results/scales --snakemake-log .snakemake/log/X.log
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stage_table import attach_log_times, parse_snakemake_log, read_benchmarks, report


def sweep_jobs(root: str | Path, use_mtimes: bool = True) -> list:
    """Every job of the sweep under ``root`` (results/<sweep>): a scale's rule named as
    the sweep's Snakefile names it (``scale_<s>_<rule>``)."""
    root = Path(root)
    jobs = []
    for benchmarks in sorted(root.glob("*/benchmarks")):
        scale = benchmarks.parent.name
        for job in read_benchmarks(benchmarks, use_mtimes):
            job.rule, job.name = f"scale_{scale}_{job.rule}", f"{scale}/{job.name}"
            jobs.append(job)
    if (root / "benchmarks").is_dir():
        jobs += read_benchmarks(root / "benchmarks", use_mtimes)
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="the sweep's results/<experiment> directory")
    parser.add_argument("--snakemake-log", help="the run's .snakemake/log/*.snakemake.log")
    parser.add_argument("--top", type=int, default=10, help="how many longest jobs to list")
    args = parser.parse_args(argv)
    jobs = sweep_jobs(args.root)
    source = "times from the benchmark files' mtimes"
    if args.snakemake_log:
        attach_log_times(jobs, parse_snakemake_log(args.snakemake_log))
        source = f"times from the Snakemake log {Path(args.snakemake_log).name}"
    print(report(jobs, source, top=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
