"""Benchmark: one training method through the local engine and through TRL, same seed.

Both runs start from the same student (and teacher) with the same config and
seed; each runs ``effopd train`` in its own subprocess, one after the other
(never side by side, so neither slows the other), then ``effopd evaluate``
scores its final checkpoint on the test benchmark. Printed per engine: final
avg@n on the test set, line searches that moved the weights (chosen
multiplier > 1), accepted candidates, wall and CPU seconds per step (the
logs' ``wall_s``; CPU from the process's ``ru_utime + ru_stime`` of the
training subprocess, grading workers included), and the search's share of
the wall time.

The engines differ in their objective (local: SPEC section 2's sampled-token
PPO-clip; TRL: ``DistillationTrainer``'s full-vocabulary reverse KL for
OPD/EffOPD) and in their prompt sampling, so equal seeds give different
trajectories; the comparison is of outcomes and cost, not of bits.

Inputs are the DAG's artifacts (build them with its rules, e.g.
``snakemake --directory SCRATCH artifacts/tiny/models/student ...``)::

    python benchmarks/trl_vs_local.py --config config/config.yaml \\
        --artifacts SCRATCH/artifacts/tiny --out SCRATCH/trl_vs_local [--steps 16]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def effopd_bin() -> str:
    return str(Path(sys.executable).with_name("effopd"))


def run(argv: list[str], log: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run ``argv``; return (wall s, CPU s of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as handle:
        subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - started, cpu


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--artifacts", required=True, help="the DAG's artifacts/<experiment>")
    parser.add_argument("--out", required=True)
    parser.add_argument("--method", default="effopd", choices=["opd", "effopd", "rl"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override training.steps")
    parser.add_argument("--engines", nargs="+", default=["local", "trl"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from effopd.config import load_config

    config = load_config(args.config)
    artifacts, out = Path(args.artifacts), Path(args.out)
    training = dict(config["training"])
    if args.steps:
        training["steps"] = args.steps
    validation = training["effopd"]["validation_benchmark"]
    test = config["evaluation"]["base_benchmarks"][0]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    table = []
    for engine in args.engines:
        run_dir = out / engine
        run_dir.mkdir(parents=True, exist_ok=True)
        train_argv = [
            effopd_bin(), "train", "--method", args.method, "--seed", str(args.seed),
            "--training", json.dumps({**training, "engine": engine}),
            "--grading", json.dumps(config["grading"]), "--prompt", json.dumps(config["prompt"]),
            "--student", str(artifacts / "models/student"),
            "--teacher", str(artifacts / "models/teacher"),
            "--train", str(artifacts / "data/train.jsonl"),
            "--val", str(artifacts / f"benchmarks/{validation}.jsonl"),
            "--run-dir", str(run_dir / "run"), "--log-csv", str(run_dir / "log.csv"),
            "--search-csv", str(run_dir / "effopd_search.csv"),
            "--index-csv", str(run_dir / "checkpoints.csv"), "--threads", str(args.threads)]
        wall, cpu = run(train_argv, run_dir / "train.log", env)
        final = read_rows(run_dir / "checkpoints.csv")[-1]["path"]
        metrics = run_dir / "final_metrics.json"
        run([effopd_bin(), "evaluate", "--model", final,
             "--benchmark", str(artifacts / f"benchmarks/{test}.jsonl"),
             "--label", f"{engine}/{args.method}", "--prompt", json.dumps(config["prompt"]),
             "--generation", json.dumps(config["generation"]),
             "--grading", json.dumps(config["grading"]),
             "--samples", str(run_dir / "final_samples.jsonl"), "--metrics", str(metrics),
             "--threads", str(args.threads)], run_dir / "evaluate.log", env)
        log = read_rows(run_dir / "log.csv")
        search = read_rows(run_dir / "effopd_search.csv")
        steps = len(log)
        moved = {r["step"] for r in search if r["accepted"] == "True" and r["iteration"] != "0"}
        table.append({
            "engine": engine, "steps": steps,
            f"{test} avg@n": json.loads(metrics.read_text())["avg@n"],
            "searches": len({r["step"] for r in search}), "searches moved": len(moved),
            "accepted candidates": sum(r["accepted"] == "True" and r["iteration"] != "0"
                                       for r in search),
            "wall s/step": float(log[-1]["wall_s"]) / steps,
            "process wall s/step": wall / steps, "cpu s/step": cpu / steps,
            "search share": sum(float(r["search_s"]) for r in log) / float(log[-1]["wall_s"])})
    columns = list(table[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in table:
        print("| " + " | ".join(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c])
                                 for c in columns) + " |")
    (out / "table.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
