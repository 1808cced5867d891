"""``training.engine: trl``: OPD, EffOPD and RL of the DAG through TRL's trainers.

The same inputs and outputs as the local engine (:mod:`effopd.training.trainer`),
so every rule downstream of ``train`` reads a TRL run unchanged:

- OPD and EffOPD: ``trl.DistillationTrainer`` (on-policy, the student samples
  one response per prompt) with ``beta = 1``: TRL's full-vocabulary reverse KL
  per token, not SPEC section 2's sampled-token PPO-clip; EffOPD adds
  :class:`effopd.integrations.trl.EffOPDCallback` scored on the validation
  benchmark. RL: ``trl.GRPOTrainer`` with the math-verify reward
  (:func:`math_verify_reward`), ``group_size`` samples per prompt, the PPO-clip
  epsilons of the config, no KL (``beta = 0``), token-mean loss
  (``loss_type = "dapo"``), group-normalised advantages.
- The step's batch: ``prompts_per_step`` prompts drawn by TRL's seeded sampler
  (not the local engine's ``Random(step_seed(seed, step))``); AdamW with the
  config's lr, betas, weight decay and gradient clipping, constant schedule,
  no warm-up; float32 weights.
- Outputs: ``log.csv`` (:data:`LOG_COLUMNS`, one row per step),
  ``effopd_search.csv`` (the callback's log; header only for OPD and RL) and
  ``checkpoints.csv`` (step, path, wall_s) indexing TRL's
  ``RUN_DIR/checkpoint-N`` folders: float32 safetensors Hugging Face
  checkpoints (with TRL's optimizer state, the EffOPD anchor and this
  engine's log rows for resuming), saved at the local engine's steps
  (:func:`effopd.training.contract.save_steps`). A rerun resumes from the
  newest checkpoint.

Columns of ``log.csv`` and where they come from: ``loss`` is TRL's loss;
``reverse_kl`` is that loss for OPD/EffOPD (beta = 1: the full-vocabulary
reverse KL) and empty for RL; ``batch_accuracy`` is the mean math-verify
reward for RL and empty for OPD/EffOPD (DistillationTrainer grades nothing);
``response_tokens`` = TRL's ``completions/mean_length`` x responses; ``lr``
TRL's ``learning_rate``; ``prompts`` and ``responses`` the batch sizes;
``wall_s`` and ``cpu_s`` the cumulative wall-clock and CPU seconds (the process
and its ended children, as the local engine) of the steps, searches included;
``search_s`` the seconds of the step's line search; ``val_responses`` and
``val_tokens`` the responses and tokens sampled by that search's validation
rollouts.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from effopd.device import resolve_device
from effopd.grading import grade_records
from effopd.integrations.trl import EffOPDCallback, checkpoint_dir
from effopd.io import atomic_write_json, read_json, read_jsonl, write_rows
from effopd.methods import Algorithm, algorithm_lr, algorithm_named
from effopd.prompts import user_message
from effopd.training.contract import (
    INDEX_COLUMNS,
    LOG_COLUMNS,
    SEARCH_COLUMNS,
    RunRequest,
    group_size,
    identified,
    per_method,
    process_cpu_s,
    refuse_unsupported,
    save_steps,
)
from effopd.training.extrapolation import require_authors_search

log = logging.getLogger(__name__)

LOG_STATE_FILE = "effopd_log_rows.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def conversation(problem: str, instruction: str) -> list[dict[str, str]]:
    """A TRL conversational prompt: one user turn (the problem, then the instruction)."""
    return [{"role": "user", "content": user_message(problem, instruction)}]


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversational list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(message["content"] for message in completion)


def make_math_verify_reward(timeout_s: float = 5.0, workers: int = 2):
    """A GRPO reward function: 1.0 when math-verify judges the completion's last
    ``\\boxed{}`` equal to the row's ``answer`` (gold first), else 0.0."""

    def math_verify_reward(completions: list[Any], answer: list[Any], **kwargs) -> list[float]:
        graded = grade_records([{"gold": str(gold), "response": completion_text(completion)}
                                for completion, gold in zip(completions, answer, strict=True)],
                               timeout_s=timeout_s, workers=workers, progress=False)
        return [float(row["correct"]) for row in graded]

    return math_verify_reward


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)


