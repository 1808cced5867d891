"""Bad inputs (issue 21): every one must be refused by the real ``effopd`` command with a
non-zero exit and one line naming the file, key or value (no traceback).

Kinds: configs that break a rule across keys or YAML (``effopd validate-config``),
damaged copies of the committed tiny results (``effopd tabulate-training`` and
``tabulate-analysis``), bad benchmark and training files, a directory that is not a
checkpoint and bad flags (``effopd evaluate`` and ``train``). Prints one row per input
and, as its last line, ``bad inputs refused K/K``.

    python tools/bad_inputs.py          # about a minute on 2 cores
    python tools/fault_injection.py --inputs   # the same
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EFFOPD = [sys.executable, "-m", "effopd.cli"]
SMOKE = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
TINY = REPO / "results/tiny"


def run(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([*EFFOPD, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=600)


def refused(result: subprocess.CompletedProcess, fragment: str) -> tuple[bool, str]:
    """Non-zero exit, no traceback, exactly one error line, and it holds ``fragment``."""
    errors = [line.split(" ERROR effopd: ", 1)[1] for line in result.stderr.splitlines()
              if " ERROR effopd: " in line]
    ok = (result.returncode != 0 and "Traceback" not in result.stderr and len(errors) == 1
          and fragment in errors[0])
    return ok, errors[0] if errors else result.stderr.strip()[-200:]


# --------------------------------------------------------------------------- configs

def mutated(mutate: Callable[[dict], None]) -> dict:
    config = json.loads(json.dumps(SMOKE))
    mutate(config)
    return config


CONFIGS: list[tuple[str, Callable[[dict], None], str]] = [
    ("duplicate seeds", lambda c: c.update(seeds=[0, 0]), "key 'seeds'"),
    ("unknown validation_benchmark",
     lambda c: c["training"]["effopd"].update(validation_benchmark="nope"),
     "key 'training/effopd/validation_benchmark'"),
    ("unknown base_benchmarks", lambda c: c["evaluation"].update(base_benchmarks=["nope"]),
     "key 'evaluation/base_benchmarks'"),
    ("unknown series_benchmarks", lambda c: c["evaluation"].update(series_benchmarks=["nope"]),
     "key 'evaluation/series_benchmarks'"),
    ("unknown selection_benchmark", lambda c: c["analysis"].update(selection_benchmark="nope"),
     "key 'analysis/selection_benchmark'"),
    ("save grid beyond steps", lambda c: c["training"].update(save_every=8),
     "key 'training/save_every'"),
    ("claims k not in spectra_ks", lambda c: c["analysis"].update(spectra_ks=[1, 2]),
     "key 'claims/k'"),
    ("heads not divisible by kv heads",
     lambda c: c["models"]["teacher"]["arch"].update(num_attention_heads=3,
                                                     num_key_value_heads=2),
     "key 'models/teacher/arch'"),
    ("min_ops > max_ops", lambda c: c["task"].update(min_ops=3, max_ops=2), "key 'task/min_ops'"),
    ("beta outside [0, 1)", lambda c: c["training"].update(betas=[0.9, 1.5]),
     "key 'training/betas'"),
    ("steps: 4.0", lambda c: c["training"].update(steps=4.0), "key 'training/steps'"),
    ("n_train < prompts_per_step", lambda c: c["task"].update(n_train=5), "key 'task/n_train'"),
]


def config_cases(work: Path) -> list[dict]:
    rows = []
    for name, mutate, fragment in CONFIGS:
        path = work / "config.yaml"
        path.write_text(yaml.safe_dump(mutated(mutate)))
        rows.append((name, run("validate-config", path), f"{path}: invalid config: {fragment}"))
    twice = work / "twice.yaml"
    twice.write_text((REPO / "config/smoke.yaml").read_text()
                     .replace("seeds: [0]", "seeds: [0]\nseeds: [1]"))
    rows.append(("duplicate YAML key", run("validate-config", twice),
                 f"{twice}: not valid YAML: key 'seeds' appears twice"))
    return rows


# --------------------------------------------------------------------------- tables

def tabulate_training(results: Path, out: Path) -> subprocess.CompletedProcess:
    evals = sorted(results.glob("eval/runs/*/seed*/tiny_test.csv"))
    logs = [results / "train" / e.parent.parent.name / e.parent.name / "log.csv" for e in evals]
    return run("tabulate-training", "--eval-csvs", *evals, "--log-csvs", *logs,
               "--benchmark", "tiny_test", "--curves", out / "curves.csv", "--speedup",
               out / "speedup.csv", "--compute", out / "compute.csv", "--speedup-settings",
               json.dumps({"bootstrap": 100}))


def tabulate_analysis(results: Path, out: Path) -> subprocess.CompletedProcess:
    runs = sorted(results.glob("analysis/*/seed*"))
    evals = [results / "eval/runs" / r.parent.name / r.name / "tiny_test.csv" for r in runs]
    return run("tabulate-analysis", "--run-dirs", *runs, "--eval-csvs", *evals,
               "--out-dir", out / "analysis")


def set_cell(path: Path, column: str, value: str) -> None:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.loc[1, column] = value
    table.to_csv(path, index=False)


def set_cell_all(path: Path, column: str, value: str) -> None:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table[column] = value
    table.to_csv(path, index=False)


def table_cases(work: Path) -> list[dict]:
    eval_csv = "eval/runs/opd/seed0/tiny_test.csv"
    problems = "eval/runs/rl/seed1/tiny_test.problems.csv"
    norms = "analysis/opd/seed1/update_norms.csv"

    def duplicate(path: Path) -> None:
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join([*lines, lines[2]]))

    def truncate(path: Path) -> None:
        lines = path.read_text().splitlines(keepends=True)
        lines[3] = ",".join(lines[3].split(",")[:5]) + "\n"
        path.write_text("".join(lines))

    cases = [
        ("duplicated eval row", eval_csv, duplicate, tabulate_training,
         "rows 3 and 11 share the key (step=1)"),
        ("truncated problems row", problems, truncate, tabulate_training, "row 4 has 5 fields"),
        ("impossible accuracy", eval_csv, lambda p: set_cell(p, "avg@n", "1.5"),
         tabulate_training, "row 3: column 'avg@n' is 1.5"),
        ("non-numeric analysis cell", norms, lambda p: set_cell(p, "block_norm", "0.2x"),
         tabulate_analysis, "row 3: column 'block_norm' is '0.2x'"),
        ("empty analysis file", norms, lambda p: p.write_text(""), tabulate_analysis,
         "empty file"),
        ("binary analysis file", norms, lambda p: p.write_bytes(bytes(range(256))),
         tabulate_analysis, "a binary file"),
        ("log of another run", "train/rl/seed1/log.csv",
         lambda p: shutil.copyfile(p.parents[2] / "opd/seed0/log.csv", p), tabulate_training,
         "run method=opd seed=0 again"),
        ("eval series without its run", eval_csv,
         lambda p: set_cell_all(p, "seed", "7"), tabulate_training,
         "run method=opd seed=7 has no file among the training logs"),
        ("analysis file of two runs", norms, lambda p: set_cell(p, "seed", "0"),
         tabulate_analysis, "column 'seed' holds 2 values"),
    ]
    rows = []
    for name, relative, damage, command, fragment in cases:
        results = work / "results"
        shutil.rmtree(results, ignore_errors=True)
        shutil.copytree(TINY, results)
        damage(results / relative)
        rows.append((name, command(results, work / "out"), f"{results / relative}: {fragment}"))
    return rows


# ---------------------------------------------------------------- data, checkpoints, flags

def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def tiny_model(out: Path) -> Path:
    from effopd.models.checkpoint import save_checkpoint
    from effopd.models.tiny import init_tiny_qwen3
    from effopd.models.tokenizer import build_char_tokenizer
    from effopd.prompts import DEFAULT_INSTRUCTION

    tokenizer = build_char_tokenizer([DEFAULT_INSTRUCTION])
    model = init_tiny_qwen3(SMOKE["models"]["student"]["arch"], tokenizer, seed=0)
    save_checkpoint(model, tokenizer, out, {"source": "bad_inputs"})
    return out


def command_cases(work: Path) -> list[dict]:
    from effopd.config import validate_config

    model = tiny_model(work / "model")
    good = write_jsonl(work / "good.jsonl", [{"id": "a", "problem": "1+1", "answer": "2"}])
    bad = write_jsonl(work / "bench.jsonl", [{"id": "a", "question": "1+1", "answer": "2"}])
    empty = work / "empty"
    empty.mkdir(exist_ok=True)

    def evaluate(model_dir: Path, benchmark: Path, *extra: str) -> subprocess.CompletedProcess:
        return run("evaluate", "--model", model_dir, "--benchmark", benchmark, "--label", "x",
                   "--samples", work / "s.jsonl", "--metrics", work / "m.json", *extra)

    config = validate_config(mutated(lambda c: None))

    def train(train_file: Path) -> subprocess.CompletedProcess:
        return run("train", "--method", "rl", "--seed", "0", "--training",
                   json.dumps(config["training"]), "--grading", json.dumps(config["grading"]),
                   "--prompt", json.dumps(config["prompt"]), "--student", model, "--train",
                   train_file, "--run-dir", work / "run", "--log-csv", work / "log.csv",
                   "--search-csv", work / "search.csv", "--index-csv", work / "index.csv")

    no_question = write_jsonl(work / "train.jsonl", [{"problem": "1+1", "answer": "2"}] * 8)
    few = write_jsonl(work / "few.jsonl", [{"question": "1+1", "answer": "2"}])
    return [
        ("benchmark without problem", evaluate(model, bad), f"{bad}: row 1 has no key(s) problem"),
        ("not a checkpoint", evaluate(empty, good), f"{empty}: not a model checkpoint"),
        ("--threads -5", evaluate(model, good, "--threads", "-5"), "--threads -5: expected"),
        ("--threads 100000", evaluate(model, good, "--threads", "100000"),
         "--threads 100000: expected"),
        ("train file without question", train(no_question),
         f"{no_question}: row 1 has no key(s) question"),
        ("fewer rows than prompts_per_step", train(few),
         f"{few}: 1 training problems, fewer than prompts_per_step"),
    ]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bad_inputs.") as tmp:
        work = Path(tmp)
        cases = config_cases(work) + table_cases(work) + command_cases(work)
    rows = []
    for name, result, fragment in cases:
        ok, line = refused(result, fragment)
        rows.append({"input": name, "refused": ok, "exit": result.returncode,
                     "message": line[:110]})
    with pd.option_context("display.max_colwidth", 110, "display.width", 200):
        print(pd.DataFrame(rows).to_string(index=False))
    done = sum(row["refused"] for row in rows)
    print(f"\nbad inputs refused {done}/{len(rows)}")
    return 0 if done == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
