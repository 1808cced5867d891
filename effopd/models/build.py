"""Build a tiny teacher or student offline: initialise a Qwen3 model, SFT it, save it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from effopd.io import read_jsonl
from effopd.models.checkpoint import save_checkpoint
from effopd.models.tiny import init_tiny_qwen3
from effopd.provenance import sha256_file
from effopd.sft import SFTSpec, supervised_finetune

log = logging.getLogger(__name__)


def build_model(spec: dict[str, Any], prompt: dict[str, Any], tokenizer_dir: str | Path,
                train_file: str | Path, out_dir: str | Path, log_csv: str | Path) -> None:
    """Initialise ``spec['arch']``, fine-tune with ``spec['sft']`` on ``train_file``, save.

    The checkpoint's manifest records the architecture, the SFT knobs and the
    sha256 of the training data, next to the sha256 of every saved file.
    """
    if spec.get("source") != "build":
        raise ValueError(f"build-model: models block has source {spec.get('source')!r}, "
                         "expected 'build'")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    examples = read_jsonl(train_file)
    sft = SFTSpec.from_config(spec["sft"])
    model = init_tiny_qwen3(spec["arch"], tokenizer, seed=sft.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("initialised Qwen3 with %d parameters; SFT for %d steps on %d examples",
             n_params, sft.steps, len(examples))
    supervised_finetune(model, tokenizer, examples, sft, log_csv,
                        instruction=prompt["instruction"])
    save_checkpoint(model, tokenizer, out_dir, {
        "source": "build", "arch": spec["arch"], "sft": spec["sft"], "n_parameters": n_params,
        "train_data": {"path": str(train_file), "sha256": sha256_file(train_file)},
    })
    log.info("saved %s", out_dir)
