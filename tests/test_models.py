"""Checkpoints: real HF safetensors directories that save, reload and hash exactly."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from effopd.generation import SamplingSpec, sample_completions
from effopd.models.checkpoint import atomic_directory
from effopd.models.tiny import init_tiny_qwen3
from effopd.prompts import render_prompt
from effopd.provenance import directory_manifest, sha256_file
from tests.conftest import TINY_ARCH


def test_checkpoint_is_a_standard_hf_directory(tiny_checkpoint, char_tokenizer):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "manifest.json"} <= names
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["tie_word_embeddings"]
    reference = init_tiny_qwen3(TINY_ARCH, char_tokenizer, seed=0)
    loaded = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    expected = reference.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    on_disk = load_file(tiny_checkpoint / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in on_disk.values())


def test_manifest_hashes_every_file(tiny_checkpoint):
    manifest = json.loads((tiny_checkpoint / "manifest.json").read_text())
    assert manifest["source"] == "test"
    assert manifest["files"] == directory_manifest(tiny_checkpoint)
    assert manifest["files"]["model.safetensors"] == sha256_file(
        tiny_checkpoint / "model.safetensors")


def test_atomic_directory_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (target / "old.txt").read_text() == "old"
    with atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_sampling_returns_n_completions_that_stop_at_eos(tiny_checkpoint):
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    prompts = [render_prompt(tokenizer, f"Compute {a}+1.") for a in range(5)]
    spec = SamplingSpec(n=3, max_new_tokens=12, batch_size=2, seed=1)
    groups = sample_completions(model, tokenizer, prompts, spec)
    assert [len(g) for g in groups] == [3] * 5
    eos = set(model.generation_config.eos_token_id)
    for completion in (c for g in groups for c in g):
        assert 1 <= len(completion.token_ids) <= 12
        assert not eos & set(completion.token_ids[:-1])  # eos only as the last token
        assert completion.text == tokenizer.decode(completion.token_ids, skip_special_tokens=True)
    again = sample_completions(model, tokenizer, prompts, spec)
    assert [[c.token_ids for c in g] for g in again] == [[c.token_ids for c in g] for g in groups]


def _hf_generate(model, tokenizer, prompts, n, max_new_tokens, do_sample, seed):
    """Reference: transformers' own ``generate`` on the same left-padded batch."""
    tokenizer.padding_side = "left"
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0} if do_sample \
        else {"do_sample": False}
    output = model.generate(**encoded, max_new_tokens=max_new_tokens, num_return_sequences=n,
                            pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=list(model.generation_config.eos_token_id), **sampling)
    return output[:, encoded["input_ids"].shape[1]:].tolist()


@pytest.fixture(scope="module")
def sampler_setup(tiny_checkpoint):
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    # prompts of different lengths: left padding and per-row positions are exercised
    prompts = [render_prompt(tokenizer, f"Compute {'9' * (1 + i % 4)}+{i}.") for i in range(6)]
    return model, tokenizer, prompts


def test_greedy_sampling_equals_transformers_generate(sampler_setup):
    model, tokenizer, prompts = sampler_setup
    eos = set(model.generation_config.eos_token_id)
    reference = [row for row in _hf_generate(model, tokenizer, prompts, 1, 16,
                                              do_sample=False, seed=0) for _ in range(2)]
    groups = sample_completions(model, tokenizer, prompts,
                                SamplingSpec(n=2, max_new_tokens=16, batch_size=6, temperature=0))
    ours = [c.token_ids for g in groups for c in g]
    for mine, theirs in zip(ours, reference, strict=True):
        cut = next((i + 1 for i, t in enumerate(theirs) if t in eos), len(theirs))
        assert mine == theirs[:cut]


def test_a_rows_samples_do_not_depend_on_the_other_rows(sampler_setup):
    """Common random numbers: with one seed, a prompt position gets the same noise whatever
    the other prompts are and whenever their rows end."""
    import copy

    model, tokenizer, prompts = sampler_setup
    model = copy.deepcopy(model)
    with torch.no_grad():  # larger weights: peaked, prompt-dependent next-token distributions
        for param in model.parameters():
            param.mul_(4.0)
    spec = SamplingSpec(n=3, max_new_tokens=20, batch_size=6, seed=2)
    other = [prompts[0], render_prompt(tokenizer, "Compute 55*3."), *prompts[2:]]
    assert len(tokenizer(other[1])["input_ids"]) <= max(len(tokenizer(p)["input_ids"])
                                                        for p in prompts)
    first = [[c.token_ids for c in g] for g in sample_completions(model, tokenizer, prompts, spec)]
    second = [[c.token_ids for c in g] for g in sample_completions(model, tokenizer, other, spec)]
    lengths = {len(ids) for group in first for ids in group}
    assert len(lengths) >= 3  # rows end at different steps
    assert first[1] != second[1]
    assert first[:1] + first[2:] == second[:1] + second[2:]


