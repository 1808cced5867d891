"""The local training engine: OPD, RL (GRPO) and EffOPD on one CPU or GPU.

One loop, read top to bottom. Every step:

1. draw ``prompts_per_step`` training prompts (a fixed function of seed and step);
2. the student samples ``group_size`` responses per prompt (temperature from
   the config, 1.0 as the paper);
3. advantages: OPD/EffOPD ``A_t = log p_T - log p_S`` per sampled token
   (the teacher scores the student's tokens); RL: reward 1/0 per response
   (math-verify, or the sandboxed hidden tests of a code problem:
   :mod:`effopd.training.rewards`), normalised within its group (GRPO);
4. one PPO-clip step on the whole batch (token-mean, no KL, no entropy);
5. EffOPD only: after the optimizer steps 1, 2, 4, 8, ..., the line search of
   :mod:`effopd.training.extrapolation` on the transformer-block weights,
   scored by validation accuracy (one sample per problem);
6. checkpoints (float32 safetensors, atomic) at the configured steps, each
   with the state needed to resume: optimizer moments, the EffOPD anchor, the
   step, the wall clock and the log rows so far (kept for the newest two).

Every checkpoint's manifest and training state carry the run's fingerprint
(:func:`run_fingerprint`): a run directory made by another config, student,
teacher, data or code version is refused (or, with ``fresh``, discarded), never
resumed. Resume verifies each candidate (sizes and sha256 against its
manifest) and falls back to the newest checkpoint that verifies.

Randomness is a pure function of (seed, step): rollouts are sampled with the
seed ``seed * 1_000_003 + step`` and prompts drawn with a ``Random`` of the
same seed, so a resumed run repeats exactly what the uninterrupted one does.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from effopd.config import block_defaults
from effopd.device import resolve_device
from effopd.errors import CheckpointError, InputError, StaleRunError
from effopd.generation import SamplingSpec, sample_completions
from effopd.io import read_json, read_jsonl, require_keys, write_rows
from effopd.methods import Algorithm, algorithm_lr, algorithm_named
from effopd.models.checkpoint import TRAINING_STATE_NAME as STATE_FILE
from effopd.models.checkpoint import (
    read_manifest,
    recover_directory,
    save_checkpoint,
    verify_checkpoint,
)
from effopd.prompts import render_prompt
from effopd.provenance import directory_manifest, sha256_file
from effopd.training.contract import (
    INDEX_COLUMNS,
    LOG_COLUMNS,
    SEARCH_COLUMNS,
    RunRequest,
    block_parameters,
    group_size,
    identified,
    per_method,
    process_cpu_s,
    save_steps,
    search_seed,
    step_seed,
)
from effopd.training.extrapolation import is_search_step, line_search, snapshot
from effopd.training.losses import (
    full_reverse_kl,
    grpo_advantages,
    opd_advantages,
    ppo_clip_loss,
    token_logprobs,
)
from effopd.training.rewards import correct as rewards_correct

log = logging.getLogger(__name__)

CHECKPOINT_DIR = re.compile(r"^step_(\d{6})$")
# TrainSpec fields that do not change the trajectory: left out of the fingerprint, so a
# run can be extended (steps) or graded with more workers and still resume.
UNFINGERPRINTED = ("steps", "save_steps", "grading_workers", "grading_batch_size")
KEEP_STATES = 2  # training states kept: the newest two checkpoints (a fallback if one is bad)


@dataclass(frozen=True)
class TrainSpec:
    """Knobs of one run, flattened from the config's ``training`` block for ``method``
    (the name of the algorithm it runs, :data:`effopd.methods.ALGORITHMS`). No field has a
    default: :meth:`from_config` fills every one from the validated config, whose defaults
    are the schema's."""

    method: str
    steps: int
    prompts_per_step: int
    group_size: int
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    grad_clip: float
    clip_ratio_low: float
    clip_ratio_high: float
    temperature: float
    top_p: float
    max_new_tokens: int
    rollout_batch_size: int
    save_steps: tuple[int, ...]
    dynamic_sampling: bool
    search_iterations: int
    search_initial_factor: float
    search_schedule: str
    search_every: int
    validation_size: int | None
    warmup_steps: int
    grading_timeout_s: float
    grading_workers: int
    grading_batch_size: int

    @classmethod
    def from_config(cls, training: dict[str, Any], method: str | Algorithm,
                    grading: dict[str, Any]) -> TrainSpec:
        algorithm = algorithm_named(method)
        for key in ("temperature", "top_p"):  # the log-probs are those of the raw policy
            if training.get(key, 1.0) != 1.0:
                raise InputError(f"training.{key} = {training[key]}: the local trainer needs "
                                 "1.0 (its log-probs are the untempered policy's; see "
                                 "config/README.md)")
        training = block_defaults("training", training)  # the schema's defaults, once
        grading = block_defaults("grading", grading)
        own = per_method(training, algorithm)
        return cls(
            method=algorithm.name, steps=training["steps"],
            prompts_per_step=own["prompts_per_step"],
            group_size=group_size(training, algorithm),
            lr=algorithm_lr(training, algorithm), betas=tuple(training["betas"]),
            weight_decay=training["weight_decay"], grad_clip=training["grad_clip"],
            clip_ratio_low=own["clip_ratio_low"],
            clip_ratio_high=own["clip_ratio_high"],
            temperature=training["temperature"], top_p=training["top_p"],
            max_new_tokens=training["max_new_tokens"],
            rollout_batch_size=training["rollout_batch_size"],
            save_steps=tuple(save_steps(training, algorithm)),
            dynamic_sampling=own.get("dynamic_sampling", False),
            search_iterations=training["effopd"]["max_iterations"],
            search_initial_factor=training["effopd"]["initial_factor"],
            search_schedule=training["effopd"]["schedule"],
            search_every=training["effopd"]["search_every"],
            validation_size=training["effopd"]["validation_size"],
            warmup_steps=training["warmup_steps"],
            grading_timeout_s=grading["timeout_s"], grading_workers=grading["workers"],
            grading_batch_size=grading["batch_size"])


