"""effopd.generation's vllm backend called directly on the DAG's student (one engine start):
the seed rule (reproducible, independent of the batch, no stream shared between problems),
stop tokens and length, a clean exit.

Statistics: alpha = 0.01, stated at the test.
"""

from __future__ import annotations

import multiprocessing

import pytest
from scipy import stats
from transformers import AutoTokenizer

from effopd.generation import SamplingSpec, checkpoint_stop_ids, generate
from effopd.io import read_jsonl
from effopd.prompts import render_prompt

SPEC = SamplingSpec(backend="vllm", n=4, max_new_tokens=24, seed=42)


@pytest.fixture(scope="module")
def direct(vllm_dag):
    """Problems 0-63 of the benchmark in reverse order, each twice: under its own id (the
    DAG sampled it in another batch) and under a twin id (the same prompt)."""
    student = vllm_dag / "artifacts/smoke/models/student"
    problems = read_jsonl(vllm_dag / "artifacts/smoke/benchmarks/tiny_test.jsonl")[:64][::-1]
    tokenizer = AutoTokenizer.from_pretrained(student)
    prompts = [render_prompt(tokenizer, p["problem"]) for p in problems]
    ids = [p["id"] for p in problems] + [f"{p['id']}-twin" for p in problems]
    texts = generate(student, prompts + prompts, SPEC, ids)
    return problems, texts[:64], texts[64:], tokenizer, student


def test_the_same_seed_gives_the_same_text_in_any_batch(vllm_dag, direct):
    problems, own, _, _, _ = direct
    dag = {}
    for row in read_jsonl(vllm_dag / "artifacts/smoke/eval/student/tiny_test.samples.jsonl"):
        dag.setdefault(str(row["problem_id"]), []).append(row["response"])
    for problem, texts in zip(problems, own, strict=True):
        assert texts == dag[str(problem["id"])]


def test_problems_do_not_share_a_random_stream(direct):
    """A twin (same prompt, another id) must agree with sample j of the original no more
    often than two independent samples of that prompt do (sample j vs sample k != j of the
    original). One-sided two-proportion z test, alpha 0.01. Under a shared per-request seed
    (the old rule) twins agreed always."""
    _, own, twins, _, _ = direct
    matched = sum(a == b for texts, twin in zip(own, twins, strict=True)
                  for a, b in zip(texts, twin, strict=True))
    pairs = sum(texts[j] == texts[k] for texts in own for j in range(4) for k in range(4) if j != k)
    n_matched, n_pairs = 4 * len(own), 12 * len(own)
    pooled = (matched + pairs) / (n_matched + n_pairs)
    if pooled in (0, 1):
        assert matched / n_matched == pairs / n_pairs
        return
    z = (matched / n_matched - pairs / n_pairs) / (
        pooled * (1 - pooled) * (1 / n_matched + 1 / n_pairs)) ** 0.5
    assert stats.norm.sf(z) >= 0.01, (matched, n_matched, pairs, n_pairs)


def test_responses_stop_at_the_stop_ids_and_the_length(direct):
    problems, own, _, tokenizer, student = direct
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(student)
    assert checkpoint_stop_ids(student, tokenizer) == (
        set(model.generation_config.eos_token_id) | {tokenizer.eos_token_id})
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"])
               for texts in own for text in texts]
    assert max(lengths) <= SPEC.max_new_tokens
    assert min(lengths) < SPEC.max_new_tokens  # some responses end at a stop id
    assert any("\\boxed{" in text for texts in own for text in texts)


def test_the_engine_process_is_gone(direct):
    assert multiprocessing.active_children() == []
