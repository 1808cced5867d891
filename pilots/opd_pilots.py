"""One-seed pilots of OPD on the embedded testbed: why it learns slowly, and what makes
it learn (issue 19). Each pilot is a training run of the local engine from a config
plus overrides, scored on the test split at a few steps; the table
``results/pilots/opd_pilots.{csv,md}`` has one row per pilot.

    python pilots/opd_pilots.py                      # every pilot of pilots/pilots.yaml
    python pilots/opd_pilots.py --only opd_lr3e-4    # some of them
    python pilots/opd_pilots.py --table-only         # rebuild the table from the runs

Resumable: a finished pilot (its ``eval.csv`` written) is skipped; a killed run resumes
from its newest checkpoint. Kinds of pilot (``method``):

- ``opd``, ``rl``, ``effopd``: the suite's trainer, unchanged (SPEC section 2).
- ``offpolicy_sft``: the off-policy distillation reference -- the same prompts per step,
  one teacher sample each (temperature 1), and the student trained on them by
  cross-entropy (token-mean) with the same optimizer: how fast this student can learn
  from the teacher's outputs at equal samples.
- ``opd_fullkl``: a diagnostic, not the paper's objective -- the per-position reverse
  KL summed over the whole vocabulary on the student's own samples,
  ``sum_v p_S(v) (log p_S(v) - log p_T(v))`` (the exact expectation of the sampled-token
  k1 gradient at each position): what OPD would do without the sampling noise of
  credit on the sampled token only.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from effopd.cpu_kernels import pin_cpu_kernels  # noqa: E402  (before torch)

log = logging.getLogger("pilots")
SUMMARY_COLUMNS = ["pilot", "method", "student", "teacher", "lr", "warmup", "prompts", "steps",
                   "base_acc", "final_acc", "teacher_acc", "gap_closed", "kl_first", "kl_last",
                   "batch_acc_first", "batch_acc_last", "tokens", "cpu_s"]


def deep_merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in, recursively (a copy)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def pilot_model(config: dict, base_config: dict, role: str, artifacts: Path) -> Path:
    """The config's ``role`` model (student or teacher): the DAG's if its block equals the
    base's, else built here into ``artifacts/pilot_models/<digest>`` (same recipe as the
    DAG's build rule: ``effopd.models.build.build_model``)."""
    import hashlib

    from effopd.models.build import build_model

    spec = config["models"][role]
    if spec == base_config["models"][role]:
        return artifacts / "models" / role
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    out = artifacts / "pilot_models" / digest
    if not (out / "manifest.json").exists():
        log.info("building %s %s: %s", role, digest, spec)
        build_model(spec, config["prompt"], artifacts / "tokenizer",
                    artifacts / "data" / "train.jsonl", out, out.with_suffix(".sft.csv"))
    return out