class RunLogCallback(TrainerCallback):
    """Write the local engine's ``log.csv`` rows from a TRL run (see the module docstring).

    Register it after the :class:`EffOPDCallback` (if any) so that ``wall_s``
    and ``cpu_s`` include the search. ``stop_after`` ends training after that
    step (to test resumption). ``run``: the run's identity (name, seed), written as the
    first columns of every row.
    """

    def __init__(self, log_csv: str | Path, algorithm: Algorithm, prompts: int, responses: int,
                 effopd: EffOPDCallback | None = None, stop_after: int | None = None,
                 *, run: tuple[str, int]) -> None:
        self.log_csv, self.algorithm = Path(log_csv), algorithm
        self.run_name, self.seed = run
        self.prompts, self.responses = prompts, responses
        self.effopd, self.stop_after = effopd, stop_after
        self.rows: list[dict[str, Any]] = []
        self._started = self._cpu_started = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step > 0:
            saved = checkpoint_dir(args, state.global_step) / LOG_STATE_FILE
            if not saved.exists():
                raise FileNotFoundError(f"resuming at step {state.global_step}: no {saved}")
            self.rows = [r for r in read_json(saved) if r["step"] <= state.global_step]
        self._write()

    def on_step_begin(self, args, state, control, **kwargs):
        self._started, self._cpu_started = time.perf_counter(), process_cpu_s()

    def on_step_end(self, args, state, control, **kwargs):
        last = self.rows[-1] if self.rows else {"wall_s": 0.0, "cpu_s": 0.0}
        self.rows.append({
            "step": state.global_step,
            "wall_s": last["wall_s"] + time.perf_counter() - self._started,
            "cpu_s": last["cpu_s"] + process_cpu_s() - self._cpu_started,
            "search_s": self.effopd.search_s if self.effopd else 0.0,
            "val_tokens": self.effopd.val_tokens if self.effopd else 0,
            "val_responses": self.effopd.val_responses if self.effopd else 0,
            "prompts": self.prompts, "responses": self.responses,
            "loss": math.nan, "reverse_kl": math.nan, "batch_accuracy": math.nan,
            "response_tokens": math.nan, "lr": math.nan})
        if self.stop_after is not None and state.global_step >= self.stop_after:
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Fill the step's row from TRL's regular log (``logging_steps = 1``)."""
        if not logs or "loss" not in logs or not self.rows \
                or self.rows[-1]["step"] != state.global_step:
            return control
        row = self.rows[-1]
        row["loss"] = _nan_if_none(logs["loss"])
        row["lr"] = _nan_if_none(logs.get("learning_rate"))
        row["response_tokens"] = _nan_if_none(logs.get("completions/mean_length")) * \
            self.responses
        if self.algorithm.reward:
            row["batch_accuracy"] = _nan_if_none(logs.get("reward"))
        else:
            row["reverse_kl"] = row["loss"]
        self._write()
        return control

    def on_save(self, args, state, control, **kwargs):
        path = checkpoint_dir(args, state.global_step)
        if path.is_dir():
            atomic_write_json(path / LOG_STATE_FILE, self.rows)
        return control

    def _write(self) -> None:
        write_rows(self.log_csv, LOG_COLUMNS, identified(self.rows, self.run_name, self.seed))


class SaveStepsCallback(TrainerCallback):
    """Save a checkpoint exactly at ``steps`` (the local engine's checkpoint steps)."""

    def __init__(self, steps: list[int]) -> None:
        self.steps = set(steps)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            control.should_save = True
        return control


def trl_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """TRL's finished checkpoints in ``run_dir`` (``checkpoint-N`` with a trainer state)."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("checkpoint-*")
             if (m := CHECKPOINT.match(p.name)) and (p / "trainer_state.json").exists()]
    return sorted(found)


# The objectives this engine runs (:attr:`effopd.methods.Algorithm.objective`): GRPO through
# GRPOTrainer, OPD's through DistillationTrainer (module docstring).
OBJECTIVES = ("k1", "grpo")


def train(run: RunRequest) -> None:
    """Train one run through TRL and write the local engine's outputs (module docstring),
    every row with the run's identity (``run.run_name``; ``run.seed``). ``--fresh`` is
    refused: TRL resumes from any ``checkpoint-N`` in the run directory."""
    import trl
    from datasets import Dataset

    refuse_unsupported(run, "trl", fresh=False)
    algorithm = algorithm_named(run.algorithm)
    if algorithm.objective not in OBJECTIVES:
        raise ValueError(f"training engine trl: algorithm {algorithm.name!r} (objective "
                         f"{algorithm.objective}) is not implemented; use engine local")
    training, grading, prompt, seed = run.training, run.grading, run.prompt, run.seed
    student, teacher, val_file, run_dir = run.student, run.teacher, run.val, Path(run.run_dir)
    log_csv, search_csv, index_csv = run.log_csv, run.search_csv, run.index_csv
    require_authors_search(training.get("effopd", {}), "trl")
    resolved = resolve_device(run.device or "auto")
    instruction, thinking = prompt["instruction"], prompt["enable_thinking"]
    own = per_method(training, algorithm)
    prompts_per_step = own["prompts_per_step"]
    group = group_size(training, algorithm)
    if own.get("dynamic_sampling", False):
        raise ValueError("training.rl.dynamic_sampling (DAPO) is not available with "
                         "training.engine: trl; use the local engine")
    tokenizer = AutoTokenizer.from_pretrained(str(student))
    model = AutoModelForCausalLM.from_pretrained(str(student), dtype=torch.float32)
    rows = read_jsonl(run.train)
    dataset = Dataset.from_list([{"prompt": conversation(r["question"], instruction),
                                  "answer": str(r["answer"])} for r in rows])
    common = dict(
        output_dir=str(run_dir), max_steps=training["steps"], seed=seed,
        learning_rate=algorithm_lr(training, algorithm), adam_beta1=training["betas"][0],
        adam_beta2=training["betas"][1], weight_decay=training["weight_decay"],
        max_grad_norm=training["grad_clip"],
        # transformers' warm-up is 0-based (its first step runs at lr 0), ours 1-based
        lr_scheduler_type="constant_with_warmup" if training.get("warmup_steps") else "constant",
        warmup_steps=training.get("warmup_steps", 0),
        gradient_accumulation_steps=1, max_completion_length=training["max_new_tokens"],
        temperature=training["temperature"], top_p=training["top_p"], top_k=0,
        chat_template_kwargs={"enable_thinking": thinking}, bf16=False, fp16=False,
        use_cpu=resolved.type == "cpu", gradient_checkpointing=False, logging_steps=1,
        save_strategy="no", report_to=[], disable_dropout=True, dataloader_num_workers=0)
    if algorithm.reward:
        args = trl.GRPOConfig(**common, per_device_train_batch_size=prompts_per_step * group,
                              num_generations=group, beta=0.0, loss_type="dapo",
                              epsilon=own["clip_ratio_low"],
                              epsilon_high=own["clip_ratio_high"], scale_rewards="group")
        reward = make_math_verify_reward(grading["timeout_s"], grading["workers"])
        trainer = trl.GRPOTrainer(model=model, reward_funcs=reward, args=args,
                                  train_dataset=dataset, processing_class=tokenizer)
    else:
        if teacher is None:
            raise ValueError(f"{algorithm.name} needs a teacher model (--teacher)")
        teacher_model = AutoModelForCausalLM.from_pretrained(str(teacher), dtype=torch.float32)
        args = trl.DistillationConfig(**common, per_device_train_batch_size=prompts_per_step,
                                      beta=1.0)
        trainer = trl.DistillationTrainer(model=model, teacher_model=teacher_model, args=args,
                                          train_dataset=dataset, processing_class=tokenizer)
    effopd = None
    if algorithm.searches:
        if val_file is None:
            raise ValueError(f"{algorithm.name} needs a validation benchmark (--val) for its "
                             "line search")
        val = [{"prompt": conversation(r["problem"], instruction), "answer": r["answer"]}
               for r in read_jsonl(val_file)]
        effopd = EffOPDCallback(
            val, output_csv=search_csv, max_iterations=training["effopd"]["max_iterations"],
            initial_factor=training["effopd"]["initial_factor"],
            temperature=training["temperature"], top_p=training["top_p"],
            max_new_tokens=training["max_new_tokens"], seed=seed,
            batch_size=training["rollout_batch_size"], grading_timeout_s=grading["timeout_s"],
            grading_workers=grading["workers"], run_name=run.run_name).attach(trainer)
    trainer.add_callback(RunLogCallback(log_csv, algorithm, prompts_per_step,
                                        prompts_per_step * group, effopd, run.stop_after,
                                        run=(run.run_name, seed)))
    trainer.add_callback(SaveStepsCallback(save_steps(training, algorithm)))
    resume = bool(trl_checkpoints(run_dir))
    if resume:
        log.info("resuming %s from %s", run_dir, trl_checkpoints(run_dir)[-1][1])
    trainer.train(resume_from_checkpoint=True if resume else None)
    if run.stop_after is not None and trainer.state.global_step < training["steps"]:
        return
    if effopd is None:
        write_rows(search_csv, SEARCH_COLUMNS, [])
    walls = {row["step"]: row["wall_s"] for row in read_log_rows(log_csv)}
    write_rows(index_csv, INDEX_COLUMNS, identified(
        [{"step": step, "path": str(path.resolve()), "wall_s": walls[step]}
         for step, path in trl_checkpoints(run_dir)], run.run_name, seed))


def read_log_rows(log_csv: str | Path) -> list[dict[str, Any]]:
    """``log.csv`` rows with ``step`` as int and ``wall_s`` as float."""
    with Path(log_csv).open(newline="") as handle:
        return [{**row, "step": int(row["step"]), "wall_s": float(row["wall_s"])}
                for row in csv.DictReader(handle)]
