"""Sampling completions, behind one interface with two backends.

- ``transformers``: a KV-cached sampling loop over a Hugging Face model (left
  padding; finished rows leave the batch); CPU or one GPU.
  Also used in-process by the trainers, which need token ids and a live model.
- ``vllm``: GPU only, imported lazily so that CPU installs never need it. One
  ``LLM`` per call: the evaluation rule runs one process per checkpoint.

Sampling settings come from the config's ``generation`` block.
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from effopd.config import dataclass_from_block
from effopd.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingSpec:
    """Sampling settings (the config's ``generation`` block)."""

    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    max_new_tokens: int = 64
    seed: int = 42
    batch_size: int = 64
    backend: str = "transformers"
    dtype: str = "auto"
    vllm: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, block: dict[str, Any], **overrides: Any) -> SamplingSpec:
        return dataclass_from_block(cls, block, **overrides)


@dataclass
class Completion:
    """One sampled response: its token ids (no padding, eos kept) and decoded text."""

    token_ids: list[int]
    text: str


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` = bfloat16 on GPU, float32 on CPU; else the named torch dtype."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def stop_token_ids(config_eos: int | list[int] | None, tokenizer_eos: int | None) -> set[int]:
    """The ids that end a response: ``generation_config.eos_token_id`` (None, one int or
    a list, as transformers and TRL save it) and the tokenizer's eos token."""
    if config_eos is None:
        ids: set[int] = set()
    elif isinstance(config_eos, int):
        ids = {config_eos}
    else:
        ids = {int(i) for i in config_eos}
    if tokenizer_eos is not None:
        ids.add(tokenizer_eos)
    if not ids:
        raise ValueError("neither generation_config.eos_token_id nor the tokenizer names an "
                         "end-of-sequence token")
    return ids


def sample_next_tokens(logits: torch.Tensor, temperature: float, top_p: float,
                       noise: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row from ``softmax(logits / T)`` restricted to the nucleus.

    The nucleus is the smallest set of most-probable tokens whose probability
    sums to at least ``top_p`` (the most probable token always stays in);
    ``temperature <= 0`` is greedy (argmax). The draw is the exponential race
    argmax_v p_v / E_v with E_v ~ Exp(1) i.i.d. (the Gumbel-max trick: exactly a
    draw from p), using ``noise`` (E, same shape as ``logits``) when given, so that
    a row's token depends on its own noise only; fresh noise from torch's global
    generator otherwise.
    """
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    if noise is None:
        noise = torch.empty_like(probs).exponential_()
    return (probs / noise).argmax(dim=-1)


@torch.no_grad()
def _sample_batch(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  spec: SamplingSpec, eos_ids: set[int],
                  generator: torch.Generator) -> list[list[int]]:
    """Sample ``spec.n`` responses per prompt of a left-padded batch, up to
    ``spec.max_new_tokens`` tokens each; rows come out prompt-major
    (prompt 0's n responses, then prompt 1's, ...).

    A KV-cached decoding loop: each prompt is encoded once and its cache
    copied to its ``n`` rows; a row leaves the batch (and the cache) as soon
    as it emits an end-of-sequence token, so that finished responses cost
    nothing; positions come from the attention mask, as in ``generate``. At every
    step ``generator`` draws the noise of every row, running or not, so that a
    row's tokens depend on its own prompt and noise only, never on when the
    other rows end: the same seed gives the same prompt position the same
    random numbers (common random numbers across checkpoints and across the
    candidates of EffOPD's line search, like vLLM's per-request seeds).
    Returns each row's new token ids, the end-of-sequence token kept.
    """
    from transformers import DynamicCache

    positions = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                   past_key_values=cache, use_cache=True, logits_to_keep=1)
    logits = output.logits[:, -1, :]
    if spec.n > 1:
        expand = torch.arange(input_ids.shape[0], device=input_ids.device)
        expand = expand.repeat_interleave(spec.n)
        cache.batch_select_indices(expand)
        logits, attention_mask = logits[expand], attention_mask[expand]
        positions = positions[expand]
    rows = attention_mask.shape[0]
    responses: list[list[int]] = [[] for _ in range(rows)]
    alive = torch.arange(rows)
    next_position = positions[:, -1:] + 1
    eos = torch.tensor(sorted(eos_ids), device=input_ids.device)
    for step in range(spec.max_new_tokens):
        noise = torch.empty((rows, logits.shape[-1]), device=logits.device)
        noise = noise.exponential_(generator=generator)[alive.to(logits.device)]
        tokens = sample_next_tokens(logits, spec.temperature, spec.top_p, noise)
        for row, token in zip(alive.tolist(), tokens.tolist(), strict=True):
            responses[row].append(token)
        if step + 1 == spec.max_new_tokens:
            break
        running = ~torch.isin(tokens, eos)
        if not bool(running.all()):
            if not bool(running.any()):
                break
            keep = running.nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            alive, tokens = alive[keep.cpu()], tokens[keep]
            attention_mask, next_position = attention_mask[keep], next_position[keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(alive), 1))],
                                   dim=-1)
        output = model(input_ids=tokens[:, None], attention_mask=attention_mask,
                       position_ids=next_position, past_key_values=cache, use_cache=True)
        logits = output.logits[:, -1, :]
        next_position = next_position + 1
    return responses


@torch.no_grad()
def sample_completions(model: PreTrainedModel, tokenizer: Any, prompts: list[str],
                       spec: SamplingSpec, generator_seed: int | None = None,
                       progress: bool = False) -> list[list[Completion]]:
    """Sample ``spec.n`` completions for every prompt with a live model.

    Prompts are already rendered through the chat template and sampled
    ``spec.batch_size`` prompts at a time (``n`` rows each). Returns one list
    of ``n`` completions per prompt, in order.
    """
    generator = torch.Generator(device=model.device)
    generator.manual_seed(spec.seed if generator_seed is None else generator_seed)
    eos_ids = stop_token_ids(model.generation_config.eos_token_id, tokenizer.eos_token_id)
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    results: list[list[Completion]] = []
    batches = range(0, len(prompts), spec.batch_size)
    for start in tqdm(batches, desc="generate", disable=not progress, mininterval=5):
        chunk = prompts[start: start + spec.batch_size]
        encoded = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        new_tokens = _sample_batch(model, encoded["input_ids"].to(model.device),
                                   encoded["attention_mask"].to(model.device), spec, eos_ids,
                                   generator)
        for prompt_index in range(len(chunk)):
            group = [Completion(ids, tokenizer.decode(ids, skip_special_tokens=True))
                     for ids in new_tokens[prompt_index * spec.n: (prompt_index + 1) * spec.n]]
            results.append(group)
    model.train(was_training)
    return results


def generate_transformers(model_dir: str | Path, prompts: list[str], spec: SamplingSpec,
                          device: str | None = None) -> list[list[str]]:
    """Load a Hugging Face checkpoint and sample ``spec.n`` texts per prompt."""
    target = resolve_device(device or "auto")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir),
                                                 dtype=resolve_dtype(spec.dtype, target))
    model.to(target)
    groups = sample_completions(model, tokenizer, prompts, spec, progress=True)
    return [[completion.text for completion in group] for group in groups]


def generate_vllm(model_dir: str | Path, prompts: list[str],
                  spec: SamplingSpec) -> list[list[str]]:  # pragma: no cover - needs a GPU
    """Sample with vLLM (GPU only). ``generation_config="vllm"`` stops the checkpoint's
    generation_config.json from overriding the explicit SamplingParams."""
    from vllm import LLM, SamplingParams  # lazy: no CPU build of vLLM

    engine_kwargs = {"dtype": spec.dtype, **spec.vllm}
    llm = LLM(model=str(model_dir), seed=spec.seed, generation_config="vllm", **engine_kwargs)
    params = SamplingParams(n=spec.n, temperature=spec.temperature, top_p=spec.top_p,
                            max_tokens=spec.max_new_tokens, seed=spec.seed)
    outputs = llm.generate(prompts, params)
    return [[choice.text for choice in output.outputs] for output in outputs]


def generate(model_dir: str | Path, prompts: list[str], spec: SamplingSpec,
             device: str | None = None) -> list[list[str]]:
    """Sample ``spec.n`` completions per rendered prompt with the configured backend."""
    if spec.backend == "transformers":
        return generate_transformers(model_dir, prompts, spec, device)
    if spec.backend == "vllm":
        # One fresh process per checkpoint: vLLM frees its GPU memory only on exit.
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(generate_vllm, (str(model_dir), prompts, spec))
    raise ValueError(f"generation.backend: unknown backend {spec.backend!r} "
                     "(expected 'transformers' or 'vllm')")
