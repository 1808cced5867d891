"""The tokens a checkpoint generated: the input of the embedding-shift analysis.

:func:`final_samples_file` finds the final checkpoint's generations (a JSONL
with ``response``, or ``step_XXXXXX.jsonl`` in a directory of them) and
:func:`generated_token_ids` tokenises the responses with the checkpoint's own
tokenizer.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from effopd.io import read_jsonl

PathLike = str | os.PathLike[str]


def final_samples_file(samples: PathLike, final_step: int | None) -> Path:
    """A samples JSONL, or in a directory of ``step_XXXXXX.jsonl`` the final step's file."""
    path = Path(samples)
    if path.is_file():
        return path
    if path.is_dir():
        if final_step is None:
            raise ValueError(f"{path}: a samples directory needs the final checkpoint's step")
        target = path / f"step_{final_step:06d}.jsonl"
        if not target.is_file():
            raise FileNotFoundError(f"{target}: no generations of the final step {final_step}")
        return target
    raise FileNotFoundError(f"{path}: no such samples file or directory")


def generated_token_ids(samples_jsonl: PathLike, tokenizer_dir: PathLike) -> np.ndarray:
    """Unique token ids of the ``response`` texts, tokenized by the checkpoint's tokenizer.

    As the authors: the ids of everything the model generated on the
    evaluation set, each id once. Empty when no response has a token.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    ids: set[int] = set()
    for row in read_jsonl(samples_jsonl):
        text = row.get("response") or ""
        if text:
            ids.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    return np.array(sorted(ids), dtype=np.int64)
