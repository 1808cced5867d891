"""EffOPD for TRL users: a ``transformers.TrainerCallback`` that adds the line search.

Attach it to any TRL trainer (``DistillationTrainer``, ``GRPOTrainer``, ...)::

    callback = EffOPDCallback(val_dataset, output_csv="effopd_search.csv")
    callback.attach(trainer)   # = trainer.add_callback(callback), and keeps the trainer
    trainer.train()

After the optimizer step of every power-of-two global step (``on_step_end``)
it runs :func:`effopd.training.extrapolation.line_search` (SPEC section 3) on
the model's transformer-block weights, exactly as the local engine does:

- the anchor ``theta_a`` is the student's block weights at the first step
  (float32), then the weights each search chooses; it is saved with every
  checkpoint (``checkpoint-N/effopd_anchor.safetensors``, with the search
  log so far in ``effopd_state.json``) and restored when the trainer resumes
  from that checkpoint;
- a candidate's score is, by default, math-verify accuracy on the
  validation set: one sample per prompt with the evaluation sampling settings
  (``temperature``, ``top_p``, ``max_new_tokens``), every candidate of one
  search sampled with the same seed (common random numbers, every engine's
  :func:`effopd.training.contract.search_seed`), graded by
  :func:`effopd.grading.grade_records` (the last ``\\boxed{}``, gold first);
  ``score_fn(model, step) -> float`` replaces it;
- float32 arithmetic whatever the parameters' dtype; the optimizer's moments
  and the learning-rate schedule are never touched (the search only writes the
  block parameters in place, so the optimizer keeps its state for the same
  tensors);
- every candidate goes to ``output_csv`` (columns method and seed, the run's
  identity: ``run_name`` and ``seed``; then step, iteration, multiplier,
  score, accepted: the local engine's ``effopd_search.csv``) and
  to the trainer's logger (``effopd/multiplier``, ``effopd/score``,
  ``effopd/accepted_searches``).

Generation: TRL's own model, sampled with ``transformers.generate`` through
:func:`effopd.generation.sample_completions`. When the trainer generates with
vLLM (``use_vllm=True``), TRL syncs weights to vLLM lazily, once per global
step; the callback forces ``trainer.vllm_generation.sync_weights()`` before
each candidate is scored and after the search, and samples the validation
set through ``trainer.vllm_generation.generate`` with a per-search seed in
vLLM's sampling parameters. That path needs a GPU and vLLM and is not run by
the CPU tests.

Distributed training: with plain data parallelism (accelerate/torchrun, DDP)
every process holds the full weights, so every process runs the same search
on its own copy while the main process alone generates and grades each
candidate and broadcasts the score: all processes take the same decisions and
stay identical. FSDP, DeepSpeed and vLLM with several processes are refused
at ``on_train_begin`` with a clear error (sharded weights would have to be
gathered, and TRL's vLLM calls are collective).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback

from effopd.generation import SamplingSpec, sample_completions
from effopd.grading import grade_records
from effopd.io import atomic_path, atomic_write_json, read_json, write_rows
from effopd.training.contract import (
    SEARCH_COLUMNS,
    block_parameters,
    identified,
    search_seed,
)
from effopd.training.extrapolation import (
    INITIAL_FACTOR,
    MAX_ITERATIONS,
    is_search_step,
    line_search,
    snapshot,
)

log = logging.getLogger(__name__)

ANCHOR_FILE = "effopd_anchor.safetensors"
STATE_FILE = "effopd_state.json"


def render_val_prompt(tokenizer: Any, prompt: str | list[dict[str, Any]],
                      chat_template_kwargs: Mapping[str, Any] | None = None) -> str:
    """A TRL-format prompt as text: conversational prompts through the chat template
    (with the generation prompt), standard prompts unchanged."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True,
                                         **dict(chat_template_kwargs or {}))


def checkpoint_dir(args: Any, step: int) -> Path:
    """The directory the HF ``Trainer`` saves step ``step`` to: ``output_dir/checkpoint-<step>``."""
    return Path(args.output_dir) / f"checkpoint-{step}"