def test_the_exponential_race_draws_from_p():
    from effopd.generation import sample_next_tokens

    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(40000, 1)
    counts = torch.bincount(sample_next_tokens(logits, 1.0, 1.0), minlength=3).float() / 40000
    assert torch.allclose(counts, torch.tensor([0.5, 0.3, 0.2]), atol=0.01)  # SE <= 0.0025


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    from effopd.generation import sample_next_tokens

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(20000, 1)
    torch.manual_seed(0)
    assert set(sample_next_tokens(logits, 1.0, 0.5).tolist()) == {0}
    draws = sample_next_tokens(logits, 1.0, 0.6)
    assert set(draws.tolist()) == {0, 1}
    share = (draws == 0).float().mean().item()
    assert abs(share - 0.5 / 0.8) < 0.015  # renormalised over the nucleus: 0.625 (SE 0.0034)
    assert (sample_next_tokens(logits, 0.0, 1.0) == 0).all()


def test_sampling_benchmark_prints_its_table(tiny_checkpoint, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    problems = tmp_path / "test.jsonl"
    problems.write_text("".join(json.dumps({"question": f"Compute {i}+1."}) + "\n"
                                for i in range(3)))
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "sampling_speed.py"),
                          "--model", str(tiny_checkpoint), "--problems", str(problems),
                          "--repeats", "1"], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[1] for row in rows[2:]] == ["3", "12"]


def test_problem_seed_is_a_stable_hash_of_run_seed_and_id():
    from effopd.generation import SEED_BITS, problem_seed

    # the first 8 bytes of sha256("42/tiny-7"), modulo 2**62: the same on every machine and
    # in every process (not Python's salted hash)
    assert problem_seed(42, "tiny-7") == 1207852404951210425
    assert problem_seed(42, 7) == problem_seed(42, "7")
    seeds = {problem_seed(42, i) for i in range(1000)} | {problem_seed(43, i) for i in range(1000)}
    assert len(seeds) == 2000 and all(0 <= s < 2**SEED_BITS for s in seeds)


def test_a_problems_samples_do_not_depend_on_its_batch(sampler_setup):
    """The seed rule: sample j of problem i draws from problem_seed(seed, id_i) + j, so the
    samples of a problem are the same in any batch, order and batch size; two ids with the
    same prompt get different samples (no shared stream)."""
    from effopd.generation import problem_seed

    model, tokenizer, prompts = sampler_setup
    spec = SamplingSpec(n=3, max_new_tokens=20, batch_size=6, seed=5)
    seeds = [problem_seed(spec.seed, f"p{i}") for i in range(len(prompts))]
    whole = [[c.token_ids for c in g]
             for g in sample_completions(model, tokenizer, prompts, spec, seeds=seeds)]
    order = [4, 1, 5, 0, 3, 2]
    small = SamplingSpec(n=3, max_new_tokens=20, batch_size=4, seed=5)
    shuffled = sample_completions(model, tokenizer, [prompts[i] for i in order], small,
                                  seeds=[seeds[i] for i in order])
    for i, group in zip(order, shuffled, strict=True):
        assert [c.token_ids for c in group] == whole[i]
    alone = sample_completions(model, tokenizer, [prompts[2]], spec, seeds=[seeds[2]])
    assert [c.token_ids for c in alone[0]] == whole[2]
    assert len({tuple(ids) for ids in whole[0]}) == 3  # the n samples of one problem differ
    twin = sample_completions(model, tokenizer, [prompts[0]], spec,
                              seeds=[problem_seed(spec.seed, "p0-twin")])
    assert [c.token_ids for c in twin[0]] != whole[0]


def test_vllm_engine_arguments_on_a_cpu_and_on_a_gpu():
    """generation.vllm overrides the CPU defaults; without chunked prefill a step holds one
    whole prompt (max_num_batched_tokens = max_model_len); auto is float32 on a CPU only."""
    from effopd.generation import CPU_ENGINE_DEFAULTS, vllm_engine_args

    cpu = vllm_engine_args(SamplingSpec(seed=7), 256, on_cpu=True)
    assert cpu == {"dtype": "float32", "seed": 7, "generation_config": "vllm",
                   **CPU_ENGINE_DEFAULTS, "max_num_batched_tokens": 256}
    assert cpu["enable_chunked_prefill"] is False and cpu["enforce_eager"] is True
    spec = SamplingSpec(dtype="bfloat16", vllm={"max_model_len": 512, "enforce_eager": False})
    cpu = vllm_engine_args(spec, 256, on_cpu=True)
    assert (cpu["dtype"], cpu["max_num_batched_tokens"], cpu["enforce_eager"]) == (
        "bfloat16", 512, False)
    gpu = vllm_engine_args(SamplingSpec(vllm={"gpu_memory_utilization": 0.9}), 256, on_cpu=False)
    assert gpu == {"dtype": "auto", "seed": 42, "generation_config": "vllm",
                   "gpu_memory_utilization": 0.9}
