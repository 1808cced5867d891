"""A character-level tokenizer for the tiny models, saved as a real HF tokenizer.

Every printable ASCII character and the newline is one token; the chat markers
``<|im_start|>`` and ``<|im_end|>`` and the padding token ``<|endoftext|>`` are
single special tokens, as in Qwen3's vocabulary. A few fixed phrases are single
ordinary tokens, as a BPE vocabulary would merge them: the role names ``user``
and ``assistant`` and the prompt's instruction sentence (taken from the
config). That keeps every problem and every solution character-level while
cutting the prompt from ~110 to ~30 tokens, which is most of the compute of a
CPU training step. The chat template follows Qwen's ChatML layout; the tiny
models have no thinking mode, so ``enable_thinking`` is accepted and ignored.
"""

from __future__ import annotations

import string
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
UNK_TOKEN = "<|unk|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END, UNK_TOKEN]
CHARACTERS = sorted(set(string.printable) - set("\t\r\x0b\x0c"))

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)


ROLE_TOKENS = ["user", "assistant"]


def build_char_tokenizer(phrases: list[str] | tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """Build the character-level tokenizer (deterministic: same ids every time).

    ``phrases`` (e.g. the prompt's instruction) become single ordinary tokens
    after the role names; everything else is one token per character.
    """
    words = list(dict.fromkeys(ROLE_TOKENS + [p for p in phrases if p]))
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + CHARACTERS + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_tokens([AddedToken(word, normalized=False) for word in words])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=IM_END, pad_token=PAD_TOKEN, unk_token=UNK_TOKEN,
        additional_special_tokens=[IM_START], padding_side="left",
        model_max_length=1024, clean_up_tokenization_spaces=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_char_tokenizer(out_dir: str | Path,
                        phrases: list[str] | tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """Build the tokenizer and save it (tokenizer.json, config, chat template) to ``out_dir``."""
    tokenizer = build_char_tokenizer(phrases)
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer
