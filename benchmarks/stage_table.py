"""Stage table: where a DAG run's time goes, from Snakemake's benchmark files.

Every rule of the workflow has a ``benchmark:`` directive, so each job leaves one TSV
under ``results/<experiment>/benchmarks/<rule>[/<wildcards>].tsv`` with its wall time
(``s``), CPU time (``cpu_time``, user + system of the job and its children) and peak
resident memory (``max_rss``, MB). This script groups the jobs by rule (= stage) and
prints, as Markdown:

- the stage table: per rule, the number of jobs, summed wall and CPU seconds, the
  longest job, the largest peak RSS, the stage's share of the summed job wall time
  and, when start and end times are known, the stage's span (first start, last end,
  in seconds from the run's start), which shows what is on the critical path;
- the longest jobs;
- the run's total wall time from the first job's start to the last job's end, and the
  mean parallelism (summed job wall / total wall). The times come from the Snakemake
  log (``--snakemake-log``, timestamps to the second) or else from the benchmark
  files' modification times (end = mtime, start = end - s), which are only meaningful
  for files a run just wrote, not for a fresh git checkout (``--no-mtimes``). The
  output says which source it used.

CPU time is the number to compare across runs on a shared machine: wall time grows
with other people's load, CPU time much less. Snakemake samples it (psutil, every 0.5 s
at first, then less often), so processes that live between two samples, such as
short grading workers, can be missed: read it as a lower bound.

Usage::

    python benchmarks/stage_table.py results/tiny/benchmarks
    python benchmarks/stage_table.py results/tiny/benchmarks --snakemake-log .snakemake/log/X.log
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass
class Job:
    """One job's benchmark record."""

    rule: str
    name: str  # the file's path under the benchmarks root, without .tsv
    wall_s: float
    cpu_s: float  # NaN when Snakemake could not sample the process
    max_rss_mb: float  # NaN likewise
    start: float | None = None  # seconds since the epoch, when known
    end: float | None = None


def _number(text: str) -> float:
    """A benchmark field as a float; ``NA`` (process too short to sample) is NaN."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_benchmarks(root: str | Path, use_mtimes: bool = True) -> list[Job]:
    """Every ``*.tsv`` under ``root``: its rule is the first path component (the file's
    stem for a rule without wildcards). A file with several rows (``repeat``) counts
    its mean. Raises ValueError naming the file when a file has no ``s`` column."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no benchmarks directory {root}")
    jobs = []
    for path in sorted(root.rglob("*.tsv")):
        relative = path.relative_to(root).with_suffix("")
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows or "s" not in rows[0]:
            raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' column)")

        def mean(key: str, rows: list[dict[str, str]] = rows) -> float:
            return sum(_number(row.get(key, "NA")) for row in rows) / len(rows)

        job = Job(rule=relative.parts[0], name=str(relative), wall_s=mean("s"),
                  cpu_s=mean("cpu_time"), max_rss_mb=mean("max_rss"))
        if use_mtimes:
            job.end = path.stat().st_mtime
            job.start = job.end - job.wall_s
        jobs.append(job)
    if not jobs:
        raise ValueError(f"{root}: no benchmark files (*.tsv)")
    return jobs


