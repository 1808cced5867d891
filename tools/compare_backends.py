"""The base student's avg@n under both generation backends, as a table (backends.csv).

Scores one model on one prepared benchmark with ``effopd evaluate`` twice, the config's
``generation`` block with ``backend: transformers`` (the ``effopd`` of ``--transformers-env``,
the main environment .venv) and ``backend: vllm`` (that of ``--vllm-env``, .venv-vllm), and
writes one row per backend: avg@n with its 95 % t
interval over problems (``effopd.reports.stats.mean_ci95`` of the per-problem rates), the
sampling settings, the generation time (vLLM's includes its engine start) and the sha256
of the model's weights; and one row ``vllm - transformers``: the mean
difference of the per-problem rates, its 95 % interval and the paired t test's p value
(the two backends sample the same model, so the difference has expectation 0).

    .venv/bin/python tools/compare_backends.py --config config/config.yaml \
        --model <artifacts>/models/student --benchmark <artifacts>/benchmarks/tiny_test.jsonl \
        --out results/tiny/tables/backends.csv
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
from scipy import stats

from effopd.config import load_config
from effopd.io import read_jsonl
from effopd.provenance import sha256_file
from effopd.reports.stats import mean_ci95

SETTINGS = ("n_problems", "n", "temperature", "top_p", "max_new_tokens", "seed")


def rates(samples_jsonl: Path) -> pd.Series:
    table = pd.DataFrame(read_jsonl(samples_jsonl))
    return table.groupby(table["problem_id"].astype(str))["correct"].mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--config", "--model", "--benchmark", "--out"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--transformers-env", default=".venv")
    parser.add_argument("--vllm-env", default=".venv-vllm")
    args = parser.parse_args()
    config = load_config(args.config)
    rows, per_problem = [], {}
    model_sha = sha256_file(Path(args.model) / "model.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("transformers", "vllm"):
            out = Path(tmp) / backend
            generation = {**config["generation"], "backend": backend}
            env = args.transformers_env if backend == "transformers" else args.vllm_env
            subprocess.run([str(Path(env) / "bin" / "effopd"), "evaluate",
                            "--model", args.model, "--benchmark", args.benchmark,
                            "--label", "student", "--prompt", json.dumps(config["prompt"]),
                            "--generation", json.dumps(generation),
                            "--grading", json.dumps(config["grading"]),
                            "--pass-k", *map(str, config["evaluation"]["pass_k"]),
                            "--samples", str(out / "samples.jsonl"),
                            "--metrics", str(out / "metrics.json")], check=True)
            metrics = json.loads((out / "metrics.json").read_text())
            per_problem[backend] = rates(out / "samples.jsonl")
            mean, low, high = mean_ci95(per_problem[backend].to_numpy())
            rows.append({"comparison": backend, "model_sha256": model_sha, "avg@n": mean,
                         "ci_low": low, "ci_high": high, "p_value": None,
                         **{key: metrics[key] for key in SETTINGS + ("generation_s",)}})
    vllm, hf = per_problem["vllm"], per_problem["transformers"].loc[per_problem["vllm"].index]
    mean, low, high = mean_ci95((vllm - hf).to_numpy())
    rows.append({"comparison": "vllm - transformers", "model_sha256": model_sha, "avg@n": mean,
                 "ci_low": low, "ci_high": high, "p_value": stats.ttest_rel(vllm, hf).pvalue,
                 **{key: rows[0][key] for key in SETTINGS}, "generation_s": None})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False, float_format="%.6g")


if __name__ == "__main__":
    main()