def _graded_rows(rows: list[dict[str, Any]], path: str | Path) -> list[dict[str, Any]]:
    """``rows`` unchanged, or an error naming the file and row when one carries neither a
    gold ``answer`` (math-verify) nor hidden ``test`` source (the sandbox)."""
    for number, row in enumerate(rows, start=1):
        if "answer" not in row and "test" not in row:
            raise InputError(f"{path}: row {number} has neither 'answer' nor 'test' "
                             f"(has: {', '.join(map(str, row)) or 'none'})")
    return rows


def lr_at_step(lr: float, step: int, warmup_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (1-based): ``lr * min(1, step / N)``
    with ``N = warmup_steps`` (linear warm-up, then constant; N = 0: ``lr`` throughout)."""
    return lr if warmup_steps <= 0 else lr * min(1.0, step / warmup_steps)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("effopd")
    except PackageNotFoundError:
        return "unknown"


def model_digest(directory: str | Path | None) -> str | None:
    """sha256 of a model's ``manifest.json`` (or, without one, of its files' sha256 list)."""
    if directory is None:
        return None
    manifest = Path(directory) / "manifest.json"
    if manifest.exists():
        return sha256_file(manifest)
    listing = json.dumps(directory_manifest(directory), sort_keys=True).encode()
    return hashlib.sha256(listing).hexdigest()


def run_fingerprint(spec: TrainSpec, seed: int, student_dir: str | Path,
                    teacher_dir: str | Path | None, train_file: str | Path,
                    val_file: str | Path | None, prompt: dict[str, Any]) -> dict[str, Any]:
    """What makes a run's trajectory: its config (the TrainSpec less
    :data:`UNFINGERPRINTED`, the seed, the prompt block), the sha256 of the student's
    and teacher's manifests and of the data files, and the package version. Inputs the
    method does not read (RL's teacher, the validation set outside EffOPD) are left out."""
    config = {k: v for k, v in asdict(spec).items() if k not in UNFINGERPRINTED}
    algorithm = algorithm_named(spec.method)
    uses_teacher, uses_val = algorithm.teacher, algorithm.searches
    return {"config": {**json.loads(json.dumps(config)), "seed": seed, "prompt": prompt},
            "student_sha256": model_digest(student_dir),
            "teacher_sha256": model_digest(teacher_dir) if uses_teacher else None,
            "train_data_sha256": sha256_file(train_file),
            "val_data_sha256": sha256_file(val_file) if val_file and uses_val else None,
            "effopd_version": _package_version()}


def fingerprint_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys at which two fingerprints differ (``old`` None: the whole fingerprint)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in fingerprint_differences(
            old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))]
    return [] if old == new else [prefix or "fingerprint"]


