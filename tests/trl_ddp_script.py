"""Run by tests/test_trl.py under torchrun (2 CPU processes, gloo): DistillationTrainer with
EffOPDCallback and a scripted score; each rank saves what it saw and its final weights.

Arguments: student_dir teacher_dir train_json out_dir.
"""

import json
import os
import sys
from pathlib import Path

import torch
import trl
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from effopd.integrations.trl import EffOPDCallback
from effopd.training.contract import block_parameters

SCRIPT = {1: [0.1, 0.2, 0.15], 2: [0.3, 0.2]}  # step 1: accept 3, reject 5; step 2: reject 3


def blocks(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().clone() for k, v in block_parameters(model).items()}


def main() -> None:
    torch.set_num_threads(1)
    student_dir, teacher_dir, train_json, out = sys.argv[1:5]
    out = Path(out)
    calls: dict[int, int] = {}
    seen: dict[int, list] = {}

    def score(model, step: int) -> float:
        calls[step] = calls.get(step, 0) + 1
        seen.setdefault(step, []).append(blocks(model))
        return SCRIPT[step][calls[step] - 1]

    args = trl.DistillationConfig(
        output_dir=str(out / "run"), max_steps=2, per_device_train_batch_size=2,
        learning_rate=1e-3, max_completion_length=8, bf16=False, use_cpu=True,
        gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to=[], seed=0)
    load = lambda path: AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)  # noqa: E731
    trainer = trl.DistillationTrainer(
        model=load(student_dir), teacher_model=load(teacher_dir), args=args,
        train_dataset=Dataset.from_list(json.loads(Path(train_json).read_text())),
        processing_class=AutoTokenizer.from_pretrained(student_dir))
    EffOPDCallback(score_fn=score, output_csv=out / "search.csv").attach(trainer)
    trainer.train()
    torch.save({"calls": calls, "seen": seen, "final": blocks(trainer.model),
                "processes": trainer.accelerator.num_processes},
               out / f"rank{os.environ.get('RANK', '0')}.pt")


if __name__ == "__main__":
    main()