class _PilotTrainer:
    """Factory of Trainer subclasses for the two pilot-only methods (kept out of effopd/:
    neither is a method of the suite)."""

    @staticmethod
    def make(kind: str):
        import torch

        from effopd.training.trainer import Trainer, build_batch, sequence_logprobs

        class PilotTrainer(Trainer):
            def train_step(self) -> dict[str, Any]:
                if kind == "opd":
                    return super().train_step()
                import random

                from effopd.prompts import render_prompt
                from effopd.training.contract import step_seed

                spec, step = self.spec, self.step + 1
                seed = step_seed(self.seed, step)
                indices = random.Random(seed).sample(range(len(self.train_rows)),
                                                     spec.prompts_per_step)
                prompts = [render_prompt(self.tokenizer, self.train_rows[i]["question"],
                                         *self.prompt_settings) for i in indices]
                sampler = self.teacher if kind == "offpolicy_sft" else self.policy
                policy, self.policy = self.policy, sampler
                try:
                    groups = self.sample(prompts, 1, seed, temperature=1.0)
                finally:
                    self.policy = policy
                prompt_ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"]
                              for p in prompts]
                completions = [g[0] for g in groups]
                batch = build_batch(prompt_ids, [c.token_ids for c in completions],
                                    self.tokenizer.pad_token_id, self.device)
                rows = [self.train_rows[i] for i in indices]
                correct = self.accuracy([c.text for c in completions], rows)
                self.policy.train()
                mask = batch.response_mask
                logits = self.policy(input_ids=batch.input_ids,
                                     attention_mask=batch.attention_mask).logits[:, :-1]
                logp_all = logits.float().log_softmax(-1)
                with torch.no_grad():
                    t_logits = self.teacher(input_ids=batch.input_ids,
                                            attention_mask=batch.attention_mask).logits[:, :-1]
                    t_logp_all = t_logits.float().log_softmax(-1)
                if kind == "offpolicy_sft":
                    per_token = -torch.gather(logp_all, -1,
                                              batch.input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                    with torch.no_grad():
                        s_logp = sequence_logprobs(self.policy, batch)
                        t_logp = torch.gather(t_logp_all, -1,
                                              batch.input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                        # reverse KL is not defined on teacher samples; log the forward k1
                        reverse_kl = float(((t_logp - s_logp) * mask).sum() / mask.sum())
                else:  # opd_fullkl: exact per-position reverse KL on the student's samples
                    per_token = (logp_all.exp() * (logp_all - t_logp_all)).sum(-1)
                    reverse_kl = float((per_token.detach() * mask).sum() / mask.sum())
                loss = (per_token * mask).sum() / mask.sum()
                return self.update(step, loss, {
                    "reverse_kl": reverse_kl, "batch_accuracy": sum(correct) / len(correct),
                    "response_tokens": batch.n_response_tokens, "prompts": len(prompts),
                    "responses": len(completions)})

        return PilotTrainer


def run_pilot(pilot: dict, base_config: dict, settings: dict, artifacts: Path,
              results: Path) -> None:
    from effopd.config import validate_config
    from effopd.evaluation import score_model
    from effopd.training.trainer import Trainer, TrainSpec

    name, method = pilot["name"], pilot["method"]
    config = validate_config(deep_merge(base_config, pilot.get("overrides", {})),
                             source=f"pilot {name}")
    data = artifacts / "data"
    student = pilot_model(config, base_config, "student", artifacts)
    teacher = pilot_model(config, base_config, "teacher", artifacts)
    score_teacher(teacher, config, settings, artifacts, results)
    training = copy.deepcopy(config["training"])
    steps = pilot.get("eval_steps", settings["eval_steps"])
    training["save_every"] = math.gcd(*[s for s in steps if s]) if len(steps) > 1 else steps[0]
    trainer_method = "opd" if method in ("offpolicy_sft", "opd_fullkl") else method
    spec = TrainSpec.from_config(training, trainer_method, config["grading"])
    cls = Trainer if method in ("opd", "rl", "effopd") else _PilotTrainer.make(method)
    run_dir = artifacts / "pilots" / "runs" / name
    out = results / "runs" / name
    out.mkdir(parents=True, exist_ok=True)
    trainer = cls(spec, settings["seed"], student, teacher if method != "rl" else None,
                  data / "train.jsonl",
                  artifacts / "benchmarks" / "tiny_val.jsonl" if method == "effopd" else None,
                  config["prompt"], run_dir)
    trainer.run(out / "log.csv", out / "effopd_search.csv", out / "checkpoints.csv",
                fresh=True)
    generation = {**config["generation"], "n": settings["eval_n"]}
    benchmark = artifacts / "benchmarks" / "tiny_test.jsonl"
    rows = []
    for step in steps:
        model = student if step == 0 else run_dir / "checkpoints" / f"step_{step:06d}"
        metrics, _ = score_model(model, benchmark, f"{name}@{step}", config["prompt"],
                                 generation, {**config["grading"], "workers": 1}, [1])
        rows.append({"step": step, "accuracy": metrics["avg@n"], "n": settings["eval_n"]})
    # which models this pilot ran on: a base model rebuilt on a CPU of another vendor differs
    # (docs/results.md, "Bit-exact"), so each pilot is compared with the teacher it learned from
    from effopd.io import atomic_write_json
    from effopd.training.trainer import model_digest

    atomic_write_json(out / "models.json", {"student": model_digest(student),
                                            "teacher": model_digest(teacher)})
    with open(out / "eval.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["step", "accuracy", "n"])
        writer.writeheader()
        writer.writerows(rows)


def model_label(spec: dict) -> str:
    """``3L h96 sft400``: layers, hidden size and SFT steps of a built model."""
    arch = spec["arch"]
    return f"{arch['num_hidden_layers']}L h{arch['hidden_size']} sft{spec['sft']['steps']}"


def summarize(pilots: list[dict], base_config: dict, results: Path,
              teacher_acc: dict[str | None, float], settings_steps: list[int]) -> None:
    """One row per finished pilot: test accuracy at the evaluated steps, the share of the
    teacher-student gap closed at the last one, and the training log's first and last
    quarter (per-token reverse KL of the batch, batch accuracy); tokens generated and
    CPU seconds of the whole run."""
    import pandas as pd

    from effopd.io import markdown_table, read_json, write_table

    rows = []
    for pilot in pilots:
        out = results / "runs" / pilot["name"]
        if not (out / "eval.csv").exists():
            continue
        config = deep_merge(base_config, pilot.get("overrides", {}))
        ev = pd.read_csv(out / "eval.csv")
        models = read_json(out / "models.json") if (out / "models.json").exists() else {}
        teacher = teacher_acc[models.get("teacher")]
        lg = pd.read_csv(out / "log.csv")
        quarter = max(1, len(lg) // 4)
        base, final = float(ev.accuracy.iloc[0]), float(ev.accuracy.iloc[-1])
        training = config["training"]
        per = training.get("rl" if pilot["method"] == "rl" else "opd", {})
        rows.append({
            "pilot": pilot["name"], "method": pilot["method"],
            "student": model_label(config["models"]["student"]),
            "teacher": model_label(config["models"]["teacher"]),
            "lr": training["lr"], "warmup": training.get("warmup_steps", 0),
            "prompts": per.get("prompts_per_step", 64) * per.get("group_size", 1),
            "steps": int(lg.step.max()), "base_acc": base,
            **{f"acc@{int(s)}": float(a) for s, a in zip(ev.step, ev.accuracy, strict=True)
               if 0 < s < ev.step.max()},
            "final_acc": final, "teacher_acc": teacher,
            "gap_closed": (final - base) / (teacher - base) if teacher > base else None,
            "kl_first": float(lg.reverse_kl.iloc[:quarter].mean()),
            "kl_last": float(lg.reverse_kl.iloc[-quarter:].mean()),
            "batch_acc_first": float(lg.batch_accuracy.iloc[:quarter].mean()),
            "batch_acc_last": float(lg.batch_accuracy.iloc[-quarter:].mean()),
            "tokens": int(lg.response_tokens.sum()), "cpu_s": float(lg.cpu_s.iloc[-1])})
    every = sorted({s for p in pilots for s in p.get("eval_steps", settings_steps)} - {0})
    curve = [f"acc@{s}" for s in every[:-1]]
    columns = SUMMARY_COLUMNS[:9] + curve + SUMMARY_COLUMNS[9:]
    table = pd.DataFrame(rows, columns=columns)
    write_table(table, results / "opd_pilots.csv")
    print(markdown_table(table))


def score_teacher(teacher: Path, config: dict, settings: dict, artifacts: Path,
                  results: Path) -> float:
    """The teacher's test accuracy at the pilots' evaluation settings, scored once per
    model digest and cached in ``teachers/<digest>.json``."""
    from effopd.evaluation import score_model
    from effopd.io import atomic_write_json, read_json
    from effopd.training.trainer import model_digest

    cache = results / "teachers" / f"{model_digest(teacher)}.json"
    if not cache.exists():
        metrics, _ = score_model(teacher, artifacts / "benchmarks" / "tiny_test.jsonl",
                                 "teacher", config["prompt"],
                                 {**config["generation"], "n": settings["eval_n"]},
                                 {**config["grading"], "workers": 1}, [1])
        atomic_write_json(cache, metrics)
    return float(read_json(cache)["avg@n"])


def teacher_accuracy(config: dict, settings: dict, artifacts: Path, results: Path
                     ) -> dict[str | None, float]:
    """Teacher test accuracy by the teacher's model digest (None: the teacher of the pilots
    run before digests were recorded, ``teacher.json``); the DAG's current teacher is
    scored if it is not cached yet."""
    from effopd.io import read_json

    accuracy = {None: float(read_json(results / "teacher.json")["avg@n"])}
    if (artifacts / "models" / "teacher").exists():
        score_teacher(artifacts / "models" / "teacher", config, settings, artifacts, results)
    for cached in (results / "teachers").glob("*.json"):
        accuracy.setdefault(cached.stem, float(read_json(cached)["avg@n"]))
    return accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pilots", default=str(ROOT / "pilots" / "pilots.yaml"))
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    pin_cpu_kernels("avx2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from effopd.config import load_config

    torch.set_num_threads(args.threads)
    with open(args.pilots, encoding="utf-8") as handle:
        settings = yaml.safe_load(handle)
    base_config = load_config(ROOT / settings["base"])
    artifacts = ROOT / "artifacts" / base_config["experiment"]
    results = ROOT / settings["results"]
    pilots = settings["pilots"]
    if not args.table_only:
        for pilot in pilots:
            if args.only is not None and pilot["name"] not in args.only:
                continue
            if (results / "runs" / pilot["name"] / "eval.csv").exists():
                continue
            log.info("pilot %s", pilot["name"])
            run_pilot(pilot, base_config, settings, artifacts, results)
    teacher_acc = teacher_accuracy(base_config, settings, artifacts, results)
    summarize(pilots, base_config, results, teacher_acc, settings["eval_steps"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
