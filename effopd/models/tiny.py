"""Qwen3-architecture models of a few hundred thousand parameters, built offline.

They are ordinary ``transformers`` ``Qwen3ForCausalLM`` models: saved with
``save_pretrained`` (config.json, model.safetensors, generation_config.json),
they load with ``AutoModelForCausalLM.from_pretrained`` like the real Qwen3
checkpoints. Input and output embeddings are tied, as in Qwen3-0.6B/1.7B/4B.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM

ARCH_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "max_position_embeddings", "rope_theta")


def init_tiny_qwen3(arch: dict[str, Any], tokenizer: PreTrainedTokenizerBase,
                    seed: int) -> Qwen3ForCausalLM:
    """Randomly initialise a Qwen3 model with the config's ``arch`` block.

    The vocabulary and the special-token ids come from ``tokenizer``.
    """
    unknown = set(arch) - set(ARCH_KEYS)
    if unknown:
        raise ValueError(f"arch: unknown keys {sorted(unknown)}; allowed: {list(ARCH_KEYS)}")
    eos_ids = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    config = Qwen3Config(vocab_size=len(tokenizer), tie_word_embeddings=True,
                         bos_token_id=None, eos_token_id=eos_ids[0],
                         pad_token_id=tokenizer.pad_token_id, torch_dtype="float32", **arch)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos_ids,
                                               pad_token_id=tokenizer.pad_token_id,
                                               do_sample=True, temperature=1.0, top_p=1.0)
    return model
