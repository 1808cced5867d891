"""Why sampled-token OPD learns slowly here: how well one batch's gradient points
along the exact one, at the base student, for several batch sizes (issue 19).

For a batch of the student's own samples (one per prompt, T = 1) it computes three
gradients of the token-mean loss over the response tokens:

- ``k1``: the paper's sampled-token gradient, ``-(1/N) sum_t A_t grad log p_S(y_t)``
  with ``A_t = log p_T(y_t) - log p_S(y_t)`` (SPEC section 2; on-policy PPO-clip);
- ``exact``: its expectation over each position's token, the gradient of
  ``(1/N) sum_t KL(p_S(.|prefix_t) || p_T(.|prefix_t))`` (full vocabulary);
- ``k1'``: the k1 gradient of an independent batch of the same size.

and prints cos(k1, exact) over the same prefixes, cos(k1, k1') (two batches agree
only as far as they share signal) and cos(exact, exact') across batches, averaged over
``--repeats`` draws. A cosine near 0 means a step is mostly noise, which Adam
(per-coordinate normalisation) turns into a random walk of size lr per coordinate.

    python pilots/gradient_noise.py --sizes 64 256 1024
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from effopd.cpu_kernels import pin_cpu_kernels  # noqa: E402

pin_cpu_kernels("avx2")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from effopd.generation import SamplingSpec, sample_completions  # noqa: E402
from effopd.io import read_jsonl  # noqa: E402
from effopd.prompts import DEFAULT_INSTRUCTION, render_prompt  # noqa: E402
from effopd.training.losses import opd_advantages, ppo_clip_loss, token_logprobs  # noqa: E402
from effopd.training.trainer import build_batch  # noqa: E402


def gradients(student, teacher, tokenizer, rows, size, seed):
    rng = random.Random(seed)
    picked = rng.sample(rows, size)
    prompts = [render_prompt(tokenizer, r["question"], DEFAULT_INSTRUCTION) for r in picked]
    spec = SamplingSpec(temperature=1.0, top_p=1.0, n=1, max_new_tokens=48, batch_size=256)
    groups = sample_completions(student, tokenizer, prompts, spec, generator_seed=seed)
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    batch = build_batch(prompt_ids, [g[0].token_ids for g in groups], tokenizer.pad_token_id,
                        torch.device("cpu"))
    mask = batch.response_mask
    logits = student(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
    with torch.no_grad():
        t_logits = teacher(input_ids=batch.input_ids,
                           attention_mask=batch.attention_mask).logits[:, :-1]
    targets = batch.input_ids[:, 1:]
    logp = token_logprobs(logits, targets)
    adv = opd_advantages(token_logprobs(t_logits, targets), logp.detach())
    params = [p for p in student.parameters()]
    k1 = torch.autograd.grad(ppo_clip_loss(logp, logp.detach(), adv, mask), params,
                             retain_graph=True)
    s_all, t_all = logits.float().log_softmax(-1), t_logits.float().log_softmax(-1)
    exact_loss = ((s_all.exp() * (s_all - t_all)).sum(-1) * mask).sum() / mask.sum()
    exact = torch.autograd.grad(exact_loss, params)
    flat = lambda g: torch.cat([x.reshape(-1) for x in g])  # noqa: E731
    return flat(k1), flat(exact)


def cos(a, b):
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default=str(ROOT / "artifacts/tiny/models/student"))
    parser.add_argument("--teacher", default=str(ROOT / "artifacts/tiny/models/teacher"))
    parser.add_argument("--train", default=str(ROOT / "artifacts/tiny/data/train.jsonl"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(args.student)
    student = AutoModelForCausalLM.from_pretrained(args.student, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher, dtype=torch.float32).eval()
    rows = read_jsonl(args.train)
    print("| prompts per batch | cos(k1, exact), same batch | cos(k1, k1'), two batches "
          "| cos(exact, exact'), two batches |")
    print("| --- | --- | --- | --- |")
    for size in args.sizes:
        same, k1s, exacts = [], [], []
        for repeat in range(args.repeats):
            k1_a, ex_a = gradients(student, teacher, tokenizer, rows, size, 2 * repeat)
            k1_b, ex_b = gradients(student, teacher, tokenizer, rows, size, 2 * repeat + 1)
            same += [cos(k1_a, ex_a), cos(k1_b, ex_b)]
            k1s.append(cos(k1_a, k1_b))
            exacts.append(cos(ex_a, ex_b))
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        print(f"| {size} | {mean(same):.3f} | {mean(k1s):.3f} | {mean(exacts):.3f} |")


if __name__ == "__main__":
    main()