_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_START = re.compile(r"^(?:local)?rule (\w+):$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def parse_snakemake_log(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """Per rule, the (start, end) of each finished job in a Snakemake log, seconds since
    the epoch (the log's timestamps have a resolution of one second)."""
    stamp: float | None = None
    rule: str | None = None
    started: dict[str, tuple[str, float]] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for line in Path(path).read_text().splitlines():
        if match := _STAMP.match(line):
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
            rule = None
        elif (match := _START.match(line)) and stamp is not None:
            rule = match.group(1)
        elif (match := _JOBID.match(line)) and rule is not None:
            started[match.group(1)] = (rule, stamp)
            rule = None
        elif (match := _FINISHED.match(line)) and match.group(1) in started:
            name, begin = started.pop(match.group(1))
            spans.setdefault(name, []).append((begin, stamp))
    return spans


def attach_log_times(jobs: list[Job], spans: dict[str, list[tuple[float, float]]]) -> None:
    """Give each job its start and end from the log: a rule's jobs and the log's spans
    are matched in order of duration (the log does not name the benchmark files)."""
    for rule in {job.rule for job in jobs}:
        mine = sorted((j for j in jobs if j.rule == rule), key=lambda j: j.wall_s)
        theirs = sorted(spans.get(rule, []), key=lambda span: span[1] - span[0])
        if len(mine) != len(theirs):
            raise ValueError(f"rule {rule}: {len(mine)} benchmark files but "
                             f"{len(theirs)} finished jobs in the Snakemake log")
        for job, (begin, end) in zip(mine, theirs, strict=True):
            job.start, job.end = begin, end


def run_span(jobs: list[Job]) -> tuple[float, float] | None:
    """(first start, last end) of the run, or None when the jobs carry no times."""
    if any(job.start is None for job in jobs):
        return None
    return min(job.start for job in jobs), max(job.end for job in jobs)


def stage_rows(jobs: list[Job]) -> list[dict[str, object]]:
    """One row per rule, largest summed wall first: jobs, wall, CPU, longest job, peak
    RSS, share of the summed job wall time, and the span relative to the run's start."""
    total = sum(job.wall_s for job in jobs)
    span = run_span(jobs)
    rows = []
    for rule in sorted({job.rule for job in jobs}):
        mine = [job for job in jobs if job.rule == rule]
        wall = sum(job.wall_s for job in mine)
        rss = [job.max_rss_mb for job in mine if not math.isnan(job.max_rss_mb)]
        row: dict[str, object] = {
            "stage": rule, "jobs": len(mine), "wall_s": wall,
            "cpu_s": sum(0.0 if math.isnan(job.cpu_s) else job.cpu_s for job in mine),
            "longest_s": max(job.wall_s for job in mine),
            "max_rss_mb": max(rss) if rss else math.nan,
            "share": wall / total if total else math.nan,
        }
        if span is not None:
            row["from_s"] = min(job.start for job in mine) - span[0]
            row["to_s"] = max(job.end for job in mine) - span[0]
        rows.append(row)
    return sorted(rows, key=lambda row: -row["wall_s"])


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NA"
        return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}"
    return str(value)


def markdown(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(jobs: list[Job], source: str, top: int = 10) -> str:
    """The stage table, the longest jobs and the run's totals, as Markdown."""
    rows = stage_rows(jobs)
    timed = "from_s" in rows[0]
    header = ["stage", "jobs", "wall s", "CPU s", "longest job s", "max RSS MB", "share"]
    if timed:
        header += ["from s", "to s"]
    table = []
    for row in rows:
        cells = [row["stage"], row["jobs"], row["wall_s"], row["cpu_s"], row["longest_s"],
                 row["max_rss_mb"], f"{100 * row['share']:.1f}%"]
        if timed:
            cells += [row["from_s"], row["to_s"]]
        table.append(cells)
    wall = sum(job.wall_s for job in jobs)
    cpu = sum(0.0 if math.isnan(job.cpu_s) else job.cpu_s for job in jobs)
    table.append(["**total**", len(jobs), wall, cpu, max(job.wall_s for job in jobs),
                  max((j.max_rss_mb for j in jobs if not math.isnan(j.max_rss_mb)),
                      default=math.nan), "100.0%", *(["", ""] if timed else [])])
    longest = sorted(jobs, key=lambda job: -job.wall_s)[:top]
    parts = ["## Stages", "", markdown(header, table), "",
             f"## The {len(longest)} longest jobs", "",
             markdown(["job", "wall s", "CPU s", "max RSS MB"],
                      [[job.name, job.wall_s, job.cpu_s, job.max_rss_mb] for job in longest]),
             ""]
    span = run_span(jobs)
    if span is None:
        parts.append(f"Run wall time: not derivable ({source}). Summed job wall "
                     f"{wall:.0f} s, summed CPU {cpu:.0f} s.")
    else:
        total = span[1] - span[0]
        parts.append(f"Run wall time (first start to last end, {source}): {total:.0f} s "
                     f"({total / 60:.1f} min); summed job wall {wall:.0f} s, summed CPU "
                     f"{cpu:.0f} s; mean parallelism {wall / total:.2f} jobs.")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="a results/<experiment>/benchmarks directory")
    parser.add_argument("--snakemake-log", help="the run's .snakemake/log/*.snakemake.log")
    parser.add_argument("--no-mtimes", action="store_true",
                        help="do not read start and end times from file mtimes")
    parser.add_argument("--top", type=int, default=10, help="how many longest jobs to list")
    args = parser.parse_args(argv)
    jobs = read_benchmarks(args.root, use_mtimes=not args.no_mtimes)
    if args.snakemake_log:
        attach_log_times(jobs, parse_snakemake_log(args.snakemake_log))
        source = f"times from the Snakemake log {args.snakemake_log}"
    elif args.no_mtimes:
        source = "no log given and file mtimes not used"
    else:
        source = "times from the benchmark files' mtimes"
    print(report(jobs, source, top=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
