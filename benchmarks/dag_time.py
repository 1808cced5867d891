"""Benchmark: the whole DAG (``make run``) in a scratch directory, then its stage table.

Runs the real workflow from scratch (``snakemake -s <repo>/Snakefile --directory
<scratch>``, so nothing of the repository's committed results is touched), measures
its wall time, and prints the stage table of ``benchmarks/stage_table.py`` from the
run's benchmark files with the job times of its Snakemake log. The lead runs it on an
idle machine to report the time of ``make run``::

    python benchmarks/dag_time.py                          # config/config.yaml, all cores
    python benchmarks/dag_time.py --configfile config/smoke.yaml --cores 2 --keep

The scratch directory is deleted afterwards unless ``--keep`` or ``--scratch`` is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from stage_table import attach_log_times, parse_snakemake_log, read_benchmarks, report

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--cores", default="all")
    parser.add_argument("--scratch", help="run here (kept) instead of a temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("snakemake_args", nargs="*", help="more snakemake arguments (after --)")
    args = parser.parse_args(argv)
    configfile = Path(args.configfile).resolve()
    experiment = yaml.safe_load(configfile.read_text())["experiment"]
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="effopd-dag-"))
    scratch.mkdir(parents=True, exist_ok=True)
    snakemake = Path(sys.executable).parent / "snakemake"
    command = [str(snakemake if snakemake.exists() else "snakemake"), *args.snakemake_args,
               "-s", str(REPO / "Snakefile"), "--directory", str(scratch),
               "--cores", args.cores, "--configfile", str(configfile)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    print(f"running {' '.join(command)}", file=sys.stderr)
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=scratch)
    wall = time.perf_counter() - start
    try:
        if result.returncode != 0:
            print(f"snakemake failed (exit {result.returncode}) after {wall:.0f} s; "
                  f"scratch kept at {scratch}", file=sys.stderr)
            return result.returncode
        jobs = read_benchmarks(scratch / "results" / experiment / "benchmarks")
        logs = sorted((scratch / ".snakemake" / "log").glob("*.snakemake.log"))
        source = "times from the benchmark files' mtimes"
        if logs:
            attach_log_times(jobs, parse_snakemake_log(logs[-1]))
            source = "times from the Snakemake log"
        print(f"# DAG time: {configfile.name}, --cores {args.cores}\n")
        print(f"Wall time of the whole `snakemake` command (with DAG building): {wall:.0f} s "
              f"({wall / 60:.1f} min) on {os.cpu_count()} CPUs.\n")
        print(report(jobs, source))
    finally:
        if result.returncode == 0 and not (args.keep or args.scratch):
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