@dataclass
class Batch:
    """A batch of sampled sequences laid out for one forward pass."""

    input_ids: torch.Tensor      # (B, T) prompt + response, right-padded
    attention_mask: torch.Tensor  # (B, T)
    response_mask: torch.Tensor   # (B, T - 1): 1 where target t+1 is a response token
    n_response_tokens: int


def build_batch(prompt_ids: list[list[int]], responses: list[list[int]], pad_id: int,
                device: torch.device) -> Batch:
    """Concatenate each prompt with its response; mask marks the response targets."""
    sequences = [p + r for p, r in zip(prompt_ids, responses, strict=True)]
    width = max(map(len, sequences))
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    response_mask = torch.zeros((len(sequences), width - 1), dtype=torch.float32)
    for row, (prompt, sequence) in enumerate(zip(prompt_ids, sequences, strict=True)):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention[row, : len(sequence)] = 1
        response_mask[row, len(prompt) - 1: len(sequence) - 1] = 1.0
    return Batch(input_ids.to(device), attention.to(device), response_mask.to(device),
                 int(response_mask.sum()))


def sequence_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """log p(x_{t+1} | x_<=t) for every position of every sequence, shape (B, T - 1)."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return token_logprobs(logits[:, :-1], batch.input_ids[:, 1:])


class Trainer:
    """One training run (a method and a seed); see the module docstring."""

    def __init__(self, spec: TrainSpec, seed: int, student_dir: str | Path,
                 teacher_dir: str | Path | None, train_file: str | Path,
                 val_file: str | Path | None, prompt: dict[str, Any], run_dir: str | Path,
                 device: str | None = None) -> None:
        self.spec, self.seed = spec, seed
        self.algorithm = algorithm = algorithm_named(spec.method)
        self.models = {"student": student_dir, "teacher": teacher_dir}
        self.fingerprint = run_fingerprint(spec, seed, student_dir, teacher_dir, train_file,
                                           val_file, prompt)
        self.device = resolve_device(device or "auto")
        self.run_dir = Path(run_dir)
        for model_dir in (student_dir, teacher_dir if algorithm.teacher else None):
            if model_dir is not None:  # sizes, sha256 and safetensors headers
                verify_checkpoint(model_dir, sha256=True)
        self.tokenizer = AutoTokenizer.from_pretrained(str(student_dir))
        self.policy = AutoModelForCausalLM.from_pretrained(
            str(student_dir), dtype=torch.float32).to(self.device)
        self.teacher = None
        if algorithm.teacher:
            if teacher_dir is None:
                raise ValueError(f"{spec.method} needs a teacher model")
            teacher_tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir))
            if teacher_tokenizer.get_vocab() != self.tokenizer.get_vocab():
                raise ValueError(f"teacher {teacher_dir} and student {student_dir} have "
                                 "different vocabularies; OPD compares token log-probs")
            self.teacher = AutoModelForCausalLM.from_pretrained(
                str(teacher_dir), dtype=torch.float32).to(self.device).eval()
            self.teacher.requires_grad_(False)
        instruction, thinking = prompt["instruction"], prompt["enable_thinking"]
        self.train_rows = _graded_rows(require_keys(read_jsonl(train_file), ("question",),
                                                    train_file), train_file)
        if len(self.train_rows) < spec.prompts_per_step:
            raise InputError(f"{train_file}: {len(self.train_rows)} training problems, fewer "
                             f"than prompts_per_step {spec.prompts_per_step} "
                             f"(training.{algorithm.block})")
        self.prompt_settings = (instruction, thinking)  # train prompts are rendered when drawn
        self.val_rows = (_graded_rows(require_keys(read_jsonl(val_file), ("problem",),
                                                   val_file), val_file) if val_file else [])
        if spec.validation_size is not None:  # the first N problems (an ablation's smaller set)
            if spec.validation_size > len(self.val_rows):
                raise InputError(f"training.effopd.validation_size = {spec.validation_size}, "
                                 f"but {val_file} has {len(self.val_rows)} problems")
            self.val_rows = self.val_rows[:spec.validation_size]
        self.val_prompts = [render_prompt(self.tokenizer, r["problem"], instruction, thinking)
                            for r in self.val_rows]
        if algorithm.searches and not self.val_rows:
            raise ValueError("effopd needs a validation split for its line search")
        decay = [p for p in self.policy.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.policy.parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": spec.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=spec.lr, betas=spec.betas)
        self.step = 0
        self.wall_s = 0.0
        self.cpu_s = 0.0  # CPU seconds of this process and its finished children, all sessions
        self.val_responses = self.val_tokens = 0  # EffOPD's validation rollouts this step
        self.log_rows: list[dict[str, Any]] = []
        self.search_rows: list[dict[str, Any]] = []
        # EffOPD's anchor: the student's initial block weights (float32)
        self.anchor = snapshot(block_parameters(self.policy)) if algorithm.searches else None

    # ------------------------------------------------------------------ resume
    def checkpoints(self, up_to: int | None = None) -> list[tuple[int, Path]]:
        """Finished checkpoints of this run up to step ``up_to`` (default: spec.steps)."""
        up_to = self.spec.steps if up_to is None else up_to
        found = []
        for path in sorted((self.run_dir / "checkpoints").glob("step_*")):
            match = CHECKPOINT_DIR.match(path.name)
            if match and (path / "manifest.json").exists() and int(match.group(1)) <= up_to:
                found.append((int(match.group(1)), path))
        return found

    def grid_difference(self) -> str | None:
        """How the checkpoints on disk differ from the config's grid (``spec.save_steps``)
        up to the newest of them, or None: a changed ``training.save_every`` (not in the
        fingerprint, so that a run can be extended) or a deleted checkpoint directory
        would otherwise give the index, and every table after it, another grid."""
        found = {step for step, _ in self.checkpoints()}
        if not found:
            return None
        expected = {s for s in self.spec.save_steps if s <= max(found)}
        if found == expected:
            return None
        missing, extra = sorted(expected - found), sorted(found - expected)
        return ("checkpoint grid (training.save_every / save_powers_of_two, or a deleted "
                f"checkpoint: missing steps {missing}, steps off the grid {extra})")

    def check_fingerprint(self, fresh: bool = False) -> None:
        """Refuse (or, ``fresh``, discard) checkpoints made by a different run.

        Interrupted replacements are recovered first. A checkpoint whose
        manifest cannot be read is left to :meth:`resume`'s verification.
        """
        root = self.run_dir / "checkpoints"
        if not root.is_dir():
            return
        for path in root.glob(".step_*"):  # temporary or renamed-aside copies of a step
            name = path.name[1:].split(".")[0]
            if CHECKPOINT_DIR.match(name):
                recover_directory(root / name)
        differing: set[str] = set()
        for _, path in self.checkpoints(up_to=10**9):
            try:
                manifest = read_manifest(path)
            except CheckpointError:
                continue
            differing.update(fingerprint_differences(manifest.get("fingerprint"),
                                                     self.fingerprint))
        grid = self.grid_difference()
        if grid:
            differing.add(grid)
        for role, directory in self.models.items():  # a lost manifest is not another model
            manifest = Path(directory or "") / "manifest.json"
            if f"{role}_sha256" in differing and directory and not manifest.exists():
                raise CheckpointError(
                    f"{manifest}: missing; this run's checkpoints were made from a {role} "
                    f"with a manifest: restore it (rebuild or fetch the {role} again) "
                    "rather than discard the run")
        if not differing:
            return
        if fresh:
            log.warning("%s: discarding checkpoints of a different run (differs: %s)",
                        root, ", ".join(sorted(differing)))
            aside = root.with_name(".checkpoints.stale")
            if aside.exists():
                shutil.rmtree(aside)
            root.rename(aside)
            shutil.rmtree(aside)
            return
        raise StaleRunError(
            f"{root}: checkpoints were made by a different run (differs: "
            f"{', '.join(sorted(differing))}); remove {root} or rerun with "
            "`effopd train --fresh` (config: training.on_stale: fresh)")

    def resume(self, fresh: bool = False) -> bool:
        """Load the newest checkpoint (up to spec.steps) that verifies and has a training
        state; True if one was found. A checkpoint that fails verification (sizes and
        sha256 against its manifest, the training state included) is skipped with a warning."""
        self.check_fingerprint(fresh)
        for step, path in reversed(self.checkpoints()):
            if not (path / STATE_FILE).exists():
                continue
            try:
                verify_checkpoint(path, sha256=True, training_state=True)
                state = torch.load(path / STATE_FILE, map_location=self.device,
                                   weights_only=False)
            except (CheckpointError, RuntimeError, EOFError) as err:
                log.warning("cannot resume from %s: %s", path, err)
                continue
            loaded = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
            self.policy.load_state_dict(loaded.state_dict())
            self.optimizer.load_state_dict(state["optimizer"])
            self.anchor = state["anchor"]
            self.step, self.wall_s = step, state["wall_s"]
            self.cpu_s = state.get("cpu_s", 0.0)
            self.log_rows, self.search_rows = state["log_rows"], state["search_rows"]
            log.info("resumed %s from step %d", self.run_dir, step)
            return True
        return False

    # ----------------------------------------------------------------- rollout
    def sample(self, prompts: list[str], n: int, seed: int, temperature: float):
        spec = SamplingSpec(temperature=temperature, top_p=self.spec.top_p, n=n,
                            max_new_tokens=self.spec.max_new_tokens,
                            batch_size=self.spec.rollout_batch_size)
        return sample_completions(self.policy, self.tokenizer, prompts, spec,
                                  generator_seed=seed)

    def accuracy(self, texts: list[str], rows: list[dict[str, Any]]) -> list[bool]:
        """The 0/1 reward of each response against its problem row (math-verify, or the
        sandboxed hidden tests of a code problem; :mod:`effopd.training.rewards`)."""
        return rewards_correct(texts, rows, timeout_s=self.spec.grading_timeout_s,
                               workers=self.spec.grading_workers,
                               batch_size=self.spec.grading_batch_size)

    def validation_score(self, seed: int) -> float:
        """Mean validation accuracy, one sample per problem (EffOPD's search score).

        Every candidate of one search is sampled with the same seed (common
        random numbers), so score differences come from the weights.
        """
        groups = self.sample(self.val_prompts, 1, seed, temperature=self.spec.temperature)
        self.val_responses += len(groups)
        self.val_tokens += sum(len(g[0].token_ids) for g in groups)
        correct = self.accuracy([g[0].text for g in groups], self.val_rows)
        return sum(correct) / len(correct)

    # -------------------------------------------------------------------- step
    def rollout(self, step: int) -> tuple[list[str], list[Any], Batch, list[dict[str, Any]]]:
        """Step ``step``'s batch: its prompts (a fixed function of seed and step), the
        policy's ``group_size`` responses to each (sampled with the step seed), the batch
        laid out for one forward pass, and each response's problem row."""
        spec, seed = self.spec, step_seed(self.seed, step)
        indices = random.Random(seed).sample(range(len(self.train_rows)), spec.prompts_per_step)
        prompts = [render_prompt(self.tokenizer, self.train_rows[i]["question"],
                                 *self.prompt_settings) for i in indices]
        groups = self.sample(prompts, spec.group_size, seed, temperature=spec.temperature)
        prompt_ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        flat_prompts = [ids for ids in prompt_ids for _ in range(spec.group_size)]
        completions = [c for group in groups for c in group]
        batch = build_batch(flat_prompts, [c.token_ids for c in completions],
                            self.tokenizer.pad_token_id, self.device)
        rows = [self.train_rows[i] for i in indices for _ in range(spec.group_size)]
        return prompts, completions, batch, rows

    @torch.no_grad()
    def batch_reverse_kl(self, step: int) -> float:
        """The per-token reverse KL of the current policy on step ``step``'s batch: the
        mean over response tokens of log p_S(y_t) - log p_T(y_t) on the responses the
        policy samples for that step's prompts (OPD's logged ``reverse_kl``, no update)."""
        _, _, batch, _ = self.rollout(step)
        mask = batch.response_mask
        gap = sequence_logprobs(self.policy, batch) - sequence_logprobs(self.teacher, batch)
        return float((gap * mask).sum() / mask.sum())

    def train_step(self) -> dict[str, Any]:
        step = self.step + 1
        log.info("step %d: rollout", step)
        prompts, completions, batch, rows = self.rollout(step)
        correct = self.accuracy([c.text for c in completions], rows)

        self.policy.train()
        loss, reverse_kl = getattr(self, f"{self.algorithm.objective}_loss")(batch, correct)
        return self.update(step, loss, {
            "reverse_kl": reverse_kl, "batch_accuracy": sum(correct) / len(correct),
            "response_tokens": batch.n_response_tokens, "prompts": len(prompts),
            "responses": len(completions)})

    # The objectives (:attr:`effopd.methods.Algorithm.objective`): each returns the loss of
    # one step and the batch's per-token reverse KL (NaN where no teacher scores).
    def k1_loss(self, batch: Batch, correct: list[bool]) -> tuple[torch.Tensor, float]:
        """OPD: PPO-clip on A_t = log p_T(y_t) - log p_S(y_t) (SPEC section 2)."""
        spec, mask = self.spec, batch.response_mask
        logp = sequence_logprobs(self.policy, batch)
        old_logp = logp.detach()  # one on-policy mini-batch: the sampling policy is this one
        with torch.no_grad():
            teacher_logp = sequence_logprobs(self.teacher, batch)
        advantages = opd_advantages(teacher_logp, old_logp)
        reverse_kl = float(-(advantages * mask).sum() / mask.sum())
        return ppo_clip_loss(logp, old_logp, advantages, mask, spec.clip_ratio_low,
                             spec.clip_ratio_high), reverse_kl

    def grpo_loss(self, batch: Batch, correct: list[bool]) -> tuple[torch.Tensor, float]:
        """GRPO: PPO-clip on the group-normalised 0/1 reward (DAPO's dynamic sampling
        drops the groups whose rewards are all equal)."""
        spec, mask = self.spec, batch.response_mask
        logp = sequence_logprobs(self.policy, batch)
        old_logp = logp.detach()
        rewards = torch.tensor(correct, dtype=torch.float32, device=self.device)
        advantages = grpo_advantages(rewards, spec.group_size).unsqueeze(1)
        if spec.dynamic_sampling:  # DAPO: groups with one reward value carry no signal
            informative = rewards.view(-1, spec.group_size).std(dim=1) > 0
            mask = mask * informative.repeat_interleave(spec.group_size).unsqueeze(1)
        return ppo_clip_loss(logp, old_logp, advantages, mask, spec.clip_ratio_low,
                             spec.clip_ratio_high), float("nan")

    def full_kl_loss(self, batch: Batch, correct: list[bool]) -> tuple[torch.Tensor, float]:
        """The pilots' diagnostic: the full-vocabulary reverse KL per position
        (:func:`effopd.training.losses.full_reverse_kl`) on the student's samples."""
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        logits = self.policy(**inputs).logits[:, :-1]
        with torch.no_grad():
            teacher_logits = self.teacher(**inputs).logits[:, :-1]
        loss = full_reverse_kl(logits, teacher_logits, batch.response_mask)
        return loss, float(loss.detach())

    def update(self, step: int, loss: torch.Tensor, row: dict[str, Any]) -> dict[str, Any]:
        """One AdamW step on ``loss`` at step ``step``'s learning rate (warm-up included),
        gradient norm clipped; returns the log row with step, loss and lr added."""
        lr = lr_at_step(self.spec.lr, step, self.spec.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.spec.grad_clip)
        self.optimizer.step()
        self.step = step
        return {"step": step, "loss": float(loss.detach()), **row, "lr": lr}

    def search(self) -> None:
        """EffOPD's line search after this step's optimizer update."""
        seed = search_seed(self.seed, self.step)
        log.info("step %d: line search", self.step)
        records, self.anchor = line_search(
            block_parameters(self.policy), self.anchor, lambda: self.validation_score(seed),
            step=self.step, max_iterations=self.spec.search_iterations,
            initial_factor=self.spec.search_initial_factor)
        self.search_rows.extend(r.as_row() for r in records)
        best = max(r.multiplier for r in records if r.accepted)
        log.info("step %d: line search chose multiplier %g (scores %s)", self.step, best,
                 [round(r.score, 3) for r in records])

    # -------------------------------------------------------------------- save
    def save(self) -> Path:
        path = self.run_dir / "checkpoints" / f"step_{self.step:06d}"
        state = {"optimizer": self.optimizer.state_dict(), "anchor": self.anchor,
                 "wall_s": self.wall_s, "cpu_s": self.cpu_s, "log_rows": self.log_rows,
                 "search_rows": self.search_rows, "fingerprint": self.fingerprint}
        log.info("step %d: writing checkpoint %s", self.step, path)
        save_checkpoint(self.policy, self.tokenizer, path,
                        {"source": "train", "method": self.spec.method, "seed": self.seed,
                         "step": self.step, "wall_s": round(self.wall_s, 3),
                         "fingerprint": self.fingerprint},
                        training_state=state)
        log.info("step %d: checkpoint written", self.step)
        older = [p for s, p in self.checkpoints(up_to=10**9) if s < self.step]
        for stale in older[:-(KEEP_STATES - 1) or None]:  # keep the newest two states
            if (stale / STATE_FILE).exists():
                (stale / STATE_FILE).unlink()
        return path

    def run(self, log_csv: str | Path, search_csv: str | Path, index_csv: str | Path,
            stop_after: int | None = None, fresh: bool = False,
            run_name: str | None = None) -> None:
        """Train to ``spec.steps`` (resuming if possible); write the logs and the index.

        ``stop_after`` ends the run early after that step (to test resumption);
        ``fresh`` discards checkpoints of a different run instead of refusing them.
        The index lists this run's checkpoints up to ``spec.steps``. Every row carries
        the run's identity: ``run_name`` (default: the method) and the seed.
        """
        self.resume(fresh)
        method, seed = run_name or self.spec.method, self.seed
        with _csv_writer(log_csv, LOG_COLUMNS,
                         identified(self.log_rows, method, seed)) as log_writer:
            progress = tqdm(range(self.step, self.spec.steps), desc=f"{self.spec.method}",
                            initial=self.step, total=self.spec.steps, mininterval=5)
            for _ in progress:
                started, cpu_started = time.perf_counter(), process_cpu_s()
                self.val_responses = self.val_tokens = 0
                row = self.train_step()
                search_started = time.perf_counter()
                if self.algorithm.searches and is_search_step(
                        self.step, self.spec.search_schedule, self.spec.search_every):
                    self.search()
                row["search_s"] = time.perf_counter() - search_started
                self.wall_s += time.perf_counter() - started
                self.cpu_s += process_cpu_s() - cpu_started
                row.update(wall_s=self.wall_s, cpu_s=self.cpu_s,
                           val_responses=self.val_responses, val_tokens=self.val_tokens)
                self.log_rows.append(row)
                log_writer(identified([row], method, seed)[0])
                progress.set_postfix(acc=f"{row['batch_accuracy']:.2f}")
                if self.step in self.spec.save_steps:
                    self.save()
                if stop_after is not None and self.step >= stop_after:
                    return
        write_rows(search_csv, SEARCH_COLUMNS, identified(self.search_rows, method, seed))
        write_rows(index_csv, INDEX_COLUMNS, identified(
            [{"step": step, "path": str(path), "wall_s": _checkpoint_wall(path)}
             for step, path in self.checkpoints()], method, seed))


def train(run: RunRequest) -> None:
    """The local engine's entry point (:class:`effopd.training.contract.RunRequest`):
    ``fresh`` also when the config says ``training.on_stale: fresh``."""
    spec = TrainSpec.from_config(run.training, run.algorithm, run.grading)
    trainer = Trainer(spec, run.seed, run.student, run.teacher, run.train, run.val,
                      run.prompt, run.run_dir, device=run.device)
    trainer.run(run.log_csv, run.search_csv, run.index_csv, stop_after=run.stop_after,
                fresh=run.fresh or run.training.get("on_stale") == "fresh",
                run_name=run.run_name)


def _checkpoint_wall(path: Path) -> float:
    return read_json(path / "manifest.json")["wall_s"]


class _csv_writer:
    """Rewrite ``path`` with the rows so far, then append one row per call, flushed."""

    def __init__(self, path: str | Path, columns: list[str], rows: list[dict]) -> None:
        self.path, self.columns, self.rows = Path(path), columns, rows

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("w", newline="")
        self.writer = csv.DictWriter(self.handle, self.columns, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(self.rows)

        def write(row: dict) -> None:
            self.writer.writerow(row)
            self.handle.flush()

        return write

    def __exit__(self, *exc) -> None:
        self.handle.close()