class EffOPDCallback(TrainerCallback):
    """EffOPD's line search after the optimizer steps 1, 2, 4, 8, ... of a TRL trainer.

    ``val_dataset``: rows with ``prompt`` (a string or a TRL conversational
    list of messages) and ``answer`` (the gold answer, graded with
    math-verify). ``score_fn(model, step) -> float`` replaces the default
    score (validation accuracy); ``val_dataset`` may then be None.
    ``max_new_tokens`` defaults to the trainer's ``max_completion_length``.
    """

    def __init__(self, val_dataset: Iterable[Mapping[str, Any]] | None = None, *,
                 output_csv: str | Path | None = None,
                 score_fn: Callable[[torch.nn.Module, int], float] | None = None,
                 max_iterations: int = MAX_ITERATIONS, initial_factor: float = INITIAL_FACTOR,
                 temperature: float = 1.0, top_p: float = 1.0,
                 max_new_tokens: int | None = None, seed: int = 42, batch_size: int = 64,
                 grading_timeout_s: float = 5.0, grading_workers: int = 2,
                 resume_from: str | Path | None = None, run_name: str = "effopd") -> None:
        self.val_rows = [dict(row) for row in val_dataset] if val_dataset is not None else []
        if score_fn is None:
            if not self.val_rows:
                raise ValueError("EffOPDCallback needs a val_dataset (rows with 'prompt' and "
                                 "'answer') or a score_fn")
            for index, row in enumerate(self.val_rows):
                missing = {"prompt", "answer"} - set(row)
                if missing:
                    raise ValueError(f"EffOPDCallback: val_dataset row {index} lacks "
                                     f"{sorted(missing)} (keys: {sorted(row)})")
        self.score_fn = score_fn
        self.output_csv = Path(output_csv) if output_csv is not None else None
        self.max_iterations, self.initial_factor = max_iterations, initial_factor
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.seed, self.batch_size, self.run_name = seed, batch_size, run_name
        self.grading_timeout_s, self.grading_workers = grading_timeout_s, grading_workers
        self.resume_from = Path(resume_from) if resume_from is not None else None
        self.trainer: Any = None
        self.anchor: dict[str, torch.Tensor] | None = None
        self.search_rows: list[dict[str, Any]] = []
        self.search_s = 0.0         # seconds spent in the searches of the last step
        self.val_tokens = 0         # tokens sampled by the validation rollouts of the last step
        self.val_responses = 0      # and the responses

    # ----------------------------------------------------------------- set-up
    def attach(self, trainer: Any) -> EffOPDCallback:
        """Register with ``trainer`` (``trainer.add_callback``) and keep it, for its
        tokenizer, generation settings, vLLM engine and accelerator."""
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    def _tokenizer(self) -> Any:
        trainer = self.trainer
        tokenizer = getattr(trainer, "_tokenizer", None) or trainer.processing_class
        return getattr(tokenizer, "tokenizer", tokenizer)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.trainer is None:
            raise ValueError("EffOPDCallback was added without its trainer: register it with "
                             "callback.attach(trainer) instead of trainer.add_callback")
        processes = getattr(getattr(self.trainer, "accelerator", None), "num_processes", 1)
        sharded = [name for name, on in (
            ("FSDP", getattr(self.trainer, "is_fsdp_enabled", False)),
            ("DeepSpeed", getattr(self.trainer, "is_deepspeed_enabled", False)),
            ("vLLM", self._uses_vllm())) if on]
        if processes > 1 and sharded:
            raise RuntimeError(
                f"EffOPDCallback: {processes} processes with {' and '.join(sharded)} are not "
                "supported: the search needs every process to hold the full block weights and "
                "to generate on the main process alone. Use plain data parallelism (DDP), one "
                "process, or the verl engine for sharded multi-GPU EffOPD")
        per_generation = getattr(args, "steps_per_generation", None) or \
            args.gradient_accumulation_steps
        if per_generation != args.gradient_accumulation_steps or \
                getattr(args, "num_iterations", 1) != 1:
            log.warning("EffOPDCallback: one generation batch spans several optimizer steps "
                        "(steps_per_generation/num_iterations), so the steps after a search "
                        "train on rollouts sampled before it")
        blocks = block_parameters(model)
        if not blocks:
            raise ValueError(f"EffOPDCallback: {type(model).__name__} has no transformer-block "
                             "parameters named like 'model.layers.<i>.' (a PEFT-wrapped model?)")
        if state.global_step > 0:
            self._restore(args, state, blocks)
        else:
            self.anchor = snapshot(blocks)
            self.search_rows = []
        self._write_csv()

    def _restore(self, args, state, blocks: Mapping[str, torch.Tensor]) -> None:
        """Load the anchor and search log saved with the checkpoint being resumed."""
        step = state.global_step
        candidates = [p for p in (self.resume_from,
                                  Path(args.resume_from_checkpoint)
                                  if isinstance(args.resume_from_checkpoint, str) else None,
                                  checkpoint_dir(args, step)) if p is not None]
        for path in candidates:
            if (path / ANCHOR_FILE).exists() and (path / STATE_FILE).exists():
                saved = read_json(path / STATE_FILE)
                if saved["step"] != step:
                    continue
                device = next(iter(blocks.values())).device
                anchor = {k: v.to(device) for k, v in load_file(str(path / ANCHOR_FILE)).items()}
                if set(anchor) != set(blocks):
                    raise ValueError(f"{path / ANCHOR_FILE}: its tensors differ from the model's "
                                     "block parameters")
                self.anchor, self.search_rows = anchor, saved["search_rows"]
                log.info("EffOPD: resumed the anchor and %d search rows from %s",
                         len(self.search_rows), path)
                return
        raise FileNotFoundError(
            f"EffOPD: resuming at step {step} but no {ANCHOR_FILE} with that step in "
            f"{[str(p) for p in candidates]}; pass resume_from=<checkpoint dir>")

    # ----------------------------------------------------------------- search
    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.search_s, self.val_tokens, self.val_responses = 0.0, 0, 0
        step = state.global_step
        if not is_search_step(step):  # the authors' schedule (the schema's default)
            return control
        started = time.perf_counter()
        seed = search_seed(self.seed, step)
        score = (lambda: self.score_fn(model, step)) if self.score_fn is not None \
            else (lambda: self.validation_accuracy(model, seed))
        records, self.anchor = line_search(block_parameters(model), self.anchor,
                                           lambda: self._score_on_main(score), step=step,
                                           max_iterations=self.max_iterations,
                                           initial_factor=self.initial_factor)
        self._sync_vllm()  # the chosen weights, for the next rollout
        rows = [r.as_row() for r in records]
        self.search_rows.extend(rows)
        self._write_csv()
        self.search_s = time.perf_counter() - started
        chosen = max(r.multiplier for r in records if r.accepted)
        log.info("EffOPD step %d: multiplier %g, scores %s", step, chosen,
                 [round(r.score, 4) for r in records])
        if self.trainer is not None:
            # transformers' own Trainer.log: TRL's override would flush (and lose) the
            # step's generation metrics, which its regular log call averages later; and
            # keep should_log, which on_log clears (the step's own log must still happen)
            should_log = control.should_log
            for row in rows:
                Trainer.log(self.trainer, {f"effopd/{key}": float(row[key])
                                  for key in ("iteration", "multiplier", "score", "accepted")})
            accepted = sum(1 for r in self.search_rows if r["accepted"] and r["iteration"] > 0)
            Trainer.log(self.trainer, {"effopd/chosen_multiplier": chosen,
                              "effopd/accepted_candidates": float(accepted),
                              "effopd/search_s": self.search_s})
            control.should_log = should_log
        return control

    def _score_on_main(self, score: Callable[[], float]) -> float:
        """``score()`` on the main process, broadcast to the others (DDP: every process holds
        the same weights, moves them the same way and must take the same decision)."""
        accelerator = getattr(self.trainer, "accelerator", None)
        if accelerator is None or accelerator.num_processes == 1:
            return self._keep_rng(score)
        from accelerate.utils import broadcast_object_list

        value = [self._keep_rng(score) if accelerator.is_main_process else None]
        broadcast_object_list(value, from_process=0)
        return float(value[0])

    @staticmethod
    def _keep_rng(score: Callable[[], float]) -> float:
        """Score without disturbing the trainer's random streams (sampling reseeds torch)."""
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            return float(score())

    def _uses_vllm(self) -> bool:
        return bool(getattr(self.trainer, "use_vllm", False))

    def _sync_vllm(self) -> None:
        """Push the live weights to vLLM now (TRL only syncs when the global step changes)."""
        if self._uses_vllm():
            self.trainer.vllm_generation.sync_weights()
            self.trainer._last_loaded_step = self.trainer.state.global_step

    def _sampling_spec(self) -> SamplingSpec:
        max_new = self.max_new_tokens or getattr(self.trainer.args, "max_completion_length", None)
        if not max_new:
            raise ValueError("EffOPDCallback: set max_new_tokens (the trainer has no "
                             "max_completion_length)")
        return SamplingSpec(temperature=self.temperature, top_p=self.top_p, n=1,
                            max_new_tokens=int(max_new), batch_size=self.batch_size)

    def _val_prompts(self) -> list[str]:
        kwargs = getattr(self.trainer, "chat_template_kwargs", None) or {}
        return [render_val_prompt(self._tokenizer(), row["prompt"], kwargs)
                for row in self.val_rows]

    def validation_accuracy(self, model: torch.nn.Module, seed: int) -> float:
        """Mean math-verify accuracy of one sample per validation prompt (sampled with ``seed``)."""
        return self.grade_accuracy(self.sample_texts(model, seed))

    def sample_texts(self, model: torch.nn.Module, seed: int) -> list[str]:
        """One response per validation prompt, sampled with ``seed`` (the same seed for every
        candidate of a search: common random numbers); counts the tokens in ``val_tokens``."""
        tokenizer, spec = self._tokenizer(), self._sampling_spec()
        prompts = self._val_prompts()
        if self._uses_vllm():
            token_ids = self._generate_vllm(prompts, seed)
            texts = tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        else:
            padding_side = tokenizer.padding_side
            try:
                groups = sample_completions(model, tokenizer, prompts, spec, generator_seed=seed)
            finally:
                tokenizer.padding_side = padding_side
            token_ids = [group[0].token_ids for group in groups]
            texts = [group[0].text for group in groups]
        self.val_tokens += sum(len(ids) for ids in token_ids)
        self.val_responses += len(token_ids)
        return texts

    def grade_accuracy(self, texts: list[str]) -> float:
        """Fraction of ``texts`` whose last ``\\boxed{}`` math-verify judges equal to the gold
        ``answer`` of the matching validation row (gold first; a timeout is wrong)."""
        graded = grade_records([{"gold": str(row["answer"]), "response": text}
                                for row, text in zip(self.val_rows, texts, strict=True)],
                               timeout_s=self.grading_timeout_s, workers=self.grading_workers,
                               progress=False)
        return sum(row["correct"] for row in graded) / len(graded)

    def _generate_vllm(self, prompts: list[str], seed: int) -> list[list[int]]:
        """One sample per prompt from the trainer's vLLM engine, after syncing the live weights.

        The seed goes into vLLM's sampling parameters for this call only (common
        random numbers across a search's candidates). Untested here: needs a GPU.
        """
        self._sync_vllm()
        generation = self.trainer.vllm_generation
        prompt_ids = [self._tokenizer()(p, add_special_tokens=False)["input_ids"] for p in prompts]
        saved = (generation.temperature, generation.top_p, generation.max_completion_length,
                 generation.generation_kwargs)
        spec = self._sampling_spec()
        generation.temperature, generation.top_p = spec.temperature, spec.top_p
        generation.max_completion_length = spec.max_new_tokens
        generation.generation_kwargs = {**(generation.generation_kwargs or {}), "seed": seed}
        try:
            _, completion_ids, _, _ = generation.generate(prompts=prompt_ids, images=None,
                                                          num_generations=1)
        finally:
            (generation.temperature, generation.top_p, generation.max_completion_length,
             generation.generation_kwargs) = saved
        return completion_ids

    # ------------------------------------------------------------ checkpoints
    def on_save(self, args, state, control, **kwargs):
        """Save the anchor (float32 safetensors) and the search log beside the checkpoint."""
        path = checkpoint_dir(args, state.global_step)
        if not state.is_world_process_zero or not path.is_dir() or self.anchor is None:
            return control
        with atomic_path(path / ANCHOR_FILE) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.anchor.items()},
                      str(tmp))
        atomic_write_json(path / STATE_FILE, {"step": state.global_step,
                                              "search_rows": self.search_rows})
        return control

    def _write_csv(self) -> None:
        accelerator = getattr(self.trainer, "accelerator", None)
        if self.output_csv is None or (accelerator is not None
                                       and not accelerator.is_main_process):
            return
        write_rows(self.output_csv, SEARCH_COLUMNS,
                   identified(self.search_rows, self.run_name, self.seed))


def load_anchor(checkpoint: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The anchor and state an :class:`EffOPDCallback` saved in ``checkpoint``."""
    path = Path(checkpoint)
    return load_file(str(path / ANCHOR_FILE)), json.loads((path / STATE_FILE).read_text())
