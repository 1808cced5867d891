"""Benchmark: the sampling loop of effopd.generation against transformers' ``generate``.

Both sample the same prompts (the tiny test split rendered through the chat template)
with the same model, temperature 1, top_p 1, on one CPU thread; the table gives CPU
seconds per call, samples per CPU second and the ratio, for n = 1 (training rollouts,
interventions) and n = 4 (checkpoint evaluation)::

    python benchmarks/sampling_speed.py                        # artifacts/tiny/models/student
    python benchmarks/sampling_speed.py --model DIR --problems 128 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from effopd.generation import SamplingSpec, sample_completions, stop_token_ids
from effopd.prompts import render_prompt

REPO = Path(__file__).resolve().parents[1]


def hf_generate(model, tokenizer, prompts: list[str], spec: SamplingSpec) -> int:
    """transformers' generate on the same batches (the replaced path); returns tokens."""
    tokenizer.padding_side = "left"
    eos = sorted(stop_token_ids(model.generation_config.eos_token_id, tokenizer.eos_token_id))
    tokens = 0
    for start in range(0, len(prompts), spec.batch_size):
        encoded = tokenizer(prompts[start:start + spec.batch_size], return_tensors="pt",
                            padding=True, add_special_tokens=False)
        out = model.generate(**encoded, max_new_tokens=spec.max_new_tokens, do_sample=True,
                             temperature=1.0, top_p=1.0, top_k=0, num_return_sequences=spec.n,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
        tokens += int((out[:, encoded["input_ids"].shape[1]:] != tokenizer.pad_token_id).sum())
    return tokens


def timed(function, *args, **kwargs):
    """(CPU seconds, result) of one call."""
    start = time.process_time()
    produced = function(*args, **kwargs)
    return time.process_time() - start, produced


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "artifacts/tiny/models/student"))
    parser.add_argument("--problems", default=str(REPO / "artifacts/tiny/data/test.jsonl"))
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    rows = [json.loads(line) for line in Path(args.problems).read_text().splitlines()]
    prompts = [render_prompt(tokenizer, r["question"] if "question" in r else r["problem"])
               for r in rows[:args.limit]]
    print("| n | samples | generate CPU s | ours CPU s | speed-up | mean response tokens |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in (1, 4):
        spec = SamplingSpec(n=n, max_new_tokens=48, batch_size=256, seed=0)
        theirs, ours, lengths = [], [], []
        for repeat in range(args.repeats):
            torch.manual_seed(repeat)
            theirs.append(timed(hf_generate, model, tokenizer, prompts, spec)[0])
            seconds, groups = timed(sample_completions, model, tokenizer, prompts, spec,
                                    generator_seed=repeat)
            ours.append(seconds)
            lengths += [len(c.token_ids) for g in groups for c in g]
        hf_s, our_s = min(theirs), min(ours)
        print(f"| {n} | {len(prompts) * n} | {hf_s:.2f} | {our_s:.2f} | {hf_s / our_s:.2f}x | "
              f"{sum(lengths) / len(lengths):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
