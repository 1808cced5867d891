"""Supervised fine-tuning on chain-of-thought solutions (builds the tiny teacher and student).

Loss: mean over response tokens of  -log p(y_t | prompt, y_<t)  (prompt tokens
are masked out). AdamW with linear warm-up then cosine decay to 10% of the
peak learning rate, gradient-norm clipping.
"""

from __future__ import annotations

import csv
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from effopd.config import dataclass_from_block
from effopd.prompts import DEFAULT_INSTRUCTION, render_prompt

IGNORE_INDEX = -100


@dataclass(frozen=True)
class SFTSpec:
    """The ``sft`` block of a built model's config."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 25

    @classmethod
    def from_config(cls, block: dict[str, Any]) -> SFTSpec:
        return dataclass_from_block(cls, block)


def encode_examples(tokenizer: PreTrainedTokenizerBase, examples: list[dict[str, Any]],
                    instruction: str = DEFAULT_INSTRUCTION) -> list[tuple[list[int], int]]:
    """Tokenise (prompt + solution + eos); return ``(ids, prompt_length)`` per example."""
    encoded = []
    for example in examples:
        prompt = render_prompt(tokenizer, example["question"], instruction)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(example["solution"], add_special_tokens=False)["input_ids"]
        encoded.append((prompt_ids + response_ids + [tokenizer.eos_token_id], len(prompt_ids)))
    return encoded


def collate(batch: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; labels are the ids with prompt and padding set to -100."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, prompt_length: len(ids)] = torch.tensor(ids[prompt_length:])
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def lr_at(step: int, spec: SFTSpec) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``0.1 * lr`` at ``steps``."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def supervised_finetune(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                        examples: list[dict[str, Any]], spec: SFTSpec, log_csv: str | Path,
                        instruction: str = DEFAULT_INSTRUCTION,
                        stop_after: int | None = None) -> PreTrainedModel:
    """Fine-tune ``model`` in place on ``examples`` (dicts with question and solution).

    Writes one CSV row every ``log_every`` steps: step, lr, loss, tokens/s, wall seconds.
    ``stop_after``: end after that many steps of the full schedule (the first rows of
    the log, exactly as a full run writes them).
    """
    encoded = encode_examples(tokenizer, examples, instruction)
    rng = random.Random(spec.seed)
    torch.manual_seed(spec.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=spec.lr, betas=(0.9, 0.95))
    model.train()
    start = time.perf_counter()
    Path(log_csv).parent.mkdir(parents=True, exist_ok=True)
    with open(log_csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "lr", "loss", "tokens_per_s", "wall_s"])
        running_loss, running_tokens, window_start = 0.0, 0, time.perf_counter()
        for step in tqdm(range(min(spec.steps, stop_after or spec.steps)), desc="sft",
                         mininterval=5):
            batch = collate(rng.sample(encoded, spec.batch_size), tokenizer.pad_token_id)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, spec)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            running_loss += loss.item()
            running_tokens += int(batch["attention_mask"].sum())
            if (step + 1) % spec.log_every == 0 or step + 1 == spec.steps:
                elapsed = time.perf_counter() - window_start
                steps_in_window = (step % spec.log_every) + 1
                writer.writerow([step + 1, f"{lr_at(step, spec):.3g}",
                                 f"{running_loss / steps_in_window:.4f}",
                                 f"{running_tokens / elapsed:.0f}",
                                 f"{time.perf_counter() - start:.1f}"])
                handle.flush()
                running_loss, running_tokens, window_start = 0.0, 0, time.perf_counter()
    model.eval()
    return model
